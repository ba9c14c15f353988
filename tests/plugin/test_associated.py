"""Layers > Metadata > the selected slide's label, macro and thumbnail: in a real viewer, from a slide the
plugin opened, with OpenSlide's pixels, placed beside the slide; a wrong selection is a warning."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from helpers import menu_command_ids, rgb
from napari_pathup._associated import pixel_edges

SVS = Path(__file__).resolve().parents[2] / "data" / "demo" / "normal" / "cmu_small_region.svs"


def test_the_selected_slides_associated_images_open_beside_it(make_napari_viewer):
    openslide = pytest.importorskip("openslide")
    from napari._app_model import get_app_model

    viewer = make_napari_viewer()
    (slide,) = viewer.open(str(SVS), plugin="napari-pathup")
    assert "napari-pathup.open_associated_images" in menu_command_ids("napari/layers/metadata")
    viewer.layers.selection.active = slide
    get_app_model().commands.execute_command("napari-pathup.open_associated_images").result()
    names = [layer.name for layer in viewer.layers]
    assert names == [slide.name] + [f"{slide.name} [{n}]" for n in ("label", "macro", "thumbnail")]
    with openslide.OpenSlide(str(SVS)) as reference:
        for layer in viewer.layers[1:]:
            name = layer.metadata["associated_image"]
            expected = np.asarray(reference.associated_images[name].convert("RGB"))
            np.testing.assert_array_equal(np.asarray(layer.data), expected, err_msg=name)
    # left to right beside the slide, none over it, each as tall as the slide (2967 px at 0.499 µm/px)
    top, _, bottom, right = pixel_edges(slide)
    assert (top, bottom) == pytest.approx((-0.499 / 2, 2967 * 0.499 - 0.499 / 2))  # pixel 0's centre at 0
    for layer in viewer.layers[1:]:
        y0, x0, y1, x1 = pixel_edges(layer)
        assert x0 > right and (y0, y1) == pytest.approx((top, bottom))
        right = x1


def test_a_layer_not_from_a_slide_file_is_a_warning_not_an_error(make_napari_viewer, tmp_path, monkeypatch):
    from PIL import Image

    from napari_pathup import _associated

    warnings: list[str] = []
    monkeypatch.setattr(_associated, "show_warning", warnings.append)
    viewer = make_napari_viewer()
    _associated.open_associated_images(viewer)  # nothing selected
    viewer.add_image(rgb(64, 64), rgb=True, name="in memory")
    _associated.open_associated_images(viewer)
    png = tmp_path / "field.png"
    Image.fromarray(rgb(64, 64)).save(png)
    viewer.open(str(png))  # napari's own reader: the file is known from the layer's source
    _associated.open_associated_images(viewer)
    assert warnings == [
        "select a slide layer (SVS, NDPI or SCN) to open its associated images",
        "in memory: not opened from a slide file, so it has no associated images",
        "field.png: the slide holds no associated images (label, macro, thumbnail)",
    ]
    assert [layer.name for layer in viewer.layers] == ["in memory", "field"]
