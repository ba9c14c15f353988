"""Synthesize dock widget: pick a model, class and reference RoI, then watch the image assemble.

The reference is the model's own RoI, a file, an RGB image layer, or a rectangle of a Shapes layer drawn
over an image layer (any reader's, multiscale and dask included): the rectangle's pixels are read from one
pyramid level (``widgets._roi``, ``io.slide``), never the whole slide. The output layer is backed by an
OME-Zarr pyramid on disk (``io.live_zarr``) that the worker creates first: previews are pasted into its
small levels, decoded tiles into level 0 and averaged down the pyramid as they finish, and the layer
redraws what is in view, the small levels from their copy in memory (a redraw never reads the disk on the
GUI thread), so GUI memory does not grow with the output size. The Start click only checks the inputs;
the layer and the progress bar are added on later turns of the event loop, so that no single turn
holds the viewer for long. The layer gets the RoI's µm/px as its scale and sits beside the RoI in world
coordinates. At the end the store is a complete OME-Zarr: it is copied (file by file) to "save to" when
one is chosen, and File > Save writes it chunk by chunk.

The run is a stream of typed events (``widgets._run``) in the base class's generator worker
(``WorkerDock.run_stream``); Cancel stops within one patch batch; an engine error becomes one napari
notification. The fields show the chosen model's resolved defaults; only the values a user changed are
sent ("model defaults" resets them).
"""

from __future__ import annotations

import atexit
import tempfile
import threading
import time
import warnings
from typing import TYPE_CHECKING, Any

from magicgui.types import FileDialogMode
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    PushButton,
    SpinBox,
    TupleEdit,
)
from magicgui.widgets.bases import BaseValueWidget
from napari.layers import Image, Shapes
from napari.qt.threading import FunctionWorker, thread_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QTimer

from napari_pathup.engine.events import PatchPreview, StageStarted, TileDecoded
from napari_pathup.engine.pipeline import SynthesisSettings
from napari_pathup.engine.plan import DTYPE_CHOICES, GUIDANCE_MODES, REFERENCE_FITS, SAMPLING_FIELDS
from napari_pathup.engine.weights import WEIGHT_MODES
from napari_pathup.errors import InputError
from napari_pathup.formatting import format_bytes, format_seconds
from napari_pathup.io.live_zarr import LiveOmeZarr
from napari_pathup.io.slide import ReferenceRoi, native_mpp, read_reference_roi
from napari_pathup.models.schedulers import USABLE_SCHEDULERS
from napari_pathup.widgets._base import WorkerDock, chosen_path
from napari_pathup.widgets._roi import Placement, layer_reference
from napari_pathup.widgets._run import OutputReady, RunFinished, synthesis_events

# What the first Start needs (dask, tifffile, ome-zarr-py's pydantic models) is imported with the dock
# instead of on the click: 14 of the 18.6 s of a first Start on a loaded 2-core machine were imports.
with warnings.catch_warnings():  # ome-zarr-py warns about its own deprecated Scaler on import
    warnings.simplefilter("ignore", DeprecationWarning)
    import dask.array
    import ome_zarr.writer
    import tifffile

    del dask, ome_zarr, tifffile  # imported for their side effect (sys.modules) only

if TYPE_CHECKING:
    import napari

    from napari_pathup.engine.estimate import StageWork
    from napari_pathup.models.base import PathupModel

MODEL_REFERENCE = "(the model's own reference)"
MODEL_SCHEDULER = ""
WHOLE_IMAGE = "(the whole image)"
AUTO_LEVEL = "auto"
#: the layer is redrawn at most this often while previews stream in (seconds)
REFRESH_INTERVAL = 0.1
#: the progress bar advances at most this often: napari's bar runs a nested processEvents per update
PROGRESS_INTERVAL = 0.5
#: delay (ms) between the GUI-thread steps that show a new run (layer, its selection, progress bar): a timer,
#: not a queued call, so that Qt paints and handles input between them
SETUP_STEP_MS = 1
#: the sampling settings whose fields show the model's resolved defaults (jitter is a checkbox of its own,
#: always sent)
DEFAULT_FIELDS = tuple(name for name in SAMPLING_FIELDS if name != "jitter")


