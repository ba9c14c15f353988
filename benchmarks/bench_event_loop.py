"""napari's event loop during a synthesis through the Synthesize widget (run under ``xvfb-run -a``).

Opens a real napari viewer, docks the Synthesize widget from the plugin's manifest, and starts a
synthesis (default: 2048x2048, the shipped default model, the widget's default settings) while a
QTimer heartbeat fires every ``--tick-ms``. The gaps between heartbeats are how long the event loop
could not respond: the longest gap is the worst stall a user would feel (target: at most 100 ms).
Also measured: the time from Start to the output layer's insertion and to the first preview applied
to it (the first ``layer.refresh`` with non-zero data), total time, and where GUI-thread time went (the
widget's event handler per event type, its setup steps, ``layer.refresh``); each of the five longest
gaps is printed with the timed calls that ran inside it, to explain the stall.

    OMP_NUM_THREADS=1 xvfb-run -a python benchmarks/bench_event_loop.py [--size 2048] [--pan]

``--pan`` also moves the camera every 250 ms during the run, as a user inspecting the image would,
so that the canvas redraws the growing layer throughout.
"""

from __future__ import annotations

import argparse
import gc
import time
from collections import defaultdict
from typing import Any

import numpy as np

from _common import machine_info, markdown_table

#: heartbeat in the idle viewer before Start: the floor the machine's load leaves (milliseconds)
IDLE_MS = 5000


