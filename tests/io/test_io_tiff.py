"""Pyramidal TIFF output: tiled, deflate-compressed, RGB, SubIFD levels, streamed from array-like input."""

import json

import dask.array as da
import numpy as np
import pytest
import tifffile
import zarr

from helpers import Recording, mean_2x2_reference, rgb
from napari_pathup.errors import InputError, OutputExistsError
from napari_pathup.io import read_attrs, read_image
from napari_pathup.io.tiff import write_tiff


@pytest.mark.parametrize(("height", "width"), [(300, 517), (1100, 700)])
def test_round_trip_is_lossless(tmp_path, height, width):
    image = rgb(height, width)
    out = write_tiff(tmp_path / "a.tif", image)
    assert out == (tmp_path / "a.tif").resolve()
    np.testing.assert_array_equal(read_image(out), image)
    np.testing.assert_array_equal(tifffile.imread(out), image)  # plain tifffile agrees
    assert [p.name for p in tmp_path.iterdir()] == ["a.tif"]


def test_layout_tiled_deflate_rgb_with_subifd_levels(tmp_path):
    image = rgb(1100, 700)
    write_tiff(tmp_path / "a.tiff", image, min_level_size=128)
    with tifffile.TiffFile(tmp_path / "a.tiff") as tif:
        assert len(tif.pages) == 1  # sub-resolutions are SubIFDs, not extra pages
        page = tif.pages.first
        assert (page.tilelength, page.tilewidth) == (256, 256)
        assert page.compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        assert page.photometric == tifffile.PHOTOMETRIC.RGB
        assert len(page.subifds) == 2
        levels = tif.series[0].levels
        assert [level.shape for level in levels] == [(1100, 700, 3), (550, 350, 3), (275, 175, 3)]
    level1 = mean_2x2_reference(image)
    np.testing.assert_array_equal(read_image(tmp_path / "a.tiff", level=1), level1)
    np.testing.assert_array_equal(read_image(tmp_path / "a.tiff", level=2), mean_2x2_reference(level1))
    with pytest.raises(InputError, match="level 3 does not exist"):
        read_image(tmp_path / "a.tiff", level=3)


def test_attrs_are_json_in_the_image_description(tmp_path):
    attrs = {"seed": np.int64(3), "classes": ["tumour"], "scale": 0.5}
    write_tiff(tmp_path / "a.tif", rgb(40, 30), attrs=attrs)
    with tifffile.TiffFile(tmp_path / "a.tif") as tif:
        description = json.loads(tif.pages.first.description)
    assert description == {"pathup": {"seed": 3, "classes": ["tumour"], "scale": 0.5}}
    assert read_attrs(tmp_path / "a.tif") == {"seed": 3, "classes": ["tumour"], "scale": 0.5}


def test_the_pixel_size_is_every_levels_resolution_as_tifffile_and_openslide_read_it(tmp_path):
    openslide = pytest.importorskip("openslide")
    from napari_pathup.io.slide import open_slide

    out = write_tiff(tmp_path / "a.tif", rgb(1100, 700), min_level_size=128, pixel_size=0.499)
    with tifffile.TiffFile(out) as tif:
        pages = [tif.pages.first, *tif.series[0].levels[1:]]
        per_cm = [page.keyframe.tags["XResolution"].value for page in pages]
        units = {page.keyframe.tags["ResolutionUnit"].value for page in pages}
    assert units == {tifffile.RESUNIT.CENTIMETER}
    assert [1e4 * d / n for n, d in per_cm] == pytest.approx([0.499, 0.998, 1.996])  # µm/px, 2x a level
    slide = open_slide(out)
    assert slide.mpp == pytest.approx(0.499) and slide.level_mpp(2) == pytest.approx(1.996)
    with openslide.OpenSlide(str(out)) as reference:
        assert float(reference.properties["openslide.mpp-x"]) == pytest.approx(0.499)
        assert float(reference.properties["openslide.mpp-y"]) == pytest.approx(0.499)
    # without one, no resolution is claimed
    plain = write_tiff(tmp_path / "b.tif", rgb(64, 64))
    assert open_slide(plain).mpp is None


