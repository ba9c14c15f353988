"""Algorithm 1 end to end on a tiny random-weight PathUp model."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from napari_pathup.engine.events import Finished, PatchPreview, StageStarted, StepStarted, TileDecoded
from napari_pathup.engine.pipeline import SynthesisSettings, run, synthesize
from napari_pathup.errors import InputError, SettingsError

SMALL = {"height": 128, "width": 192, "reference_size": 64, "steps": 6, "decode_tile": 8, "decode_overlap": 2}


def test_events_stream_both_stages_in_order(pathup_model, reference):
    events = list(synthesize(pathup_model, reference, SynthesisSettings("tumour", **SMALL)))
    stages = [e for e in events if isinstance(e, StageStarted)]
    assert [s.stage for s in stages] == [1, 2]
    assert stages[0].image_shape == (64, 96) and stages[1].image_shape == (128, 192)
    for stage in stages:
        steps = [e for e in events if isinstance(e, StepStarted) and e.stage == stage.stage]
        previews = [e for e in events if isinstance(e, PatchPreview) and e.stage == stage.stage]
        assert len(steps) == stage.steps
        assert len(previews) == stage.steps * stage.patches_per_step
        p = previews[0]
        assert p.rgb.dtype == np.uint8 and p.rgb.shape == (p.box.height, p.box.width, 3)
        assert p.pixel_box == p.box.scaled(8)
    final = events[-1]
    assert isinstance(final, Finished)
    assert final.image.shape == (128, 192, 3) and final.image.dtype == np.uint8
    assert final.reference.shape == (64, 96, 3)
    tiles = [e for e in events if isinstance(e, TileDecoded) and e.stage == 2]
    covered = np.zeros((128, 192), int)
    for t in tiles:
        covered[t.box.slices()] += 1
        np.testing.assert_array_equal(final.image[t.box.slices()], t.rgb)
    assert (covered == 1).all()
    assert final.settings["patch_size"] == 16 and final.settings["overlap"] == 4


def test_same_seed_same_image_other_seed_other_image(pathup_model, reference):
    a = run(pathup_model, reference, SynthesisSettings("stroma", seed=3, jitter=True, **SMALL)).image
    b = run(pathup_model, reference, SynthesisSettings("stroma", seed=3, jitter=True, **SMALL)).image
    c = run(pathup_model, reference, SynthesisSettings("stroma", seed=4, jitter=True, **SMALL)).image
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_class_changes_the_image(pathup_model, reference):
    a = run(pathup_model, reference, SynthesisSettings("tumour", **SMALL)).image
    b = run(pathup_model, reference, SynthesisSettings("normal", **SMALL)).image
    assert not np.array_equal(a, b)


@pytest.mark.parametrize("scheduler", ["euler", "dpm++", "unipc", "euler-a", "ddpm"])
def test_any_scheduler_runs(pathup_model, reference, scheduler):
    image = run(pathup_model, reference, SynthesisSettings("tumour", scheduler=scheduler, **SMALL)).image
    assert image.shape == (128, 192, 3) and image.std() > 0


def test_cancel_mid_run_stops_without_finishing(pathup_model, reference):
    gen = synthesize(pathup_model, reference, SynthesisSettings("tumour", **SMALL))
    seen = []
    for event in gen:
        seen.append(event)
        if isinstance(event, PatchPreview) and event.stage == 2:
            break
    gen.close()
    assert not any(isinstance(e, (Finished, TileDecoded)) and getattr(e, "stage", 2) == 2 for e in seen[-1:])
    assert not any(isinstance(e, Finished) for e in seen)


def test_small_output_uses_a_clamped_default_patch(pathup_model, reference):
    s = SynthesisSettings("tumour", height=64, width=64, steps=4).resolve(pathup_model).settings
    assert s.patch_size == 8 and s.overlap == 2  # latent is 8x8; native patch 16 clamped


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"class_name": "lymphoma"}, "unknown class 'lymphoma'.*tumour, stroma, normal"),
        ({"height": 100}, r"height \(--size\) must be a multiple of 8"),
        ({"patch_size": 64}, r"patch_size \(--patch\) must be a multiple of 2 .* between 2 and 16"),
        ({"patch_size": 8, "overlap": 8}, "overlap"),
        ({"weights": "box"}, r"weights \(--weights\) must be one of uniform, gaussian, cosine"),
        ({"strength": 1.5}, r"strength \(--strength\) must be in \(0, 1\]"),
        ({"batch_size": 0}, "batch_size"),
        ({"scheduler": "magic"}, "unknown scheduler 'magic'"),
    ],
)
def test_bad_settings_give_clear_errors(pathup_model, reference, kwargs, message):
    settings = SynthesisSettings(**{"class_name": "tumour", **SMALL, **kwargs})
    with pytest.raises(SettingsError, match=message):
        run(pathup_model, reference, settings)


def test_bad_reference_is_rejected(pathup_model):
    with pytest.raises(InputError, match="reference must be an"):
        run(pathup_model, np.zeros((32, 32), np.float32), SynthesisSettings("tumour", **SMALL))


def test_bfloat16_runs_on_the_cpu(pathup_model_dir, reference):
    import torch

    from napari_pathup.models.load import load_model

    model = load_model(pathup_model_dir).to("cpu", torch.bfloat16)
    image = run(model, reference, SynthesisSettings("tumour", **SMALL)).image
    assert image.shape == (128, 192, 3) and image.std() > 0


def test_device_and_dtype_selection_errors():
    import torch

    from napari_pathup.engine.device import select_device, select_dtype

    assert select_device("cpu") == torch.device("cpu")
    assert select_dtype("bfloat16") == torch.bfloat16
    with pytest.raises(ValueError, match="unknown dtype 'float8'"):
        select_dtype("float8")
    with pytest.raises(ValueError, match="unknown device 'gpu0'"):
        select_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            select_device("cuda:0")


def test_work_counts_match_a_real_run(pathup_model, reference):
    """The counts behind `pathup info` and the GUI's estimate are the run's real counts."""
    from napari_pathup.engine.estimate import count_work

    settings = SynthesisSettings("tumour", **SMALL)
    events = list(synthesize(pathup_model, reference, settings))
    for work, number in zip(count_work(pathup_model, settings), (1, 2), strict=True):
        previews = [e for e in events if isinstance(e, PatchPreview) and e.stage == number]
        tiles = [e for e in events if isinstance(e, TileDecoded) and e.stage == number]
        started = next(e for e in events if isinstance(e, StageStarted) and e.stage == number)
        assert work.steps == started.steps and work.patches_per_step == started.patches_per_step
        assert work.patch_evaluations == 2 * len(previews)  # guidance doubles every evaluation
        assert work.decode_tiles == len(tiles)


def test_guidance_outside_its_interval_is_skipped_as_the_plan_counts(pathup_model, reference, monkeypatch):
    """Steps outside the guidance interval send the conditional batch alone: the denoiser sees the
    plan's patch evaluations, fewer than with guidance at every step, and the image changes."""
    settings = SynthesisSettings(
        "tumour", **{**SMALL, "strength": 1.0, "upscale_strength": 1.0, "guidance_interval": (0.5, 1.0)}
    )
    plan = settings.resolve(pathup_model)
    denoiser, seen = pathup_model.denoiser, []

    def counting(x, t, labels):
        seen.append(x.shape[0])
        return denoiser(x, t, labels)

    monkeypatch.setattr(pathup_model, "denoiser", counting)
    limited = run(pathup_model, reference, plan).image
    assert sum(seen) == plan.patch_evaluations
    assert plan.patch_evaluations < sum(st.steps * len(st.grid) * 2 for st in plan.stages)
    monkeypatch.undo()
    everywhere = run(pathup_model, reference, dataclasses.replace(settings, guidance_interval=None)).image
    moved = np.abs(limited.astype(int) - everywhere.astype(int)) > 0
    assert moved.mean() > 0.05  # far above float rounding (one level on < 0.5 % of the pixels)


