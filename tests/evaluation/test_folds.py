"""Folds are stratified by class, grouped by source image, and keep synthetic images out of validation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_pathup.errors import InputError
from napari_pathup.evaluation.folds import check_fold_count, groups_per_class, make_folds


@st.composite
def layouts(draw):
    """Random datasets: 2-4 classes of n_folds..n_folds+4 groups of 1-6 items each; synthetic items."""
    n_folds = draw(st.integers(2, 5))
    n_classes = draw(st.integers(2, 4))
    labels, groups = [], []
    for c in range(n_classes):
        for g in range(draw(st.integers(n_folds, n_folds + 4))):
            size = draw(st.integers(1, 6))
            labels += [c] * size
            groups += [f"c{c}-img{g}"] * size
    synthetic = draw(st.lists(st.sampled_from(sorted(set(groups))), max_size=30))
    return labels, groups, n_folds, synthetic, draw(st.integers(0, 1000))


@settings(max_examples=60, deadline=None)
@given(layouts())
def test_folds_never_share_a_group_and_cover_every_item_once(layout):
    labels, groups, n_folds, synthetic, seed = layout
    folds = make_folds(labels, groups, n_folds, seed=seed, synthetic_groups=synthetic)
    g = np.asarray(groups)
    assert len(folds) == n_folds
    seen = np.concatenate([f.val for f in folds])
    assert sorted(seen.tolist()) == list(range(len(labels)))  # every item validated exactly once
    for f in folds:
        assert set(g[f.train]).isdisjoint(g[f.val])  # no source image on both sides
        assert len(f.train) + len(f.val) == len(labels)
        assert set(np.asarray(labels)[f.train]) == set(labels)  # every class trained on
        # a synthetic image joins training only when its reference is not validated in this fold
        assert all(synthetic[i] not in set(g[f.val]) for i in f.synthetic)
        left_out = set(range(len(synthetic))) - set(f.synthetic.tolist())
        assert all(synthetic[i] in set(g[f.val]) for i in left_out)


def test_synthetic_image_of_a_validation_reference_is_left_out():
    labels = [0, 0, 1, 1]
    groups = ["a", "b", "c", "d"]
    folds = make_folds(labels, groups, 2, seed=0, synthetic_groups=["a", "a", "c", "d"])
    for f in folds:
        val = {groups[i] for i in f.val}
        used = {["a", "a", "c", "d"][i] for i in f.synthetic}
        assert used == {"a", "c", "d"} - val


def test_folds_are_deterministic_per_seed():
    labels = [0] * 10 + [1] * 10
    groups = [f"g{i // 2}" for i in range(20)]
    a = make_folds(labels, groups, 3, seed=7)
    b = make_folds(labels, groups, 3, seed=7)
    assert all(np.array_equal(x.val, y.val) for x, y in zip(a, b, strict=True))


def test_too_few_groups_names_the_class_and_the_largest_fold_count():
    labels = [0, 0, 0, 1, 1, 2, 2, 2]
    groups = ["n1", "n1", "n2", "s1", "s1", "t1", "t2", "t3"]
    assert groups_per_class(labels, groups, 3) == [2, 1, 3]
    with pytest.raises(InputError, match=r"stroma \(1\).*single source image"):
        check_fold_count(labels, groups, ("normal", "stroma", "tumour"), 2, "source image")
    labels, groups = [0, 0, 0, 1, 1, 1], ["a", "b", "c", "d", "e", "f"]
    with pytest.raises(InputError, match=r"largest --folds this data allows is 3"):
        check_fold_count(labels, groups, ("x", "y"), 5, "source image")
    check_fold_count(labels, groups, ("x", "y"), 3, "source image")
    with pytest.raises(InputError, match="at least 2"):
        check_fold_count(labels, groups, ("x", "y"), 1, "source image")


def test_a_single_class_is_refused_naming_it():
    with pytest.raises(InputError, match=r"at least two classes; the data holds one class \(tumour\)"):
        check_fold_count([0, 0, 0, 0], ["a", "b", "c", "d"], ["tumour"], 2, "source image")
