"""OME-Zarr output: lossless, pyramidal, NGFF 0.5 metadata other readers understand, written chunkwise."""

import json
import warnings
from itertools import pairwise
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import Recording, mean_2x2_reference, rgb
from napari_pathup.errors import InputError, OutputExistsError
from napari_pathup.io import (
    ome_zarr_level_shapes,
    read_image,
    read_ome_zarr,
    read_ome_zarr_attrs,
    write_ome_zarr,
)
from napari_pathup.io.arrays import pyramid_shapes


def ome_ngff_reader_nodes(path: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from ome_zarr.io import parse_url
        from ome_zarr.reader import Reader

    return list(Reader(parse_url(str(path)))())


@pytest.mark.parametrize(("height", "width", "chunk"), [(300, 517, 512), (1100, 700, 256)])
def test_round_trip_is_lossless(tmp_path, height, width, chunk):
    image = rgb(height, width)
    out = write_ome_zarr(tmp_path / "a.ome.zarr", image, chunk=chunk)
    assert out == (tmp_path / "a.ome.zarr").resolve()
    np.testing.assert_array_equal(read_ome_zarr(out), image)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.ome.zarr"]


def test_pyramid_levels_are_2x2_means(tmp_path):
    image = rgb(1100, 700)
    write_ome_zarr(tmp_path / "a.ome.zarr", image, chunk=256, min_level_size=128)
    assert ome_zarr_level_shapes(tmp_path / "a.ome.zarr") == [(1100, 700), (550, 350), (275, 175)]
    level1 = mean_2x2_reference(image)
    np.testing.assert_array_equal(read_ome_zarr(tmp_path / "a.ome.zarr", level=1), level1)
    np.testing.assert_array_equal(read_image(tmp_path / "a.ome.zarr", level=2), mean_2x2_reference(level1))
    with pytest.raises(InputError, match="level 3 does not exist"):
        read_ome_zarr(tmp_path / "a.ome.zarr", level=3)


def test_small_image_has_a_single_level(tmp_path):
    write_ome_zarr(tmp_path / "a.ome.zarr", rgb(300, 517))
    assert ome_zarr_level_shapes(tmp_path / "a.ome.zarr") == [(300, 517)]


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 5000), st.integers(1, 5000), st.sampled_from([1, 64, 256, 512]))
def test_pyramid_shapes_halve_until_the_smaller_side_would_be_too_small(height, width, min_size):
    shapes = pyramid_shapes(height, width, min_size)
    assert shapes[0] == (height, width)
    for (h0, w0), (h1, w1) in pairwise(shapes):
        assert (h1, w1) == (h0 // 2, w0 // 2) and min(h1, w1) >= min_size
    assert min(shapes[-1]) // 2 < min_size


def test_ngff_05_metadata(tmp_path):
    write_ome_zarr(tmp_path / "a.ome.zarr", rgb(600, 520), chunk=256)
    root = zarr.open_group(tmp_path / "a.ome.zarr", mode="r")
    assert root.metadata.zarr_format == 3
    ome = root.attrs["ome"]
    assert ome["version"] == "0.5"
    multiscale = ome["multiscales"][0]
    assert [axis["name"] for axis in multiscale["axes"]] == ["c", "y", "x"]
    assert multiscale["axes"][0]["type"] == "channel"
    scales = [d["coordinateTransformations"][0]["scale"] for d in multiscale["datasets"]]
    assert scales == [[1.0, 1.0, 1.0], [1.0, 2.0, 2.0]]
    channels = ome["omero"]["channels"]
    assert [(c["label"], c["color"]) for c in channels] == [
        ("red", "FF0000"),
        ("green", "00FF00"),
        ("blue", "0000FF"),
    ]
    assert all(c["window"]["start"] == 0 and c["window"]["end"] == 255 for c in channels)
    level0 = root[multiscale["datasets"][0]["path"]]
    assert level0.shape == (3, 600, 520) and level0.dtype == np.uint8
    assert level0.metadata.dimension_names == ("c", "y", "x")
    assert level0.chunks == (3, 256, 256)


def test_ome_zarr_py_reader_opens_it(tmp_path):
    image = rgb(600, 520)
    write_ome_zarr(tmp_path / "a.ome.zarr", image)
    nodes = ome_ngff_reader_nodes(tmp_path / "a.ome.zarr")
    assert any(type(spec).__name__ == "Multiscales" for spec in nodes[0].specs)
    data = nodes[0].data
    assert [level.shape for level in data] == [(3, 600, 520), (3, 300, 260)]
    np.testing.assert_array_equal(np.asarray(data[0]), np.moveaxis(image, -1, 0))
    assert nodes[0].metadata["channel_names"] == ["red", "green", "blue"]


def test_ome_zarr_models_validates_it(tmp_path):
    models = pytest.importorskip("ome_zarr_models.v05.image")
    write_ome_zarr(tmp_path / "a.ome.zarr", rgb(600, 520), attrs={"seed": 1})
    image = models.Image.from_zarr(zarr.open_group(tmp_path / "a.ome.zarr", mode="r"))
    assert [axis.name for axis in image.ome_attributes.multiscales[0].axes] == ["c", "y", "x"]


def test_attrs_round_trip_beside_the_ome_key(tmp_path):
    attrs = {
        "model": "pathup-demo",
        "seed": np.int64(7),
        "classes": ["tumour", "stroma"],
        "nested": {"a": 1.5},
    }
    write_ome_zarr(tmp_path / "a.ome.zarr", rgb(40, 30), attrs=attrs)
    expected = {"model": "pathup-demo", "seed": 7, "classes": ["tumour", "stroma"], "nested": {"a": 1.5}}
    assert read_ome_zarr_attrs(tmp_path / "a.ome.zarr") == expected
    raw = json.loads((tmp_path / "a.ome.zarr" / "zarr.json").read_text())
    assert raw["attributes"]["pathup"] == expected and "ome" in raw["attributes"]


def test_no_attrs_read_as_empty(tmp_path):
    write_ome_zarr(tmp_path / "a.ome.zarr", rgb(40, 30))
    assert read_ome_zarr_attrs(tmp_path / "a.ome.zarr") == {}


def test_zarr_input_is_read_chunkwise(tmp_path):
    image = rgb(1100, 700)
    source = zarr.create_array(tmp_path / "src.zarr", shape=image.shape, chunks=(256, 256, 3), dtype=np.uint8)
    source[:] = image
    write_ome_zarr(tmp_path / "a.ome.zarr", source, chunk=256, min_level_size=128)
    np.testing.assert_array_equal(read_ome_zarr(tmp_path / "a.ome.zarr"), image)
    np.testing.assert_array_equal(read_ome_zarr(tmp_path / "a.ome.zarr", 1), mean_2x2_reference(image))

    recording = Recording(image)
    write_ome_zarr(tmp_path / "b.ome.zarr", recording, chunk=256, min_level_size=128)
    assert recording.largest <= 256 * 256 * 3  # never more than one chunk at a time
    assert recording.total == image.size  # every pixel read once for all levels
    np.testing.assert_array_equal(
        read_ome_zarr(tmp_path / "b.ome.zarr", 2), read_ome_zarr(tmp_path / "a.ome.zarr", 2)
    )


def test_dask_input(tmp_path):
    image = rgb(700, 1100)
    write_ome_zarr(tmp_path / "a.ome.zarr", da.from_array(image, chunks=(300, 200, 3)), chunk=256)
    np.testing.assert_array_equal(read_ome_zarr(tmp_path / "a.ome.zarr"), image)
    np.testing.assert_array_equal(read_ome_zarr(tmp_path / "a.ome.zarr", 1), mean_2x2_reference(image))


@pytest.mark.parametrize(
    "bad", [np.zeros((10, 10), np.uint8), np.zeros((10, 10, 4), np.uint8), np.zeros((10, 10, 3), np.float32)]
)
def test_wrong_shape_or_dtype_is_refused_and_leaves_nothing(tmp_path, bad):
    with pytest.raises(InputError, match=r"expected an \(H, W, 3\) uint8 RGB array") as info:
        write_ome_zarr(tmp_path / "a.ome.zarr", bad)
    assert "a.ome.zarr" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_a_failing_source_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError, match="source failed"):
        write_ome_zarr(tmp_path / "a.ome.zarr", Recording(rgb(1100, 700), fail_after=5), chunk=256)
    assert list(tmp_path.iterdir()) == []


