"""The run plan: one resolution of the settings, validated before any weights load; images as before."""

from __future__ import annotations

import dataclasses
import hashlib
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from napari_pathup.engine.estimate import count_work
from napari_pathup.engine.pipeline import run
from napari_pathup.engine.plan import (
    OUTPAINT_FILL_STRENGTH,
    SETTINGS,
    WORK_BUDGET,
    RunPlan,
    SynthesisSettings,
    setting_name,
)
from napari_pathup.errors import RunTooLargeError, SettingsError

SMALL = {"height": 128, "width": 192, "reference_size": 64, "steps": 6}

#: the images of the code before the run plan existed (commit 211a654), on the tiny random model of
#: ``build_random_pathup_model`` (seed 0) with the reference below, under torch 2.14.1 on the CPU with one
#: thread. The digests were made by that code on an AMD EPYC (AVX-512), where the current code still
#: gives them bit for bit; ``golden/<case>.png`` are the current code's images on an Intel Xeon with AMX,
#: whose float kernels round differently (a CPU that matches neither is compared with the PNGs).
GOLDEN_TORCH = "2.14.1"
GOLDEN_DIR = Path(__file__).parent / "golden"
#: float rounding of other CPUs' kernels moves a pixel by one grey level at most, on < 0.1 % of pixels
#: (measured: the same code with AVX2 instead of AVX-512 kernels); any change to the computation (a
#: setting, a seed, the noise, the blend) moves far more
ROUNDING_LEVELS, ROUNDING_SHARE = 1, 0.005
GOLDEN = {
    "default": (
        {"height": 128, "width": 192, "reference_size": 64, "steps": 6},
        "e2f2c4e115f5011cdbf8efd09e3913d6be51d39d1b8c840d77918900ad1a03fc",
    ),
    "jitter-gaussian-euler": (
        {
            "height": 192,
            "width": 128,
            "reference_size": 64,
            "steps": 5,
            "jitter": True,
            "weights": "gaussian",
            "sigma": 0.4,
            "scheduler": "euler",
            "seed": 7,
            "patch_size": 8,
            "overlap": 3,
        },
        "b1bf882ec59558a560845e237d1f17e6edda3758dd31ac29d3ee3158457a989b",
    ),
    "unguided-uniform": (
        {
            "height": 128,
            "width": 128,
            "reference_size": 64,
            "steps": 4,
            "guidance": 1.0,
            "weights": "uniform",
            "batch_size": 3,
            "seed": 3,
        },
        "7b2c3cea1651c18d87d074a974d4fc660d26bb374af65907b91f660c434283a8",
    ),
}


@pytest.fixture(scope="module")
def golden_model(tmp_path_factory):
    from napari_pathup.models.build import build_random_pathup_model
    from napari_pathup.models.load import load_model

    folder = build_random_pathup_model(
        tmp_path_factory.mktemp("golden") / "m", classes=("tumour", "stroma", "normal")
    )
    model = load_model(folder)
    # the golden images were made with the denoiser's weights contiguous (NCHW), before the engine laid
    # them out channels_last on the CPU: the same computation, rounded otherwise (tests/models/test_load.py)
    model.modules["denoiser"].to(memory_format=torch.contiguous_format)
    return model


