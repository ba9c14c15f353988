"""The Synthesize dock widget in a real napari viewer, on a tiny random-weight model."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import napari_pathup.widgets._base as base_module
import napari_pathup.widgets._run as run_module
import napari_pathup.widgets.synthesize as synth_module
from napari_pathup.engine.device import select_dtype
from napari_pathup.engine.events import PatchPreview
from napari_pathup.engine.pipeline import SynthesisSettings, run
from napari_pathup.models.load import load_model, model_hash
from napari_pathup.widgets.synthesize import MODEL_SCHEDULER, SynthesizeWidget

TIMEOUT_MS = 120_000


@pytest.fixture
def widget(make_napari_viewer, pathup_model_dir, reference, tmp_path):
    viewer = make_napari_viewer()
    w = SynthesizeWidget(viewer)
    w.model_dir.value = str(pathup_model_dir)
    w.device.value = "cpu"
    path = tmp_path / "reference.png"
    Image.fromarray(reference).save(path)
    w.reference_file.value = str(path)
    w.class_name.value = "stroma"
    w.out_width.value, w.out_height.value = 192, 128
    w.steps.value, w.seed.value = 4, 11
    return w


def test_layer_appears_at_once_fills_in_and_equals_the_engine(widget, pathup_model_dir, reference, qtbot):
    seen = []  # per stage-2 preview: (the layer shown, its shape, whether it has pixels yet)

    worker = widget.start()
    assert worker is not None

    def watch(event):
        if isinstance(event, PatchPreview) and event.stage == 2:
            layer = widget.layer
            shown = layer is not None and layer in widget.viewer.layers
            seen.append((shown, shown and layer.data.shape, shown and bool(np.asarray(layer.data).any())))

    # the worker creates the store and the GUI thread adds its layer before the first preview arrives
    worker.yielded.connect(watch)
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)
    assert seen and all(item == (True, (128, 192, 3), True) for item in seen), seen
    layer = widget.layer

    expected = run(
        load_model(pathup_model_dir).to("cpu", select_dtype("auto")),  # the widget's default
        reference,
        SynthesisSettings("stroma", height=128, width=192, steps=4, seed=11),
    ).image
    np.testing.assert_array_equal(layer.data, expected)
    meta = layer.metadata["pathup"]
    assert meta["status"] == "finished" and meta["seed"] == 11 and meta["class"] == "stroma"
    assert meta["model"]["hash"] == model_hash(pathup_model_dir)
    assert meta["settings"]["patch_size"] == 16
    assert widget.start_button.enabled and not widget.cancel_button.enabled


def test_the_precision_choice_loads_the_model_in_that_dtype(widget, pathup_model_dir, reference, qtbot):
    """ "auto" is the CLI's default (bfloat16 only on a CPU that computes it); float32 reproduces a
    full-precision engine run bit for bit, and each choice keeps its own loaded model."""
    import torch

    assert widget.dtype.value == "auto" and widget.model().dtype == select_dtype("auto")
    widget.dtype.value = "float32"
    assert widget.model().dtype == torch.float32
    assert widget.start() is not None
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)
    settings = SynthesisSettings("stroma", height=128, width=192, steps=4, seed=11)
    np.testing.assert_array_equal(
        widget.layer.data, run(load_model(pathup_model_dir), reference, settings).image
    )
    assert widget.layer.metadata["pathup"]["dtype"] == "float32"
    widget.dtype.value = "bfloat16"
    assert widget.model().dtype == torch.bfloat16
    loaded = [key[2] for key in widget._models if key[:2] == (str(pathup_model_dir), "cpu")]
    assert sorted(loaded) == ["auto", "bfloat16", "float32"]


def test_a_run_keeps_old_objects_out_of_garbage_collections_and_releases_them(widget, qtbot):
    """A full collection over the viewer's objects stalled the event loop for 350 ms mid-run: while a
    run goes, the objects that existed at Start are frozen out of the collector; afterwards they are
    not (and a failed run releases them too)."""
    import gc

    assert gc.get_freeze_count() == 0
    frozen = []
    worker = widget.start()
    worker.yielded.connect(lambda _event: frozen.append(gc.get_freeze_count()))
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)
    assert frozen and min(frozen) > 0
    assert gc.get_freeze_count() == 0
    widget.class_name.value = "stroma"
    widget.reference_file.value = str(widget.reference_file.value) + ".missing"
    widget.start()  # refused or failed: either way nothing stays frozen
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)
    assert gc.get_freeze_count() == 0


def test_cancel_stops_the_run_and_keeps_the_viewer_usable(widget, qtbot):
    widget.out_width.value, widget.out_height.value = 512, 512
    widget.steps.value = 30
    worker = widget.start()
    seen = []

    def cancel_on_first_stage_two_preview(event):
        seen.append(event)
        if isinstance(event, PatchPreview) and event.stage == 2 and widget.cancel_button.enabled:
            widget.cancel()

    worker.yielded.connect(cancel_on_first_stage_two_preview)
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)
    assert widget.layer.metadata["pathup"]["status"] == "cancelled"
    assert "(cancelled)" in widget.layer.name
    stage_two = [e for e in seen if isinstance(e, PatchPreview) and e.stage == 2]
    assert len(stage_two) < 30 * stage_two[0].patches  # stopped long before the end
    widget.viewer.add_image(np.zeros((8, 8)))  # still usable
    assert widget.start_button.enabled


def test_cancel_right_after_start_adds_no_layer_and_leaves_no_store(widget, qtbot, monkeypatch, tmp_path):
    import tempfile

    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))  # where the worker creates the live store
    layers = len(widget.viewer.layers)
    assert widget.start() is not None
    widget.cancel()  # before the worker's store reaches the GUI thread
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)
    qtbot.wait(100)  # let a late store event arrive
    assert widget.layer is None and len(widget.viewer.layers) == layers
    assert list(temp.iterdir()) == []
    assert widget.start_button.enabled


def test_engine_error_becomes_a_notification(widget, qtbot, monkeypatch):
    errors = []
    monkeypatch.setattr(base_module, "show_error", errors.append)

    def broken(*args, **kwargs):
        yield from ()
        raise RuntimeError("denoiser exploded")

    monkeypatch.setattr(run_module, "synthesize", broken)
    widget.start()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)
    assert any("denoiser exploded" in message for message in errors)
    assert widget.layer.metadata["pathup"]["status"].startswith("failed")


def test_a_slide_scanned_in_two_regions_as_the_file_is_read_from_the_largest_saying_so(
    widget, qtbot, monkeypatch, tmp_path
):
    from helpers import leica_scn, rgb

    infos = []
    monkeypatch.setattr(synth_module, "show_info", infos.append)
    first, second = rgb(256, 384, seed=1), rgb(320, 256, seed=2)
    slide = leica_scn(tmp_path / "two.scn", rgb(64, 160), first, more=[(second, (1_500_000, 300_000))])
    widget.reference_file.value = str(slide)
    assert widget.start() is not None
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)
    assert widget.layer.metadata["pathup"]["status"] == "finished"
    assert any("two.scn holds 2 scanned regions; the reference is read from region 1" in m for m in infos)


def test_invalid_settings_are_reported_without_a_layer(widget, monkeypatch):
    errors = []
    monkeypatch.setattr(synth_module, "show_error", errors.append)
    widget.patch.value = 64  # larger than the 16 x 24 latent
    layers = len(widget.viewer.layers)
    assert widget.start() is None
    assert len(widget.viewer.layers) == layers
    assert any("patch_size (--patch) must be" in message for message in errors)
    assert "invalid" in widget.estimate_label.value


def test_an_existing_output_is_refused_in_the_widgets_words_and_kept(widget, tmp_path, monkeypatch):
    """The widget has no overwrite switch: an existing "save to" store is refused before any layer,
    without offering the command line's --overwrite, and left as it was."""
    errors = []
    monkeypatch.setattr(synth_module, "show_error", errors.append)
    taken = tmp_path / "taken.ome.zarr"
    taken.mkdir()
    (taken / "keep.txt").write_text("a user's file")
    widget.output.value = str(taken)
    layers = len(widget.viewer.layers)
    assert widget.start() is None
    assert len(widget.viewer.layers) == layers
    assert len(errors) == 1 and "already exists; choose a new name" in errors[0], errors
    assert "--overwrite" not in errors[0]
    assert [p.name for p in taken.iterdir()] == ["keep.txt"]


