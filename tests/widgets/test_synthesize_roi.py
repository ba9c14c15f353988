"""The Synthesize widget on a whole slide in a real napari viewer: a rectangle drawn on the slide is the
reference, the output streams into an OME-Zarr pyramid on disk, at the RoI's pixel size, beside it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

import napari_pathup.widgets._base as base_module
import napari_pathup.widgets.synthesize as synth_module
from helpers import DEMO, hamamatsu_ndpi, leica_scn, rgb
from napari_pathup.engine.device import select_dtype
from napari_pathup.engine.pipeline import SynthesisSettings, run
from napari_pathup.io.ome_zarr import lazy_rgb_levels, ome_zarr_pixel_size
from napari_pathup.models.load import load_model
from napari_pathup.widgets._roi import layer_reference
from napari_pathup.widgets.synthesize import SynthesizeWidget

SVS = Path(__file__).resolve().parents[2] / "data" / "demo" / "normal" / "cmu_small_region.svs"
MPP = 0.499
TIMEOUT_MS = 120_000
#: x, y, width, height of the RoI in slide pixels
ROI = (100, 2000, 640, 512)


def world_rectangle(x: int, y: int, w: int, h: int, mpp: float = MPP) -> np.ndarray:
    return np.array([[y, x], [y, x + w], [y + h, x + w], [y + h, x]], float) * mpp


@pytest.fixture
def slide_widget(make_napari_viewer, pathup_model_dir):
    viewer = make_napari_viewer()
    (slide,) = viewer.open(str(SVS), plugin="napari-pathup")
    widget = SynthesizeWidget(viewer)
    widget.model_dir.value = str(pathup_model_dir)
    widget.device.value = "cpu"
    widget.class_name.value = "normal"
    widget.out_width.value, widget.out_height.value = 192, 128
    widget.steps.value, widget.seed.value = 4, 3
    widget.reference.value = slide.name
    return widget, slide


def draw(viewer, rectangle, shape_type="rectangle"):
    return viewer.add_shapes([rectangle], shape_type=shape_type, name="RoI")


def test_a_rectangle_on_the_second_region_of_a_leica_scn_reads_that_regions_pixels(
    make_napari_viewer, tmp_path
):
    """Each scanned region of an SCN is a layer placed where it lies on the glass: a rectangle drawn on
    the second region (world µm) is read from that region's own pixels, at its own pixel grid."""
    second = rgb(320, 256, seed=2)
    more = [(second, (1_500_000, 700_000))]  # 500 µm right and 200 µm below the first region
    path = leica_scn(tmp_path / "two.scn", rgb(64, 160), rgb(256, 384, seed=1), more=more)
    viewer = make_napari_viewer()
    _, region2 = viewer.open(str(path), plugin="napari-pathup")
    assert tuple(region2.translate) == pytest.approx((200.0, 500.0))
    x, y, w, h = 40, 60, 128, 96  # the second region's pixels
    shapes = viewer.add_shapes(
        [np.add(world_rectangle(x, y, w, h, mpp=0.5), (200.0, 500.0))], shape_type="rectangle"
    )
    roi, placement = layer_reference(region2, shapes, level=0, min_size=1, model_mpp=None)
    np.testing.assert_array_equal(np.asarray(roi.image), second[y : y + h, x : x + w])
    assert placement.scale == pytest.approx((0.5, 0.5))


def test_a_rectangle_on_an_ndpi_opened_in_napari_reads_openslides_pixels(make_napari_viewer, tmp_path):
    """File > Open on a Hamamatsu NDPI offers napari-pathup's reader: the scan opens lazily in
    micrometres, and a rectangle drawn on it reads the pixels OpenSlide reads there."""
    import openslide

    from napari_pathup.io import read_image

    field = read_image(DEMO / "stroma" / "hgsc_stroma.jpg")[:512, :768]
    path = hamamatsu_ndpi(tmp_path / "slide.ndpi", field, field[::8, ::8], mpp=0.25)
    viewer = make_napari_viewer()
    (slide,) = viewer.open(str(path), plugin="napari-pathup")
    assert tuple(slide.scale) == pytest.approx((0.25, 0.25)) and slide.multiscale
    assert not isinstance(slide.data[0], np.ndarray)
    x, y, w, h = 200, 100, 320, 256
    shapes = viewer.add_shapes([world_rectangle(x, y, w, h, mpp=0.25)], shape_type="rectangle")
    roi, placement = layer_reference(slide, shapes, level=0, min_size=1, model_mpp=None)
    with openslide.OpenSlide(str(path)) as reference:
        theirs = np.asarray(reference.read_region((x, y), 0, (w, h)).convert("RGB"))
    np.testing.assert_array_equal(np.asarray(roi.image), theirs)
    assert placement.scale == pytest.approx((0.25, 0.25))


