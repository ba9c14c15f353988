"""The one base of the Synthesize, Compare and Quality dock widgets: work in a thread worker, layer choices.

``WorkerDock.run_task`` runs a plain function in a napari thread worker. The function gets a
``TaskContext`` to report progress (shown as a napari progress bar) and to notice Cancel. Every
exception is caught inside the worker and handed back as an ``Outcome``.
``WorkerDock.run_stream`` runs a generator of typed events (Synthesize: the engine's events) in a
generator worker; an exception inside it is yielded as a :class:`WorkerFailed` event, never raised:
superqt's generator workers treat a raised ``RuntimeError`` (torch's usual failure) as a deleted
worker and emit neither ``errored`` nor ``finished``, which would leave the widget stuck. Either way
an error becomes one napari notification, Cancel works the same, and the widget stays usable.
"""

from __future__ import annotations

import gc
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image
from napari.qt.threading import FunctionWorker, GeneratorWorker, thread_worker
from napari.utils import progress
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QObject, QSize, Signal
from qtpy.QtWidgets import QAbstractItemView, QFrame, QScrollArea, QTableWidget, QVBoxLayout, QWidget

from napari_pathup._triton_guard import block_triton_if_llvm_loaded
from napari_pathup.errors import InputError
from napari_pathup.measure.tasks import TaskCancelledError

if TYPE_CHECKING:
    import napari


def chosen_path(value: Any) -> Path | None:
    """A ``FileEdit`` value as a path, or ``None`` when the field is empty: magicgui hands an empty
    field back as ``Path(".")``, which must not read as "the working directory"."""
    return None if str(value) in ("", ".") else Path(value)


def read_only_table(columns: list[str]) -> QTableWidget:
    """A table of results: named columns, the last one stretching, no editing and no row numbers."""
    table = QTableWidget(0, len(columns))
    table.setHorizontalHeaderLabels(columns)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    horizontal, vertical = table.horizontalHeader(), table.verticalHeader()
    assert horizontal is not None and vertical is not None  # a QTableWidget has both
    horizontal.setStretchLastSection(True)
    vertical.setVisible(False)
    return table


@dataclass
class Outcome:
    """What a task handed back: its value, or an error message, or that it was cancelled."""

    value: Any = None
    error: str | None = None
    cancelled: bool = False
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class WorkerFailed:
    """The last event of a streaming task that failed: the message for the notification."""

    message: str


@thread_worker
def _guarded_stream(fn: Callable[..., Any], args: tuple) -> Any:
    """Runs in the worker thread: the task's events, then a :class:`WorkerFailed` if it raised."""
    try:
        yield from fn(*args)
    except Exception as exc:  # yielded, not raised (see the module docstring)
        known = isinstance(exc, InputError)
        yield WorkerFailed(str(exc) if known else f"{type(exc).__name__}: {exc}")


class _Signals(QObject):
    progress = Signal(int, int, str)


class TaskContext:
    """Given to a task: ``progress`` reports (and checks for Cancel), ``check`` only checks."""

    def __init__(self, signals: _Signals, cancel: threading.Event) -> None:
        self._signals, self._cancel = signals, cancel

    def check(self) -> None:
        if self._cancel.is_set():
            raise TaskCancelledError

    def progress(self, done: int, total: int, description: str) -> None:
        self.check()
        self._signals.progress.emit(done, total, description)


@thread_worker
def _guarded(
    fn: Callable[..., Any], context: TaskContext, args: tuple, surface: tuple[type[Warning], ...]
) -> Outcome:
    """Runs in the worker thread: never raises; warnings of the ``surface`` categories are collected
    for the widget to show, others are warned again."""
    outcome = Outcome()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            outcome.value = fn(context, *args)
        except TaskCancelledError:
            outcome.cancelled = True
        except Exception as exc:  # every failure becomes a notification, never a stuck worker
            known = isinstance(exc, InputError | ValueError)
            outcome.error = str(exc) if known else f"{type(exc).__name__}: {exc}"
    for warning in caught:
        if surface and issubclass(warning.category, surface):
            outcome.warnings.append(str(warning.message))
        else:  # not ours to show: passed on as if never caught (napari shows worker warnings itself)
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return outcome


