"""Cross-validation folds stratified by class and grouped by source image (or patient).

Every item (an image, or a RoI cut from one) carries a *group*: the source image it came from, or
the patient/slide when the data says so. All items of a group fall in the same validation fold, so
no pixel of a validation image is ever seen in training. Synthetic images are placed with the
group of their reference image: in a fold whose validation holds that reference, they are left out
of training (a synthetic image is derived from all of its reference's pixels; training on it would
leak the validation image).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from napari_pathup.errors import InputError


@dataclass(frozen=True)
class Fold:
    """Indices of one fold: ``train`` and ``val`` index the real items, ``synthetic`` the synthetic ones
    allowed in this fold's training."""

    index: int
    train: np.ndarray
    val: np.ndarray
    synthetic: np.ndarray
    val_groups: tuple[str, ...]


def groups_per_class(labels: Sequence[int], groups: Sequence[str], n_classes: int) -> list[int]:
    """The number of distinct groups holding each class."""
    found: list[set[str]] = [set() for _ in range(n_classes)]
    for label, group in zip(labels, groups, strict=True):
        found[int(label)].add(group)
    return [len(g) for g in found]


def check_fold_count(
    labels: Sequence[int], groups: Sequence[str], class_names: Sequence[str], n_folds: int, group_kind: str
) -> None:
    """Raise :class:`InputError` unless the data has two classes or more and every class has at least
    ``n_folds`` groups (checked before any feature is computed).

    A class with fewer groups than folds would be missing from some validation folds and, with one
    group, from the training of the fold that validates it. The message names the largest
    ``--folds`` the data allows.
    """
    if n_folds < 2:
        raise InputError(f"--folds must be at least 2, got {n_folds}")
    present = sorted({class_names[int(label)] for label in labels})
    if len(present) < 2:
        found = present[0] if present else "none"
        raise InputError(
            f"classification needs images of at least two classes; the data holds one class ({found}). "
            "Add a class folder to DATA (or keep two with --classes)"
        )
    counts = groups_per_class(labels, groups, len(class_names))
    short = [(c, n) for c, n in zip(class_names, counts, strict=True) if n < n_folds]
    if not short:
        return
    fewest = min(counts)
    listed = ", ".join(f"{c} ({n})" for c, n in short)
    advice = (
        f"the largest --folds this data allows is {fewest}"
        if fewest >= 2
        else "no grouped cross-validation is possible while a class has a single " + group_kind
    )
    raise InputError(
        f"{n_folds} folds grouped by {group_kind} need at least {n_folds} {group_kind}s per class; "
        f"too few in: {listed}. {advice.capitalize()}; add data, lower --folds, or leave a class out "
        "with --classes (cutting images into RoIs with --roi-size does not add "
        f"{group_kind}s: the RoIs of one {group_kind} stay together)"
    )


def make_folds(
    labels: Sequence[int],
    groups: Sequence[str],
    n_folds: int,
    *,
    seed: int = 0,
    synthetic_groups: Sequence[str] = (),
) -> list[Fold]:
    """``n_folds`` folds stratified by ``labels`` and grouped by ``groups`` (sklearn's StratifiedGroupKFold).

    ``synthetic_groups`` are the groups of the synthetic items (their reference's group); a fold's
    ``synthetic`` holds those whose group is not in its validation. Raises :class:`InputError` if a
    fold's training misses a class (a fold scheme that cannot train on every class is useless).
    """
    from sklearn.model_selection import StratifiedGroupKFold

    y = np.asarray(labels, dtype=np.int64)
    g = np.asarray(groups, dtype=object)
    if len(y) != len(g):
        raise ValueError(f"{len(y)} labels but {len(g)} groups")
    synth = np.asarray(synthetic_groups, dtype=object)
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    classes = np.unique(y)
    folds = []
    for i, (train, val) in enumerate(splitter.split(np.zeros(len(y)), y, g)):
        val_groups = set(g[val].tolist())
        missing = set(classes.tolist()) - set(y[train].tolist())
        if missing or not len(val):
            raise InputError(
                f"fold {i + 1} of {n_folds} would train without class index(es) {sorted(missing)} "
                "or validate nothing; lower --folds or add data"
            )
        keep = np.array([s not in val_groups for s in synth.tolist()], dtype=bool)
        folds.append(Fold(i, np.sort(train), np.sort(val), np.flatnonzero(keep), tuple(sorted(val_groups))))
    return folds