def test_non_finite_latents_fail_the_run_and_nothing_is_returned(pathup_model_dir, reference):
    """Issue 11, finding 2: NaN latents decoded to a black image with exit 0; now the run fails."""
    import dataclasses

    import torch

    from napari_pathup.errors import SynthesisError
    from napari_pathup.models.load import load_model

    model = load_model(pathup_model_dir)
    real = model.denoiser
    broken = dataclasses.replace(model, denoiser=lambda x, t, c: real(x, t, c) * float("nan"))
    with pytest.raises(SynthesisError, match=r"stage 1 produced non-finite latents .* nothing was written"):
        run(broken, reference, SynthesisSettings("tumour", **SMALL))
    assert torch.isfinite(real(torch.zeros(1, 4, 8, 8), torch.tensor(5), torch.tensor([0]))).all()


def test_a_sink_of_the_wrong_shape_is_refused_before_any_work(pathup_model, reference):
    events = synthesize(
        pathup_model, reference, SynthesisSettings("tumour", **SMALL), np.zeros((8, 8, 3), np.uint8)
    )
    with pytest.raises(InputError, match=r"sink has shape \(8, 8, 3\); this run writes \(128, 192, 3\)"):
        next(events)


@pytest.fixture(scope="module")
def autoguided_model(pathup_model_dir, tmp_path_factory):
    """The tiny model with a weak denoiser: another random network of the same architecture."""
    import shutil

    from napari_pathup.models.build import build_random_pathup_model
    from napari_pathup.models.load import load_model
    from napari_pathup.models.weak import add_weak_denoiser

    folder = tmp_path_factory.mktemp("autoguided") / "model"
    shutil.copytree(pathup_model_dir, folder)
    add_weak_denoiser(folder, build_random_pathup_model(tmp_path_factory.mktemp("weak") / "weak", seed=1))
    return load_model(folder)


