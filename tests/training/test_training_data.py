"""Dataset discovery (class folders, BRACS), hold-out regions, tissue filter, orientations, crop sampling."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_pathup.errors import InputError
from napari_pathup.training.data import (
    NATIVE,
    OVERVIEW,
    CropSampler,
    Rect,
    build_sources,
    discover,
    holdout_crops,
    load_images,
    orient,
    oriented_box,
    tissue_mask,
    training_regions,
)


def test_class_folders_are_found_with_their_holdout(tiny_dataset: Path) -> None:
    index = discover(tiny_dataset)
    assert index.layout == "class-folders"
    assert index.classes == ("stroma", "tumour")
    assert [e.key for e in index.images] == ["stroma/c.png", "tumour/a.png", "tumour/b.png"]
    assert index.images[1].holdout == Rect(112, 0, 160, 160)
    assert index.images[2].holdout is None
    assert all(e.holdout is None for e in discover(tiny_dataset, holdout="none").images)


def test_bracs_layout_strips_prefixes_and_orders_by_them(bracs_dataset: Path) -> None:
    index = discover(bracs_dataset)
    assert index.layout == "bracs"
    assert index.classes == ("N", "PB", "IC")
    assert {e.key.split("/")[0] for e in index.images} == {"train"}
    both = discover(bracs_dataset, splits=("train", "val"))
    assert len(both.images) == 6
    split_only = discover(bracs_dataset / "val")
    assert split_only.classes == ("N", "PB", "IC") and split_only.layout == "bracs"


def test_max_images_per_class_keeps_a_seeded_subset(tmp_path: Path, kit) -> None:
    for i in range(5):
        kit.write_png(tmp_path / "a" / f"{i}.png", kit.he_like(32, 32, i))
    one = discover(tmp_path, max_images_per_class=2, seed=3)
    assert len(one.images) == 2
    assert one.images == discover(tmp_path, max_images_per_class=2, seed=3).images


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda root, kit: None, "holds no class folders"),
        (
            lambda root, kit: kit.write_png(root / "loose.png", kit.he_like(16, 16, 0)),
            "holds images but no class folders",
        ),
        (lambda root, kit: (root / "tumour").mkdir(), "holds no images"),
        (lambda root, kit: (root / "train" / "0_N").mkdir(parents=True), "holds no images"),
    ],
)
def test_empty_or_unknown_layouts_are_clear_errors(tmp_path: Path, kit, setup, message: str) -> None:
    setup(tmp_path, kit)
    with pytest.raises(InputError, match=message):
        discover(tmp_path)


def test_missing_folder_and_split_are_errors(tmp_path: Path, bracs_dataset: Path) -> None:
    with pytest.raises(InputError, match="no such folder"):
        discover(tmp_path / "nope")
    with pytest.raises(InputError, match="no split folder test"):
        discover(bracs_dataset, splits=("test",))


def test_bad_holdout_files_are_errors(tiny_dataset: Path, tmp_path: Path) -> None:
    bad = tmp_path / "h.json"
    bad.write_text("{")
    with pytest.raises(InputError, match="not valid JSON"):
        discover(tiny_dataset, holdout=bad)
    bad.write_text(json.dumps({"regions": {"tumour/zzz.png": {"x": 0, "y": 0, "width": 8, "height": 8}}}))
    with pytest.raises(InputError, match=r"not in the data: tumour/zzz\.png"):
        discover(tiny_dataset, holdout=bad)
    bad.write_text(json.dumps({"regions": {"tumour/a.png": {"x": 150, "y": 0, "width": 64, "height": 8}}}))
    with pytest.raises(InputError, match="outside the 160x160 image"):
        discover(tiny_dataset, holdout=bad)
    bad.write_text(json.dumps({"regions": {"tumour/a.png": {"x": 0, "y": 0, "width": "w"}}}))
    with pytest.raises(InputError, match="integer x, y, width, height"):
        discover(tiny_dataset, holdout=bad)


@settings(max_examples=60, deadline=None)
@given(h=st.integers(16, 400), w=st.integers(16, 400), data=st.data(), min_side=st.sampled_from([8, 32, 64]))
def test_training_regions_never_touch_the_holdout(h: int, w: int, data, min_side: int) -> None:
    x0 = data.draw(st.integers(0, w - 1))
    y0 = data.draw(st.integers(0, h - 1))
    hold = Rect(x0, y0, data.draw(st.integers(x0 + 1, w)), data.draw(st.integers(y0 + 1, h)))
    for r in training_regions(h, w, hold, min_side):
        assert not r.intersects(hold)
        assert 0 <= r.x0 < r.x1 <= w and 0 <= r.y0 < r.y1 <= h
        assert r.width % 8 == 0 and r.height % 8 == 0 and min(r.width, r.height) >= min_side


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
            assert not Rect(x, y, x + 32, y + 32).intersects(hold)
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
    assert not tissue_mask(np.full((8, 8, 3), 240, np.uint8)).any()
    assert tissue_mask(np.array([[[230, 160, 210]]], np.uint8)).all()


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