def _golden_run(model, kwargs: dict) -> np.ndarray:
    rng = np.random.default_rng(0)
    reference = np.clip(np.array([200, 120, 170.0]) + rng.normal(0, 30, (160, 224, 3)), 0, 255).astype(
        np.uint8
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the golden images were made with one thread; others sum in another order
    try:
        return run(model, reference, SynthesisSettings("stroma", **kwargs)).image
    finally:
        torch.set_num_threads(threads)


def _rounding_only(image: np.ndarray, golden: np.ndarray) -> bool:
    if image.shape != golden.shape:
        return False
    moved = np.abs(image.astype(np.int16) - golden.astype(np.int16))
    return int(moved.max()) <= ROUNDING_LEVELS and float((moved > 0).mean()) <= ROUNDING_SHARE


@pytest.mark.parametrize("case", sorted(GOLDEN))
def test_images_are_those_of_the_code_before_the_run_plan(golden_model, case):
    if not torch.__version__.startswith(GOLDEN_TORCH):
        pytest.skip(f"golden images were made with torch {GOLDEN_TORCH}")
    kwargs, digest = GOLDEN[case]
    image = _golden_run(golden_model, kwargs)
    golden = np.asarray(Image.open(GOLDEN_DIR / f"{case}.png"))
    if hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest() == digest:
        return  # bit for bit, on a machine that rounds as the one that made the digests
    assert _rounding_only(image, golden), f"{case}: not the golden image up to float rounding"


def test_the_golden_comparison_sees_a_changed_setting(golden_model):
    """The rounding allowance is far below what a change to the computation does (guidance 3.0 -> 3.01
    moves 14 % of the pixels, by up to 4 levels)."""
    kwargs, _ = GOLDEN["default"]
    golden = np.asarray(Image.open(GOLDEN_DIR / "default.png"))
    assert not _rounding_only(_golden_run(golden_model, {**kwargs, "guidance": 3.01}), golden)
    assert not _rounding_only(_golden_run(golden_model, {**kwargs, "seed": 1}), golden)


def test_resolve_returns_a_frozen_plan_that_the_configs_and_the_loaded_model_agree_on(
    pathup_model, pathup_model_dir
):
    from napari_pathup.models.load import read_model_spec

    spec = read_model_spec(pathup_model_dir)
    assert (spec.vae_scale_factor, spec.patch_multiple) == (pathup_model.vae_scale_factor, 2)
    from_spec = SynthesisSettings("tumour", **SMALL).resolve(spec)
    from_model = SynthesisSettings("tumour", **SMALL).resolve(pathup_model)
    assert isinstance(from_spec, RunPlan) and from_spec.settings == from_model.settings
    assert [s.grid for s in from_spec.stages] == [s.grid for s in from_model.stages]
    assert [s.steps for s in from_spec.stages] == [s.steps for s in from_model.stages]
    assert count_work(spec, from_spec) == count_work(pathup_model, from_model)
    with pytest.raises(dataclasses.FrozenInstanceError):
        from_spec.settings = None
    # complete: no None left, the defaults of the model filled in, recorded as such
    assert None not in [v for k, v in from_spec.to_dict().items() if k != "scheduler"]
    stage_one, stage_two = from_spec.stages
    assert stage_one.scale == "overview" and stage_two.scale == "native"
    assert stage_two.latent_shape == (16, 24) and stage_two.grid.patch_size == 16


def test_a_plan_is_used_as_it_is_by_the_engine(pathup_model, reference):
    plan = SynthesisSettings("tumour", **SMALL).resolve(pathup_model)
    from_plan = run(pathup_model, reference, plan)
    from_settings = run(pathup_model, reference, SynthesisSettings("tumour", **SMALL))
    np.testing.assert_array_equal(from_plan.image, from_settings.image)
    assert from_plan.settings == plan.to_dict()


def test_every_message_names_the_setting_and_its_flag():
    flags = {s.field: s.flag for s in SETTINGS}
    assert flags["upscale_strength"] == "--upscale-strength" and flags["patch_size"] == "--patch"
    assert setting_name("upscale_strength") == "upscale_strength (--upscale-strength)"
    with pytest.raises(SettingsError, match=r"^upscale_strength \(--upscale-strength\) must be a finite"):
        SynthesisSettings("tumour", upscale_strength=float("nan")).check()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("guidance", float("nan"), r"guidance \(--guidance\) must be a finite number \(>= 0\)"),
        ("guidance", float("inf"), r"guidance \(--guidance\) must be a finite number"),
        ("guidance", -1.0, r"guidance \(--guidance\) must be >= 0"),
        ("sigma", float("nan"), r"sigma \(--sigma\) must be a finite number \(> 0\)"),
        ("sigma", 0.0, r"sigma \(--sigma\) must be > 0"),
        ("strength", 0.0, r"strength \(--strength\) must be in \(0, 1\]"),
        ("strength", float("-inf"), r"strength \(--strength\) must be a finite number"),
        ("steps", 0, r"steps \(--steps\) must be between 1 and 10000"),
        ("steps", 2.5, r"steps \(--steps\) must be a whole number"),
        ("batch_size", -3, r"batch_size \(--batch-size\) must be between 1 and"),
        ("height", 0, r"height \(--size\) must be between 1 and 1000000"),
        ("seed", -1, r"seed \(--seed\) must be between 0 and"),
        ("overlap", -1, r"overlap \(--overlap\) must be at least 0"),
        ("jitter", "yes", r"jitter \(--jitter\) must be True or False"),
        (
            "guidance_interval",
            (0.5, 0.5),
            r"guidance_interval \(--guidance-interval\) must be a pair .*0 <= LOW < HIGH <= 1",
        ),
        ("guidance_interval", (0.6, 0.3), r"guidance_interval \(--guidance-interval\) must be a pair"),
        ("guidance_interval", (-0.1, 1.0), r"guidance_interval \(--guidance-interval\) must be a pair"),
        ("guidance_interval", (0.0, 1.5), r"guidance_interval \(--guidance-interval\) must be a pair"),
        (
            "guidance_interval",
            (float("nan"), 1.0),
            r"guidance_interval \(--guidance-interval\) must be a pair",
        ),
        ("guidance_interval", (0.3,), r"guidance_interval \(--guidance-interval\) must be a pair"),
        ("guidance_interval", "0.3,1", r"guidance_interval \(--guidance-interval\) must be a pair"),
        ("guidance_interval", (True, 1.0), r"guidance_interval \(--guidance-interval\) must be a pair"),
    ],
)
def test_bad_values_are_refused_without_a_model(field, value, message):
    with pytest.raises(SettingsError, match=message):
        SynthesisSettings("tumour", **{field: value}).check()


NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([float("nan"), float("inf"), float("-inf"), -0.0, 0, -1]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    field=st.sampled_from(
        [
            "steps",
            "strength",
            "upscale_strength",
            "guidance",
            "patch_size",
            "overlap",
            "sigma",
            "batch_size",
            "height",
            "width",
            "reference_size",
            "seed",
            "decode_tile",
            "decode_overlap",
        ]
    ),
    value=NUMBERS,
)
def test_any_number_is_either_accepted_or_refused_with_a_settings_error(pathup_model_dir, field, value):
    """Random and non-finite values for every numeric setting: a clean accept or a SettingsError
    naming the setting; never another exception, never a non-finite value accepted."""
    from napari_pathup.models.load import read_model_spec

    spec = _spec(pathup_model_dir, read_model_spec)
    try:
        plan = SynthesisSettings("tumour", **{**SMALL, field: value}).resolve(spec)
    except (SettingsError, RunTooLargeError) as exc:
        assert field in str(exc) or "reference" in str(exc) or "patch_size" in str(exc)
        return
    resolved = plan.settings
    for name in ("strength", "upscale_strength", "guidance", "sigma"):
        assert math.isfinite(getattr(resolved, name))
    assert resolved.guidance >= 0 and resolved.sigma > 0 and 0 < resolved.upscale_strength <= 1


_SPECS: dict = {}


def _spec(folder, reader):
    if folder not in _SPECS:
        _SPECS[folder] = reader(folder)
    return _SPECS[folder]


def test_patches_follow_the_denoiser_input_rule_of_the_shipped_model():
    """The shipped denoiser halves its input twice: patches of 1-3 latent pixels crashed inside
    diffusers; the rule comes from its config, not a constant."""
    from napari_pathup.models.default import default_model_path
    from napari_pathup.models.load import read_model_spec

    spec = read_model_spec(default_model_path())
    assert spec.patch_multiple == 4 and spec.native_size == 32
    for patch in (1, 2, 3, 6):
        with pytest.raises(SettingsError, match=r"patch_size \(--patch\) must be a multiple of 4"):
            SynthesisSettings("tumour", height=512, width=512, patch_size=patch).resolve(spec)
    assert (
        SynthesisSettings("tumour", height=512, width=512, patch_size=4)
        .resolve(spec)
        .stages[1]
        .grid.patch_size
        == 4
    )
    # a default patch clamped to a small latent is rounded down to the rule (latent 10 -> patch 8)
    assert SynthesisSettings("tumour", height=80, width=512).resolve(spec).stages[1].grid.patch_size == 8
    with pytest.raises(SettingsError, match=r"height \(--size\) must be a multiple of 8 .* at least 32"):
        SynthesisSettings("tumour", height=24, width=512).resolve(spec)


