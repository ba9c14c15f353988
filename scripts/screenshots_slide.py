"""Screenshots of the whole-slide workflow for the user guide, taken headless (re-runnable).

    OMP_NUM_THREADS=1 xvfb-run -a -s "-screen 0 1920x1200x24" python scripts/screenshots_slide.py

Opens the demo SVS with the plugin's slide reader (micrometres), draws a rectangle on it as the
reference RoI, docks the Synthesize widget and runs the default model from that RoI: one screenshot
with the slide, the RoI and the widget before Start, one while the zarr-backed output assembles beside
the RoI, one when it is done; and one of the slide's label, macro and thumbnail opened beside it
(Layers > Metadata; ``--associated-only`` takes that one alone). Same helpers and PNG budget as
scripts/screenshots.py.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from screenshots import save, settle, wait_until, widen

SVS = Path(__file__).resolve().parents[1] / "data" / "demo" / "normal" / "cmu_small_region.svs"
#: the RoI drawn on the slide: x, y, width, height in slide pixels
ROI = (200, 1200, 1024, 1024)


def main() -> None:
    import napari

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1024, help="output width and height (default 1024)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "images")
    parser.add_argument("--associated-only", action="store_true", help="the associated images' one alone")
    args = parser.parse_args()
    associated(args.out)
    if args.associated_only:
        return

    viewer = napari.Viewer()
    viewer.window._qt_window.resize(1800, 1100)
    (slide,) = viewer.open(str(SVS), plugin="napari-pathup")
    mpp = float(slide.scale[-1])
    x, y, w, h = ROI
    rectangle = np.array([[y, x], [y, x + w], [y + h, x + w], [y + h, x]], float) * mpp
    viewer.add_shapes(
        [rectangle],
        shape_type="rectangle",
        name="RoI",
        edge_color="yellow",
        edge_width=8,
        face_color=[0, 0, 0, 0],
        units=("micrometer", "micrometer"),
    )
    viewer.scale_bar.visible = True
    dock, widget = viewer.window.add_plugin_dock_widget("napari-pathup", "Synthesize")
    widen(viewer, dock, 460)
    widget.device.value = "cpu"
    widget.class_name.value = "normal"
    widget.reference.value = slide.name
    widget.region.value = "RoI"
    widget.out_width.value = widget.out_height.value = args.size
    settle(1.0)
    save(viewer, args.out / "slide_roi.png")

    halfway: list[bool] = []
    worker = widget.start()
    if worker is None:
        raise SystemExit("the widget refused to start")
    worker.yielded.connect(
        lambda event: (
            halfway.append(True)
            if type(event).__name__ == "PatchPreview" and event.stage == 2 and event.step >= event.steps // 2
            else None
        )
    )
    wait_until(lambda: bool(halfway) or widget.worker is None, 1800, "the stage-2 previews")
    save(viewer, args.out / "slide_running.png")
    wait_until(lambda: widget.worker is None, 1800, "the synthesis to finish")
    save(viewer, args.out / "slide_done.png")
    viewer.close()


def associated(out: Path) -> None:
    """The slide with its label, macro and thumbnail beside it, as Layers > Metadata opens them."""
    import napari
    from napari._app_model import get_app_model

    viewer = napari.Viewer()
    viewer.window._qt_window.resize(1800, 1100)
    (slide,) = viewer.open(str(SVS), plugin="napari-pathup")
    viewer.layers.selection.active = slide
    get_app_model().commands.execute_command("napari-pathup.open_associated_images").result()
    viewer.scale_bar.visible = True
    save(viewer, out / "slide_associated.png")
    viewer.close()


if __name__ == "__main__":
    main()
