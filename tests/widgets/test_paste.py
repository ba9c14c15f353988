"""Nearest-neighbour pasting of previews and tiles into the full-size layer array."""

from __future__ import annotations

import numpy as np
import pytest

from napari_pathup.widgets._paste import paste_scaled


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
    ],
)
def test_paste_matches_nearest_neighbour(target_shape, source_shape, box):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (box[2] - box[0], box[3] - box[1], 3), dtype=np.uint8)
    got = np.zeros((*target_shape, 3), np.uint8)
    expected = got.copy()
    rows, cols = paste_scaled(got, rgb, box, source_shape)
    reference_paste(expected, rgb, box, source_shape)
    np.testing.assert_array_equal(got, expected)
    assert got[rows, cols].shape[:2] == (rows.stop - rows.start, cols.stop - cols.start)
    outside = np.ones(target_shape, bool)
    outside[rows, cols] = False
    assert not got[outside].any()
