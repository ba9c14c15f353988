"""Screenshots of the napari plugin for the user guide, taken headless (re-runnable).

    OMP_NUM_THREADS=1 xvfb-run -a -s "-screen 0 1920x1200x24" python scripts/screenshots.py [--size 512]

(xvfb-run's default screen, 1280x1024, also works: the window is capped to the screen, so the
pictures are then smaller and more crowded.)

Opens napari, loads the tumour sample (a real H&E RoI shipped with the default model), docks each
widget of the plugin's manifest and drives it as a user would: the Synthesize widget estimates and
runs a small synthesis with the embedded default model (one screenshot while the image assembles,
one when it is done), the Compare widget shows real and synthetic side by side and measures stains
and seams, the Quality widget computes the metrics on crops. Each screenshot is the whole window
(``viewer.screenshot(canvas_only=False)``), downscaled and written as a small PNG (atomically).
About 5 minutes on 2 busy CPU cores at --size 512.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

WIDTH = 1100  # pixels of the saved PNGs
MAX_BYTES = 300_000


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Run the Qt event loop until ``condition()`` holds; fail after ``timeout`` seconds."""
    from qtpy.QtWidgets import QApplication

    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        QApplication.processEvents()
        time.sleep(0.02)


def settle(seconds: float = 0.5) -> None:
    """Let Qt process events (repaints, throttled layer refreshes) for ``seconds``."""
    end = time.monotonic() + seconds
    wait_until(lambda: time.monotonic() >= end, seconds + 5, "the window to settle")


def save(viewer, path: Path) -> None:
    """The whole window, downscaled to WIDTH, as a PNG under MAX_BYTES (palette if needed)."""
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    from napari_pathup.io.atomic import atomic_output

    viewer.reset_view()  # docks change the canvas size after napari framed the layers
    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
        toast.close()  # a run's notes (e.g. "no pixel size") would cover the canvas with a local path
    settle()
    rgba = viewer.screenshot(canvas_only=False, flash=False)
    image = Image.fromarray(np.asarray(rgba)[..., :3])
    height = round(image.height * WIDTH / image.width)
    image = image.resize((WIDTH, height), Image.Resampling.LANCZOS)
    with atomic_output(path, overwrite=True) as temp:
        image.save(temp, format="PNG", optimize=True)
        if temp.stat().st_size > MAX_BYTES:
            image.quantize(256, method=Image.Quantize.MEDIANCUT).save(temp, format="PNG", optimize=True)
    print(f"{path}: {image.width}x{image.height}, {path.stat().st_size / 1000:.0f} kB")


def widen(viewer, dock, width: int = 720) -> None:
    """Give a dock widget room for its tables and plots."""
    from qtpy.QtCore import Qt

    viewer.window._qt_window.resizeDocks([dock], [width], Qt.Orientation.Horizontal)


def synthesize(viewer, out: Path, size: int, real):
    from napari_pathup.engine.events import PatchPreview

    dock, widget = viewer.window.add_plugin_dock_widget("napari-pathup", "Synthesize")
    widget.device.value = "cpu"
    widget.class_name.value = "tumour"
    widget.out_width.value = widget.out_height.value = size
    widget.run_estimate()
    wait_until(lambda: widget.estimate_worker is None, 300, "the estimate")
    print("estimate:", widget.estimate_label.value.replace("\n", " | "))

    halfway = []

    def watch(event) -> None:
        if isinstance(event, PatchPreview) and event.stage == 2 and event.step >= event.steps // 2:
            halfway.append(event)

    real.visible = False  # the output layer sits at the origin, over the (larger) reference
    worker = widget.start()
    if worker is None:
        raise SystemExit("the Synthesize widget refused to start")
    worker.yielded.connect(watch)
    wait_until(lambda: bool(halfway) or widget.worker is None, 1800, "the stage-2 previews")
    save(viewer, out / "synthesize_running.png")
    wait_until(lambda: widget.worker is None, 1800, "the synthesis to finish")
    save(viewer, out / "synthesize_done.png")
    real.visible = True
    return dock, widget.layer


def compare(viewer, out: Path):
    dock, widget = viewer.window.add_plugin_dock_widget("napari-pathup", "Compare")
    widen(viewer, dock)
    real, synthetic = ([x.name for x in w.value] for w in (widget.real, widget.synthetic))
    print("compare: real", real, "synthetic", synthetic)
    widget.side_by_side.setChecked(True)
    widget.measure()
    wait_until(lambda: widget.worker is None, 900, "the stain and seam measures")
    if widget.last_error:
        raise SystemExit(f"Compare failed: {widget.last_error}")
    save(viewer, out / "compare.png")
    widget.side_by_side.setChecked(False)
    return dock


def quality(viewer, out: Path, real_layer, synth_layer, crops: int) -> None:
    dock, widget = viewer.window.add_plugin_dock_widget("napari-pathup", "Quality")
    widen(viewer, dock)
    real_layer.visible = False
    widget.real_layers.value = [real_layer]
    widget.synth_layers.value = [synth_layer]
    widget.crops.value = crops
    widget.kid_subset_size.value = 8
    widget.compute()
    wait_until(lambda: widget.worker is None, 1800, "the quality metrics")
    if widget.last_error:
        raise SystemExit(f"Quality failed: {widget.last_error}")
    print("quality:", widget.summary.value.replace("\n", " | "))
    save(viewer, out / "quality.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=512, help="synthesis width and height (default 512)")
    parser.add_argument("--crops", type=int, default=128, help="Quality widget crop size (default 128)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "images")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    import napari
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(title="napari", show=True)
    primary = QApplication.primaryScreen()
    if primary is None:
        raise SystemExit("screenshots: no screen; run under a display (xvfb-run -a)")
    screen = primary.availableGeometry()
    # a window larger than the (virtual) screen gets a clipped OpenGL canvas: the grab comes out distorted
    viewer.window._qt_window.resize(min(1800, screen.width()), min(1150, screen.height()))
    real, *others = viewer.open_sample("napari-pathup", "tumour")  # a layer per reference of the class
    for layer in others:  # the first (the nest) is the one the run starts from
        viewer.layers.remove(layer)
    settle(1.0)
    synth_dock, synthetic = synthesize(viewer, args.out, args.size, real)
    viewer.window.remove_dock_widget(synth_dock)  # room for the other widgets' tables and plots
    compare_dock = compare(viewer, args.out)
    viewer.window.remove_dock_widget(compare_dock)
    quality(viewer, args.out, real, synthetic, args.crops)
    viewer.close()


if __name__ == "__main__":
    main()
