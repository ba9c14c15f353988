"""The seam measure: high-frequency energy on patch boundaries over that midway between them.

A seam is a discontinuity along a line where patches meet, so the Laplacian is larger there than
on comparable lines elsewhere. The measure is the mean |Laplacian| of the grey image on the pixel
rows and columns adjacent to the interior boundaries of the latent patch grid, divided by the same
on lines midway between neighbouring boundaries. 1.0 means no seam; 1.2 means boundaries carry 20%
more high-frequency energy than the image around them. Lines are read in bands of ``BAND`` pixels,
so the measure works on zarr arrays larger than memory and reads each chunk row (column) at most
twice per pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from napari_pathup.engine.grid import PatchGrid

GREY = np.array([0.299, 0.587, 0.114])


def boundary_lines(starts: list[int], patch: int, length: int) -> tuple[list[int], list[int]]:
    """Interior boundaries (in latent pixels) along one axis, and the lines midway between them."""
    edges = sorted(
        {s for s in starts if 0 < s < length} | {s + patch for s in starts if 0 < s + patch < length}
    )
    if not edges:
        return [], []
    points = [0, *edges, length]
    middles = [(a + b) // 2 for a, b in pairwise(points) if b - a >= 2]
    middles = [m for m in middles if m not in edges]
    return edges, middles


#: lines are read in bands this many pixels wide, so a chunked (zarr, dask) image is read about once
BAND = 512


def _strips(image: Any, positions: list[int], axis: int) -> Any:
    """The 4-pixel strip around each position, in order, read through bands of ``BAND`` lines."""
    length = image.shape[axis]
    band_lo, band = 0, None
    for pos in sorted(positions):
        lo, hi = max(pos - 2, 0), min(pos + 2, length)
        if band is None or lo < band_lo or hi > band_lo + band.shape[axis]:
            band_lo = lo // BAND * BAND  # aligned, so bands match chunks of BAND pixels
            band_hi = min(max(band_lo + BAND, hi), length)
            band = np.asarray(image[band_lo:band_hi] if axis == 0 else image[:, band_lo:band_hi])
        yield band[lo - band_lo : hi - band_lo] if axis == 0 else band[:, lo - band_lo : hi - band_lo]


def _line_energy(image: Any, positions: list[int], axis: int) -> float:
    """Mean |Laplacian| on the two pixel lines either side of each position (axis 0: rows)."""
    if not positions:
        return float("nan")
    total, count = 0.0, 0
    for raw in _strips(image, positions, axis):
        strip = np.asarray(raw, dtype=np.float64) @ GREY
        if axis == 1:
            strip = strip.T
        # 4-neighbour Laplacian on the strip's inner rows (pos - 1 and pos), interior columns only
        inner = strip[1:-1, 1:-1]
        lap = strip[:-2, 1:-1] + strip[2:, 1:-1] + strip[1:-1, :-2] + strip[1:-1, 2:] - 4 * inner
        total += float(np.abs(lap).sum())
        count += lap.size
    return total / max(count, 1)


def seam_measure(image: Any, patch_size: int, overlap: int, scale_factor: int = 8) -> float:
    """Seam measure of an (H, W, 3) image made with latent patches ``patch_size``/``overlap``.

    Returns NaN when the grid has a single patch (there is no boundary to measure).
    """
    height, width = image.shape[:2]
    grid = PatchGrid(height // scale_factor, width // scale_factor, patch_size, overlap)
    ys, xs = grid.starts()
    row_edges, row_mid = boundary_lines(ys, patch_size, grid.height)
    col_edges, col_mid = boundary_lines(xs, patch_size, grid.width)
    f = scale_factor
    on = [
        e
        for e in (
            _line_energy(image, [r * f for r in row_edges], 0),
            _line_energy(image, [c * f for c in col_edges], 1),
        )
        if not np.isnan(e)
    ]
    off = [
        e
        for e in (
            _line_energy(image, [r * f for r in row_mid], 0),
            _line_energy(image, [c * f for c in col_mid], 1),
        )
        if not np.isnan(e)
    ]
    if not on or not off or sum(off) == 0:
        return float("nan")
    return float(np.mean(on) / np.mean(off))


@dataclass(frozen=True)
class SeamGrid:
    """The latent patch grid an image was made with, and where that grid came from."""

    patch_size: int
    overlap: int
    scale_factor: int
    source: str


def seam_grid(
    height: int,
    width: int,
    settings: Mapping[str, Any] | None = None,
    model_dir: str | Path | None = None,
    scale_factor: int = 8,
) -> SeamGrid:
    """The grid to measure seams on: ``settings`` recorded with the image (its ``patch_size`` and
    ``overlap``), else the stage-2 grid of the run plan that ``model_dir`` (default: the embedded
    model) resolves for this size, read from its configs (no weights load).
    """
    if settings and settings.get("patch_size") is not None and settings.get("overlap") is not None:
        patch, overlap = int(settings["patch_size"]), int(settings["overlap"])
        return SeamGrid(patch, overlap, scale_factor, "recorded settings")
    from napari_pathup.engine.plan import SynthesisSettings
    from napari_pathup.models.default import resolve_model_spec
    from napari_pathup.models.load import read_model_spec

    spec = read_model_spec(resolve_model_spec(model_dir))  # configs only: no weights load
    class_name = spec.classes[0] if spec.classes else "tissue"
    plan = SynthesisSettings(class_name, height=height, width=width).resolve(spec)
    grid = plan.stages[1].grid
    return SeamGrid(
        grid.patch_size, grid.overlap, plan.scale_factor, f"defaults of model {Path(spec.path).name}"
    )