def test_a_reference_smaller_than_the_native_patch_is_refused_before_any_layer(widget, tmp_path, monkeypatch):
    errors = []
    monkeypatch.setattr(synth_module, "show_error", errors.append)
    tiny = tmp_path / "tiny.png"
    Image.fromarray(np.full((4, 4, 3), 200, np.uint8)).save(tiny)
    widget.reference_file.value = str(tiny)
    layers = len(widget.viewer.layers)
    assert widget.start() is None
    assert len(widget.viewer.layers) == layers
    assert any("needs a reference of at least" in message for message in errors), errors


def test_the_manifest_docks_the_widget(make_napari_viewer):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-pathup", "Synthesize")
    assert isinstance(widget, SynthesizeWidget)


def test_the_fields_show_the_chosen_class_own_defaults(widget, edited_model):
    """A model whose pathup.json gives one class its own guidance: choosing that class shows it, choosing
    another shows the model's, and neither is sent as a user's value."""
    own = {"tumour": {"guidance": 4.5}}
    folder = edited_model("per-class", class_defaults=own)
    widget.model_dir.value = str(folder)
    widget.class_name.value = "tumour"
    assert widget.guidance.value == 4.5 and widget.settings().guidance is None
    widget.class_name.value = "stroma"
    model_guidance = SynthesisSettings("stroma").resolve(widget.model()).guidance
    assert model_guidance != 4.5 and widget.guidance.value == model_guidance
    assert widget.settings().guidance is None


