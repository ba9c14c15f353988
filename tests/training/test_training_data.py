"""Training crops: the hold-out is never sampled, tissue filter, orientations, crop sampling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from napari_pathup.datasets import discover, tissue_mask
from napari_pathup.errors import InputError
from napari_pathup.geometry import Box
from napari_pathup.training.data import (
    NATIVE,
    OVERVIEW,
    CropSampler,
    build_sources,
    holdout_crops,
    load_images,
    orient,
    oriented_box,
)


def test_sampled_crops_never_overlap_the_holdout(tiny_dataset: Path) -> None:
    index = discover(tiny_dataset)
    data = build_sources(index, load_images(index), crop=32, reference_size=128)
    sampler = CropSampler(data, overview_fraction=0.5)
    rng = np.random.default_rng(0)
    holdouts = {e.key: e.holdout for e in index.images}
    scales = set()
    for _ in range(2000):
        crop = sampler.sample(rng, jitter=True)
        src = data.sources[crop.source]
        scales.add(crop.scale_index)
        hold = holdouts[src.image]
        if hold is None:
            continue
        assert not src.region.intersects(hold)
        if crop.scale_index == NATIVE:
            x, y = src.region.x0 + crop.x, src.region.y0 + crop.y
            assert not Box(y, x, y + 32, x + 32).intersects(hold)
            assert x + 32 <= src.region.x1 and y + 32 <= src.region.y1
    assert scales == {NATIVE, OVERVIEW}


def test_holdout_crops_come_from_the_holdout_only(tiny_dataset: Path) -> None:
    index = discover(tiny_dataset)
    arrays = load_images(index)
    crops = holdout_crops(index, arrays, 32, limit=100)
    hold = arrays[1][0:160, 112:160]
    assert crops and all(c.shape == (32, 32, 3) for c, _ in crops)
    tumour = index.classes.index("tumour")
    tumour_crops = [c for c, k in crops if k == tumour]
    assert len(tumour_crops) == 5  # a 48x160 strip holds five 32x32 tiles
    assert np.array_equal(tumour_crops[0], hold[0:32, 0:32])


def test_tissue_filter_rejects_white_crops(tmp_path: Path, kit) -> None:
    kit.write_png(tmp_path / "t" / "half.png", kit.he_like(128, 256, 0, white=(128, 0, 128, 128)))
    index = discover(tmp_path)
    data = build_sources(index, load_images(index), crop=64, min_tissue=0.5, reference_size=128)
    sampler = CropSampler(data, overview_fraction=0.0)
    rng = np.random.default_rng(1)
    for _ in range(300):
        pixels = sampler.pixels(sampler.sample(rng))
        assert tissue_mask(pixels).mean() >= 0.5


def test_a_class_without_tissue_is_an_error(tmp_path: Path, kit) -> None:
    kit.write_png(tmp_path / "tissue" / "a.png", kit.he_like(96, 96, 0))
    kit.write_png(tmp_path / "glass" / "b.png", np.full((96, 96, 3), 240, np.uint8))
    index = discover(tmp_path)
    with pytest.raises(InputError, match="glass"):
        build_sources(index, load_images(index), crop=64)


@pytest.mark.parametrize("orientation", range(8))
def test_oriented_boxes_follow_the_arrays(orientation: int) -> None:
    a = np.arange(9 * 13).reshape(9, 13)
    b = orient(a, orientation)
    t = orient(torch.from_numpy(a)[None], orientation, spatial=(-2, -1))[0].numpy()
    assert np.array_equal(b, t)
    for y, x in ((0, 0), (2, 5), (5, 9)):
        oy, ox = oriented_box(y, x, 4, 9, 13, orientation)
        assert np.array_equal(b[oy : oy + 4, ox : ox + 4], orient(a[y : y + 4, x : x + 4], orientation))
