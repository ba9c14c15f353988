"""Synthesize dock widget: pick a model, class and reference, then watch the image assemble.

The run happens in a napari thread worker that streams the engine's events; the output layer
exists from the start (an array of the final size) and fills in with patch previews at every step,
then with the decoded tiles. Cancel stops within one patch batch; an engine error becomes a napari
notification. The layer's metadata carries the settings, seed and model hash ("pathup").
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, FloatSpinBox, Label, PushButton, SpinBox
from napari.qt.threading import FunctionWorker, GeneratorWorker, thread_worker
from napari.utils import progress
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import QVBoxLayout, QWidget

from napari_pathup._triton_guard import block_triton_if_llvm_loaded
from napari_pathup.engine.events import Finished, PatchPreview, StageStarted, TileDecoded
from napari_pathup.engine.pipeline import DEFAULTS, SynthesisSettings, synthesize
from napari_pathup.engine.weights import WEIGHT_MODES
from napari_pathup.errors import SynthesisError
from napari_pathup.widgets._paste import paste_scaled

if TYPE_CHECKING:
    import napari

    from napari_pathup.engine.estimate import StageWork
    from napari_pathup.models.base import PathupModel

MODEL_REFERENCE = "(the model's own reference)"
#: the layer is redrawn at most this often while previews stream in (seconds)
REFRESH_INTERVAL = 0.1
#: the progress bar advances at most this often: napari's bar runs a nested processEvents per update
PROGRESS_INTERVAL = 0.5


class SynthesizeWidget(QWidget):
    """Dock widget running PathUp synthesis into a layer that fills in as the engine streams."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        block_triton_if_llvm_loaded()  # the canvas exists now (see _triton_guard and widgets._base)
        self.viewer = napari_viewer
        self._models: dict[tuple[str, str], PathupModel] = {}
        self.worker: GeneratorWorker | None = None
        self.estimate_worker: FunctionWorker | None = None
        self._estimate_generation = 0  # bumped on every settings change: a late estimate is dropped
        self.layer = None
        self._progress: progress | None = None
        self._last_refresh = self._last_progress = 0.0
        self._pending_progress = 0  # previews not yet counted on the progress bar

        self.model_dir = FileEdit(
            label="model", mode="d", value="", tooltip="empty: the embedded default model"
        )
        self.class_name = ComboBox(label="class", choices=[])
        self.reference = ComboBox(label="reference", choices=self._reference_choices)
        self.reference_file = FileEdit(label="or file", mode="r", value="")
        self.out_width = SpinBox(label="width", min=64, max=65536, step=8, value=2048)
        self.out_height = SpinBox(label="height", min=64, max=65536, step=8, value=2048)
        self.steps = SpinBox(label="steps", min=0, max=1000, value=0, tooltip="0: the model's default")
        self.strength = FloatSpinBox(label="strength", min=0.0, max=1.0, step=0.05, value=0.0)
        self.upscale_strength = FloatSpinBox(label="upscale strength", min=0.0, max=1.0, step=0.05, value=0.0)
        self.guidance = FloatSpinBox(label="guidance", min=0.0, max=30.0, step=0.5, value=0.0)
        self.patch = SpinBox(label="patch (latent)", min=0, max=1024, value=0, tooltip="0: automatic")
        self.overlap = SpinBox(label="overlap (latent)", min=-1, max=1023, value=-1, tooltip="-1: patch / 4")
        self.weights = ComboBox(label="blend weights", choices=list(WEIGHT_MODES), value=DEFAULTS["weights"])
        self.jitter = CheckBox(label="jitter the patch grid", value=False)
        self.seed = SpinBox(label="seed", min=0, max=2**31 - 1, value=0)
        self.device = ComboBox(label="device", choices=["auto", "cpu", "cuda", "mps"], value="auto")
        self.estimate_label = Label(label="estimate", value="")
        self.estimate_button = PushButton(
            text="Estimate", tooltip="measure a short calibration and predict time and peak memory"
        )
        self.start_button = PushButton(text="Start")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.form = Container(
            widgets=[
                self.model_dir, self.class_name, self.reference, self.reference_file, self.out_width,
                self.out_height, self.steps, self.strength, self.upscale_strength, self.guidance, self.patch,
                self.overlap, self.weights, self.jitter, self.seed, self.device, self.estimate_label,
                self.estimate_button, self.start_button, self.cancel_button,
            ]
        )  # fmt: skip
        layout = QVBoxLayout(self)
        layout.addWidget(self.form.native)

        self.model_dir.changed.connect(self._load_classes)
        for widget in (
            self.class_name,
            self.out_width,
            self.out_height,
            self.steps,
            self.strength,
            self.upscale_strength,
            self.guidance,
            self.patch,
            self.overlap,
            self.device,
        ):
            widget.changed.connect(self._update_estimate)
        self.estimate_button.changed.connect(self.run_estimate)
        self.start_button.changed.connect(self.start)
        self.cancel_button.changed.connect(self.cancel)
        self.viewer.layers.events.inserted.connect(lambda _: self.reference.reset_choices())
        self.viewer.layers.events.removed.connect(lambda _: self.reference.reset_choices())
        self._load_classes()

    # -- model and settings ------------------------------------------------------------------
    def _reference_choices(self, _widget: Any = None) -> list[str]:
        layers = [layer.name for layer in self.viewer.layers if getattr(layer, "rgb", False)]
        return [MODEL_REFERENCE, *layers]

    def model(self) -> PathupModel:
        """The chosen model on the chosen device, loaded once per (folder, device)."""
        from napari_pathup.engine.device import select_device
        from napari_pathup.models.default import resolve_model_spec
        from napari_pathup.models.load import load_model

        spec = str(self.model_dir.value) if str(self.model_dir.value) not in ("", ".") else None
        key = (str(spec), self.device.value)
        if key not in self._models:
            device = select_device(self.device.value)
            self._models[key] = load_model(resolve_model_spec(spec)).to(device)
        return self._models[key]

    def _load_classes(self, _value: Any = None) -> None:
        try:
            classes = self.model().classes
        except (ValueError, OSError) as exc:  # shown in the form; a notification would nag at start-up
            self.class_name.choices = []
            self.estimate_label.value = f"no model: {exc}"
            return
        self.class_name.choices = classes
        self._update_estimate()

    def settings(self) -> SynthesisSettings:
        def optional(value: float, unset: float) -> Any:
            return None if value == unset else value

        return SynthesisSettings(
            class_name=str(self.class_name.value),
            height=int(self.out_height.value),
            width=int(self.out_width.value),
            steps=optional(self.steps.value, 0),
            strength=optional(self.strength.value, 0.0),
            upscale_strength=optional(self.upscale_strength.value, 0.0),
            guidance=optional(self.guidance.value, 0.0),
            patch_size=optional(self.patch.value, 0),
            overlap=optional(self.overlap.value, -1),
            weights=str(self.weights.value),
            jitter=bool(self.jitter.value),
            seed=int(self.seed.value),
        )

    def _update_estimate(self, _value: Any = None) -> None:
        """Work counts for the current settings (cheap; no calibration on the GUI thread)."""
        from napari_pathup.engine.estimate import count_work

        self._estimate_generation += 1
        try:
            stages = count_work(self.model(), self.settings())
        except (ValueError, OSError) as exc:
            self.estimate_label.value = f"invalid: {exc}"
            return
        self.estimate_label.value = describe_work(stages) + "\ntime, memory: press Estimate"

    def run_estimate(self) -> FunctionWorker | None:
        """Calibrate on the chosen device in a thread worker; the label then shows time and memory."""
        from napari_pathup.engine.estimate import estimate

        try:
            model, settings = self.model(), self.settings()
            settings.resolve(model)
        except (ValueError, OSError) as exc:
            self.estimate_label.value = f"invalid: {exc}"
            return None
        generation = self._estimate_generation
        self.estimate_button.enabled = False
        self.estimate_label.value = self.estimate_label.value.split("\n")[0] + "\nmeasuring…"
        worker = thread_worker(estimate, start_thread=False)(model, settings)
        worker.returned.connect(lambda result: self._show_estimate(result, generation))
        worker.errored.connect(lambda exc: self._show_estimate(exc, generation))
        worker.finished.connect(self._estimate_finished)
        self.estimate_worker = worker
        worker.start()
        return worker

    def _show_estimate(self, result: Any, generation: int) -> None:
        if generation != self._estimate_generation:
            return  # the settings changed while it was measuring: the counts shown are newer
        if isinstance(result, Exception):
            self.estimate_label.value = f"estimate failed: {type(result).__name__}: {result}"
            return
        self.estimate_label.value = (
            f"{describe_work(result.stages)}\nabout {format_seconds(result.seconds)}, "
            f"peak memory about {format_bytes(result.peak_memory_bytes)} on {result.device}"
        )

    def _estimate_finished(self) -> None:
        self.estimate_worker = None
        self.estimate_button.enabled = self.worker is None

    def reference_image(self) -> tuple[np.ndarray, str | None]:
        """The reference RoI as (H, W, 3) uint8, and its file path when it came from a file."""
        from napari_pathup.io import read_image
        from napari_pathup.models.default import reference_for_class

        if str(self.reference_file.value) not in ("", "."):
            path = Path(self.reference_file.value)
            return read_image(path), str(path)
        if self.reference.value not in (None, MODEL_REFERENCE):
            data = self.viewer.layers[self.reference.value].data
            data = data[0] if isinstance(data, list) else data
            return np.asarray(data)[..., :3].astype(np.uint8), None
        path = reference_for_class(self.model(), str(self.class_name.value))
        return read_image(path), str(path)

    # -- running ---------------------------------------------------------------------------
    def start(self) -> GeneratorWorker | None:
        """Start a run in a thread worker; returns the worker (None when the inputs are invalid)."""
        from napari_pathup.engine.estimate import count_work

        if self.worker is not None:
            show_info("PathUp: a synthesis is already running")
            return None
        try:
            model = self.model()
            settings = self.settings().resolve(model)
            reference, reference_path = self.reference_image()
            stages = count_work(model, settings)
        except (ValueError, OSError) as exc:
            show_error(f"PathUp: {exc}")
            return None
        canvas = np.zeros((settings.height, settings.width, 3), np.uint8)
        self.layer = self.viewer.add_image(
            canvas,
            rgb=True,
            name=f"PathUp {settings.class_name} seed {settings.seed}",
            metadata={"pathup": {"status": "running", "settings": settings.to_dict()}},
        )
        # one bar for the run: creating a napari progress bar costs a Qt widget, so not one per stage
        self._progress = progress(
            total=sum(st.steps * st.patches_per_step for st in stages), desc="PathUp stage 1/2"
        )
        self._pending_progress = 0
        self.worker = _synthesis_worker(model, reference, settings, reference_path, canvas)
        self.worker.yielded.connect(self._on_event)
        self.worker.errored.connect(self._on_error)  # only for errors outside the engine loop
        self.worker.finished.connect(self._on_finished)
        self.start_button.enabled, self.cancel_button.enabled = False, True
        self.estimate_button.enabled = False  # a calibration would compete with the run
        self.worker.start()
        return self.worker

    def cancel(self) -> None:
        """Stop the run at the next patch batch; the viewer stays usable and the layer stays."""
        if self.worker is not None:
            self.worker.quit()
            if self.layer is not None:
                self.layer.metadata["pathup"]["status"] = "cancelled"
                self.layer.name = f"{self.layer.name} (cancelled)"

    def _on_event(self, event: Any) -> None:
        """GUI thread: previews and tiles are already in the layer's array (the worker pasted them);
        here the layer is redrawn and the progress bar advanced, each at most every so often."""
        layer = self.layer
        if isinstance(event, StageStarted):
            if self._progress is not None:
                self._progress.set_description(f"PathUp stage {event.stage}/2")
        elif isinstance(event, PatchPreview):
            self._pending_progress += 1
            self._refresh()
        elif isinstance(event, TileDecoded):
            self._refresh(force=event.tile_index == event.tiles - 1)
        elif isinstance(event, SynthesisError):
            self._on_error(event)
        elif isinstance(event, tuple) and isinstance(event[0], Finished) and layer is not None:
            finished, attrs = event
            layer.data = np.asarray(finished.image)
            layer.metadata["pathup"] = {**attrs, "status": "finished"}

    def _refresh(self, force: bool = False) -> None:
        """Redraw the layer's data (no thumbnail while streaming) and advance the progress bar."""
        now = time.monotonic()
        if force or now - self._last_refresh >= REFRESH_INTERVAL:
            self._last_refresh = now
            if self.layer is not None:
                self.layer.refresh(thumbnail=False, highlight=False, extent=False)
        if (
            self._progress is not None
            and self._pending_progress
            and (force or now - self._last_progress >= PROGRESS_INTERVAL)
        ):
            self._last_progress = now
            # taken before update(): napari's bar processes events inside it, which re-enters here
            count, self._pending_progress = self._pending_progress, 0
            self._progress.update(count)

    def _on_error(self, exc: Exception) -> None:
        if self.layer is not None:
            self.layer.metadata["pathup"]["status"] = f"failed: {exc}"
        show_error(f"PathUp synthesis failed: {exc}")

    def _on_finished(self) -> None:
        if self._progress is not None:
            self._progress.close()
            self._progress = None
        if self.layer is not None:
            self.layer.refresh()
        self.worker = None
        self.start_button.enabled, self.cancel_button.enabled = True, False
        self.estimate_button.enabled = self.estimate_worker is None