def test_the_guidance_interval_shows_the_models_and_a_change_is_sent_and_counted(
    widget, pathup_model_dir, tmp_path
):
    """A model that guides part of the schedule shows its interval; a changed one is sent and the
    estimate counts its doubled batches only."""
    import json
    import shutil

    from napari_pathup.engine.estimate import count_work

    folder = tmp_path / "interval"
    shutil.copytree(pathup_model_dir, folder)
    meta = json.loads((folder / "pathup.json").read_text())
    meta["defaults"] = {**meta.get("defaults", {}), "guidance_interval": [0.4, 1.0]}
    (folder / "pathup.json").write_text(json.dumps(meta))
    widget.model_dir.value = str(folder)
    assert widget.guidance_interval.value == (0.4, 1.0) and widget.settings().guidance_interval is None
    before = widget.estimate_label.value
    widget.guidance_interval.value = (0.0, 1.0)
    assert widget.settings().guidance_interval == (0.0, 1.0)
    one, two = count_work(widget.model(), widget.settings())
    assert (
        f"{one.patch_evaluations + two.patch_evaluations} denoiser evaluations" in widget.estimate_label.value
    )
    assert widget.estimate_label.value != before  # more doubled batches than the model's own interval
    widget.reset_to_model_defaults()
    assert widget.guidance_interval.value == (0.4, 1.0) and widget.settings().guidance_interval is None


def test_a_class_own_sampler_shows_and_a_refused_sampler_is_not_offered(widget, edited_model):
    """Version 4.4's kind of default, a sampler for one class: shown for that class, "model's own" for the
    others, sent as no user value; dpm++-sde (its noise ignores the seed) is not among the choices."""
    own = {"stroma": {"scheduler": "euler-a"}}
    folder = edited_model("per-class-sampler", class_defaults=own)
    widget.model_dir.value = str(folder)
    widget.class_name.value = "stroma"
    assert widget.scheduler.value == "euler-a" and widget.settings().scheduler is None
    widget.class_name.value = "tumour"
    assert widget.scheduler.value == MODEL_SCHEDULER and widget.settings().scheduler is None
    offered = [value for value in widget.scheduler.choices]
    assert "euler-a" in offered and "ddpm" in offered and "dpm++-sde" not in offered


def test_the_model_reference_follows_the_seed_and_the_tooltip_names_it(widget, pathup_model_dir, tmp_path):
    """A class with several references (one per slide): the dock starts seed s from reference s mod n,
    as the CLI does, and the reference's tooltip says which file that is before the run."""
    import json
    import shutil

    folder = tmp_path / "two-references"
    shutil.copytree(pathup_model_dir, folder)
    (folder / "references").mkdir()
    for name, colour in (("a", (200, 120, 180)), ("b", (150, 60, 140))):
        Image.fromarray(np.full((128, 128, 3), colour, np.uint8)).save(folder / "references" / f"{name}.png")
    meta = json.loads((folder / "pathup.json").read_text())
    meta["references"] = {"stroma": ["references/a.png", "references/b.png"]}
    (folder / "pathup.json").write_text(json.dumps(meta))
    widget.reference_file.line_edit.value = ""  # as a user clears it (.value = "" sets the cwd)
    widget.model_dir.value = str(folder)
    widget.class_name.value = "stroma"
    for seed, name, k in ((0, "a.png", 1), (1, "b.png", 2), (4, "a.png", 1)):
        widget.seed.value = seed
        assert f"{name} (reference {k} of 2" in widget.reference.tooltip
        _roi, path, _placement = widget.reference_roi()
        assert path == str(folder / "references" / name)
    widget.class_name.value = "tumour"
    assert "none for this class" in widget.reference.tooltip


