"""Helpers shared by the test modules (importable as ``helpers``: tests/ is on pytest's pythonpath)."""

from __future__ import annotations

import numpy as np


def rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A seeded random (H, W, 3) uint8 image."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def synthesize_argv(model, reference, out, *extra: str, size: str = "128") -> list[str]:
    """``pathup synthesize`` of a tiny CPU run (4 steps, 64-px stage 1) of class tumour."""
    return [
        "synthesize",
        "--model",
        str(model),
        "--class",
        "tumour",
        "--reference",
        str(reference),
        "--out",
        str(out),
        "--size",
        size,
        "--steps",
        "4",
        "--reference-size",
        "64",
        "--quiet",
        "--device",
        "cpu",
        *extra,
    ]


def mean_2x2_reference(image: np.ndarray) -> np.ndarray:
    """2x2 mean down-sampling with rounding, written independently of the package's pyramid code."""
    h, w = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
    a = image[:h, :w].astype(np.int64)
    return ((a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2] + 2) // 4).astype(np.uint8)


class Recording:
    """Array-like that remembers how much was read from it, to prove that input is read in pieces."""

    def __init__(self, data: np.ndarray, fail_after: int | None = None):
        self.data, self.shape, self.dtype, self.ndim = data, data.shape, data.dtype, data.ndim
        self.largest = self.total = self.calls = 0
        self.fail_after = fail_after

    def __getitem__(self, key):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise RuntimeError("source failed")
        block = self.data[key]
        self.largest, self.total = max(self.largest, block.size), self.total + block.size
        return block


def menu_command_ids(menu_id: str) -> list[str]:
    """The command ids napari's app model lists in a menu (e.g. ``napari/layers/measure``)."""
    from napari._app_model import get_app_model

    return [item.command.id for item in get_app_model().menus.get_menu(menu_id) if hasattr(item, "command")]
