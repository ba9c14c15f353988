"""npe2 reader and writer: lossless OME-Zarr round trip, in a real napari viewer."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import rgb
from napari_pathup._reader import get_reader, read_ome_zarr_layer
from napari_pathup._writer import write_ome_zarr_layer
from napari_pathup.errors import InputError
from napari_pathup.io import read_image, write_image


def test_writer_then_reader_is_lossless_and_keeps_the_settings(tmp_path):
    image = rgb(600, 520)
    meta = {"rgb": True, "name": "synthetic", "metadata": {"pathup": {"seed": 7, "settings": {"steps": 20}}}}
    (path,) = write_ome_zarr_layer(str(tmp_path / "s.ome.zarr"), image, meta)
    reader = get_reader(path)
    assert reader is not None
    ((data, layer_meta, kind),) = reader(path)
    assert kind == "image" and layer_meta["rgb"] and layer_meta["multiscale"]
    np.testing.assert_array_equal(np.asarray(data[0]), image)
    assert data[1].shape == (300, 260, 3)
    assert layer_meta["metadata"]["pathup"] == {"seed": 7, "settings": {"steps": 20}}


def test_reader_declines_what_it_cannot_read(tmp_path):
    png = tmp_path / "x.png"
    write_image(png, rgb(16, 16))
    assert get_reader(str(png)) is None
    not_an_image = tmp_path / "empty.ome.zarr"
    not_an_image.mkdir()
    assert get_reader(str(not_an_image)) is None
    assert get_reader([str(png), str(png)]) is None


def test_writer_rejects_non_rgb_layers_without_writing(tmp_path):
    target = tmp_path / "labels.ome.zarr"
    with pytest.raises(InputError, match=r"RGB uint8 images of shape \(H, W, 3\)"):
        write_ome_zarr_layer(str(target), np.zeros((32, 32), np.uint16), {"name": "labels"})
    assert list(tmp_path.iterdir()) == []


def test_round_trip_through_a_napari_viewer(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    image = rgb(300, 400, seed=3)
    layer = viewer.add_image(image, rgb=True, name="synthetic", metadata={"pathup": {"seed": 3}})
    path = str(tmp_path / "saved.ome.zarr")
    viewer.layers.save(path, selected=False, plugin="napari-pathup")
    np.testing.assert_array_equal(read_image(path), image)
    viewer.layers.remove(layer)
    (opened,) = viewer.open(path, plugin="napari-pathup")
    assert opened.rgb
    level0 = opened.data[0] if opened.multiscale else opened.data
    np.testing.assert_array_equal(np.asarray(level0), image)
    assert opened.metadata["pathup"] == {"seed": 3}
    ((data, _, _),) = read_ome_zarr_layer(path)
    assert np.asarray(data[0] if isinstance(data, list) else data).shape == (300, 400, 3)