def test_the_svs_opens_lazily_in_micrometres(slide_widget):
    _, slide = slide_widget
    assert slide.rgb and tuple(slide.scale) == pytest.approx((MPP, MPP))
    assert str(slide.units[-1]) == "micrometer"
    assert not isinstance(slide.data, np.ndarray)  # lazy (dask over tifffile's zarr store)


def test_a_rectangle_on_the_slide_is_the_reference_and_the_output_sits_beside_it(
    slide_widget, pathup_model_dir, qtbot, tmp_path
):
    widget, slide = slide_widget
    draw(widget.viewer, world_rectangle(*ROI))
    widget.region.value = "RoI"
    out = tmp_path / "synthetic.ome.zarr"
    widget.output.value = str(out)
    worker = widget.start()
    assert worker is not None
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)
    layer = widget.layer

    x, y, w, h = ROI
    roi_pixels = tifffile.imread(SVS)[y : y + h, x : x + w]
    expected = run(
        load_model(pathup_model_dir).to("cpu", select_dtype("auto")),  # the widget's default
        roi_pixels,
        SynthesisSettings("normal", height=128, width=192, steps=4, seed=3),
    ).image
    np.testing.assert_array_equal(np.asarray(layer.data), expected)
    meta = layer.metadata["pathup"]
    assert meta["status"] == "finished"
    assert meta["reference_region"] == {"x": x, "y": y, "width": w, "height": h, "level": 0}
    # same physical pixel size as the slide, right of the RoI, top-aligned with it (world = µm)
    assert tuple(layer.scale) == pytest.approx(tuple(slide.scale))
    assert layer.translate[0] == pytest.approx(y * MPP)
    assert layer.translate[1] > (x + w) * MPP
    # the store on disk is a complete OME-Zarr in micrometres, copied to "save to"
    assert ome_zarr_pixel_size(out) == pytest.approx(MPP)
    np.testing.assert_array_equal(np.asarray(lazy_rgb_levels(out)[0]), expected)
    assert meta["saved"] == str(out.resolve())
    # File > Save of the zarr-backed layer: the same image and pixel size, written chunk by chunk
    saved = tmp_path / "saved.ome.zarr"
    widget.viewer.layers.selection = {layer}
    widget.viewer.layers.save(str(saved), selected=True, plugin="napari-pathup")
    np.testing.assert_array_equal(np.asarray(lazy_rgb_levels(saved)[0]), expected)
    assert ome_zarr_pixel_size(saved) == pytest.approx(MPP)


def test_an_outpainted_run_keeps_the_roi_1_to_1_in_the_output(slide_widget, pathup_model_dir, qtbot):
    """reference fit "outpaint": an RoI smaller than the output sits 1:1 in its centre, drawn around."""
    widget, slide = slide_widget
    x, y, w, h = 100, 2000, 128, 128  # smaller than the 192x128 output
    draw(widget.viewer, world_rectangle(x, y, w, h))
    widget.region.value = "RoI"
    widget.reference_fit.value = "outpaint"
    assert widget.start() is not None
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)
    layer = widget.layer
    roi_pixels = tifffile.imread(SVS)[y : y + h, x : x + w]
    settings = SynthesisSettings("normal", height=128, width=192, steps=4, seed=3, reference_fit="outpaint")
    expected = run(load_model(pathup_model_dir).to("cpu", select_dtype("auto")), roi_pixels, settings).image
    np.testing.assert_array_equal(np.asarray(layer.data), expected)
    assert layer.metadata["pathup"]["settings"]["reference_fit"] == "outpaint"
    assert tuple(layer.scale) == pytest.approx(tuple(slide.scale))  # 1:1: the slide's pixel size


