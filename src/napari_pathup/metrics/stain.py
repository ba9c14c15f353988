"""Haematoxylin and eosin distributions by colour deconvolution (Ruifrok & Johnston), for comparing images.

``rgb_to_hed`` is scikit-image's ``rgb2hed`` written with numpy only (same matrix, same log
compensation), so the package does not need scikit-image at run time; the tests check that both
agree. ``sample_pixels`` reads a bounded number of pixels from images of any size (numpy, dask or
zarr arrays, or the levels of a multiscale pyramid), so a 2048x2048 or larger image is never
converted whole. No Qt or napari here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_pathup.errors import InputError

#: stain optical-density vectors (rows: haematoxylin, eosin, DAB), as in scikit-image's ``rgb_from_hed``
RGB_FROM_HED = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]])
HED_FROM_RGB = np.linalg.inv(RGB_FROM_HED)
#: a pixel is background (glass) when all three channels are at least this bright
BACKGROUND_LEVEL = 220
#: pixels read per image by default (a 512x512 image's worth)
DEFAULT_PIXELS = 512 * 512
_EPS = 1e-6


def rgb_to_hed(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 RGB → (..., 3) float64 H, E and DAB densities, as ``skimage.color.rgb2hed``."""
    rgb = _check_uint8_rgb(rgb, "image")
    intensity = np.maximum(rgb.astype(np.float64) / 255.0, _EPS)
    stains = (np.log(intensity) / np.log(_EPS)) @ HED_FROM_RGB
    return np.maximum(stains, 0.0, out=stains)


def _check_uint8_rgb(rgb: Any, name: str) -> np.ndarray:
    arr = np.asarray(rgb)
    if arr.dtype != np.uint8 or arr.ndim < 2 or arr.shape[-1] not in (3, 4):
        raise InputError(f"{name}: expected uint8 RGB pixels (..., 3), got {arr.dtype} {arr.shape}")
    return arr[..., :3]


def tissue_pixels(pixels: np.ndarray, background: int = BACKGROUND_LEVEL) -> np.ndarray:
    """The (N, 3) pixels that are not background; all of them when every pixel is background."""
    flat = pixels.reshape(-1, 3)
    tissue = flat[~np.all(flat >= background, axis=1)]
    return tissue if len(tissue) else flat


def _pick_level(levels: Sequence[Any], n_pixels: int) -> Any:
    """The smallest pyramid level that still holds ``n_pixels`` pixels (level 0 when none does)."""
    for level in reversed(levels):
        if level.shape[0] * level.shape[1] >= n_pixels:
            return level
    return levels[0]


def sample_pixels(
    data: Any, n_pixels: int = DEFAULT_PIXELS, seed: int = 0, name: str = "image"
) -> np.ndarray:
    """At most ``n_pixels`` random tissue pixels (N, 3) uint8 of an (H, W, 3|4) image of any size.

    ``data`` is a numpy, dask or zarr array, or a list of pyramid levels (largest first), of which
    the smallest level holding ``n_pixels`` is read. A lazy array larger than ``4 * n_pixels`` is
    read with a stride, so memory stays bounded; in-memory pixels are drawn at random.
    """
    if n_pixels < 1:
        raise InputError(f"the number of pixels to sample must be positive, got {n_pixels}")
    if isinstance(data, list | tuple):
        if not data:
            raise InputError(f"{name}: no pyramid levels")
        data = _pick_level(data, n_pixels)
    shape = tuple(data.shape)
    if len(shape) != 3 or shape[2] not in (3, 4) or np.dtype(data.dtype) != np.uint8:
        raise InputError(f"{name}: expected an (H, W, 3) uint8 RGB image, got {data.dtype} {shape}")
    if not isinstance(data, np.ndarray) and shape[0] * shape[1] > 4 * n_pixels:
        stride = math.ceil(math.sqrt(shape[0] * shape[1] / (4 * n_pixels)))
        data = data[::stride, ::stride]
    pixels = tissue_pixels(np.asarray(data)[..., :3])
    if len(pixels) > n_pixels:
        rng = np.random.default_rng(seed)
        pixels = pixels[np.sort(rng.choice(len(pixels), n_pixels, replace=False))]
    return pixels


@dataclass(frozen=True)
class StainDistribution:
    """Histograms (densities over ``edges``), means and standard deviations of the H and E channels."""

    edges: np.ndarray
    haematoxylin: np.ndarray
    eosin: np.ndarray
    mean: tuple[float, float]
    std: tuple[float, float]
    n_pixels: int

    @property
    def centres(self) -> np.ndarray:
        return (self.edges[:-1] + self.edges[1:]) / 2


def stain_distribution(
    pixels: np.ndarray, edges: np.ndarray | None = None, bins: int = 64, upper: float = 0.3
) -> StainDistribution:
    """H and E histograms of (N, 3) uint8 pixels over ``edges`` (default 0..upper), as densities.

    Densities are relative to all pixels (count / (N x bin width)): values beyond the last edge are
    left out of the curve rather than piled into its last bin, so a curve integrates to the fraction
    of pixels within the edges. Means and standard deviations use every pixel.
    """
    hed = rgb_to_hed(np.asarray(pixels).reshape(-1, 3))
    if len(hed) == 0:
        raise InputError("no pixels to measure the stain distribution of")
    if edges is None:
        edges = np.linspace(0.0, upper, bins + 1)
    h, e = hed[:, 0], hed[:, 1]
    scale = 1.0 / (len(hed) * np.diff(edges))
    return StainDistribution(
        edges=edges,
        haematoxylin=np.histogram(h, edges)[0] * scale,
        eosin=np.histogram(e, edges)[0] * scale,
        mean=(float(h.mean()), float(e.mean())),
        std=(float(h.std()), float(e.std())),
        n_pixels=len(hed),
    )


def shared_edges(pixel_sets: Sequence[np.ndarray], bins: int = 64, quantile: float = 0.995) -> np.ndarray:
    """Common histogram edges for several pixel sets: 0 to the largest ``quantile`` of H and E densities."""
    tops = []
    for pixels in pixel_sets:
        hed = rgb_to_hed(np.asarray(pixels).reshape(-1, 3))
        if len(hed):
            tops.append(float(np.quantile(hed[:, :2], quantile)))
    upper = max(tops, default=0.0)
    return np.linspace(0.0, upper if upper > 0 else 1.0, bins + 1)
