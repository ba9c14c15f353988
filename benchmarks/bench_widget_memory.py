"""Peak memory of the napari process while the Synthesize widget makes a large image (``xvfb-run -a``).

Opens a real napari viewer, opens the demo SVS with the plugin's slide reader, draws a rectangle on it
as the reference RoI, docks the Synthesize widget from the manifest (shipped default model, its default
settings unless ``--steps`` is given) and runs a ``--size`` x ``--size`` synthesis into the widget's
zarr-backed layer. A thread samples the process's resident memory (RSS) every 50 ms. The engine runs in
a worker thread of the same process, so the peak includes the engine's own memory. "Idle" is the RSS
after the viewer, slide, widget and model are loaded and the window has settled, before Start.

    OMP_NUM_THREADS=1 xvfb-run -a python benchmarks/bench_widget_memory.py [--size 8192] [--steps N]
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from pathlib import Path

import numpy as np
import psutil

from _common import machine_info, markdown_table

SVS = Path(__file__).resolve().parents[1] / "data" / "demo" / "normal" / "cmu_small_region.svs"
#: the reference RoI drawn on the slide: x, y, width, height in slide pixels
ROI = (100, 1000, 1024, 1024)
MIB = 1024**2


class RssSampler(threading.Thread):
    """Samples this process's RSS every ``interval`` seconds until stopped; keeps the peak."""

    def __init__(self, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(os.getpid())
        self.interval = interval
        self.peak = self.process.memory_info().rss
        self.samples = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        start = last = time.monotonic()
        while not self._stop_event.is_set():
            rss = self.process.memory_info().rss
            self.peak = max(self.peak, rss)
            self.samples += 1
            if time.monotonic() - last >= 60:  # a line a minute: a run cut short still tells its peak
                last = time.monotonic()
                print(
                    f"  {last - start:.0f} s: RSS {rss / MIB:.0f} MiB, peak so far {self.peak / MIB:.0f} MiB",
                    flush=True,
                )
            time.sleep(self.interval)

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        return self.peak


def run(size: int, steps: int | None) -> None:
    import napari
    from qtpy.QtCore import QEventLoop, QTimer

    process = psutil.Process(os.getpid())
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1400, 900)
    (slide,) = viewer.open(str(SVS), plugin="napari-pathup")
    mpp = float(slide.scale[-1])
    x, y, w, h = ROI
    rectangle = np.array([[y, x], [y, x + w], [y + h, x + w], [y + h, x]], float) * mpp
    viewer.add_shapes(
        [rectangle], shape_type="rectangle", name="RoI", edge_color="yellow", face_color=[0] * 4
    )
    _, widget = viewer.window.add_plugin_dock_widget("napari-pathup", "Synthesize")
    widget.device.value = "cpu"
    widget.class_name.value = "normal"
    widget.reference.value = slide.name
    widget.region.value = "RoI"
    widget.out_width.value = widget.out_height.value = size
    if steps is not None:
        widget.steps.value = steps
    loop = QEventLoop()
    for _ in range(50):  # let the window show and settle before measuring
        loop.processEvents()
        time.sleep(0.02)
    idle = process.memory_info().rss
    print(f"idle RSS {idle / MIB:.0f} MiB (viewer, slide, widget and model loaded)", flush=True)
    sampler = RssSampler()
    sampler.start()
    t0 = time.perf_counter()
    # the widget adds the output layer once its worker has created the store: show it whole then
    viewer.layers.events.inserted.connect(lambda _event: QTimer.singleShot(0, viewer.reset_view))
    worker = widget.start()
    if worker is None:
        raise SystemExit("the widget refused to start (see the notification above)")
    worker.finished.connect(lambda: QTimer.singleShot(0, loop.quit))
    loop.exec()
    layer = widget.layer
    seconds = time.perf_counter() - t0
    peak = sampler.stop()
    status = layer.metadata["pathup"]["status"]
    settings = layer.metadata["pathup"].get("settings", {})
    store = Path(layer.metadata["source"])
    on_disk = sum(f.stat().st_size for f in store.rglob("*") if f.is_file())
    print(f"machine: {machine_info()}")
    print(
        f"run: {size}x{size} from a {w}x{h} RoI of {SVS.name} (opened with the plugin's slide reader), "
        f"shipped default model, steps {settings.get('steps')}, device cpu, status {status}, "
        f"{seconds:.0f} s; RSS sampled every 50 ms ({sampler.samples} samples)\n"
    )
    print(
        markdown_table(
            ["output", "idle RSS MiB", "peak RSS MiB", "peak - idle MiB", "output as numpy MiB", "store MiB"],
            [
                [
                    f"{size}x{size}",
                    f"{idle / MIB:.0f}",
                    f"{peak / MIB:.0f}",
                    f"{(peak - idle) / MIB:.0f}",
                    f"{size * size * 3 / MIB:.0f}",
                    f"{on_disk / MIB:.0f}",
                ]
            ],
        )
    )
    viewer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=8192, help="output width and height (default 8192)")
    parser.add_argument("--steps", type=int, default=None, help="sampler steps (default: the model's)")
    args = parser.parse_args()
    run(args.size, args.steps)


if __name__ == "__main__":
    main()
