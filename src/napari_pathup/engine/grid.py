"""Latent patch grid: overlapping boxes of side ``patch_size`` (p) and ``overlap`` (o).

Boxes cover every latent pixel of any height and width; the last row and column are snapped to the
edge so that every box has the same size (which lets patches go through the denoiser in batches).
A per-step ``offset`` (jitter) shifts the interior boxes while keeping full coverage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from napari_pathup.geometry import Box, jitter_range, window_starts

if TYPE_CHECKING:  # torch is imported where a grid draws its jitter, so plans stay import-light
    import torch


def _check_sizes(length: int, patch: int, overlap: int, axis: str) -> None:
    if length <= 0:
        raise ValueError(f"latent {axis} must be positive, got {length}")
    if patch <= 0:
        raise ValueError(f"patch_size must be positive, got {patch}")
    if overlap < 0:
        raise ValueError(f"overlap must be zero or positive, got {overlap}")
    if overlap >= patch:
        raise ValueError(f"overlap ({overlap}) must be smaller than patch_size ({patch})")
    if patch > length:
        raise ValueError(
            f"patch_size ({patch}) is larger than the latent {axis} ({length}); "
            f"use a patch of at most {length} latent pixels or a larger output"
        )


@dataclass(frozen=True)
class PatchGrid:
    """Overlapping latent patches of one size covering a ``height`` x ``width`` latent."""

    height: int
    width: int
    patch_size: int
    overlap: int

    def __post_init__(self) -> None:
        _check_sizes(self.height, self.patch_size, self.overlap, "height")
        _check_sizes(self.width, self.patch_size, self.overlap, "width")

    @property
    def stride(self) -> int:
        return self.patch_size - self.overlap

    def starts(self, offset: tuple[int, int] = (0, 0)) -> tuple[list[int], list[int]]:
        """Row and column starts for a grid shifted by ``offset`` = (dy, dx)."""
        p, o = self.patch_size, self.overlap
        return (
            window_starts(self.height, p, o, edge="snap", offset=offset[0]),
            window_starts(self.width, p, o, edge="snap", offset=offset[1]),
        )

    def boxes(self, offset: tuple[int, int] = (0, 0)) -> list[Box]:
        """The boxes in raster order for a grid shifted by ``offset`` = (dy, dx)."""
        p = self.patch_size
        ys, xs = self.starts(offset)
        return [Box(y, x, y + p, x + p) for y in ys for x in xs]

    def __len__(self) -> int:
        ys, xs = self.starts()
        return len(ys) * len(xs)

    def random_offset(self, generator: torch.Generator) -> tuple[int, int]:
        """A seeded jitter offset (dy, dx), drawn from ``generator`` so runs stay deterministic."""
        low, high = jitter_range(self.patch_size, self.overlap)
        if high == low:
            return (0, 0)
        import torch

        draw = torch.randint(low, high + 1, (2,), generator=generator)
        dy = int(draw[0]) if self.height > self.patch_size else 0
        dx = int(draw[1]) if self.width > self.patch_size else 0
        return dy, dx


def default_patch_size(native: int, latent_height: int, latent_width: int) -> int:
    """The denoiser's native sample size, clamped to the latent so that small outputs just work."""
    return max(1, min(native, latent_height, latent_width))


def default_overlap(patch_size: int) -> int:
    """A quarter of the patch: enough for seamless blending (see the overlap table in the docs)."""
    return patch_size // 4
