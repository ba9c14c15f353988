"""Compare's measures: pooled H and E distributions of real and synthetic layers, and each synthetic
layer's seam measure on the patch grid it records (else the default model's). Samples a bounded number of
tissue pixels from the smallest pyramid level that holds them, so large layers are never read whole."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from napari_pathup.engine.seams import SeamGrid, seam_grid, seam_measure
from napari_pathup.measure.plot import RenderedPlot, render
from napari_pathup.measure.tasks import TaskProgress
from napari_pathup.metrics.stain import StainDistribution, sample_pixels, shared_edges, stain_distribution

GROUPS = ("real", "synthetic")
#: a lazy (zarr, dask) level 0 up to this many pixels (4096^2: 48 MiB) is read whole for the seam measure
LOAD_WHOLE = 4096 * 4096
STYLE = {
    "real": {"color": "tab:blue", "linestyle": "-"},
    "synthetic": {"color": "tab:orange", "linestyle": "--"},
}


@dataclass(frozen=True)
class SeamResult:
    """The seam measure of one synthetic layer (NaN: a single patch), or why there is none."""

    value: float
    grid: SeamGrid | None
    reason: str = ""

    def text(self) -> str:
        if self.grid is None:
            return f"not applicable: {self.reason}"
        if math.isnan(self.value):
            return "not applicable (a single patch: no boundary)"
        return f"{self.value:.3f}"


@dataclass
class CompareResult:
    """Stain distributions of the real and synthetic pixels, and the seam measure of each synthetic layer."""

    stains: dict[str, StainDistribution] = field(default_factory=dict)
    seams: dict[str, SeamResult] = field(default_factory=dict)
    plot: RenderedPlot | None = None


def _seam(level0: Any, settings: dict | None, model_dir: Path | None) -> SeamResult:
    height, width = level0.shape[:2]
    if not isinstance(level0, np.ndarray) and height * width <= LOAD_WHOLE:
        level0 = np.asarray(level0)  # one read instead of one per band and pass (5x faster at 4096^2)
    try:
        grid = seam_grid(height, width, settings, model_dir)
        value = seam_measure(level0, grid.patch_size, grid.overlap, grid.scale_factor)
    except ValueError as exc:
        return SeamResult(float("nan"), None, str(exc))
    return SeamResult(value, grid)


def measure_compare(
    context: TaskProgress,
    groups: dict[str, list[tuple[str, list[Any]]]],
    settings: dict[str, dict | None],
    n_pixels: int,
    model_dir: Path | None,
    ratio: float = 1.0,
) -> CompareResult:
    """Runs in the worker: pooled stain distributions per group, seam measure per synthetic layer.

    ``groups`` maps "real"/"synthetic" to (layer name, pyramid levels); ``settings`` maps a synthetic
    layer's name to its recorded synthesis settings (or None), measured on the default grid of
    ``model_dir`` (None: the embedded model) when None.
    """
    layers = [(group, name, levels) for group in GROUPS for name, levels in groups.get(group, [])]
    total = len(layers) + len(groups.get("synthetic", [])) + 1
    done = 0
    pooled: dict[str, list[np.ndarray]] = {}
    for seed, (group, name, levels) in enumerate(layers):
        context.progress(done, total, f"sampling {name}")
        pooled.setdefault(group, []).append(sample_pixels(levels, n_pixels, seed=seed, name=name))
        done += 1
    pixels = {group: np.concatenate(parts) for group, parts in pooled.items()}
    edges = shared_edges(list(pixels.values()))
    result = CompareResult(stains={group: stain_distribution(p, edges) for group, p in pixels.items()})
    done += 1
    for name, levels in groups.get("synthetic", []):
        context.progress(done, total, f"seams of {name}")
        result.seams[name] = _seam(levels[0], settings.get(name), model_dir)
        done += 1
    context.progress(done, total, "plotting")
    result.plot = render(lambda figure: plot_stains(figure, result.stains), ratio=ratio)
    return result


def plot_stains(figure: Figure, stains: dict[str, StainDistribution]) -> None:
    """Haematoxylin above, eosin below: one curve per group, mean ± std in the legend."""
    axes = figure.subplots(2, 1)
    for channel, (ax, title) in enumerate(zip(axes, ("Haematoxylin", "Eosin"), strict=True)):
        for group, dist in stains.items():
            density = dist.haematoxylin if channel == 0 else dist.eosin
            ax.plot(
                dist.centres,
                density,
                label=f"{group}: {dist.mean[channel]:.3f} ± {dist.std[channel]:.3f}",
                **STYLE[group],
            )
        ax.set_title(f"{title} (colour deconvolution)", fontsize=9)
        ax.set_xlabel("optical density (rgb2hed units)", fontsize=8)
        ax.set_ylabel("density", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, title="mean ± std", title_fontsize=7)
