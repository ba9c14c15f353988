from itertools import pairwise

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_pathup.engine.grid import PatchGrid, default_patch_size
from napari_pathup.engine.weights import WEIGHT_MODES, BlendWeights, window_1d
from napari_pathup.geometry import jitter_range, window_starts


@st.composite
def grids(draw):
    height = draw(st.integers(1, 160))
    width = draw(st.integers(1, 160))
    patch = draw(st.integers(1, min(height, width)))
    overlap = draw(st.integers(0, patch - 1))
    return PatchGrid(height, width, patch, overlap)


def coverage(grid: PatchGrid, offset=(0, 0)) -> torch.Tensor:
    count = torch.zeros(grid.height, grid.width, dtype=torch.int32)
    for box in grid.boxes(offset):
        assert (box.height, box.width) == (grid.patch_size, grid.patch_size)
        assert box.y0 >= 0 and box.y1 <= grid.height and box.x0 >= 0 and box.x1 <= grid.width
        count[box.slices()] += 1
    return count


@settings(max_examples=120, deadline=None)
@given(grids(), st.data())
def test_boxes_cover_every_latent_pixel_and_snap_to_the_edges(grid, data):
    low, high = jitter_range(grid.patch_size, grid.overlap)
    offset = (data.draw(st.integers(low, high)), data.draw(st.integers(low, high)))
    for off in ((0, 0), offset):
        assert bool((coverage(grid, off) > 0).all())
        ys, xs = grid.starts(off)
        assert ys[0] == 0 and xs[0] == 0
        assert ys[-1] == grid.height - grid.patch_size and xs[-1] == grid.width - grid.patch_size
        assert ys == sorted(set(ys)) and xs == sorted(set(xs))
        # neighbours still blend over at least half the overlap, jitter or not
        min_overlap = grid.overlap - grid.overlap // 2
        for starts in (ys, xs):
            assert all(b - a <= grid.patch_size - min_overlap for a, b in pairwise(starts))


@settings(max_examples=60, deadline=None)
@given(grids(), st.sampled_from(WEIGHT_MODES), st.floats(0.05, 2.0))
def test_weights_sum_to_one_everywhere(grid, mode, sigma):
    ys, xs = grid.starts()
    window = window_1d(mode, grid.patch_size, grid.overlap, sigma)
    assert bool((window > 0).all())
    weights = BlendWeights.for_grid(ys, xs, grid.height, grid.width, window)
    total = torch.zeros(grid.height, grid.width, dtype=torch.float64)
    for box in grid.boxes():
        w = weights(box, torch.float64)
        assert bool((w > 0).all())
        total[box.slices()] += w
    torch.testing.assert_close(total, torch.ones_like(total), rtol=0, atol=1e-12)


def test_stride_follows_patch_and_overlap():
    assert window_starts(256, 64, 16) == [0, 48, 96, 144, 192]
    assert window_starts(100, 64, 16) == [0, 36]
    assert window_starts(64, 64, 16) == [0]
    # the public PathUp code: 64-latent patches at stride 16 on a 2048 px (256 latent) image
    assert len(PatchGrid(256, 256, 64, 48)) == 13 * 13


def test_non_square_latents():
    grid = PatchGrid(40, 100, 32, 8)
    ys, xs = grid.starts()
    assert ys == [0, 8] and xs == [0, 24, 48, 68]


@pytest.mark.parametrize(
    ("height", "width", "patch", "overlap", "message"),
    [
        (64, 64, 16, 16, "overlap"),
        (64, 64, 16, 20, "overlap"),
        (32, 64, 48, 8, "larger than the latent"),
        (64, 64, 0, 0, "patch_size must be positive"),
        (64, 64, -4, 0, "patch_size must be positive"),
        (64, 64, 16, -1, "overlap must be zero or positive"),
        (0, 64, 16, 4, "must be positive"),
    ],
)
def test_impossible_settings_raise_clear_errors(height, width, patch, overlap, message):
    with pytest.raises(ValueError, match=message):
        PatchGrid(height, width, patch, overlap)


def test_default_patch_adapts_to_small_outputs():
    assert default_patch_size(64, 256, 256) == 64
    assert default_patch_size(64, 32, 32) == 32  # a 256x256 output just works
    assert default_patch_size(64, 32, 100) == 32


def test_jitter_is_seeded():
    grid = PatchGrid(200, 200, 64, 16)
    a = [grid.random_offset(torch.Generator().manual_seed(3)) for _ in range(2)]
    assert a[0] == a[1]
    offsets = {grid.random_offset(g) for g in [torch.Generator().manual_seed(4)] for _ in range(20)}
    assert len(offsets) > 1


def test_unknown_weight_mode():
    with pytest.raises(ValueError, match="expected one of uniform, gaussian, cosine"):
        window_1d("triangle", 8, 2)