class WorkerDock(QWidget):
    """A dock widget that runs one task at a time in a thread worker, with progress and Cancel."""

    #: names the widget in notifications
    title = "PathUp"

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        # the viewer's canvas exists now: if its OpenGL driver loaded LLVM after `import
        # napari_pathup` ran the guard, Triton must not load later (see _triton_guard)
        block_triton_if_llvm_loaded()
        self.viewer = napari_viewer
        self.worker: FunctionWorker | GeneratorWorker | None = None
        self.last_error: str | None = None
        self._progress: progress | None = None
        self._cancel = threading.Event()
        self._signals = _Signals()
        self._signals.progress.connect(self._on_progress)

    def scrolling_layout(self) -> QVBoxLayout:
        """The layout to put the controls in: inside a scroll area, so a small window scrolls."""
        inner = QWidget()
        area = QScrollArea()
        area.setWidgetResizable(True)
        area.setFrameShape(QFrame.Shape.NoFrame)
        area.setWidget(inner)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(area)
        self._scroll = area
        return QVBoxLayout(inner)

    def showEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        """Once shown (sizes are known only then): never narrower than the controls need."""
        inner, bar = self._scroll.widget(), self._scroll.verticalScrollBar()
        assert inner is not None and bar is not None  # set at construction
        self._scroll.setMinimumWidth(inner.minimumSizeHint().width() + bar.sizeHint().width())
        super().showEvent(event)

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt's name)
        """As wide and tall as the controls like (the dock area limits it; then it scrolls vertically)."""
        inner, bar = self._scroll.widget(), self._scroll.verticalScrollBar()
        assert inner is not None and bar is not None  # set at construction
        size = inner.sizeHint()
        return QSize(size.width() + bar.sizeHint().width(), size.height())

    def image_choices(self, _widget: Any = None) -> list[tuple[str, Image]]:
        """The viewer's image layers as magicgui choices (``choices=self.image_choices``)."""
        return image_layer_choices(self.viewer)

    # -- subclasses ---------------------------------------------------------------------------
    def set_busy(self, busy: bool) -> None:
        """Enable or disable the controls while a task runs."""

    # -- running ------------------------------------------------------------------------------
    def run_task(
        self,
        fn: Callable[..., Any],
        *args: Any,
        on_result: Callable[[Any], None],
        surface: tuple[type[Warning], ...] = (),
    ) -> FunctionWorker | None:
        """Run ``fn(context, *args)`` in a worker; ``on_result(value)`` runs on the GUI thread."""
        if self.worker is not None:
            show_info(f"{self.title}: already running")
            return None
        self.last_error = None
        self._cancel = threading.Event()
        worker = _guarded(fn, TaskContext(self._signals, self._cancel), args, surface)
        worker.returned.connect(lambda outcome: self._on_outcome(outcome, on_result))
        worker.errored.connect(lambda exc: self.report_error(f"{type(exc).__name__}: {exc}"))
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self.set_busy(True)
        hold_collector_off_old_objects()
        worker.start()
        return worker

    def run_stream(
        self,
        fn: Callable[..., Any],
        *args: Any,
        on_event: Callable[[Any], None],
        on_failed: Callable[[str], None] | None = None,
        on_done: Callable[[], None] | None = None,
    ) -> GeneratorWorker | None:
        """Run the generator ``fn(*args)`` in a worker; ``on_event(event)`` runs on the GUI thread for
        each event it yields, ``on_failed(message)`` after a failure was notified, ``on_done()`` at the end
        (finished, failed or cancelled)."""
        if self.worker is not None:
            show_info(f"{self.title}: already running")
            return None
        self.last_error = None
        self._cancel = threading.Event()
        worker = _guarded_stream(fn, args)

        def dispatch(event: Any) -> None:
            if isinstance(event, WorkerFailed):
                self.report_error(event.message)
                if on_failed is not None:
                    on_failed(event.message)
                return
            try:
                on_event(event)
            except Exception as exc:  # a display failure must not escape into Qt's event loop
                self.report_error(f"cannot show the progress: {type(exc).__name__}: {exc}")

        worker.yielded.connect(dispatch)
        worker.errored.connect(lambda exc: self.report_error(f"{type(exc).__name__}: {exc}"))
        worker.finished.connect(self._on_finished)
        if on_done is not None:
            worker.finished.connect(on_done)
        self.worker = worker
        self.set_busy(True)
        hold_collector_off_old_objects()
        worker.start()
        return worker

    def cancel(self) -> None:
        """Ask the running task to stop: at its next progress report, or (a stream) its next event."""
        if self.worker is not None:
            self._cancel.set()
            if isinstance(self.worker, GeneratorWorker):
                self.worker.quit()

    @property
    def cancelled(self) -> bool:
        """Cancel was pressed during the current (or last) task."""
        return self._cancel.is_set()

    def start_progress(self, total: int, description: str) -> progress:
        """A napari progress bar for the running task, closed when the task ends."""
        if self._progress is not None:
            self._progress.close()
        self._progress = progress(total=total, desc=f"{self.title}: {description}")
        return self._progress

    def report_error(self, message: str) -> None:
        self.last_error = message
        show_error(f"{self.title}: {message}")

    def report_warning(self, message: str) -> None:
        show_warning(f"{self.title}: {message}")

    def _on_progress(self, done: int, total: int, description: str) -> None:
        if self._progress is None:
            self._progress = progress(total=total, desc=f"{self.title}: {description}")
        bar = self._progress
        if bar.total != total:
            bar.total = total
        bar.set_description(f"{self.title}: {description}")
        if done > bar.n:
            bar.update(done - bar.n)

    def _on_outcome(self, outcome: Outcome, on_result: Callable[[Any], None]) -> None:
        for message in outcome.warnings:
            show_warning(f"{self.title}: {message}")
        if outcome.cancelled:
            show_info(f"{self.title}: cancelled")
        elif outcome.error is not None:
            self.report_error(outcome.error)
        else:
            try:
                on_result(outcome.value)
            except Exception as exc:  # a display failure must not escape into Qt's event loop
                self.report_error(f"cannot show the result: {type(exc).__name__}: {exc}")

    def _on_finished(self) -> None:
        if self._progress is not None:
            self._progress.close()
            self._progress = None
        self.worker = None
        release_collector_hold()
        self.set_busy(False)