def describe_work(stages: tuple[StageWork, StageWork]) -> str:
    """One line of work counts: stage-2 patches per step and steps, denoiser evaluations, tiles."""
    one, two = stages
    evaluations = one.patch_evaluations + two.patch_evaluations
    return (
        f"{two.patches_per_step} patches/step x {two.steps} steps; {evaluations} denoiser evaluations; "
        f"{one.decode_tiles + two.decode_tiles} tiles"
    )


def format_seconds(seconds: float | None) -> str:
    """``95 s``, ``12.5 min`` or ``2.1 h``."""
    if seconds is None:
        return "? s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def format_bytes(n: float | None) -> str:
    """``512 MB`` or ``1.3 GB`` (binary units)."""
    if n is None:
        return "? B"
    if n < 1024**3:
        return f"{n / 1024**2:.0f} MB"
    return f"{n / 1024**3:.1f} GB"


@thread_worker
def _synthesis_worker(model, reference, settings, reference_path, canvas):
    """Runs in a worker thread: previews are rendered and pasted into ``canvas`` (the layer's array)
    here, so the GUI thread only redraws.

    A failure is yielded as a :class:`SynthesisError` rather than raised: superqt's workers treat a
    raised ``RuntimeError`` (which torch raises for most failures, out-of-memory included) as a
    deleted worker and emit neither ``errored`` nor ``finished``, which would leave the widget stuck.
    """
    from napari_pathup.provenance import run_attributes

    shapes: dict[int, tuple[tuple[int, int], tuple[int, int]]] = {}
    try:
        for event in synthesize(model, reference, settings):
            if isinstance(event, StageStarted):
                shapes[event.stage] = (event.latent_shape, event.image_shape)
            elif isinstance(event, PatchPreview):
                box = event.box
                paste_scaled(canvas, event.rgb, (box.y0, box.x0, box.y1, box.x1), shapes[event.stage][0])
            elif isinstance(event, TileDecoded):
                box = event.box
                paste_scaled(canvas, event.rgb, (box.y0, box.x0, box.y1, box.x1), shapes[event.stage][1])
            if isinstance(event, Finished):
                yield event, run_attributes(model, event.settings, reference_path)
            else:
                yield event
    except Exception as exc:  # reported by the widget as one notification; the worker ends cleanly
        yield SynthesisError(f"{type(exc).__name__}: {exc}")
