"""napari's event loop while the Compare and Quality widgets measure large layers (run under ``xvfb-run -a``).

Opens a real napari viewer, docks the widget from the plugin's manifest and runs one measurement
while a QTimer heartbeat fires every ``--tick-ms``; the longest gap between heartbeats is the
worst stall a user would feel (target: at most 100 ms). Cases:

- compare, two 2048x2048 in-memory layers (real H&E tiled to size; the "synthetic" one records a
  patch grid, so its seam measure is computed too);
- compare, an N x N multiscale OME-Zarr (written with ``io.write_ome_zarr``, opened lazily by the
  plugin's reader) against a 2048x2048 layer;
- quality, two 2048x2048 layers per side with 512 crops (32 + 32 samples), EfficientNet-Lite0 on CPU.

The "work s" column is the time the measurement took in its worker: the stall it would have caused
had it run on the GUI thread.

    OMP_NUM_THREADS=1 xvfb-run -a python benchmarks/bench_widget_stalls.py [--pyramid 4096]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from _common import machine_info, markdown_table

DEMO = Path(__file__).resolve().parents[1] / "data" / "demo"


def he_image(size: int, name: str) -> np.ndarray:
    """A real H&E image from data/demo tiled (mirrored) to size x size."""
    from napari_pathup.io import read_image

    image = read_image(DEMO / name)
    reps = (-(-size // image.shape[0]), -(-size // image.shape[1]), 1)
    return np.ascontiguousarray(np.tile(image, reps)[:size, :size])


def measure_stall(widget: Any, start: Any, tick_ms: int) -> dict[str, Any]:
    """Run ``start()`` (which returns a worker) with a heartbeat: seconds, gaps (ms), idle baseline gaps,
    where the longest gaps fell, and GUI-thread time spent showing the result and making the progress bar."""
    from qtpy.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    for _ in range(20):  # let the window show and settle
        loop.processEvents()
        time.sleep(0.02)
    import napari_pathup.widgets._base as base_module

    gui: dict[str, float] = {"result": 0.0, "progress bar": 0.0}
    make_progress = base_module.progress

    def timed_progress(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return make_progress(*args, **kwargs)
        finally:
            gui["progress bar"] += time.perf_counter() - t

    base_module.progress = timed_progress
    beats: list[float] = []
    heartbeat = QTimer()
    heartbeat.setInterval(tick_ms)
    heartbeat.timeout.connect(lambda: beats.append(time.perf_counter()))
    heartbeat.start()
    QTimer.singleShot(2000, loop.quit)
    idle_start = time.perf_counter()
    loop.exec()  # baseline: the same heartbeat with nothing running
    idle = np.diff(np.concatenate([[idle_start], beats])) * 1000
    t0 = time.perf_counter()
    outcome = widget._on_outcome

    def timed_outcome(*args: Any) -> Any:
        t = time.perf_counter()
        try:
            return outcome(*args)
        finally:
            gui["result"] += time.perf_counter() - t

    widget._on_outcome = timed_outcome
    worker = start()
    if worker is None:
        raise SystemExit(f"the widget refused to start: {widget.last_error}")
    worker.finished.connect(lambda: QTimer.singleShot(500, loop.quit))  # the result is shown after
    loop.exec()
    heartbeat.stop()
    base_module.progress = make_progress
    if widget.last_error:
        raise SystemExit(f"the measurement failed: {widget.last_error}")
    run = np.array([b for b in beats if b >= t0])
    gaps = np.diff(np.concatenate([[t0], run])) * 1000
    longest = sorted(np.argsort(gaps)[::-1][:3])
    return {
        "seconds": run[-1] - t0 - 0.5,
        "gaps": gaps,
        "idle": idle,
        "where": ", ".join(f"{(run[i] - t0):.1f} s: {gaps[i]:.0f}" for i in longest),
        "gui": gui,
    }


def run(pyramid: int, tick_ms: int) -> None:
    import napari

    from napari_pathup._reader import read_ome_zarr_layer
    from napari_pathup.io import write_ome_zarr

    real = he_image(2048, "stroma/hgsc_stroma.jpg")
    synth = he_image(2048, "tumour/hgsc_tumour_nest.jpg")
    settings = {"patch_size": 32, "overlap": 8, "height": 2048, "width": 2048}
    rows = []
    with tempfile.TemporaryDirectory(prefix="pathup-bench-") as tmp:
        store = Path(tmp) / "large.ome.zarr"
        t = time.perf_counter()
        write_ome_zarr(store, he_image(pyramid, "tumour/hgsc_tumour_nest.jpg"))
        print(f"wrote the {pyramid}x{pyramid} OME-Zarr in {time.perf_counter() - t:.1f} s")
        cases = [
            "compare 2048 + 2048 (numpy)",
            f"compare {pyramid} pyramid (zarr) + 2048",
            "quality 2x2048 vs 2x2048",
        ]
        for case in cases:
            viewer = napari.Viewer(show=True)
            viewer.window._qt_window.resize(1400, 900)
            viewer.add_image(real, rgb=True, name="real")
            if case.startswith("compare 2048"):
                viewer.add_image(
                    synth, rgb=True, name="synthetic", metadata={"pathup": {"settings": settings}}
                )
            elif case.startswith("compare"):
                ((data, meta, _),) = read_ome_zarr_layer(str(store))
                meta["metadata"]["pathup"] = {"settings": settings | {"height": pyramid, "width": pyramid}}
                viewer.add_image(data, **meta)
            else:
                viewer.add_image(real[::-1].copy(), rgb=True, name="real 2")
                viewer.add_image(
                    synth, rgb=True, name="synthetic", metadata={"pathup": {"settings": settings}}
                )
                viewer.add_image(
                    synth[:, ::-1].copy(),
                    rgb=True,
                    name="synthetic 2",
                    metadata={"pathup": {"settings": settings}},
                )
            if case.startswith("compare"):
                _, widget = viewer.window.add_plugin_dock_widget("napari-pathup", "Compare")
                m = measure_stall(widget, widget.measure, tick_ms)
                seam = next(iter(widget.result.seams.values())).text()
                detail = f"{widget.result.stains['real'].n_pixels} px per side; seam {seam}"
            else:
                _, widget = viewer.window.add_plugin_dock_widget("napari-pathup", "Quality")
                widget.crops.value, widget.extractor.value, widget.device.value = 512, "effnet-lite0", "cpu"
                m = measure_stall(widget, widget.compute, tick_ms)
                report = widget.report
                detail = f"{report.real.n_samples} + {report.synth.n_samples} crops"
            gaps = m["gaps"]
            rows.append(
                [
                    case,
                    f"{m['seconds']:.2f}",
                    f"{m['idle'].max():.0f}",
                    f"{gaps.max():.0f}",
                    f"{np.percentile(gaps, 99):.0f}",
                    f"{np.median(gaps):.0f}",
                    int((gaps > 100).sum()),
                    f"{1000 * m['gui']['result']:.0f} / {1000 * m['gui']['progress bar']:.0f}",
                    m["where"],
                    detail,
                ]
            )
            viewer.close()
    print(f"machine: {machine_info()}")
    print(
        f"heartbeat every {tick_ms} ms; gaps from the button press until the result is drawn; "
        "idle: the same heartbeat for 2 s before the press\n"
    )
    headers = [
        "case",
        "work s",
        "idle longest gap ms",
        "longest gap ms",
        "p99 gap ms",
        "median gap ms",
        "gaps > 100 ms",
        "GUI ms: show result / make progress bar",
        "3 longest gaps (s after press: ms)",
        "result",
    ]
    print(markdown_table(headers, rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pyramid", type=int, default=4096, help="size of the multiscale OME-Zarr (4096)")
    parser.add_argument("--tick-ms", type=int, default=10, help="heartbeat interval (default 10 ms)")
    args = parser.parse_args()
    run(args.pyramid, args.tick_ms)


if __name__ == "__main__":
    main()