def test_autoguidance_steers_away_from_the_weak_denoiser_under_the_same_class(autoguided_model):
    import torch

    from napari_pathup.engine.sampler import guided_output

    m = autoguided_model
    x, t = (
        torch.randn(3, m.latent_channels, 16, 16, generator=torch.Generator().manual_seed(0)),
        torch.tensor(400),
    )
    cond, uncond = m.conditioner("stroma", "native"), m.conditioner(None, "native")
    c, a = m.denoiser(x, t, cond.expand(3)), m.weak_denoiser(x, t, cond.expand(3))
    out = guided_output(m.denoiser, x, t, cond, uncond, 2.5, m.weak_denoiser)
    assert torch.allclose(out, a + 2.5 * (c - a), atol=1e-5)
    cfg = guided_output(m.denoiser, x, t, cond, uncond, 2.5)
    assert not torch.allclose(out, cfg, atol=1e-3)  # steered away from another output
    assert torch.equal(guided_output(m.denoiser, x, t, cond, None, 2.5, m.denoiser), c)  # itself: c


def test_an_autoguided_run_is_repeatable_and_differs_from_classifier_free(autoguided_model, reference):
    auto = SynthesisSettings("tumour", guidance_mode="auto", **SMALL)
    first = run(autoguided_model, reference, auto)
    assert first.settings["guidance_mode"] == "auto"
    assert np.array_equal(first.image, run(autoguided_model, reference, auto).image)
    cfg = run(autoguided_model, reference, SynthesisSettings("tumour", **SMALL)).image
    assert not np.array_equal(first.image, cfg)
    # at guidance 1 neither guidance runs: the class-conditional output alone, bit for bit
    one = {**SMALL, "guidance": 1.0}
    assert np.array_equal(
        run(autoguided_model, reference, SynthesisSettings("tumour", guidance_mode="auto", **one)).image,
        run(autoguided_model, reference, SynthesisSettings("tumour", **one)).image,
    )


def test_autoguidance_without_a_weak_denoiser_is_refused_naming_the_setting(pathup_model, sd_model_dir):
    from napari_pathup.models.load import read_model_spec

    for model in (pathup_model, read_model_spec(sd_model_dir)):
        with pytest.raises(
            SettingsError, match=r"guidance_mode \(--guidance-mode\) must be cfg for .*weak_den"
        ):
            SynthesisSettings("tumour", guidance_mode="auto", **SMALL).resolve(model)
    with pytest.raises(SettingsError, match=r"guidance_mode \(--guidance-mode\) must be one of cfg, auto"):
        SynthesisSettings("tumour", guidance_mode="weak", **SMALL).check()
    own = dataclasses.replace(
        pathup_model, metadata={**pathup_model.metadata, "defaults": {"guidance_mode": "auto"}}
    )
    with pytest.raises(SettingsError, match=r"which this model lacks, as the model's pathup.json defaults"):
        SynthesisSettings("tumour", **SMALL).resolve(own)


def test_an_autoguided_plan_counts_a_call_of_each_denoiser_per_guided_batch(autoguided_model):
    cfg = SynthesisSettings("tumour", **SMALL).resolve(autoguided_model)
    auto = SynthesisSettings("tumour", guidance_mode="auto", **SMALL).resolve(autoguided_model)
    for c, a in zip(cfg.stages, auto.stages, strict=True):
        assert a.patch_evaluations == c.patch_evaluations  # the same work as a doubled batch
        assert c.denoiser_calls == c.batch_steps and a.guided_calls == c.guided_calls > 0
        assert a.denoiser_calls == c.denoiser_calls + c.guided_calls
