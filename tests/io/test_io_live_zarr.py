"""The widget's live OME-Zarr output: previews scaled into small levels, tiles averaged down the pyramid,
the finished store equal to what the writer produces, and an export that never loads it."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import rgb
from napari_pathup.errors import OutputExistsError
from napari_pathup.geometry import Box
from napari_pathup.io.live_zarr import ChannelsLast, LiveOmeZarr, scaled_block
from napari_pathup.io.ome_zarr import (
    lazy_rgb_levels,
    ome_zarr_pixel_size,
    read_ome_zarr_attrs,
    write_ome_zarr,
)


def reference_paste(target, rgb, box, source_shape):
    """Each target pixel takes the source pixel under its top-left corner."""
    height, width = target.shape[:2]
    sh, sw = source_shape
    y0, x0, y1, x1 = box
    for ty in range(height):
        for tx in range(width):
            sy, sx = ty * sh // height, tx * sw // width
            if y0 <= sy < y1 and x0 <= sx < x1:
                target[ty, tx] = rgb[sy - y0, sx - x0]


@pytest.mark.parametrize(
    ("target_shape", "source_shape", "box"),
    [
        ((64, 96), (8, 12), (2, 3, 6, 9)),  # integer factor 8: the fast path
        ((64, 96), (64, 96), (10, 20, 30, 50)),  # factor 1
        ((50, 70), (8, 12), (2, 3, 6, 9)),  # fractional factors: the general path
        ((64, 96), (16, 32), (0, 0, 16, 32)),  # factors 4 and 3, the whole image
        ((16, 24), (64, 96), (8, 16, 40, 64)),  # a small pyramid level: shrunk
    ],
)
def test_scaled_block_matches_nearest_neighbour(target_shape, source_shape, box):
    rng = np.random.default_rng(0)
    block_rgb = rng.integers(0, 256, (box[2] - box[0], box[3] - box[1], 3), dtype=np.uint8)
    got = np.zeros((*target_shape, 3), np.uint8)
    expected = got.copy()
    rows, cols, block = scaled_block(block_rgb, Box(*box), source_shape, target_shape)
    got[rows, cols] = block
    reference_paste(expected, block_rgb, box, source_shape)
    np.testing.assert_array_equal(got, expected)
    outside = np.ones(target_shape, bool)
    outside[rows, cols] = False
    assert not got[outside].any()


def test_channels_last_view_reads_and_writes_like_an_hwc_array(tmp_path):
    live = LiveOmeZarr(tmp_path / "v.ome.zarr", 40, 60, min_level_size=64)
    view = live.sink
    assert isinstance(view, ChannelsLast) and view.shape == (40, 60, 3) and view.dtype == np.uint8
    image = rgb(40, 60, seed=5)
    view[5:25, 10:50] = image[5:25, 10:50]
    np.testing.assert_array_equal(view[5:25, 10:50], image[5:25, 10:50])
    np.testing.assert_array_equal(view[..., 1][5:25, 10:50], image[5:25, 10:50, 1])
    assert view[7, 11].tolist() == image[7, 11].tolist()
    assert not np.asarray(view)[:5].any()


def test_tiles_written_in_any_order_give_the_writers_pyramid(tmp_path):
    image = rgb(1100, 700, seed=1)
    live = LiveOmeZarr(tmp_path / "live.ome.zarr", 1100, 700, pixel_size=0.5)
    boxes = [
        (y, x, min(y + 300, 1100), min(x + 250, 700)) for y in range(0, 1100, 300) for x in range(0, 700, 250)
    ]
    for y0, x0, y1, x1 in reversed(boxes):
        live.sink[y0:y1, x0:x1] = image[y0:y1, x0:x1]
        live.update_pyramid(Box(y0, x0, y1, x1))
    live.set_attrs({"seed": 3})
    written = write_ome_zarr(tmp_path / "ref.ome.zarr", image, pixel_size=0.5)
    for ours, theirs in zip(lazy_rgb_levels(live.path), lazy_rgb_levels(written), strict=True):
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))
    assert ome_zarr_pixel_size(live.path) == 0.5 and read_ome_zarr_attrs(live.path) == {"seed": 3}


def test_previews_go_to_the_small_levels_only(tmp_path):
    live = LiveOmeZarr(tmp_path / "big.ome.zarr", 2048, 2048, preview_pixels=512 * 512)
    assert [s for s in live.shapes] == [(2048, 2048), (1024, 1024), (512, 512), (256, 256)]
    assert live.preview_levels == [2, 3]
    preview = np.full((32, 32, 3), 200, np.uint8)  # one latent patch, at 1/8 resolution
    assert live.paste_preview(preview, Box(0, 0, 32, 32), (256, 256)) == [2, 3]
    assert (
        np.asarray(live.views[2][:64, :64]).min() == 200 and np.asarray(live.views[3][:32, :32]).min() == 200
    )
    assert not np.asarray(live.views[0][:256, :256]).any()  # level 0 waits for the decoded tiles


def test_export_copies_the_store_atomically_and_never_replaces(tmp_path):
    image = rgb(300, 200)
    live = LiveOmeZarr(tmp_path / "work" / "live.ome.zarr", 300, 200, pixel_size=0.25)
    live.sink[:, :] = image
    out = live.export(tmp_path / "final.ome.zarr")
    np.testing.assert_array_equal(np.asarray(lazy_rgb_levels(out)[0]), image)
    with pytest.raises(OutputExistsError):
        live.export(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final.ome.zarr", "work"]
    live.remove()
    assert not live.path.exists()


def test_a_temporary_store_takes_its_folder_with_it():
    live = LiveOmeZarr.temporary(64, 64)
    folder = live.owned_folder
    assert folder is not None and live.path.parent == folder and live.path.is_dir()
    live.remove()
    assert not folder.exists()


def test_the_preview_levels_are_served_from_memory_and_equal_the_store_on_disk(tmp_path):
    image = rgb(1100, 700, seed=2)
    live = LiveOmeZarr(tmp_path / "live.ome.zarr", 1100, 700, min_level_size=128, preview_pixels=600 * 400)
    assert live.shapes == [(1100, 700), (550, 350), (275, 175)] and live.preview_levels == [1, 2]
    live.paste_preview(np.full((10, 10, 3), 90, np.uint8), Box(0, 0, 10, 10), (110, 70))
    for y0 in range(0, 1100, 300):  # then the decoded tiles, as the engine writes them
        box = Box(y0, 0, min(y0 + 300, 1100), 700)
        live.sink[box.y0 : box.y1, :] = image[box.y0 : box.y1]
        live.update_pyramid(box)
    data = live.layer_data()
    # what napari draws: level 0 from the store, the preview levels as arrays in memory
    assert isinstance(data[0], ChannelsLast) and all(isinstance(level, np.ndarray) for level in data[1:])
    on_disk = lazy_rgb_levels(live.path)
    for level, (shown, stored) in enumerate(zip(data, on_disk, strict=True)):
        np.testing.assert_array_equal(np.asarray(shown), np.asarray(stored), err_msg=f"level {level}")
    written = write_ome_zarr(tmp_path / "ref.ome.zarr", image, min_level_size=128)
    np.testing.assert_array_equal(data[2], np.asarray(lazy_rgb_levels(written)[2]))


def test_a_huge_output_keeps_only_its_small_levels_in_memory(tmp_path):
    live = LiveOmeZarr(tmp_path / "huge.ome.zarr", 16384, 16384)
    data = live.layer_data()
    assert [level.shape[0] for level in data if isinstance(level, np.ndarray)] == [2048, 1024, 512, 256]
    assert all(isinstance(level, ChannelsLast) for level in data[:3])  # 16384, 8192, 4096: on disk only
    assert sum(level.nbytes for level in live.memory.values()) < 17 * 2**20


def test_an_elongated_output_keeps_no_oversized_level_in_memory(tmp_path):
    live = LiveOmeZarr(tmp_path / "strip.ome.zarr", 300, 20000, preview_pixels=512 * 512)
    assert len(live.shapes) == 1 and live.preview_levels == [0]  # the one level still takes previews
    assert live.memory == {} and isinstance(live.layer_data(), ChannelsLast)