def test_the_estimate_counts_follow_the_settings(widget):
    from napari_pathup.engine.estimate import count_work

    def expected() -> str:
        one, two = count_work(widget.model(), widget.settings())
        return (
            f"{two.patches_per_step} patches/step x {two.steps} steps; "
            f"{one.patch_evaluations + two.patch_evaluations} denoiser evaluations"
        )

    small = expected()
    assert small in widget.estimate_label.value
    widget.out_width.value, widget.out_height.value = 512, 512
    assert expected() != small and expected() in widget.estimate_label.value
    widget.guidance.value = 1.0  # no classifier-free guidance: half the evaluations
    assert expected() in widget.estimate_label.value


def test_the_estimate_button_measures_time_and_memory_in_a_worker(widget, qtbot):
    import re

    worker = widget.run_estimate()
    assert worker is not None and not widget.estimate_button.enabled
    qtbot.waitUntil(lambda: widget.estimate_worker is None, timeout=TIMEOUT_MS)
    text = widget.estimate_label.value
    assert re.search(r"about \d+ s, peak memory about \d+(\.\d)? [MG]B on cpu", text), text
    assert "patches/step" in text and widget.estimate_button.enabled


def test_a_late_estimate_does_not_overwrite_newer_settings(widget, qtbot):
    widget.run_estimate()
    widget.out_width.value = 256  # changed before the worker's result reaches the GUI thread
    qtbot.waitUntil(lambda: widget.estimate_worker is None, timeout=TIMEOUT_MS)
    text = widget.estimate_label.value
    assert "press Estimate" in text and "peak memory" not in text


def test_one_progress_bar_counts_every_preview(widget, qtbot, monkeypatch):
    bars = []

    class Recording(base_module.progress):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.counted = 0
            bars.append(self)

        def update(self, n=1):
            self.counted += n
            return super().update(n)

    monkeypatch.setattr(base_module, "progress", Recording)
    previews = []
    worker = widget.start()
    worker.yielded.connect(lambda event: previews.append(event) if isinstance(event, PatchPreview) else None)
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)
    assert len(bars) == 1 and previews
    assert bars[0].total == len(previews) == bars[0].counted


def test_the_guidance_mode_shows_a_class_own_autoguidance_and_a_model_without_one_says_why(
    widget, pathup_model_dir, tmp_path, edited_model
):
    """A model with a weak denoiser that autoguides one class shows "auto" for it and "cfg" for the
    others, sent as no user value; "auto" on a model without a weak denoiser is an invalid estimate
    naming the setting, not a crash, and Start refuses it."""
    from napari_pathup.models.build import build_random_pathup_model
    from napari_pathup.models.weak import add_weak_denoiser

    own = {"stroma": {"guidance_mode": "auto"}}
    folder = edited_model("autoguided", class_defaults=own)
    add_weak_denoiser(folder, build_random_pathup_model(tmp_path / "weak", seed=1))
    widget.model_dir.value = str(folder)
    widget.class_name.value = "stroma"
    assert widget.guidance_mode.value == "auto" and widget.settings().guidance_mode is None
    widget.class_name.value = "tumour"
    assert widget.guidance_mode.value == "cfg" and widget.settings().guidance_mode is None
    widget.model_dir.value = str(pathup_model_dir)
    widget.guidance_mode.value = "auto"
    assert widget.settings().guidance_mode == "auto"
    assert widget.estimate_label.value.startswith("invalid: guidance_mode (--guidance-mode) must be cfg")


@pytest.mark.parametrize("native", [True, False])
def test_half_precision_in_software_is_warned_of_once(widget, monkeypatch, native):
    """On a CPU without bfloat16 instructions the bfloat16 choice computes about 60x slower than float32:
    a notification says so when that model loads (once), not for auto, which computes float32 there."""
    import napari_pathup.engine.device as device_module

    warnings: list[str] = []
    monkeypatch.setattr(base_module, "show_warning", warnings.append)
    monkeypatch.setattr(device_module, "cpu_computes_bfloat16", lambda: native)
    widget.dtype.value = "bfloat16"
    widget.model()
    widget.model()  # loaded once per choice: said once
    assert len(warnings) == (0 if native else 1), warnings
    assert all("bfloat16 on this CPU is computed in software" in w for w in warnings)
    widget.dtype.value = "auto"
    widget.model()
    assert len(warnings) == (0 if native else 1)
