"""Placing previews and decoded tiles of any stage into the full-size output layer."""

from __future__ import annotations

import numpy as np


def paste_scaled(
    target: np.ndarray, rgb: np.ndarray, box: tuple[int, int, int, int], source_shape: tuple[int, int]
) -> tuple[slice, slice]:
    """Paste ``rgb`` (which covers ``box`` = (y0, x0, y1, x1) of a ``source_shape`` image) into
    ``target`` (H, W, 3), scaled by nearest neighbour; returns the target region written.

    Stage-2 previews are at latent resolution (1/8), stage-1 previews and tiles at the 512 scale:
    one mapping serves all of them. Integer scale factors (the usual case) take a fast path
    (``np.repeat``) with the same result as the general nearest-neighbour index mapping.
    """
    height, width = target.shape[:2]
    sh, sw = source_shape
    y0, x0, y1, x1 = box
    ty0, ty1 = -(-y0 * height // sh), -(-y1 * height // sh)
    tx0, tx1 = -(-x0 * width // sw), -(-x1 * width // sw)
    ky, kx = height // sh, width // sw
    if height == ky * sh and width == kx * sw and rgb.shape[:2] == (y1 - y0, x1 - x0):
        target[ty0:ty1, tx0:tx1] = np.repeat(np.repeat(rgb, ky, axis=0), kx, axis=1)
        return slice(ty0, ty1), slice(tx0, tx1)
    rows = np.clip(np.arange(ty0, ty1) * sh // height - y0, 0, rgb.shape[0] - 1)
    cols = np.clip(np.arange(tx0, tx1) * sw // width - x0, 0, rgb.shape[1] - 1)
    target[ty0:ty1, tx0:tx1] = rgb[rows[:, None], cols[None, :]]
    return slice(ty0, ty1), slice(tx0, tx1)