def test_a_model_can_sample_one_class_with_its_own_defaults(pathup_model_dir):
    """pathup.json "class_defaults" override "defaults" for that class only; what a user sets wins."""
    from napari_pathup.models.load import read_model_spec

    spec = read_model_spec(pathup_model_dir)
    other = next(c for c in spec.classes if c != "tumour")
    size = {k: v for k, v in SMALL.items() if k != "steps"}

    def with_defaults(per_class):
        meta = {**spec.metadata, "defaults": {"guidance": 2.5, "steps": 7}, "class_defaults": per_class}
        return dataclasses.replace(spec, metadata=meta)

    model = with_defaults({"tumour": {"guidance": 4.0}})
    tumour = SynthesisSettings("tumour", **size).resolve(model).settings
    assert (tumour.guidance, tumour.steps) == (4.0, 7)
    assert SynthesisSettings(other, **size).resolve(model).settings.guidance == 2.5
    assert SynthesisSettings("tumour", guidance=1.0, **size).resolve(model).settings.guidance == 1.0
    # a typo in a class or a setting would silently change nothing: refused, naming it
    for per_class, named in (
        ({"tumor": {"guidance": 4.0}}, "'tumor'"),
        ({"tumour": {"guidence": 4.0}}, "guidence"),
        ({"tumour": 4.0}, "4.0"),
        ([], r"\[\]"),
    ):
        with pytest.raises(SettingsError, match=rf"class_defaults.*{named}"):
            SynthesisSettings(other, **size).resolve(with_defaults(per_class))
    with pytest.raises(SettingsError, match=r"guidance \(--guidance\) must be >= 0, got -1.0, as the model"):
        SynthesisSettings("tumour", **size).resolve(with_defaults({"tumour": {"guidance": -1.0}}))
    backwards = with_defaults({"tumour": {"guidance_interval": [0.9, 0.1]}})
    with pytest.raises(SettingsError, match=r"guidance_interval \(--guidance-interval\) .*, as the model"):
        SynthesisSettings("tumour", **size).resolve(backwards)
    # the user's own value is not blamed on the model
    with pytest.raises(SettingsError, match=r"must be >= 0, got -1.0$"):
        SynthesisSettings("tumour", guidance=-1.0, **size).resolve(spec)
    # a setting a run never takes from the model would change nothing, silently: refused, naming it
    for key in ("height", "seed", "sigma", "decode_tile"):
        ignored = dataclasses.replace(spec, metadata={**spec.metadata, "defaults": {key: 8}})
        with pytest.raises(SettingsError, match=rf'pathup.json "defaults" must be .*{key}'):
            SynthesisSettings("tumour", **size).resolve(ignored)
    # the same for the model-wide "defaults": a misspelt key is named, not ignored
    typo = dataclasses.replace(spec, metadata={**spec.metadata, "defaults": {"guidence": 4.0, "steps": 7}})
    with pytest.raises(SettingsError, match=r'pathup.json "defaults" must be .*guidence'):
        SynthesisSettings("tumour", **size).resolve(typo)


def test_a_guidance_interval_halves_the_work_of_the_steps_outside_it(pathup_model_dir):
    """The plan counts a doubled batch only for the steps whose noise level t / T is inside the
    interval, as the engine runs them; a model's JSON list is a valid default."""
    from napari_pathup.engine.sampler import img2img_timesteps
    from napari_pathup.models.load import read_model_spec

    spec = read_model_spec(pathup_model_dir)
    run = {**SMALL, "strength": 1.0, "upscale_strength": 1.0}  # every step of the schedule, in both stages
    everywhere = SynthesisSettings("tumour", **run).resolve(spec)
    limited = SynthesisSettings("tumour", guidance_interval=(0.5, 1.0), **run).resolve(spec)
    assert everywhere.settings.guidance_interval == (0.0, 1.0)  # the library default: every step
    for full, part in zip(everywhere.stages, limited.stages, strict=True):
        assert full.guided_steps == full.steps and full.guided_calls == full.denoiser_calls
        strength = part.sampling.strength
        timesteps = img2img_timesteps(spec.scheduler, SMALL["steps"], strength, torch.device("cpu"))
        inside = sum(float(t) >= 500 for t in timesteps)
        assert 0 < part.guided_steps == inside < part.steps
        assert part.patch_evaluations == (part.steps + inside) * len(part.grid)
    assert limited.patch_evaluations < everywhere.patch_evaluations
    meta = {**spec.metadata, "defaults": {"guidance_interval": [0.5, 1]}}
    from_json = SynthesisSettings("tumour", **run).resolve(dataclasses.replace(spec, metadata=meta))
    assert from_json.settings.guidance_interval == (0.5, 1.0)
    assert from_json.patch_evaluations == limited.patch_evaluations
    unguided = SynthesisSettings("tumour", guidance=1.0, **run).resolve(spec)
    assert all(st.guided_steps == 0 for st in unguided.stages)