def test_an_ome_tiff_is_valid_ome_xml_with_its_pixel_size_and_our_attributes(tmp_path):
    """``.ome.tif``: a pyramidal OME-TIFF (SubIFD levels) that the OME schema accepts, whose OME-XML holds
    the pixel size and our attributes; read back by our readers as any other output."""
    ome_types = pytest.importorskip("ome_types")
    from napari_pathup.io import write_image
    from napari_pathup.io.slide import open_slide

    image = rgb(700, 600)
    attrs = {"seed": 3, "note": "<&> survive XML"}
    out = write_image(tmp_path / "a.ome.tif", image, attrs=attrs, pixel_size=0.25)
    ome = ome_types.from_tiff(out, validate=True)  # raises on OME-XML the schema refuses
    (image_meta,) = ome.images
    pixels = image_meta.pixels
    assert (pixels.size_x, pixels.size_y, pixels.size_c) == (600, 700, 3)
    assert (pixels.physical_size_x, pixels.physical_size_y) == (0.25, 0.25)
    assert pixels.physical_size_x_unit.value == "µm"
    (comment,) = ome.structured_annotations.comment_annotations
    assert comment.namespace == "napari-pathup" and json.loads(comment.value) == {"pathup": attrs}
    with tifffile.TiffFile(out) as tif:
        assert tif.is_ome and len(tif.pages) == 1  # levels as SubIFDs, as OME-TIFF pyramids are
        assert [level.shape for level in tif.series[0].levels] == [(700, 600, 3), (350, 300, 3)]
    np.testing.assert_array_equal(read_image(out), image)
    assert read_attrs(out) == attrs and open_slide(out).mpp == pytest.approx(0.25)
    # without a pixel size the OME-XML claims none
    plain = write_image(tmp_path / "b.ome.tiff", rgb(64, 64))
    assert ome_types.from_tiff(plain, validate=True).images[0].pixels.physical_size_x is None
    assert open_slide(plain).mpp is None and read_attrs(plain) == {}


@pytest.mark.parametrize("bad", [0.0, -0.5, float("nan"), float("inf")])
def test_a_pixel_size_that_is_not_a_length_is_refused_and_leaves_nothing(tmp_path, bad):
    with pytest.raises(InputError, match="pixel size must be a positive number of µm/px"):
        write_tiff(tmp_path / "a.tif", rgb(64, 64), pixel_size=bad)
    assert list(tmp_path.iterdir()) == []


def test_zarr_and_dask_input_are_streamed(tmp_path):
    image = rgb(1100, 700)
    expected_level1 = mean_2x2_reference(image)

    source = zarr.create_array(tmp_path / "src.zarr", shape=image.shape, chunks=(512, 512, 3), dtype=np.uint8)
    source[:] = image
    write_tiff(tmp_path / "z.tif", source)
    np.testing.assert_array_equal(read_image(tmp_path / "z.tif"), image)
    np.testing.assert_array_equal(read_image(tmp_path / "z.tif", 1), expected_level1)

    write_tiff(tmp_path / "d.tif", da.from_array(image, chunks=(300, 200, 3)))
    np.testing.assert_array_equal(read_image(tmp_path / "d.tif"), image)
    np.testing.assert_array_equal(read_image(tmp_path / "d.tif", 1), expected_level1)

    recording = Recording(image)
    write_tiff(tmp_path / "r.tif", recording)
    assert recording.largest <= 256 * 700 * 3  # one strip of tiles at most
    assert recording.total <= 2 * image.size  # level 0 once, the smaller levels from one more pass
    np.testing.assert_array_equal(read_image(tmp_path / "r.tif", 1), expected_level1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.tif", "r.tif", "src.zarr", "z.tif"]


@pytest.mark.parametrize("bad", [np.zeros((10, 10), np.uint8), np.zeros((10, 10, 3), np.uint16), [[1, 2]]])
def test_wrong_input_is_refused_and_leaves_nothing(tmp_path, bad):
    with pytest.raises(InputError, match=r"a\.tif: expected an \(H, W, 3\) uint8 RGB array"):
        write_tiff(tmp_path / "a.tif", bad)
    assert list(tmp_path.iterdir()) == []


# 15 chunk reads build the smaller levels, then level 0 is read in 5 strips: fail in either phase.
@pytest.mark.parametrize("fail_after", [3, 17])
def test_a_failing_source_leaves_nothing(tmp_path, fail_after):
    with pytest.raises(RuntimeError, match="source failed"):
        write_tiff(tmp_path / "a.tif", Recording(rgb(1100, 700), fail_after=fail_after))
    assert list(tmp_path.iterdir()) == []


def test_existing_output_needs_overwrite(tmp_path):
    first, second = rgb(60, 50, seed=1), rgb(70, 40, seed=2)
    write_tiff(tmp_path / "a.tif", first)
    with pytest.raises(OutputExistsError, match="--overwrite"):
        write_tiff(tmp_path / "a.tif", second)
    np.testing.assert_array_equal(read_image(tmp_path / "a.tif"), first)
    write_tiff(tmp_path / "a.tif", second, overwrite=True)
    np.testing.assert_array_equal(read_image(tmp_path / "a.tif"), second)
    assert [p.name for p in tmp_path.iterdir()] == ["a.tif"]
