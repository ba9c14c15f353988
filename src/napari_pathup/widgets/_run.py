"""The synthesis run as the Synthesize dock's worker streams it (no Qt): store first, engine events, result.

:func:`synthesis_events` runs in a napari generator worker. It creates the temporary OME-Zarr store that
backs the output layer and yields :class:`OutputReady` so that the GUI thread can show the layer, waits
until the GUI thread says it is shown, then passes the engine's events through after writing what each
carries into the store (previews into the small levels, decoded tiles down the pyramid), and ends with
:class:`RunFinished` and the attributes the store records.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from napari_pathup.engine.events import Finished, PatchPreview, StageStarted, TileDecoded
from napari_pathup.engine.pipeline import SynthesisSettings, synthesize
from napari_pathup.errors import InputError
from napari_pathup.io.live_zarr import LiveOmeZarr
from napari_pathup.io.slide import load_roi

if TYPE_CHECKING:
    import numpy as np

    from napari_pathup.models.base import PathupModel

#: the worker waits at most this long (seconds) for the GUI thread to show the output layer and progress bar
GUI_SETUP_TIMEOUT = 30.0


@dataclass(frozen=True)
class OutputReady:
    """The first event of a run: the worker created the output store; the GUI thread adds its layer."""

    store: LiveOmeZarr


@dataclass(frozen=True)
class RunFinished:
    """The last event of a successful run: the engine's result and the attributes it records."""

    finished: Finished
    attrs: dict[str, Any] = field(default_factory=dict)


def synthesis_events(
    model: PathupModel,
    reference: np.ndarray,
    settings: SynthesisSettings,
    pixel_size: float | None,
    reference_path: str | None,
    extra: dict[str, Any],
    gui_ready: threading.Event | None = None,
) -> Iterator[Any]:
    """Runs in the worker (no Qt): creates the output store (:class:`OutputReady`) and waits until
    ``gui_ready`` is set (the GUI thread showed its layer; at most :data:`GUI_SETUP_TIMEOUT`), reads the
    reference RoI if it is still lazy, then the engine's events, after pasting each preview into the
    store's small levels and averaging each decoded tile down its pyramid; then :class:`RunFinished`."""
    from napari_pathup.provenance import run_attributes

    try:
        store = LiveOmeZarr.temporary(settings.height, settings.width, pixel_size=pixel_size)
    except OSError as exc:
        raise InputError(f"cannot create the output store in {tempfile.gettempdir()}: {exc}") from exc
    extra = {**extra, "output_store": str(store.path)}
    yield OutputReady(store)
    if gui_ready is not None:
        gui_ready.wait(GUI_SETUP_TIMEOUT)
    shapes: dict[int, tuple[tuple[int, int], tuple[int, int]]] = {}
    reference = load_roi(reference)
    for event in synthesize(model, reference, settings, store.sink):
        if isinstance(event, StageStarted):
            shapes[event.stage] = (event.latent_shape, event.image_shape)
        elif isinstance(event, PatchPreview):
            box = event.box
            store.paste_preview(event.rgb, box, shapes[event.stage][0])
        elif isinstance(event, TileDecoded):
            box = event.box
            if event.stage == 1:
                store.paste_preview(event.rgb, box, shapes[1][1])
            else:  # the engine wrote it into level 0 already
                store.update_pyramid(box)
        if isinstance(event, Finished):
            attrs = {**run_attributes(model, event.settings, reference_path), **extra}
            store.set_attrs(attrs)
            yield event
            yield RunFinished(event, attrs)
        else:
            yield event
