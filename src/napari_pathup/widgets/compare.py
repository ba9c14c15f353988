"""Compare dock widget: real RoIs and synthetic images side by side, their stain distributions, and seams.

"Side by side" puts the chosen layers in napari's grid mode (one camera, so zoom and pan are
linked), real layers first, with every other layer hidden; pressing it again restores the grid
settings, the visibility and the order of the layers. "Measure" samples a bounded number of
tissue pixels of each layer (the smallest pyramid level that holds them, so 2048x2048 and larger
layers are never converted whole) and plots the haematoxylin and eosin densities of the real and
the synthetic pixels (``metrics.stain``), and computes the seam measure of each synthetic layer
(``engine.seams``) on the patch grid its metadata records, else on the default model's grid.
All measuring runs in a thread worker.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import Container, PushButton, Select, SpinBox
from matplotlib.figure import Figure
from qtpy.QtWidgets import QAbstractItemView, QPushButton, QTableWidget, QTableWidgetItem

from napari_pathup.engine.seams import SeamGrid, seam_grid, seam_measure
from napari_pathup.errors import InputError
from napari_pathup.metrics.stain import (
    DEFAULT_PIXELS,
    StainDistribution,
    sample_pixels,
    shared_edges,
    stain_distribution,
)
from napari_pathup.widgets._base import (
    TaskContext,
    WorkerDock,
    follow_real_and_synthetic,
    image_layer_choices,
    is_synthetic,
    rgb_levels,
)
from napari_pathup.widgets._plot import PlotView, RenderedPlot, render

if TYPE_CHECKING:
    import napari
    from napari.layers import Image

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


@dataclass
class _Saved:
    enabled: bool
    shape: tuple[int, int]
    stride: int
    visible: dict[int, bool]
    order: list[Any]


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


def measure(
    context: TaskContext,
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


class CompareWidget(WorkerDock):
    """Real and synthetic layers side by side, their H and E distributions, and the seam measure."""

    title = "PathUp Compare"

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__(napari_viewer)
        self.result: CompareResult | None = None
        self._saved: _Saved | None = None

        self.real = Select(label="real RoIs", choices=self._choices, allow_multiple=True)
        self.synthetic = Select(label="synthetic", choices=self._choices, allow_multiple=True)
        self.n_pixels = SpinBox(
            label="pixels per layer",
            min=1000,
            max=4_194_304,
            step=1000,
            value=DEFAULT_PIXELS,
            tooltip="random tissue pixels read from each layer (its smallest pyramid level that holds them)",
        )
        self.measure_button = PushButton(text="Measure stains and seams")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.form = Container(widgets=[self.real, self.synthetic, self.n_pixels])
        self.side_by_side = QPushButton("Side by side (grid)")
        self.side_by_side.setCheckable(True)
        self.plot_view = PlotView()
        self.seam_table = QTableWidget(0, 3)
        self.seam_table.setHorizontalHeaderLabels(["synthetic layer", "seam measure", "patch / overlap"])
        self.seam_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.seam_table.horizontalHeader().setStretchLastSection(True)
        self.seam_table.verticalHeader().setVisible(False)
        self.seam_table.setMaximumHeight(120)
        for select in (self.real, self.synthetic):
            select.native.setMaximumHeight(90)

        layout = self.scrolling_layout()
        layout.addWidget(self.form.native)
        layout.addWidget(self.side_by_side)
        layout.addWidget(self.measure_button.native)
        layout.addWidget(self.cancel_button.native)
        layout.addWidget(self.plot_view)
        layout.addWidget(self.seam_table)

        self.side_by_side.toggled.connect(self.show_side_by_side)
        self.measure_button.changed.connect(self.measure)
        self.cancel_button.changed.connect(self.cancel)
        follow_real_and_synthetic(self.viewer, self.real, self.synthetic)

    # -- layer choices ----------------------------------------------------------------------
    def _choices(self, _widget: Any = None) -> list[tuple[str, Image]]:
        return image_layer_choices(self.viewer)

    def chosen(self) -> dict[str, list[Image]]:
        return {"real": list(self.real.value), "synthetic": list(self.synthetic.value)}

    # -- side by side -------------------------------------------------------------------------
    def show_side_by_side(self, on: bool) -> None:
        """Grid mode with only the chosen layers visible (real first); off restores what was there."""
        if on:
            self._enter_grid()
        else:
            self._leave_grid()

    def _enter_grid(self) -> None:
        chosen = [layer for group in self.chosen().values() for layer in group]
        chosen = list(dict.fromkeys(chosen))  # a layer chosen twice appears once
        if not chosen:
            self.report_error("choose at least one real or synthetic layer to show side by side")
            self.side_by_side.setChecked(False)
            return
        layers, grid = self.viewer.layers, self.viewer.canvas.grid
        if self._saved is None:
            self._saved = _Saved(
                grid.enabled, tuple(grid.shape), grid.stride, {id(x): x.visible for x in layers}, list(layers)
            )
        for index, layer in enumerate(chosen):  # bottom of the list = top-left of the grid
            layers.move(layers.index(layer), index)
        for layer in layers:
            layer.visible = layer in chosen
        grid.stride = 1
        grid.shape = (1, len(chosen)) if len(chosen) <= 4 else (-1, -1)
        grid.enabled = True
        self.viewer.reset_view()

    def _leave_grid(self) -> None:
        saved, self._saved = self._saved, None
        if saved is None:
            return
        layers, grid = self.viewer.layers, self.viewer.canvas.grid
        present = [layer for layer in saved.order if layer in layers]
        for index, layer in enumerate(present):
            layers.move(layers.index(layer), index)
        for layer in layers:
            layer.visible = saved.visible.get(id(layer), layer.visible)
        grid.enabled, grid.shape, grid.stride = saved.enabled, saved.shape, saved.stride
        self.viewer.reset_view()

    # -- measuring ----------------------------------------------------------------------------
    def set_busy(self, busy: bool) -> None:
        self.measure_button.enabled, self.cancel_button.enabled = not busy, busy

    def measure(self, _value: Any = None) -> Any:
        """Start measuring in a worker; returns the worker (None when the choice is invalid)."""
        chosen = self.chosen()
        if not chosen["real"] and not chosen["synthetic"]:
            self.report_error("choose at least one real or synthetic layer to measure")
            return None
        try:
            groups = {g: [(layer.name, rgb_levels(layer)) for layer in chosen[g]] for g in GROUPS}
        except InputError as exc:
            self.report_error(str(exc))
            return None
        settings = {
            layer.name: layer.metadata["pathup"]["settings"] if is_synthetic(layer) else None
            for layer in chosen["synthetic"]
        }
        n_pixels, ratio = int(self.n_pixels.value), self.plot_view.ratio()
        return self.run_task(measure, groups, settings, n_pixels, None, ratio, on_result=self.show_result)

    def show_result(self, result: CompareResult) -> None:
        self.result = result
        if result.plot is not None:
            self.plot_view.show_plot(result.plot)
        self.seam_table.setRowCount(len(result.seams))
        for row, (name, seam) in enumerate(result.seams.items()):
            grid = seam.grid
            grid_text = f"{grid.patch_size} / {grid.overlap}" if grid else ""
            tip = (
                f"latent patch {grid.patch_size}, overlap {grid.overlap}, from {grid.source}; "
                "1.0 = boundaries carry no more high-frequency energy than the image around them"
                if grid
                else seam.reason
            )
            for col, text in enumerate((name, seam.text(), grid_text)):
                item = QTableWidgetItem(text)
                item.setToolTip(tip)
                self.seam_table.setItem(row, col, item)
        self.seam_table.resizeColumnsToContents()
