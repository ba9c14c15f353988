"""Tiled encode (E) and decode (D) of Algorithm 1, so that output size is bounded by disk, not memory.

Tiles overlap and are blended with raised-cosine weights that sum to one at every pixel, which hides
the differences that per-tile normalisation (GroupNorm) in the autoencoder would otherwise show as
seams. Decoding writes finished regions straight into the sink (a numpy or zarr (H, W, 3) uint8
array) from a rolling buffer one tile row high, so memory grows with the width only.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import torch
import torch.nn.functional as F

from napari_pathup.engine.events import TileDecoded
from napari_pathup.engine.grid import PatchGrid
from napari_pathup.engine.preview import to_uint8
from napari_pathup.engine.weights import BlendWeights, window_1d
from napari_pathup.geometry import Box
from napari_pathup.models.base import Autoencoder

#: a function giving the pixels of a box of the image to encode, as (1, 3, h, w) in [-1, 1]
PixelSource = Callable[[Box], torch.Tensor]


def tile_grid(height: int, width: int, tile: int, overlap: int) -> PatchGrid:
    """A grid of tiles of ``tile`` (clamped to the latent) with ``overlap`` (clamped below the tile)."""
    tile = max(1, min(tile, height, width))
    return PatchGrid(height, width, tile, min(overlap, tile - 1) if tile > 1 else 0)


def crop_source(image: torch.Tensor) -> PixelSource:
    """Pixels of an in-memory (3, H, W) image in [-1, 1]."""
    return lambda box: image[None, :, box.y0 : box.y1, box.x0 : box.x1]


def resized_source(image: torch.Tensor, height: int, width: int, mode: str = "bicubic") -> PixelSource:
    """Pixels of ``image`` (3, h, w) resized to ``height`` x ``width``, computed tile by tile.

    Sampling positions follow ``F.interpolate(..., align_corners=False)``, so every tile of the
    resized image is computed from the small image directly and the full-size image never exists.
    """

    def source(box: Box) -> torch.Tensor:
        ys = (torch.arange(box.y0, box.y1, dtype=torch.float32) + 0.5) * (2 / height) - 1
        xs = (torch.arange(box.x0, box.x1, dtype=torch.float32) + 0.5) * (2 / width) - 1
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        grid = torch.stack([gx, gy], dim=-1)[None].to(image.device)
        out = F.grid_sample(image[None].float(), grid, mode=mode, padding_mode="border", align_corners=False)
        return out.clamp(-1, 1)

    return source


def encode_tiled(
    autoencoder: Autoencoder, source: PixelSource, height: int, width: int, tile: int = 64, overlap: int = 16
) -> torch.Tensor:
    """E(image) for an image of ``height`` x ``width`` pixels given tile by tile.

    Returns the (1, C, h, w) float32 latent.

    ``tile`` and ``overlap`` are in latent pixels.
    """
    f = autoencoder.scale_factor
    if height % f or width % f:
        raise ValueError(f"image size {height}x{width} must be a multiple of the autoencoder factor {f}")
    h, w = height // f, width // f
    grid = tile_grid(h, w, tile, overlap)
    ys, xs = grid.starts()
    weights = BlendWeights.for_grid(ys, xs, h, w, window_1d("cosine", grid.patch_size, grid.overlap))
    latent = torch.zeros(1, autoencoder.latent_channels, h, w)
    for box in grid.boxes():
        z = autoencoder.encode(source(box.scaled(f))).float().cpu()
        latent[..., box.y0 : box.y1, box.x0 : box.x1] += weights(box) * z
    return latent


def decode_tiled(
    autoencoder: Autoencoder,
    latent: torch.Tensor,
    sink: Any,
    tile: int = 64,
    overlap: int = 16,
    stage: int = 2,
) -> Generator[TileDecoded, None, None]:
    """D(latent) written into ``sink`` ((H, W, 3) uint8, numpy or zarr), yielding each final region.

    Tiles are decoded in raster order; after tile (r, c) the region from its top-left corner to the
    next tile's start is final (no later tile touches it), so it is converted and written at once.
    """
    f = autoencoder.scale_factor
    h, w = latent.shape[-2:]
    height, width = h * f, w * f
    if tuple(sink.shape) != (height, width, 3):
        raise ValueError(f"sink has shape {tuple(sink.shape)}; expected {(height, width, 3)}")
    grid = tile_grid(h, w, tile, overlap)
    T = grid.patch_size * f
    ys, xs = (([s * f for s in starts]) for starts in grid.starts())
    weights = BlendWeights.for_grid(ys, xs, height, width, window_1d("cosine", T, grid.overlap * f))
    y_next, x_next = [*ys[1:], height], [*xs[1:], width]
    buffer = torch.zeros(3, T, width)
    buffer_y0 = 0
    total = len(ys) * len(xs)
    for r, y0 in enumerate(ys):
        if y0 != buffer_y0:  # roll: keep the rows the next tile row still adds to
            rolled = torch.zeros_like(buffer)
            rolled[:, : buffer_y0 + T - y0] = buffer[:, y0 - buffer_y0 :]
            buffer, buffer_y0 = rolled, y0
        for c, x0 in enumerate(xs):
            z = latent[..., y0 // f : y0 // f + grid.patch_size, x0 // f : x0 // f + grid.patch_size]
            pixels = autoencoder.decode(z)[0].float().cpu()
            buffer[:, :, x0 : x0 + T] += weights(Box(y0, x0, y0 + T, x0 + T)) * pixels
            region = Box(y0, x0, y_next[r], x_next[c])
            rgb = to_uint8(buffer[:, : region.height, region.x0 : region.x1].permute(1, 2, 0))
            sink[region.y0 : region.y1, region.x0 : region.x1] = rgb
            yield TileDecoded(stage, region, rgb, r * len(xs) + c, total)