def test_a_models_overlap_default_goes_with_its_default_patch(pathup_model_dir):
    """pathup.json "defaults" "overlap" tiles the model's own patch size; a run at another patch (the
    user's, or one clamped for a small output) overlaps by a quarter of it, as without the default."""
    from napari_pathup.models.load import read_model_spec

    spec = read_model_spec(pathup_model_dir)  # native patch 16 latent px
    meta = {**spec.metadata, "defaults": {"overlap": 3}}
    model = dataclasses.replace(spec, metadata=meta)
    size = {"height": 1024, "width": 1024}  # latent 128: 121 patches at p / 4, 100 at overlap 3
    assert SynthesisSettings("tumour", **size).resolve(spec).stages[1].grid.overlap == 4  # p / 4
    own = SynthesisSettings("tumour", **size).resolve(model)
    assert (own.patch_size, own.overlap, own.stages[1].grid.overlap) == (16, 3, 3)
    assert len(own.stages[1].grid) < len(SynthesisSettings("tumour", **size).resolve(spec).stages[1].grid)
    assert SynthesisSettings("tumour", patch_size=32, **size).resolve(model).overlap == 8  # the user's patch
    assert (
        SynthesisSettings("tumour", height=64, width=512).resolve(model).overlap == 2
    )  # clamped patch 8: 8 // 4
    assert SynthesisSettings("tumour", overlap=6, **size).resolve(model).overlap == 6  # the user's overlap
    with_patch = dataclasses.replace(
        spec, metadata={**spec.metadata, "defaults": {"patch_size": 32, "overlap": 4}}
    )
    assert SynthesisSettings("tumour", **size).resolve(with_patch).overlap == 4
    too_wide = dataclasses.replace(spec, metadata={**spec.metadata, "defaults": {"overlap": 16}})
    with pytest.raises(
        SettingsError, match=r"overlap \(--overlap\) must be smaller than the patch \(16\), as the model"
    ):
        SynthesisSettings("tumour", **size).resolve(too_wide)
    # a hostile pathup.json: a SettingsError naming it, not a TypeError from the tiling arithmetic
    for defaults, named in (
        ({"overlap": "4"}, r"overlap \(--overlap\) must be a whole number, got '4', as the model"),
        ({"overlap": -1}, r"overlap \(--overlap\) must be at least 0, got -1, as the model"),
        ({"patch_size": "16"}, r"patch_size \(--patch\) must be a whole number, got '16', as the model"),
    ):
        hostile = dataclasses.replace(spec, metadata={**spec.metadata, "defaults": defaults})
        with pytest.raises(SettingsError, match=named):
            SynthesisSettings("tumour", **size).resolve(hostile)


def test_sizes_are_checked_against_the_model_configs(pathup_model_dir):
    from napari_pathup.models.load import read_model_spec

    spec = read_model_spec(pathup_model_dir)
    for size in (0, 2049, 8):
        with pytest.raises(SettingsError, match=r"height \(--size\)"):
            SynthesisSettings("tumour", height=size, width=64).resolve(spec)


def test_a_run_above_the_budget_is_refused_saying_the_estimate_unless_confirmed(pathup_model_dir):
    from napari_pathup.models.load import read_model_spec

    spec = read_model_spec(pathup_model_dir)
    plan = SynthesisSettings("tumour", height=100_000, width=100_000).resolve(spec)
    assert plan.patch_evaluations > WORK_BUDGET and not plan.in_memory
    with pytest.raises(
        RunTooLargeError, match=r"100000x100000 px run needs an estimated .* --allow-large-run"
    ):
        plan.check_budget()
    plan.check_budget(allow_large=True)  # confirmed: no refusal
    small = SynthesisSettings("tumour", **SMALL).resolve(spec)
    small.check_budget(available_memory=10**12, free_disk=10**12)
    with pytest.raises(RunTooLargeError, match="of memory besides the model"):
        small.check_budget(available_memory=1000)
    with pytest.raises(RunTooLargeError, match="of disk at the output"):
        small.check_budget(free_disk=10)


