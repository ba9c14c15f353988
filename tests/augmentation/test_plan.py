"""What `augment` plans: copies per ratio (fractions included), seeds and output names, BRACS layout,
and the manifest's round trip. No cluster: pure functions."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from PIL import Image

from helpers import rgb
from napari_pathup.augmentation.manifest import COLUMNS, ManifestRow, read_manifest, write_manifest
from napari_pathup.augmentation.plan import item_seed, plan_items
from napari_pathup.datasets import discover
from napari_pathup.errors import InputError


def make_images(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        Image.fromarray(rgb(8, 8, seed=i)).save(folder / name)


@pytest.fixture
def data(tmp_path) -> Path:
    make_images(tmp_path / "data" / "tumour", [f"t{i}.png" for i in range(5)])
    make_images(tmp_path / "data" / "stroma", ["s0.png", "s1.png"])
    return tmp_path / "data"


def per_class(items) -> dict[str, int]:
    counts: dict[str, int] = {}
    for it in items:
        counts[it.class_name] = counts.get(it.class_name, 0) + 1
    return counts


@pytest.mark.parametrize(
    ("ratio", "expected"),
    [
        (1.0, {"tumour": 5, "stroma": 2}),
        (0.5, {"tumour": 3, "stroma": 1}),
        (2.2, {"tumour": 11, "stroma": 4}),
    ],
)
def test_each_class_gets_round_ratio_times_its_images(data, ratio, expected):
    assert per_class(plan_items(discover(data), ratio)) == expected


def test_a_larger_ratio_only_adds_items_with_the_same_seeds(data):
    index = discover(data)
    plans = [{(it.output, it.seed, it.key) for it in plan_items(index, r)} for r in (0.3, 0.5, 1, 1.5, 2, 3)]
    for smaller, larger in itertools.pairwise(plans):
        assert smaller < larger


def test_items_are_deterministic_and_seeds_distinct(data):
    first = plan_items(discover(data), 1.5, base_seed=3)
    again = plan_items(discover(data), 1.5, base_seed=3)
    assert first == again
    assert len({it.seed for it in first}) == len(first)
    assert all(0 <= it.seed < 2**62 for it in first)
    assert {it.seed for it in plan_items(discover(data), 1.5, base_seed=4)}.isdisjoint(
        it.seed for it in first
    )
    assert item_seed("tumour/t0.png", 0) != item_seed("tumour/t0.png", 1) != item_seed("tumour/t1.png", 0)


def test_output_names_follow_class_and_reference_and_never_collide(tmp_path):
    make_images(tmp_path / "data" / "tumour", ["a.png", "a.jpg", "b.tif"])
    items = plan_items(discover(tmp_path / "data"), 2)
    outputs = [it.output for it in items]
    assert len(set(outputs)) == len(outputs) == 6
    assert "tumour/b_syn0.ome.zarr" in outputs and "tumour/b_syn1.ome.zarr" in outputs
    assert "tumour/tumour__a_png_syn0.ome.zarr" in outputs and "tumour/tumour__a_jpg_syn1.ome.zarr" in outputs


def test_bracs_layout_plans_the_train_split_with_bare_class_names(tmp_path):
    for split in ("train", "val"):
        make_images(tmp_path / "bracs" / split / "0_N", [f"BRACS_1{split}_N_1.png"])
        make_images(tmp_path / "bracs" / split / "5_DCIS", [f"BRACS_2{split}_DCIS_1.png"])
    items = plan_items(discover(tmp_path / "bracs", splits=("train",), holdout="none"), 1)
    assert [(it.class_name, it.key, it.output) for it in items] == [
        ("N", "train/0_N/BRACS_1train_N_1.png", "N/BRACS_1train_N_1_syn0.ome.zarr"),
        ("DCIS", "train/5_DCIS/BRACS_2train_DCIS_1.png", "DCIS/BRACS_2train_DCIS_1_syn0.ome.zarr"),
    ]


@pytest.mark.parametrize("ratio", [0, -1, float("nan"), 0.01])
def test_a_ratio_that_gives_no_image_is_refused(data, ratio):
    with pytest.raises(InputError, match="ratio"):
        plan_items(discover(data), ratio)


def test_manifest_round_trip_is_atomic_and_sorted(tmp_path):
    rows = [
        ManifestRow(
            "tumour/b_syn0.ome.zarr", "tumour", "tumour/b.png", 7, {"steps": 4}, "sha256:x", "done", "", 1.5
        ),
        ManifestRow(
            "stroma/a_syn0.ome.zarr", "stroma", "stroma/a.png", 9, {}, "sha256:x", "failed", "Err: no"
        ),
    ]
    rows[0].seconds = 1.5
    path = write_manifest(tmp_path / "manifest.csv", rows)
    assert path.read_text().splitlines()[0] == ",".join(COLUMNS)
    assert read_manifest(path) == sorted(rows, key=lambda r: r.output)
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.csv"]  # no temporary left
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="expected the columns"):
        read_manifest(tmp_path / "other.csv")
