"""Blend windows for merging overlapping patches, normalised so every pixel's weights sum to one.

- ``uniform``: every patch counts equally (MultiDiffusion, Bar-Tal et al. 2023).
- ``gaussian``: a Gaussian bump centred on the patch (Mixture of Diffusers, Jiménez 2023);
  ``sigma`` is relative to the patch side (Mixture of Diffusers used 0.1).
- ``cosine``: flat in the middle with raised-cosine (feather) ramps across the overlap.

All three windows are separable (an outer product of one 1-D window with itself) and every grid
is a product of row starts and column starts, so the normalisation is separable too: it costs
O(height + width) memory, which keeps the tiled decode of a 8192x8192 image small.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from napari_pathup.engine.plan import WEIGHT_MODES
from napari_pathup.geometry import Box


def window_1d(mode: str, patch_size: int, overlap: int, sigma: float = 0.3) -> torch.Tensor:
    """The un-normalised 1-D window of one patch (float64, every entry > 0)."""
    if mode == "uniform":
        return torch.ones(patch_size, dtype=torch.float64)
    if mode == "gaussian":
        if sigma <= 0:
            raise ValueError(f"gaussian sigma must be positive, got {sigma}")
        x = torch.arange(patch_size, dtype=torch.float64) - (patch_size - 1) / 2
        return torch.exp(-0.5 * (x / (sigma * patch_size)) ** 2)
    if mode == "cosine":
        w = torch.ones(patch_size, dtype=torch.float64)
        if overlap > 0:
            i = torch.arange(overlap, dtype=torch.float64)
            ramp = torch.sin(0.5 * math.pi * (i + 0.5) / overlap) ** 2
            w[:overlap] = torch.minimum(w[:overlap], ramp)
            w[patch_size - overlap :] = torch.minimum(w[patch_size - overlap :], ramp.flip(0))
        return w
    raise ValueError(f"unknown blend weights {mode!r}; expected one of {', '.join(WEIGHT_MODES)}")


def _normalise_axis(starts: Sequence[int], length: int, window: torch.Tensor) -> list[torch.Tensor]:
    """Per-start 1-D weights that sum to one at every position along an axis."""
    patch = window.numel()
    total = torch.zeros(length, dtype=torch.float64)
    for s in starts:
        total[s : s + patch] += window
    if bool((total <= 0).any()):
        raise ValueError("patch boxes do not cover the whole axis")
    return [window / total[s : s + patch] for s in starts]


@dataclass(frozen=True)
class BlendWeights:
    """Normalised weights of every box of a product grid (rows ``ys`` x columns ``xs``)."""

    ys: tuple[int, ...]
    xs: tuple[int, ...]
    wy: tuple[torch.Tensor, ...]
    wx: tuple[torch.Tensor, ...]

    @classmethod
    def for_grid(
        cls, ys: Sequence[int], xs: Sequence[int], height: int, width: int, window: torch.Tensor
    ) -> BlendWeights:
        return cls(
            tuple(ys),
            tuple(xs),
            tuple(_normalise_axis(ys, height, window)),
            tuple(_normalise_axis(xs, width, window)),
        )

    def __call__(self, box: Box, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The (h, w) weight of ``box``; summed over all boxes it is one at every pixel."""
        wy = self.wy[self.ys.index(box.y0)]
        wx = self.wx[self.xs.index(box.x0)]
        return torch.outer(wy, wx).to(dtype)
