"""Nucleus morphology: size and shape of the haematoxylin-dense connected components of an H&E image.

Nuclei are the haematoxylin-dense blobs of an H&E image. ``haematoxylin_components`` finds them
without a trained segmenter: the haematoxylin optical density (colour deconvolution, as
:mod:`~napari_pathup.metrics.stain`) is smoothed, thresholded, holes are filled, and the connected
components that do not touch the border and have at least ``min_area`` pixels are measured (area
in pixels; solidity = area / area of the convex hull of the component's pixel squares). Compared
at one threshold between real and synthetic crops of the same class, their medians say whether a
model draws nuclei of the right size and with edges (blurred blobs merge into large, irregular
components or fall below the threshold). scipy only; no Qt or napari here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from napari_pathup.errors import InputError
from napari_pathup.metrics.stain import rgb_to_hed, tissue_pixels

#: components smaller than this (pixels) are noise, not nuclei
DEFAULT_MIN_AREA = 12
#: Gaussian smoothing (pixels) of the haematoxylin density before thresholding
DEFAULT_SMOOTH = 1.0


@dataclass(frozen=True)
class NucleusStats:
    """The components of one image: their areas (pixels) and solidities (0-1], and summaries."""

    areas: np.ndarray
    solidities: np.ndarray

    @property
    def count(self) -> int:
        return len(self.areas)

    @property
    def median_area(self) -> float:
        """Median component area in pixels (NaN without components)."""
        return float(np.median(self.areas)) if self.count else float("nan")

    @property
    def median_solidity(self) -> float:
        """Median component solidity (NaN without components)."""
        return float(np.median(self.solidities)) if self.count else float("nan")


def otsu_threshold(values: np.ndarray, bins: int = 256, top: float = 0.999) -> float:
    """Otsu's threshold of a 1-D sample: the level that maximises the between-class variance.

    The histogram spans the minimum to the ``top`` quantile, so that a few extreme values (dust, pen
    marks: optical densities several times those of nuclei) do not squeeze the bulk into a few bins.
    """
    values = np.asarray(values, np.float64).ravel()
    values = values[np.isfinite(values)]
    if len(values) < 2 or values.min() == values.max():
        raise InputError("otsu_threshold: expected at least two distinct values")
    low, high = float(values.min()), float(np.quantile(values, top))
    if high <= low:
        high = float(values.max())
    counts, edges = np.histogram(values, bins, range=(low, high))
    centres = (edges[:-1] + edges[1:]) / 2
    weight0 = np.cumsum(counts)
    weight1 = weight0[-1] - weight0
    sum0 = np.cumsum(counts * centres)
    mean0 = sum0 / np.maximum(weight0, 1)
    mean1 = (sum0[-1] - sum0) / np.maximum(weight1, 1)
    between = weight0 * weight1 * (mean0 - mean1) ** 2
    between = between[:-1]
    best = np.flatnonzero(between >= between.max() * (1 - 1e-12))  # a plateau: take its middle
    return float(edges[1:][best[len(best) // 2]])


def haematoxylin_threshold(images: Sequence[np.ndarray], top: float = 0.999) -> float:
    """Otsu's threshold of the haematoxylin density of the tissue pixels of ``images`` (pooled), to
    apply unchanged to every image set compared with them. ``top`` is the quantile the histogram spans
    to (:func:`otsu_threshold`): lower it where a few tenths of a percent of the pixels are pigment or
    ink, far denser than nuclei, which would otherwise become the split."""
    if not images:
        raise InputError("haematoxylin_threshold: expected at least one image")
    pixels = np.concatenate([tissue_pixels(np.asarray(x)[..., :3]) for x in images])
    return otsu_threshold(rgb_to_hed(pixels)[:, 0], top=top)


def _hull_area(rows: np.ndarray, cols: np.ndarray) -> float:
    """Area of the convex hull of the unit squares of the given pixels."""
    from scipy.spatial import ConvexHull

    corners = np.concatenate([np.stack([rows + dy, cols + dx], 1) for dy in (0, 1) for dx in (0, 1)])
    return float(ConvexHull(np.unique(corners, axis=0).astype(np.float64)).volume)  # 2-D volume: area


def haematoxylin_components(
    rgb: np.ndarray,
    threshold: float | None = None,
    min_area: int = DEFAULT_MIN_AREA,
    smooth: float = DEFAULT_SMOOTH,
) -> NucleusStats:
    """Area and solidity of every haematoxylin-dense component of an (H, W, 3) uint8 image.

    A pixel is dense where the haematoxylin density, Gaussian-smoothed by ``smooth`` pixels, exceeds
    ``threshold``: a fixed density (e.g. ``haematoxylin_threshold`` of real crops, to hold several
    images to one level) or, with None, Otsu's threshold of this image's own tissue pixels (which
    adapts to stain intensity, so that images stained more or less strongly compare by shape). Holes
    are filled; components that touch the border (cut, so of unknown size) or have fewer than
    ``min_area`` pixels are left out. An image without two distinct densities has no components.
    """
    from scipy import ndimage

    arr = np.asarray(rgb)
    if arr.ndim != 3 or arr.dtype != np.uint8 or arr.shape[2] not in (3, 4):
        raise InputError(f"image: expected an (H, W, 3) uint8 RGB image, got {arr.dtype} {arr.shape}")
    if threshold is None:
        tissue_h = rgb_to_hed(tissue_pixels(arr[..., :3]))[:, 0]
        if len(tissue_h) < 2 or tissue_h.min() == tissue_h.max():
            return NucleusStats(np.zeros(0), np.zeros(0))
        threshold = otsu_threshold(tissue_h)
    if not np.isfinite(threshold) or threshold <= 0:
        raise InputError(f"threshold: expected a positive haematoxylin density, got {threshold}")
    density = rgb_to_hed(arr[..., :3])[..., 0]
    if smooth > 0:
        density = ndimage.gaussian_filter(density, smooth)
    mask = ndimage.binary_fill_holes(density > threshold)
    labels, _ = ndimage.label(mask)
    areas, solidities = [], []
    h, w = mask.shape
    for k, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        ys, xs = box
        if ys.start == 0 or xs.start == 0 or ys.stop == h or xs.stop == w:
            continue
        rows, cols = np.nonzero(labels[box] == k)
        if len(rows) < min_area:
            continue
        areas.append(len(rows))
        solidities.append(len(rows) / _hull_area(rows, cols))
    return NucleusStats(np.array(areas, np.float64), np.array(solidities, np.float64))
