"""write_image: the output format follows the extension; every format round-trips pixels and attrs."""

import tempfile
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from napari_pathup.errors import InputError, OutputExistsError
from napari_pathup.io import OUTPUT_FORMATS, image_shape, output_format, read_attrs, read_image, write_image

NAMES = ["out.ome.zarr", "out.tif", "out.tiff", "out.png"]


def rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("a.ome.zarr", "ome-zarr"),
        ("A.OME.ZARR", "ome-zarr"),
        ("dir/a.tif", "tiff"),
        ("a.TIFF", "tiff"),
        ("a.ome.tif", "ome-tiff"),
        ("A.OME.TIFF", "ome-tiff"),
        ("a.png", "png"),
    ],
)
def test_output_format(name, kind):
    assert output_format(name) == kind
    assert output_format(Path(name)) == kind


@pytest.mark.parametrize("name", ["a.jpg", "a.zarr", "a", "a.png.txt", ".png", "a.svs"])
def test_unsupported_output_extension(name):
    with pytest.raises(InputError, match="unsupported output extension") as info:
        output_format(name)
    assert name in str(info.value)
    assert "expected one of .ome.zarr, .ome.tif, .ome.tiff, .tif, .tiff, .png" in str(info.value)


def test_output_formats_table():
    assert set(OUTPUT_FORMATS) == {".ome.zarr", ".ome.tif", ".ome.tiff", ".tif", ".tiff", ".png"}
    assert set(OUTPUT_FORMATS.values()) == {"ome-zarr", "ome-tiff", "tiff", "png"}


@pytest.mark.parametrize("name", NAMES)
def test_round_trip_with_attrs(tmp_path, name):
    image = rgb(300, 517)
    attrs = {"model": "demo", "seed": np.int64(42), "classes": {"tumour": 0.5, "stroma": 0.5}, "note": "µm ✓"}
    out = write_image(tmp_path / name, image, attrs=attrs)
    assert out == (tmp_path / name).resolve()
    np.testing.assert_array_equal(read_image(out), image)
    assert image_shape(out) == (300, 517)
    assert read_attrs(out) == {**attrs, "seed": 42}
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_png_is_a_plain_rgb_png(tmp_path):
    write_image(tmp_path / "a.png", rgb(20, 30), attrs={"k": 1})
    with Image.open(tmp_path / "a.png") as im:
        assert (im.format, im.mode, im.size) == ("PNG", "RGB", (30, 20))
        assert im.text["pathup"] == '{"k": 1}'


@pytest.mark.parametrize("name", NAMES)
def test_dask_input(tmp_path, name):
    image = rgb(260, 300)
    write_image(tmp_path / name, da.from_array(image, chunks=(100, 100, 3)))
    np.testing.assert_array_equal(read_image(tmp_path / name), image)
    assert read_attrs(tmp_path / name) == {}


@pytest.mark.parametrize("name", NAMES)
def test_existing_output_is_kept_without_overwrite_and_replaced_with_it(tmp_path, name):
    first, second = rgb(40, 30, seed=1), rgb(30, 50, seed=2)
    write_image(tmp_path / name, first, attrs={"n": 1})
    with pytest.raises(OutputExistsError, match="--overwrite") as info:
        write_image(tmp_path / name, second, attrs={"n": 2})
    assert name in str(info.value)
    np.testing.assert_array_equal(read_image(tmp_path / name), first)
    write_image(tmp_path / name, second, attrs={"n": 2}, overwrite=True)
    np.testing.assert_array_equal(read_image(tmp_path / name), second)
    assert read_attrs(tmp_path / name) == {"n": 2}
    assert [p.name for p in tmp_path.iterdir()] == [name]


@pytest.mark.parametrize("name", NAMES)
def test_bad_input_leaves_nothing(tmp_path, name):
    with pytest.raises(InputError, match=r"expected an \(H, W, 3\) uint8 RGB array") as info:
        write_image(tmp_path / name, np.zeros((5, 5, 4), np.uint8))
    assert name in str(info.value)
    with pytest.raises(InputError, match="JSON"):
        write_image(tmp_path / name, rgb(5, 5), attrs={"bad": object()})
    assert list(tmp_path.iterdir()) == []


def test_missing_output_folder(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        write_image(tmp_path / "missing" / "a.png", rgb(5, 5))


@settings(max_examples=15, deadline=None)
@given(
    height=st.integers(1, 600),
    width=st.integers(1, 600),
    name=st.sampled_from(NAMES),
    seed=st.integers(0, 2**16),
)
def test_any_size_round_trips(height, width, name, seed):
    image = rgb(height, width, seed)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        write_image(path, image)
        np.testing.assert_array_equal(read_image(path), image)