class Timings:
    """Durations (seconds) of GUI-thread calls by name, and when each ran (to name what a gap was)."""

    def __init__(self) -> None:
        self.calls: dict[str, list[float]] = defaultdict(list)
        self.spans: list[tuple[float, float, str]] = []  # (start, end, name) of every timed call

    def add(self, name: str, start: float, end: float) -> None:
        self.calls[name].append(end - start)
        self.spans.append((start, end, name))

    def wrap(self, name: str | None, fn: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.add(name or type(args[0]).__name__, start, time.perf_counter())

        return timed

    def during(self, start: float, end: float) -> str:
        """The timed calls that overlapped [start, end], longest first: what a gap was spent on."""
        inside = [(e - s, n) for s, e, n in self.spans if s < end and e > start and e - s >= 0.005]
        inside.sort(reverse=True)
        return ", ".join(f"{n} {1000 * d:.0f} ms" for d, n in inside[:3]) or "no timed call"

    def rows(self) -> list[list[Any]]:
        return [
            [name, len(d), f"{1000 * sum(d) / len(d):.1f}", f"{1000 * max(d):.1f}", f"{sum(d):.2f}"]
            for name, d in sorted(self.calls.items())
        ]


def has_pixels(layer: Any) -> bool:
    """Whether the (zarr-backed, maybe multiscale) output layer shows anything yet: its smallest level."""
    data = layer.data[-1] if layer.multiscale else layer.data
    return bool(np.asarray(data[:, :]).any())


def run(size: int, tick_ms: int, pan: bool, profile: bool) -> None:
    import napari
    from qtpy.QtCore import QEventLoop, QTimer

    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1400, 900)
    viewer.open_sample("napari-pathup", "tumour")  # as a user would: a real RoI is open beside the run
    _, widget = viewer.window.add_plugin_dock_widget("napari-pathup", "Synthesize")
    widget.device.value = "cpu"
    widget.out_width.value = widget.out_height.value = size
    app_loop = QEventLoop()
    for _ in range(20):  # let the window show and settle before measuring
        app_loop.processEvents()
        time.sleep(0.02)

    timings = Timings()
    widget._on_event = timings.wrap(None, widget._on_event)
    widget._start_run_progress = timings.wrap("progress bar and notes", widget._start_run_progress)
    widget._select_output_layer = timings.wrap("select the new layer", widget._select_output_layer)
    beats: list[float] = []
    heartbeat = QTimer()
    heartbeat.setInterval(tick_ms)
    heartbeat.timeout.connect(lambda: beats.append(time.perf_counter()))
    first_preview: list[float] = []
    panner = QTimer()
    panner.setInterval(250)
    angle = [0.0]

    def move_camera() -> None:
        angle[0] += 0.3
        viewer.camera.center = (
            size / 2 + size / 8 * np.sin(angle[0]),
            size / 2 + size / 8 * np.cos(angle[0]),
        )

    panner.timeout.connect(move_camera)

    heartbeat.start()
    QTimer.singleShot(IDLE_MS, app_loop.quit)
    t_idle = time.perf_counter()
    app_loop.exec()  # the floor: the same heartbeat in the idle viewer, before the run
    shown: list[float] = []

    def time_refreshes(event: Any) -> None:
        """The output layer (added by the widget once its worker made the store): time its refreshes."""
        layer = event.value
        refresh = layer.refresh
        shown.append(time.perf_counter())

        def timed_refresh(*args: Any, **kwargs: Any) -> None:
            start = time.perf_counter()
            refresh(*args, **kwargs)
            end = time.perf_counter()
            timings.add("layer.refresh", start, end)
            if not first_preview and has_pixels(layer):
                first_preview.append(end)

        layer.refresh = timed_refresh

    viewer.layers.events.inserted.connect(time_refreshes)
    collecting = [0.0]

    def time_collections(phase: str, info: dict[str, Any]) -> None:
        """Python's cyclic garbage collector holds the GIL, so a long collection (in either thread)
        stalls the event loop: record those over 5 ms."""
        now = time.perf_counter()
        if phase == "start":
            collecting[0] = now
        elif now - collecting[0] > 0.005:
            timings.add(f"gc generation {info['generation']} (any thread)", collecting[0], now)

    gc.callbacks.append(time_collections)
    t_start = time.perf_counter()
    worker = widget.start()
    t_started = time.perf_counter()
    timings.spans.append((t_start, t_started, "Start click handler"))
    if worker is None:
        raise SystemExit("the widget refused to start (see the notification above)")
    worker.finished.connect(lambda: QTimer.singleShot(0, app_loop.quit))
    if pan:
        viewer.reset_view()
        viewer.camera.zoom *= 2
        panner.start()
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.runcall(app_loop.exec)
    else:
        app_loop.exec()
    t_end = time.perf_counter()
    gc.callbacks.remove(time_collections)
    heartbeat.stop()
    panner.stop()

    beats_run = np.array([b for b in beats if b >= t_start])
    gaps = np.diff(np.concatenate([[t_start], beats_run])) * 1000
    idle = np.diff(np.array([b for b in beats if t_idle <= b < t_start])) * 1000
    stalls = int((gaps > 100).sum())
    status = widget.layer.metadata["pathup"]["status"] if widget.layer is not None else "no layer"
    print(f"machine: {machine_info()}")
    print(
        f"run: {size}x{size}, shipped default model, widget defaults, device cpu, heartbeat every "
        f"{tick_ms} ms, camera {'panning every 250 ms' if pan else 'still'}, status {status}\n"
    )
    print(
        markdown_table(
            [
                "phase",
                "total s",
                "Start click handler ms",
                "Start to layer shown s",
                "Start to first preview s",
                "heartbeats",
                "longest gap ms",
                "p99 gap ms",
                "median gap ms",
                "gaps > 100 ms",
            ],
            [
                [
                    f"idle viewer, {IDLE_MS / 1000:.0f} s before Start",
                    "–",
                    "–",
                    "–",
                    "–",
                    len(idle),
                    f"{idle.max():.1f}",
                    f"{np.percentile(idle, 99):.1f}",
                    f"{np.median(idle):.1f}",
                    int((idle > 100).sum()),
                ],
                [
                    f"{size}x{size} synthesis",
                    f"{t_end - t_start:.1f}",
                    f"{1000 * (t_started - t_start):.0f}",
                    f"{shown[0] - t_start:.2f}" if shown else "none",
                    f"{first_preview[0] - t_start:.2f}" if first_preview else "none",
                    len(gaps),
                    f"{gaps.max():.1f}",
                    f"{np.percentile(gaps, 99):.1f}",
                    f"{np.median(gaps):.1f}",
                    stalls,
                ],
            ],
        )
    )
    print(
        "\nGUI-thread time by call (the widget's event handler per event type, layer.refresh; and garbage "
        "collections over 5 ms, in any thread):\n"
    )
    print(markdown_table(["call", "count", "mean ms", "max ms", "total s"], timings.rows()))
    longest = np.argsort(gaps)[::-1][:5]
    print("\nlongest gaps (ms after Start: gap ms: the timed GUI calls inside it):")
    for i in sorted(longest):
        end = beats_run[i]
        begin = end - gaps[i] / 1000
        print(f"- {(end - t_start) * 1000:.0f}: {gaps[i]:.0f}: {timings.during(begin, end)}")
    if profile:
        import pstats

        print("\nGUI thread profile (cProfile of the event loop during the run), by cumulative time:\n")
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)
    viewer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=2048, help="output width and height (default 2048)")
    parser.add_argument("--tick-ms", type=int, default=10, help="heartbeat interval (default 10 ms)")
    parser.add_argument("--pan", action="store_true", help="move the camera every 250 ms during the run")
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of the GUI thread")
    args = parser.parse_args()
    run(args.size, args.tick_ms, args.pan, args.profile)


if __name__ == "__main__":
    main()
