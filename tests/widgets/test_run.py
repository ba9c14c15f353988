"""The Synthesize dock's run stream without Qt: the store comes first, the engine's events pass through
with their pixels already in the store, and the store ends as the same image ``run`` returns."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from napari_pathup.engine.events import Finished, PatchPreview, StageStarted, TileDecoded
from napari_pathup.engine.pipeline import SynthesisSettings, run
from napari_pathup.errors import InputError
from napari_pathup.io.ome_zarr import read_ome_zarr, read_ome_zarr_attrs
from napari_pathup.widgets import _run
from napari_pathup.widgets._run import OutputReady, RunFinished, synthesis_events

SETTINGS = SynthesisSettings("stroma", height=128, width=192, steps=4, seed=11)
#: large enough for a second pyramid level (the store's levels stop at 256 px)
PYRAMID = SynthesisSettings("stroma", height=512, width=512, steps=4, seed=11)


def test_the_stream_fills_the_store_with_the_engine_s_image(pathup_model, reference):
    ready = threading.Event()
    ready.set()  # the GUI thread showed the layer
    events = list(synthesis_events(pathup_model, reference, PYRAMID, 0.5, None, {"note": "x"}, ready))
    assert isinstance(events[0], OutputReady) and isinstance(events[-1], RunFinished)
    assert isinstance(events[-2], Finished) and events[-1].finished is events[-2]
    kinds = {type(e) for e in events[1:-2]}
    assert {StageStarted, PatchPreview, TileDecoded} <= kinds
    store = events[0].store
    try:
        expected = run(pathup_model, reference, PYRAMID).image
        np.testing.assert_array_equal(read_ome_zarr(store.path, 0), expected)
        # the smaller level was averaged down from the decoded tiles, not left as a preview
        small = read_ome_zarr(store.path, 1).astype(np.float64)
        h, w = small.shape[:2]
        down = expected[: 2 * h, : 2 * w].reshape(h, 2, w, 2, 3).astype(np.float64).mean(axis=(1, 3))
        assert np.abs(small - down).max() <= 1
        attrs = read_ome_zarr_attrs(store.path)
        assert attrs["note"] == "x" and attrs["output_store"] == str(store.path)
        assert attrs["seed"] == 11 and events[-1].attrs["note"] == "x"
    finally:
        store.remove()
    assert not store.path.exists()


def test_a_gui_that_never_answers_delays_the_run_at_most_the_timeout(pathup_model, reference, monkeypatch):
    monkeypatch.setattr(_run, "GUI_SETUP_TIMEOUT", 0.05)
    stream = synthesis_events(pathup_model, reference, SETTINGS, None, None, {}, threading.Event())
    ready = next(stream)
    after: list = []
    waiting = threading.Thread(target=lambda: after.append(next(stream)), daemon=True)
    waiting.start()
    waiting.join(timeout=60)  # a stream that waited for the GUI without a limit would still be waiting
    try:
        assert after and isinstance(after[0], StageStarted)  # went on without the GUI's answer
    finally:
        if not waiting.is_alive():
            stream.close()
        ready.store.remove()


def test_a_store_that_cannot_be_created_is_an_input_error(pathup_model, reference, monkeypatch, tmp_path):
    missing = tmp_path / "gone"
    monkeypatch.setattr("tempfile.tempdir", str(missing))
    with pytest.raises(InputError, match="cannot create the output store in"):
        next(synthesis_events(pathup_model, reference, SETTINGS, None, None, {}))