# -- garbage collection during a run -----------------------------------------------------------
_running_tasks = 0


def hold_collector_off_old_objects() -> None:
    """Freeze the objects that exist when a task starts (viewer, layers, model) out of the cyclic
    garbage collector's scans until the last running task ends.

    A full (generation 2) collection walks every tracked object and holds the GIL while it does: with a
    viewer and a model loaded that took 350 ms, the only event-loop stall over 100 ms left in a 2048x2048
    synthesis (benchmarks/bench_event_loop.py). Frozen, those objects are skipped, so a collection during
    the run looks only at what the run itself allocates (``gc.freeze``, the use CPython documents it for).
    """
    global _running_tasks
    if _running_tasks == 0:
        gc.freeze()
    _running_tasks += 1


def release_collector_hold() -> None:
    """Undo :func:`hold_collector_off_old_objects` when the last running task has ended: the frozen
    objects return to the oldest generation and are collected as before."""
    global _running_tasks
    _running_tasks = max(0, _running_tasks - 1)
    if _running_tasks == 0:
        gc.unfreeze()


# -- layers ------------------------------------------------------------------------------------
def image_layer_choices(viewer: napari.viewer.Viewer) -> list[tuple[str, Image]]:
    """(name, layer) of every image layer, for magicgui choices (the value is the layer itself)."""
    return [(layer.name, layer) for layer in viewer.layers if isinstance(layer, Image)]


def follow_real_and_synthetic(viewer: napari.viewer.Viewer, real: Any, synthetic: Any) -> None:
    """Keep two multiple-choice layer selects current as layers come and go; while neither has a
    choice yet, PathUp layers go to ``synthetic`` and the other RGB layers to ``real``."""

    def refresh(_event: Any = None) -> None:
        for select in (real, synthetic):
            select.reset_choices()
        if not real.value and not synthetic.value:
            layers = [layer for _, layer in image_layer_choices(viewer) if layer.rgb]
            synthetic.value = [layer for layer in layers if is_synthetic(layer)]
            real.value = [layer for layer in layers if not is_synthetic(layer)]

    for event in (viewer.layers.events.inserted, viewer.layers.events.removed):
        event.connect(refresh)
    refresh()


def is_synthetic(layer: Image) -> bool:
    """A layer made by PathUp: its metadata records the synthesis settings."""
    meta = layer.metadata.get("pathup") if isinstance(layer.metadata, dict) else None
    return isinstance(meta, dict) and isinstance(meta.get("settings"), dict)


def rgb_levels(layer: Image) -> list[Any]:
    """The layer's pyramid levels (one for a plain layer), checked to be (H, W, 3|4) uint8 RGB; not loaded."""
    levels = list(layer.data) if layer.multiscale else [layer.data]
    first = levels[0]
    if not layer.rgb or len(first.shape) != 3 or np.dtype(first.dtype) != np.uint8:
        raise InputError(
            f"layer {layer.name!r} is not an RGB image: expected (H, W, 3) uint8, "
            f"got {np.dtype(first.dtype)} {tuple(first.shape)}"
        )
    return levels
