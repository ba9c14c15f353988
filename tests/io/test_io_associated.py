"""A slide's associated images (label, macro, thumbnail): listed from the headers and read exactly as
OpenSlide reads them, on the real CMU-1 SVS crop and on NDPI and SCN files that OpenSlide opens."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from helpers import hamamatsu_ndpi, leica_scn, pyramidal_ome_tiff, rgb
from napari_pathup.errors import ImageTooLargeError, InputError
from napari_pathup.io.associated import AssociatedImage, associated_images, read_associated_image

SVS = Path(__file__).resolve().parents[2] / "data" / "demo" / "normal" / "cmu_small_region.svs"


def _openslide_associated(path: Path) -> dict[str, np.ndarray]:
    openslide = pytest.importorskip("openslide")
    with openslide.OpenSlide(str(path)) as reference:
        return {name: np.asarray(image.convert("RGB")) for name, image in reference.associated_images.items()}


def test_an_svs_label_macro_and_thumbnail_are_openslides_to_the_pixel():
    expected = _openslide_associated(SVS)
    assert sorted(expected) == ["label", "macro", "thumbnail"]
    listed = associated_images(SVS)
    assert listed == [
        AssociatedImage(name, image.shape[1], image.shape[0]) for name, image in sorted(expected.items())
    ]
    for name, image in expected.items():
        np.testing.assert_array_equal(read_associated_image(SVS, name), image, err_msg=name)


@pytest.mark.parametrize("kind", ["ndpi", "scn", "scn-unnamed"])
def test_the_macro_image_of_an_ndpi_or_scn_is_openslides(tmp_path, kind):
    macro = rgb(64, 160, seed=1)
    if kind == "ndpi":
        path = hamamatsu_ndpi(tmp_path / "slide.ndpi", rgb(256, 384), macro)
    else:  # the SCN's macro is found by its view spanning the collection, not by its (optional) name
        path = leica_scn(tmp_path / "slide.scn", macro, rgb(256, 384), names=kind == "scn")
    expected = _openslide_associated(path)
    assert list(expected) == ["macro"]
    assert associated_images(path) == [AssociatedImage("macro", 160, 64)]
    np.testing.assert_array_equal(read_associated_image(path, "macro"), expected["macro"])


def test_a_file_without_associated_images_lists_none_and_refuses_a_read_by_name(tmp_path):
    slide = pyramidal_ome_tiff(tmp_path / "slide.ome.tif", rgb(128, 128))
    png = tmp_path / "image.png"
    from PIL import Image

    Image.fromarray(rgb(32, 32)).save(png)
    for path in (slide, png):
        assert associated_images(path) == []
        refused = f"{path.name}: the slide has no label image; it holds no associated images"
        with pytest.raises(InputError, match=re.escape(refused)):
            read_associated_image(path, "label")


def test_a_missing_image_names_what_the_slide_has_and_a_bad_name_what_is_expected(tmp_path):
    path = hamamatsu_ndpi(tmp_path / "slide.ndpi", rgb(256, 384), rgb(64, 160))
    missing = "slide.ndpi: the slide has no label image; its associated images: macro"
    with pytest.raises(InputError, match=re.escape(missing)):
        read_associated_image(path, "label")
    bad = "'Label' is not an associated image's name; expected one of label, macro, thumbnail"
    with pytest.raises(InputError, match=re.escape(bad)):
        read_associated_image(SVS, "Label")
    with pytest.raises(InputError, match=re.escape("nothing.svs: no such file; expected a slide")):
        associated_images(tmp_path / "nothing.svs")


def test_an_associated_image_over_the_pixel_limit_is_refused_from_its_header():
    with pytest.raises(ImageTooLargeError, match="declares 1280x431 = 551,680 pixels"):
        read_associated_image(SVS, "macro", max_pixels=500_000)
    assert read_associated_image(SVS, "label", max_pixels=500_000).shape == (463, 387, 3)


def test_a_damaged_slide_is_an_input_error_naming_it(tmp_path):
    broken = tmp_path / "broken.svs"
    broken.write_bytes(SVS.read_bytes()[:4096])
    with pytest.raises(InputError, match=re.escape("broken.svs: the TIFF holds no readable image")):
        associated_images(broken)