def test_existing_output_needs_overwrite(tmp_path):
    first, second = rgb(300, 300, seed=1), rgb(200, 260, seed=2)
    write_ome_zarr(tmp_path / "a.ome.zarr", first)
    with pytest.raises(OutputExistsError, match="--overwrite"):
        write_ome_zarr(tmp_path / "a.ome.zarr", second)
    np.testing.assert_array_equal(read_ome_zarr(tmp_path / "a.ome.zarr"), first)
    write_ome_zarr(tmp_path / "a.ome.zarr", second, overwrite=True)
    np.testing.assert_array_equal(read_ome_zarr(tmp_path / "a.ome.zarr"), second)
    assert [p.name for p in tmp_path.iterdir()] == ["a.ome.zarr"]


def test_reads_other_ngff_images(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from ome_zarr.format import FormatV04, FormatV05
        from ome_zarr.writer import write_multiscale
    image = rgb(64, 48)
    chw = np.moveaxis(image, -1, 0)

    v04 = zarr.open_group(tmp_path / "v04.ome.zarr", mode="w", zarr_format=2)
    write_multiscale([chw], v04, fmt=FormatV04(), axes=["c", "y", "x"])
    np.testing.assert_array_equal(read_image(tmp_path / "v04.ome.zarr"), image)

    v05 = zarr.open_group(tmp_path / "v05.ome.zarr", mode="w", zarr_format=3)
    write_multiscale([chw[None, :, None]], v05, fmt=FormatV05(), axes=["t", "c", "z", "y", "x"])
    np.testing.assert_array_equal(read_image(tmp_path / "v05.ome.zarr"), image)
    assert ome_zarr_level_shapes(tmp_path / "v05.ome.zarr") == [(64, 48)]