def test_a_reference_smaller_than_one_native_patch_is_refused_naming_the_minimum(
    pathup_model, pathup_model_dir
):
    plan = SynthesisSettings("tumour", **SMALL).resolve(pathup_model)
    assert plan.min_reference_side == 16 * 8
    with pytest.raises(SettingsError, match=r"1x1 px; this model needs a reference of at least 128 px"):
        run(pathup_model, np.full((1, 1, 3), 255, np.uint8), plan)
    plan.check_reference((128, 500))


def test_the_plan_reads_like_its_resolved_settings(pathup_model):
    """Callers of ``resolve(model).patch_size`` (before it returned a plan) keep working."""
    import pickle

    plan = SynthesisSettings("tumour", **SMALL).resolve(pathup_model)
    assert (plan.patch_size, plan.overlap, plan.height, plan.seed) == (16, 4, 128, 0)
    assert plan.steps == plan.settings.steps == 6
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        _ = plan.nonsense
    assert pickle.loads(pickle.dumps(plan.settings)) == plan.settings


def test_a_plan_with_another_seed_equals_a_fresh_resolution(pathup_model):
    plan = SynthesisSettings("tumour", **SMALL).resolve(pathup_model)
    fresh = SynthesisSettings("tumour", seed=42, **SMALL).resolve(pathup_model)
    assert plan.with_seed(42) == fresh
    with pytest.raises(SettingsError, match=r"seed \(--seed\)"):
        plan.with_seed(-1)


def test_a_reference_smaller_than_the_output_gets_a_note_that_it_is_enlarged(pathup_model_dir):
    """PathUp enlarges a smaller reference to the output's field: the user is told by how much."""
    from napari_pathup.models.load import read_model_spec

    plan = SynthesisSettings("tumour", height=2048, width=2048).resolve(read_model_spec(pathup_model_dir))
    note = plan.reference_note((632, 1024, 3), "the reference tumour.png")
    assert note is not None
    assert "tumour.png (1024x632 px) is enlarged 2.0x across and 3.2x down" in note
    assert "2048x2048 output" in note and "reference RoI of the output's size" in note
    assert plan.reference_note((2048, 2048, 3)) is None  # 1:1
    assert plan.reference_note((1700, 4000, 3)) is None  # up to 1.25x, and larger references: no note


def test_outpaint_says_how_much_is_drawn_and_plans_stage_1_from_noise(pathup_model_dir):
    from napari_pathup.models.load import read_model_spec

    spec = read_model_spec(pathup_model_dir)
    plan = SynthesisSettings("tumour", height=2048, width=2048, reference_fit="outpaint").resolve(spec)
    note = plan.reference_note((632, 1024, 3), "the reference tumour.png")
    assert note is not None and "placed 1:1 in the centre" in note and "other 85% of the field" in note
    assert "cropped" not in note and "centre is used" in plan.reference_note((4000, 1024, 3))
    assert plan.reference_note((2048, 2048, 3)) is None  # 1:1, nothing to draw
    one, two = plan.stages
    assert one.sampling.strength == OUTPAINT_FILL_STRENGTH and one.sampling.known_strength == plan.strength
    assert one.steps == int(plan.steps * OUTPAINT_FILL_STRENGTH) and two.sampling.known_strength is None
    stretch = SynthesisSettings("tumour", height=2048, width=2048).resolve(spec)
    assert stretch.reference_fit == "stretch"  # the library default: PathUp's
    assert stretch.stages[0].sampling.known_strength is None and stretch.stages[0].steps < plan.steps


@pytest.mark.parametrize(
    ("batch_size", "expected"), [(8, {8: 1, 7: 1}), (5, {5: 3}), (4, {4: 3, 3: 1}), (64, {15: 1})]
)
def test_a_step_batches_its_patches_in_full_batches_and_one_remainder(pathup_model, batch_size, expected):
    """What the sampler's loop does with a step's 15 patches, and what the estimate costs one by one."""
    plan = SynthesisSettings("tumour", height=320, width=448, batch_size=batch_size).resolve(pathup_model)
    for stage in plan.stages:
        assert stage.patches_per_step == 15
        assert stage.step_batches == expected
        assert sum(k * n for k, n in stage.step_batches.items()) == stage.patches_per_step
        assert sum(stage.step_batches.values()) * stage.steps == stage.batch_steps
