"""npe2 reader and writer: lossless OME-Zarr round trip, in a real napari viewer."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import leica_scn, rgb
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


def test_a_layer_saved_as_ome_tiff_reopens_at_its_pixel_size_with_its_metadata(make_napari_viewer, tmp_path):
    """File > Save Selected Layers... as .ome.tif: a valid OME-TIFF (for QuPath and other OME readers) that
    the plugin's slide reader opens at the layer's µm/px, with its PathUp metadata; a non-RGB layer is
    refused without writing."""
    ome_types = pytest.importorskip("ome_types")
    from napari_pathup._writer import write_ome_tiff_layer
    from napari_pathup.io import read_attrs

    viewer = make_napari_viewer()
    image = rgb(300, 400, seed=4)
    viewer.add_image(
        image,
        rgb=True,
        name="synthetic",
        scale=(0.5, 0.5),
        units=("micrometer", "micrometer"),
        metadata={"pathup": {"seed": 4}},
    )
    path = str(tmp_path / "saved.ome.tif")
    viewer.layers.save(path, selected=False, plugin="napari-pathup")
    assert ome_types.from_tiff(path, validate=True).images[0].pixels.physical_size_x == 0.5
    np.testing.assert_array_equal(read_image(path), image)
    assert read_attrs(path) == {"seed": 4}
    (opened,) = viewer.open(path, plugin="napari-pathup")
    assert tuple(opened.scale) == pytest.approx((0.5, 0.5)) and opened.metadata["pixel_size_um"] == 0.5
    target = tmp_path / "labels.ome.tif"
    with pytest.raises(InputError, match=r"the OME-TIFF writer saves RGB uint8 images of shape \(H, W, 3\)"):
        write_ome_tiff_layer(str(target), np.zeros((32, 32), np.uint16), {"name": "labels"})
    assert not target.exists()


def test_slide_reader_opens_svs_and_pyramidal_tiff_lazily_with_their_pixel_size(tmp_path):
    from pathlib import Path

    import tifffile

    from napari_pathup._reader import get_slide_reader

    svs = Path(__file__).resolve().parents[2] / "data" / "demo" / "normal" / "cmu_small_region.svs"
    ((data, meta, kind),) = get_slide_reader(str(svs))(str(svs))
    assert kind == "image" and meta["rgb"] and meta["scale"] == pytest.approx((0.499, 0.499))
    assert meta["units"] == ("micrometer", "micrometer") and not isinstance(data, np.ndarray)

    image = rgb(256, 384)
    path = tmp_path / "pyramid.ome.tif"
    with tifffile.TiffWriter(path) as tif:
        md = {"axes": "YXS", "PhysicalSizeX": 0.25, "PhysicalSizeY": 0.25}
        tif.write(image, subifds=1, tile=(64, 64), photometric="rgb", metadata=md)
        tif.write(image[::2, ::2], subfiletype=1, tile=(64, 64), photometric="rgb")
    ((levels, meta, _),) = get_slide_reader(str(path))(str(path))
    assert meta["multiscale"] and [lv.shape for lv in levels] == [(256, 384, 3), (128, 192, 3)]
    assert meta["scale"] == pytest.approx((0.25, 0.25))
    # a RoI saved by Fiji: the resolution is per the description's unit (micron)
    fiji = tmp_path / "roi_fiji.tif"
    tifffile.imwrite(
        fiji, image, imagej=True, resolution=(2.0, 2.0), metadata={"unit": "micron", "axes": "YXS"}
    )
    ((_, meta, _),) = get_slide_reader(str(fiji))(str(fiji))
    assert meta["scale"] == pytest.approx((0.5, 0.5)) and meta["units"] == ("micrometer", "micrometer")
    # a Leica SCN: its main scan (not the macro image tifffile lists first), at its pixel size
    scn = leica_scn(tmp_path / "slide.scn", rgb(64, 160), rgb(256, 384, seed=1))
    ((levels, meta, _),) = get_slide_reader(str(scn))(str(scn))
    assert [lv.shape for lv in levels] == [(256, 384, 3), (64, 96, 3)]
    assert meta["scale"] == pytest.approx((0.5, 0.5)) and "translate" not in meta
    # scanned in two regions: a layer each, placed where it lies on the glass (µm)
    more = [(rgb(128, 192, seed=2), (1_500_000, 700_000))]
    two = leica_scn(tmp_path / "two.scn", rgb(64, 160), rgb(256, 384, seed=1), more=more)
    layers = get_slide_reader(str(two))(str(two))
    assert [meta["name"] for _, meta, _ in layers] == ["two.scn [region 1]", "two.scn [region 2]"]
    assert "translate" not in layers[0][1] and layers[1][1]["translate"] == pytest.approx((200.0, 500.0))
    # not an 8-bit RGB slide: left to other readers
    tifffile.imwrite(tmp_path / "mask.tif", np.zeros((3, 32, 32), np.uint16))
    assert get_slide_reader(str(tmp_path / "mask.tif")) is None


def test_a_layers_micrometre_scale_survives_save_and_open(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    image = rgb(300, 400, seed=4)
    viewer.add_image(image, rgb=True, name="s", scale=(0.5, 0.5), units=("micrometer", "micrometer"))
    path = str(tmp_path / "scaled.ome.zarr")
    viewer.layers.save(path, selected=False, plugin="napari-pathup")
    (opened,) = viewer.open(path, plugin="napari-pathup")
    assert tuple(opened.scale) == pytest.approx((0.5, 0.5)) and str(opened.units[-1]) == "micrometer"
    assert opened.metadata["pixel_size_um"] == pytest.approx(0.5)


def test_napari_ome_zarr_reads_our_micrometre_scale(make_napari_viewer, tmp_path):
    pytest.importorskip("napari_ome_zarr")
    from napari_pathup.io import write_ome_zarr

    path = write_ome_zarr(tmp_path / "um.ome.zarr", rgb(600, 520), pixel_size=0.5)
    viewer = make_napari_viewer()
    layers = viewer.open(str(path), plugin="napari-ome-zarr")
    assert layers
    for layer in layers:  # napari-ome-zarr may split the channels into one layer each
        assert tuple(layer.scale[-2:]) == pytest.approx((0.5, 0.5))
