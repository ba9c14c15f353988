"""Training crops: the hold-out is never sampled, tissue filter, orientations, crop sampling."""

from __future__ import annotations

import json
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


def _half_cellular(kit, seed: int) -> np.ndarray:
    """A 128x256 field whose left half is cellular (dense dark nuclei), its right half fibrous (sparse)."""
    image = kit.he_like(128, 256, seed)
    yy, xx = np.mgrid[:128, :128]
    image[:, :128][(yy // 4 + xx // 4) % 2 == 0] = (90, 50, 140)
    return image


def test_emphasis_draws_cellular_crops_more_often_and_keeps_each_images_share(tmp_path: Path, kit) -> None:
    kit.write_png(tmp_path / "t" / "a.png", _half_cellular(kit, 0))
    kit.write_png(tmp_path / "t" / "b.png", kit.he_like(128, 128, 1))
    index = discover(tmp_path)
    data = build_sources(index, load_images(index), crop=32, reference_size=128)

    def draws(emphasis: dict[int, float] | None) -> tuple[float, float, list]:
        sampler, rng = CropSampler(data, overview_fraction=0.0, emphasis=emphasis), np.random.default_rng(3)
        crops = [sampler.sample(rng) for _ in range(3000)]
        on_a = [c for c in crops if data.sources[c.source].image == "t/a.png"]
        x0 = np.array([data.sources[c.source].region.x0 + c.x for c in on_a])
        cellular = np.clip(128 - x0, 0, 32) / 32  # the share of each crop in the cellular half
        return len(on_a) / len(crops), float(cellular.mean()), crops

    share, cellular, crops = draws(None)
    share_k, cellular_k, _ = draws({0: 5.0})
    assert 0.25 < cellular < 0.6  # uniform over the field: about half its crops in the cellular half
    assert cellular_k > cellular + 0.15
    assert abs(share_k - share) < 0.04  # image a keeps its share of the class (about 2/3 of its area)
    assert draws({0: 0.0})[2] == crops  # a factor of 0 is no emphasis: the same crops
    for bad in ({1: 1.0}, {0: -1.0}, {0: float("nan")}):
        with pytest.raises(InputError, match="crop emphasis"):
            CropSampler(data, emphasis=bad)


def test_emphasis_never_reads_the_holdout(tmp_path: Path, kit) -> None:
    """Two data sets that differ only inside a hold-out give the same emphasised crops."""
    crops = []
    for name, fill in (("a", None), ("b", (20, 10, 40))):
        image = _half_cellular(kit, 0)
        if fill is not None:
            image[:, 192:] = fill  # the hold-out, darker than anything else
        root = tmp_path / name
        kit.write_png(root / "t" / "a.png", image)
        region = {"x": 192, "y": 0, "width": 64, "height": 128, "why": "right strip"}
        (root / "holdout.json").write_text(json.dumps({"regions": {"t/a.png": region}}))
        index = discover(root)
        data = build_sources(index, load_images(index), crop=32, reference_size=128)
        sampler, rng = CropSampler(data, overview_fraction=0.3, emphasis={0: 3.0}), np.random.default_rng(0)
        crops.append([sampler.sample(rng) for _ in range(500)])
    assert crops[0] == crops[1]
