"""The old ``napari_pathup.scale`` module paths still import, as the very modules that moved."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("augment", "augmentation.run"),
        ("plan", "augmentation.plan"),
        ("worker", "augmentation.worker"),
        ("cluster", "augmentation.cluster"),
        ("manifest", "augmentation.manifest"),
        ("evaluate", "evaluation.run"),
        ("evaluation_data", "evaluation.data"),
        ("evaluation_report", "evaluation.report"),
        ("folds", "evaluation.folds"),
        ("mil", "evaluation.mil"),
    ],
)
def test_an_old_module_path_is_the_moved_module(old, new):
    moved = importlib.import_module(f"napari_pathup.{new}")
    assert importlib.import_module(f"napari_pathup.scale.{old}") is moved