@pytest.mark.parametrize(
    ("rectangle", "shape_type", "message"),
    [
        (world_rectangle(2000, 0, 512, 512), "rectangle", "not inside the image"),
        (world_rectangle(0, 0, 100, 512), "rectangle", "smaller than the model's native patch of 128x128"),
        (world_rectangle(0, 0, 512, 512), "ellipse", "the reference RoI must be a rectangle"),
        (
            np.array([[0, 300], [300, 600], [600, 300], [300, 0]], float) * MPP,
            "rectangle",
            "rotated relative to",
        ),
    ],
)
def test_bad_rectangles_are_refused_and_nothing_is_added(
    slide_widget, monkeypatch, rectangle, shape_type, message
):
    widget, _ = slide_widget
    errors = []
    monkeypatch.setattr(synth_module, "show_error", errors.append)
    draw(widget.viewer, rectangle, shape_type)
    widget.region.value = "RoI"
    layers = len(widget.viewer.layers)
    assert widget.start() is None
    assert len(widget.viewer.layers) == layers
    assert any(message in text for text in errors), errors


def test_cancel_leaves_nothing_under_the_final_name(slide_widget, qtbot, tmp_path):
    widget, _ = slide_widget
    draw(widget.viewer, world_rectangle(*ROI))
    widget.region.value = "RoI"
    widget.out_width.value = widget.out_height.value = 512
    widget.steps.value = 30
    out = tmp_path / "never.ome.zarr"
    widget.output.value = str(out)
    worker = widget.start()
    worker.yielded.connect(lambda event: widget.cancel() if widget.cancel_button.enabled else None)
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)
    assert widget.layer.metadata["pathup"]["status"] == "cancelled"
    assert list(tmp_path.iterdir()) == []


def test_fields_show_the_models_defaults_and_only_changes_are_sent(slide_widget):
    widget, _ = slide_widget
    widget.reset_to_model_defaults()
    resolved = SynthesisSettings("normal", height=128, width=192).resolve(widget.model())
    assert widget.guidance.value == resolved.guidance and widget.patch.value == resolved.patch_size
    assert widget.settings().guidance is None  # not changed: the model decides
    widget.guidance.value = 0.0  # a real value now, not "unset"
    assert widget.settings().guidance == 0.0
    widget.out_width.value = 512  # the default patch follows the size; the changed guidance stays
    assert (
        widget.patch.value
        == SynthesisSettings("normal", height=128, width=512).resolve(widget.model()).patch_size
    )
    widget.reset_to_model_defaults()
    assert widget.guidance.value == resolved.guidance and widget.settings().guidance is None
    # the rest of what the engine accepts: sampler, stage-1 size, reference fit, batch, gaussian sigma
    assert widget.scheduler.value == "" and "DDIMScheduler" in widget.scheduler.tooltip
    assert widget.reference_fit.value == resolved.reference_fit == "stretch"
    widget.scheduler.value, widget.reference_size.value, widget.batch_size.value = "euler", 256, 3
    widget.reference_fit.value = "outpaint"
    chosen = widget.settings()
    assert (
        chosen.scheduler,
        chosen.reference_size,
        chosen.reference_fit,
        chosen.batch_size,
        chosen.sigma,
    ) == (
        "euler",
        256,
        "outpaint",
        3,
        0.3,
    )


def test_a_slide_opened_by_napari_wsi_works_as_the_reference(
    make_napari_viewer, pathup_model_dir, qtbot, monkeypatch
):
    pytest.importorskip("napari_wsi")
    pytest.importorskip("openslide")
    viewer = make_napari_viewer()
    (slide,) = viewer.open(str(SVS), plugin="napari-wsi")
    widget = SynthesizeWidget(viewer)
    widget.model_dir.value = str(pathup_model_dir)
    widget.device.value, widget.class_name.value = "cpu", "normal"
    widget.out_width.value, widget.out_height.value = 192, 128
    widget.steps.value = 4
    widget.reference.value = slide.name
    # napari-wsi shows the slide in pixels (scale 1): the rectangle is drawn in those
    draw(viewer, world_rectangle(*ROI, mpp=1.0))
    widget.region.value = "RoI"
    errors = []
    monkeypatch.setattr(base_module, "show_error", errors.append)
    assert widget.start() is not None
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)
    assert not errors
    layer = widget.layer
    assert layer.metadata["pathup"]["status"] == "finished"
    assert layer.metadata["pathup"]["pixel_size_um"] == pytest.approx(MPP, rel=1e-3)  # openslide's mpp
    assert tuple(layer.scale) == pytest.approx(tuple(slide.scale))
    assert layer.translate[1] > ROI[0] + ROI[2]