class SynthesizeWidget(WorkerDock):
    """Dock widget running PathUp synthesis into a zarr-backed layer that fills in as the engine streams."""

    title = "PathUp synthesis"

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__(napari_viewer)
        self._models: dict[tuple[str, str, str], PathupModel] = {}
        self.estimate_worker: FunctionWorker | None = None
        self._estimate_generation = 0  # bumped on every settings change: a late estimate is dropped
        self.layer: Image | None = None
        self.store: LiveOmeZarr | None = None
        self._stores: dict[int, LiveOmeZarr] = {}  # id(layer) -> its store, deleted with the layer
        self._shapes: dict[int, tuple[tuple[int, int], tuple[int, int]]] = {}
        self._last_refresh = self._last_progress = 0.0
        self._pending_progress = 0  # previews not yet counted on the progress bar
        self._run_progress: tuple[int, list[str]] | None = None  # the bar's total and notes, until shown
        self._layer_args: dict[str, Any] = {}  # the output layer's name, metadata and placement
        # set once the layer and progress bar are shown: the worker starts the engine only then, so that the
        # GUI thread's napari calls of those turns do not wait for the GIL held by a busy engine
        self._gui_ready = threading.Event()
        self._user_set: set[str] = set()  # sampling fields the user changed: the only ones sent
        self._showing_defaults = False

        self.model_dir = FileEdit(
            label="model", mode=FileDialogMode.EXISTING_DIRECTORY, tooltip="empty: the embedded default model"
        )
        self.class_name = ComboBox(label="class", choices=[])
        self.reference = ComboBox(label="reference", choices=self._reference_choices)
        self.region = ComboBox(
            label="RoI",
            choices=self._region_choices,
            tooltip="a Shapes layer: its selected (else last) rectangle, drawn over the reference layer",
        )
        self.level = ComboBox(
            label="RoI level",
            choices=self._level_choices,
            tooltip="pyramid level the RoI is read from; auto: the model's native µm/px, else level 0",
        )
        self.reference_file = FileEdit(label="or file", mode=FileDialogMode.EXISTING_FILE)
        self.out_width = SpinBox(label="width", min=64, max=65536, step=8, value=2048)
        self.out_height = SpinBox(label="height", min=64, max=65536, step=8, value=2048)
        tip = "shows the model's default until you change it"
        self.steps = SpinBox(label="steps", min=1, max=1000, value=30, tooltip=tip)
        self.strength = FloatSpinBox(label="strength", min=0.0, max=1.0, step=0.05, value=0.6, tooltip=tip)
        self.upscale_strength = FloatSpinBox(
            label="upscale strength", min=0.0, max=1.0, step=0.05, value=0.45, tooltip=tip
        )
        self.guidance = FloatSpinBox(label="guidance", min=0.0, max=30.0, step=0.5, value=3.0, tooltip=tip)
        self.guidance_interval = TupleEdit(
            label="guidance interval",
            value=(0.0, 1.0),
            options={"min": 0.0, "max": 1.0, "step": 0.05},
            tooltip="noise levels t/T (low, high) at which guidance applies; the other steps run the "
            "class-conditional denoiser alone, at half the work. " + tip,
        )
        self.guidance_mode = ComboBox(
            label="guidance mode",
            choices=list(GUIDANCE_MODES),
            value="cfg",
            tooltip="what guidance steers away from: cfg, the unconditional output (classifier-free); auto, "
            "the model's weak denoiser under the same class (autoguidance; models with weak_denoiser/). "
            + tip,
        )
        self.patch = SpinBox(label="patch (latent)", min=1, max=1024, value=64, tooltip=tip)
        self.overlap = SpinBox(label="overlap (latent)", min=0, max=1023, value=16, tooltip=tip)
        self.weights = ComboBox(
            label="blend weights", choices=list(WEIGHT_MODES), value="cosine", tooltip=tip
        )
        self.sigma = FloatSpinBox(
            label="gaussian sigma", min=0.01, max=10.0, step=0.05, value=0.3, tooltip="gaussian weights only"
        )
        self.scheduler = ComboBox(  # not the samplers a run refuses (their noise ignores the seed)
            label="sampler", choices=[("model's own", MODEL_SCHEDULER), *((n, n) for n in USABLE_SCHEDULERS)]
        )
        self.reference_size = SpinBox(
            label="stage-1 size", min=8, max=4096, step=8, value=512, tooltip="shorter side of stage 1"
        )
        self.reference_fit = ComboBox(
            label="reference fit",
            choices=list(REFERENCE_FITS),
            value="stretch",
            tooltip="stretch: the RoI is the output's whole field (PathUp); outpaint: the RoI 1:1 in the "
            "centre, the tissue around it drawn in its context",
        )
        self.batch_size = SpinBox(
            label="batch (patches)", min=1, max=1024, value=8, tooltip="per denoiser call"
        )
        self.defaults_button = PushButton(
            text="Model defaults", tooltip="forget the changed sampling settings: use the model's defaults"
        )
        self.jitter = CheckBox(label="jitter the patch grid", value=False)
        self.seed = SpinBox(label="seed", min=0, max=2**31 - 1, value=0)
        self.device = ComboBox(label="device", choices=["auto", "cpu", "cuda", "mps"], value="auto")
        self.dtype = ComboBox(
            label="precision",
            choices=list(DTYPE_CHOICES),
            value="auto",
            tooltip="auto: bfloat16 on a CPU that computes it in hardware (about 1.6x faster, the same "
            "picture to the eye), float32 elsewhere; as pathup synthesize --dtype",
        )
        self.output = FileEdit(
            label="save to",
            mode=FileDialogMode.OPTIONAL_FILE,
            filter="*.ome.zarr",
            tooltip="optional .ome.zarr: the finished store is copied there (temporary name, then rename)",
        )
        self.estimate_label = Label(label="estimate", value="")
        self.estimate_button = PushButton(
            text="Estimate", tooltip="measure a short calibration and predict time and peak memory"
        )
        self.start_button = PushButton(text="Start")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.fields: dict[str, BaseValueWidget] = {
            "steps": self.steps,
            "strength": self.strength,
            "upscale_strength": self.upscale_strength,
            "guidance": self.guidance,
            "guidance_interval": self.guidance_interval,
            "guidance_mode": self.guidance_mode,
            "patch_size": self.patch,
            "overlap": self.overlap,
            "weights": self.weights,
            "sigma": self.sigma,
            "scheduler": self.scheduler,
            "reference_size": self.reference_size,
            "reference_fit": self.reference_fit,
            "batch_size": self.batch_size,
        }
        self.form = Container(
            widgets=[
                self.model_dir, self.class_name, self.reference, self.region, self.level, self.reference_file,
                self.out_width, self.out_height, self.steps, self.strength, self.upscale_strength,
                self.guidance, self.guidance_interval, self.guidance_mode, self.patch, self.overlap,
                self.weights, self.sigma,
                self.scheduler,
                self.reference_size, self.reference_fit, self.batch_size, self.defaults_button, self.jitter,
                self.seed, self.device, self.dtype, self.output, self.estimate_label, self.estimate_button,
                self.start_button, self.cancel_button,
            ]
        )  # fmt: skip
        self.scrolling_layout().addWidget(self.form.native)

        self.model_dir.changed.connect(self._load_classes)
        for name, widget in self.fields.items():
            widget.changed.connect(lambda _value, name=name: self._field_changed(name))
        for widget in (self.class_name, self.out_width, self.out_height, self.device, self.dtype):
            widget.changed.connect(self._update_estimate)
        self.reference.changed.connect(lambda _: self.level.reset_choices())
        self.class_name.changed.connect(self._show_model_reference)
        self.seed.changed.connect(self._show_model_reference)
        self.defaults_button.changed.connect(self.reset_to_model_defaults)
        self.estimate_button.changed.connect(self.run_estimate)
        self.start_button.changed.connect(self.start)
        self.cancel_button.changed.connect(self.cancel)
        self.viewer.layers.events.inserted.connect(self._layers_changed)
        self.viewer.layers.events.removed.connect(self._layers_changed)
        self.viewer.layers.events.removed.connect(self._drop_store)
        self._load_classes()

    # -- choices -------------------------------------------------------------------------------
    def _reference_choices(self, _widget: Any = None) -> list[str]:
        layers = [layer.name for layer in self.viewer.layers if isinstance(layer, Image) and layer.rgb]
        return [MODEL_REFERENCE, *layers]

    def _show_model_scheduler(self) -> None:
        """The sampler's first entry is the model's own scheduler: its tooltip names it."""
        try:
            own = type(self.model().scheduler).__name__
        except (ValueError, OSError):
            own = "unknown: the model does not load"
        self.scheduler.tooltip = f'the diffusers scheduler; "model\'s own" is {own}'

    def _show_model_reference(self, _value: Any = None) -> None:
        """The reference's tooltip names the file "the model's own reference" is for this class and
        seed: a class may name several (one per slide), taken in turn by seed."""
        from napari_pathup.models.default import class_references, take_reference

        try:
            paths = class_references(self.model(), str(self.class_name.value))
            chosen = take_reference(paths, int(self.seed.value))
        except (ValueError, OSError):
            own = "none for this class: choose a layer or a file"
        else:
            own = chosen.name
            if len(paths) > 1:
                own += f" (reference {paths.index(chosen) + 1} of {len(paths)}: seed mod {len(paths)})"
        self.reference.tooltip = f'the real reference RoI; "{MODEL_REFERENCE}" is {own}'

    def _region_choices(self, _widget: Any = None) -> list[str]:
        return [WHOLE_IMAGE, *(layer.name for layer in self.viewer.layers if isinstance(layer, Shapes))]

    def _level_choices(self, _widget: Any = None) -> list[Any]:
        layer = self._reference_layer()
        count = len(layer.data) if layer is not None and layer.multiscale else 1
        return [AUTO_LEVEL, *range(count)]

    def _reference_layer(self) -> Image | None:
        name = getattr(self, "reference", None) and self.reference.value
        if name in (None, MODEL_REFERENCE) or name not in self.viewer.layers:
            return None
        return self.viewer.layers[name]

    def _layers_changed(self, _event: Any = None) -> None:
        for widget in (self.reference, self.region, self.level):
            widget.reset_choices()

    def _drop_store(self, event: Any) -> None:
        """A removed output layer takes its temporary store with it (unless a run still writes it)."""
        store = self._stores.pop(id(event.value), None)
        if store is not None and store is not self.store:
            store.remove()

    # -- model, defaults and settings ------------------------------------------------------------
    def model(self) -> PathupModel:
        """The chosen model on the chosen device in the chosen dtype, loaded once per (folder, device,
        dtype)."""
        from napari_pathup.engine.device import select_device, select_dtype, slow_half_precision
        from napari_pathup.models.default import resolve_model_spec
        from napari_pathup.models.load import load_model

        folder = chosen_path(self.model_dir.value)
        spec = None if folder is None else str(folder)
        key = (str(spec), self.device.value, self.dtype.value)
        if key not in self._models:
            device = select_device(self.device.value)
            dtype = select_dtype(self.dtype.value, device)
            if (warning := slow_half_precision(device, dtype)) is not None:
                self.report_warning(warning)
            self._models[key] = load_model(resolve_model_spec(spec)).to(device, dtype)
        return self._models[key]

    def _load_classes(self, _value: Any = None) -> None:
        try:
            classes = self.model().classes
        except (ValueError, OSError) as exc:  # shown in the form; a notification would nag at start-up
            self.class_name.choices = []
            self.estimate_label.value = f"no model: {exc}"
            return
        self.class_name.choices = classes
        self._show_model_scheduler()
        self._show_model_reference()
        self._update_estimate()

    def _field_changed(self, name: str) -> None:
        if not self._showing_defaults:
            self._user_set.add(name)
        self._update_estimate()

    def reset_to_model_defaults(self) -> None:
        """Forget every changed sampling setting: the fields show (and the run uses) the model's defaults."""
        self._user_set.clear()
        self._update_estimate()

    def show_model_defaults(self) -> None:
        """Fields the user has not changed show the resolved value the run would use (the patch size
        and overlap follow the output size)."""
        try:
            resolved = self.settings().resolve(self.model())
        except (ValueError, OSError):
            return  # the estimate label says why
        self._showing_defaults = True
        try:
            for name, widget in self.fields.items():
                value = getattr(resolved, name)
                value = MODEL_SCHEDULER if name == "scheduler" and value is None else value
                if name not in self._user_set and widget.value != value:
                    widget.value = value
        finally:
            self._showing_defaults = False

    def settings(self) -> SynthesisSettings:
        """The run's settings: sampling values only where the user changed them (else the model decides)."""
        chosen = {name: self.fields[name].value for name in DEFAULT_FIELDS if name in self._user_set}
        if chosen.get("scheduler") == MODEL_SCHEDULER:
            chosen["scheduler"] = None
        return SynthesisSettings(
            class_name=str(self.class_name.value),
            height=int(self.out_height.value),
            width=int(self.out_width.value),
            jitter=bool(self.jitter.value),
            seed=int(self.seed.value),
            **chosen,
        )

    def _update_estimate(self, _value: Any = None) -> None:
        """Work counts for the current settings (cheap; no calibration on the GUI thread)."""
        from napari_pathup.engine.estimate import count_work

        if self._showing_defaults:
            return
        self._estimate_generation += 1
        try:
            stages = count_work(self.model(), self.settings())
        except (ValueError, OSError) as exc:
            self.estimate_label.value = f"invalid: {exc}"
            return
        self.show_model_defaults()
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

    # -- reference ---------------------------------------------------------------------------
    def reference_roi(self) -> tuple[ReferenceRoi, str | None, Placement]:
        """The reference RoI (checked now, read in the worker, from one pyramid level), its file when it
        came from one, and where the output layer goes. Raises :class:`InputError` with the reason when it
        cannot be used."""
        from napari_pathup.models.default import reference_for_class

        model = self.model()
        native_px = model.native_size * model.vae_scale_factor
        level = None if self.level.value in (None, AUTO_LEVEL) else int(self.level.value)
        if (path := chosen_path(self.reference_file.value)) is not None:
            roi = read_reference_roi(path, None, None, None, model, lazy=True)
            return roi, str(path), Placement.at_pixel_size(roi.pixel_size)
        layer = self._reference_layer()
        if layer is None:
            path = reference_for_class(model, str(self.class_name.value), int(self.seed.value))
            roi = read_reference_roi(path, None, None, None, model, lazy=True)
            return roi, str(path), Placement.at_pixel_size(roi.pixel_size)
        shapes = None if self.region.value in (None, WHOLE_IMAGE) else self.viewer.layers[self.region.value]
        roi, placement = layer_reference(layer, shapes, level, native_px, native_mpp(model.metadata))
        return roi, None, placement

    # -- running ---------------------------------------------------------------------------
    def set_busy(self, busy: bool) -> None:
        self.start_button.enabled, self.cancel_button.enabled = not busy, busy
        self.estimate_button.enabled = not busy and self.estimate_worker is None

    def start(self) -> Any:
        """Start a run in a generator worker; returns the worker (None when the inputs are invalid)."""
        from napari_pathup.engine.estimate import count_work
        from napari_pathup.engine.plan import available_memory
        from napari_pathup.io import check_output, output_format
        from napari_pathup.io.atomic import free_bytes

        if self.worker is not None:
            show_info(f"{self.title}: already running")
            return None
        try:
            model = self.model()
            settings = self.settings().resolve(model)
            out = None if (target := chosen_path(self.output.value)) is None else str(target)
            if out is not None:
                if output_format(out) != "ome-zarr":
                    raise InputError(f"save to {out}: the live output is an OME-Zarr; name it *.ome.zarr")
                check_output(out, overwrite=False, hint="choose a new name (the widget never overwrites)")
            roi, reference_path, placement = self.reference_roi()
            # the same refusals as the CLI and the library, before a layer or a store exists
            settings.check_reference(roi.image.shape, f"reference {reference_path or 'RoI'}")
            settings.check_budget(False, available_memory(), free_bytes(tempfile.gettempdir()))
            stages = count_work(model, settings)
        except (ValueError, OSError) as exc:
            show_error(f"PathUp: {exc}")
            return None
        # The click only checks and starts the worker: the worker creates the store (disk writes) and
        # reads the reference; the layer, its selection and the progress bar follow on later turns of the
        # event loop (_add_output_layer, _select_output_layer, _start_run_progress), each napari call a
        # stall of its own, while the worker waits for them (self._gui_ready) before starting the engine.
        self.layer = None
        self._gui_ready = threading.Event()
        self._pending_progress = 0
        self._run_progress = (sum(st.steps * st.patches_per_step for st in stages), list(roi.notes))
        self._layer_args = {
            "name": f"PathUp {settings.class_name} seed {settings.seed}",
            "settings": settings.to_dict(),
            "pixel_size": roi.pixel_size,
            "placement": placement,
        }
        return self.run_stream(
            synthesis_events,
            model,
            roi.image,
            settings,
            roi.pixel_size,
            reference_path,
            roi.attributes(),
            self._gui_ready,
            on_event=self._on_event,
            on_failed=self._on_failed,
            on_done=lambda: self._on_done(out),
        )

    def _add_output_layer(self, store: LiveOmeZarr, args: dict[str, Any]) -> None:
        """GUI thread, when the worker has created the store: the output layer that shows it."""
        atexit.register(store.remove)
        if self.cancelled:  # cancelled before the store existed: no layer for a run that never ran
            store.remove()
            self._gui_ready.set()
            return
        data = store.layer_data()
        layer = Image(
            data,
            rgb=True,
            multiscale=isinstance(data, list),
            contrast_limits=(0, 255),
            name=args["name"],
            metadata={
                "pathup": {"status": "running", "settings": args["settings"]},
                "source": str(store.path),
                "pixel_size_um": args["pixel_size"],
            },
            **args["placement"].layer_kwargs(),
        )
        self.layer, self.store = layer, store
        self._stores[id(layer)] = store
        # inserted without napari's usual selection of a new layer (which switches the layer controls):
        # that follows on the next step, then the progress bar; the worker waits for all (self._gui_ready)
        layers = self.viewer.layers
        activate = getattr(layers, "_activate_on_insert", True)
        layers._activate_on_insert = False
        try:
            layers.append(layer)
        finally:
            layers._activate_on_insert = activate
        QTimer.singleShot(SETUP_STEP_MS, self._select_output_layer)

    def _select_output_layer(self) -> None:
        """GUI thread, a step after the layer was added: select it, as napari does with a new layer."""
        try:
            if self.layer is not None and self.layer in self.viewer.layers:
                self.viewer.layers.selection.active = self.layer
        finally:  # one bar for the run (a napari progress bar costs a Qt widget, so not one per stage)
            QTimer.singleShot(SETUP_STEP_MS, self._start_run_progress)

    def _start_run_progress(self) -> None:
        """GUI thread, after the layer's selection: the progress bar (if the run goes on), the RoI's notes."""
        try:
            if self._run_progress is None:
                return
            total, notes = self._run_progress
            self._run_progress = None
            if self.worker is not None:
                self.start_progress(total, "stage 1/2")
            for note in notes:
                show_info(f"PathUp: {note}")
        finally:
            self._gui_ready.set()

    def cancel(self) -> None:
        """Stop the run at the next patch batch; the viewer stays usable and the layer stays."""
        if self.worker is not None:
            super().cancel()
            self._gui_ready.set()  # a worker waiting for the layer stops at once
            if self.layer is not None:
                self.layer.metadata["pathup"]["status"] = "cancelled"
                self.layer.name = f"{self.layer.name} (cancelled)"

    def _on_event(self, event: Any) -> None:
        """GUI thread: previews and tiles are already in the store (the worker wrote them); here the
        layer is redrawn and the progress bar advanced, each at most every so often."""
        if isinstance(event, OutputReady):
            try:
                self._add_output_layer(event.store, self._layer_args)
            except BaseException:
                self._gui_ready.set()  # the worker must not wait for a layer that will not come
                raise
        elif isinstance(event, StageStarted):
            if self._progress is not None:
                self._progress.set_description(f"{self.title}: stage {event.stage}/2")
        elif isinstance(event, PatchPreview):
            self._pending_progress += 1
            self._refresh()
        elif isinstance(event, TileDecoded):
            self._refresh(force=event.tile_index == event.tiles - 1)
        elif isinstance(event, RunFinished) and self.layer is not None:
            self.layer.metadata["pathup"] = {**event.attrs, "status": "finished"}

    def _refresh(self, force: bool = False) -> None:
        """Redraw what is in view of the layer (no thumbnail while streaming); advance the progress bar."""
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

    def _on_failed(self, message: str) -> None:
        if self.layer is not None:
            self.layer.metadata["pathup"]["status"] = f"failed: {message}"

    def _on_done(self, out: str | None) -> None:
        self._gui_ready.set()
        layer, store = self.layer, self.store
        self.store = None
        if layer is not None:
            layer.refresh()
        if store is None or layer is None or layer.metadata["pathup"].get("status") != "finished":
            return  # cancelled or failed: nothing is written under a final name
        if out is not None:
            try:
                written = store.export(out)
            except (ValueError, OSError) as exc:
                self.report_error(f"cannot save {out}: {exc}")
                return
            layer.metadata["pathup"]["saved"] = str(written)
            show_info(f"PathUp: saved {written}")


def describe_work(stages: tuple[StageWork, StageWork]) -> str:
    """One line of work counts: stage-2 patches per step and steps, denoiser evaluations, tiles."""
    one, two = stages
    evaluations = one.patch_evaluations + two.patch_evaluations
    return (
        f"{two.patches_per_step} patches/step x {two.steps} steps; {evaluations} denoiser evaluations; "
        f"{one.decode_tiles + two.decode_tiles} tiles"
    )
