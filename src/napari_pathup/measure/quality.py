"""Quality's measure: FID/KID/precision/recall/density/coverage of real against synthetic images (layers'
level 0 or folders), with progress per image, and a bar plot naming the feature extractor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from napari_pathup.measure.plot import RenderedPlot, render
from napari_pathup.measure.tasks import TaskProgress
from napari_pathup.metrics import MetricsReport, compute_metrics, get_extractor
from napari_pathup.metrics.images import check_crop_size, image_set

PLOTTED = ("precision", "recall", "density", "coverage")


def measure_quality(
    context: TaskProgress,
    real: list[Any] | Path,
    synth: list[Any] | Path,
    options: dict[str, Any],
    extractors: dict[tuple, Any],
    ratio: float = 1.0,
) -> tuple[MetricsReport, RenderedPlot]:
    """Runs in the worker: load the layers (level 0), then ``compute_metrics`` with progress per image.

    ``real``/``synth`` are a folder or a list of (H, W, 3|4) arrays; ``extractors`` caches feature
    networks by (name, weights, device) between runs. The plot is drawn here too (off the GUI thread).
    """

    def load(side: list[Any] | Path) -> list[Any] | Path:
        return side if isinstance(side, Path) else [load_rgb(level) for level in side]

    context.progress(0, 1, "loading images")
    real_source, synth_source = load(real), load(synth)
    real_set, synth_set = image_set(real_source, "real"), image_set(synth_source, "synthetic")
    check_crop_size(real_set, options["crops"])  # fail before loading a network
    check_crop_size(synth_set, options["crops"])
    n_real, total = len(real_set), len(real_set) + len(synth_set) + 1

    def on_image(what: str, done: int, _count: int) -> None:
        context.progress(done if what == "real" else n_real + done, total, f"{what} features")

    key = (options["extractor"], options["inception_weights"], options["device"])
    context.progress(0, total, f"loading the {options['extractor']} extractor")
    if key not in extractors:
        extractors[key] = get_extractor(key[0], inception_weights=key[1], device=key[2])
    report = compute_metrics(
        real_source,
        synth_source,
        extractor=extractors[key],
        crops=options["crops"],
        k=options["k"],
        kid_subsets=options["kid_subsets"],
        kid_subset_size=options["kid_subset_size"],
        on_image=on_image,
    )
    context.progress(total, total, "plotting")
    return report, render(lambda figure: plot_report(figure, report), size=(420, 260), ratio=ratio)


def plot_report(figure: Figure, report: MetricsReport) -> None:
    """Bars of precision, recall, density and coverage, titled with the feature extractor."""
    ax = figure.subplots()
    values = report.values()
    heights = [values[key] for key in PLOTTED]
    bars = ax.bar(PLOTTED, heights, color=["tab:blue", "tab:orange", "tab:green", "tab:red"])
    ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.axhline(1.0, color="grey", linewidth=0.8, linestyle=":")
    ax.set_ylim(0, max(1.1, max(heights) * 1.15))
    ax.set_title(f"k-NN metrics (k={report.prdc.k}), {report.extractor['label']} features", fontsize=9)
    ax.tick_params(labelsize=8)


def load_rgb(level: Any) -> np.ndarray:
    """A whole level as an (H, W, 3) uint8 numpy array (alpha dropped); call it in a worker."""
    return np.ascontiguousarray(np.asarray(level[..., :3]))
