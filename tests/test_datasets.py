"""Data sets: discovery (class folders, BRACS), hold-out regions and the bands around them, tissue masks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_pathup.datasets import discover, read_holdout, tissue_cells, tissue_mask, training_regions
from napari_pathup.errors import InputError
from napari_pathup.geometry import Box


def test_class_folders_are_found_with_their_holdout(tiny_dataset: Path) -> None:
    index = discover(tiny_dataset)
    assert index.layout == "class-folders"
    assert index.classes == ("stroma", "tumour")
    assert [e.key for e in index.images] == ["stroma/c.png", "tumour/a.png", "tumour/b.png"]
    assert index.images[1].holdout == Box.from_xywh(112, 0, 48, 160)
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
    hold = Box(y0, x0, data.draw(st.integers(y0 + 1, h)), data.draw(st.integers(x0 + 1, w)))
    for r in training_regions(h, w, hold, min_side):
        assert not r.intersects(hold)
        assert 0 <= r.x0 < r.x1 <= w and 0 <= r.y0 < r.y1 <= h
        assert r.width % 8 == 0 and r.height % 8 == 0 and min(r.width, r.height) >= min_side


def test_holdout_file_rectangles_are_read_as_x_y_width_height(tiny_dataset: Path) -> None:
    regions = read_holdout(tiny_dataset / "holdout.json")
    box, why = regions["stroma/c.png"]
    assert box == Box(40, 40, 104, 104) and why == "centre"
    assert box.to_json() == {"x": 40, "y": 40, "width": 64, "height": 64}


def test_without_a_holdout_the_whole_image_trimmed_to_cells_is_one_region() -> None:
    assert training_regions(100, 70, None) == [Box(0, 0, 96, 64)]
    # a hold-out strip on the right leaves the band to its left (and none above or below it)
    assert training_regions(64, 64, Box(0, 48, 64, 64)) == [Box(0, 0, 64, 48)]


def test_tissue_mask_keeps_stained_pixels_and_drops_glass() -> None:
    assert not tissue_mask(np.full((8, 8, 3), 240, np.uint8)).any()
    assert tissue_mask(np.array([[[230, 160, 210]]], np.uint8)).all()
    assert tissue_mask(np.zeros((1, 1, 3), np.uint8)).all()  # dark (e.g. dense nuclei) counts
    image = np.full((16, 24, 3), 240, np.uint8)
    image[:8, :8] = (150, 60, 120)
    assert tissue_cells(image).tolist() == [[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
