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

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from magicgui.widgets import ComboBox, Container, PushButton, Select, SpinBox
from napari.layers import Shapes
from qtpy.QtWidgets import QPushButton, QTableWidgetItem

from napari_pathup.errors import InputError
from napari_pathup.measure.compare import CompareResult, measure_compare
from napari_pathup.metrics.stain import DEFAULT_PIXELS
from napari_pathup.widgets._base import (
    WorkerDock,
    follow_real_and_synthetic,
    is_synthetic,
    read_only_table,
    rgb_levels,
)
from napari_pathup.widgets._plot import PlotView
from napari_pathup.widgets._roi import cropped_levels, rectangle_roi

if TYPE_CHECKING:
    import napari
    from napari.layers import Image


WHOLE_LAYERS = "(the whole layers)"


@dataclass
class _Saved:
    enabled: bool
    shape: tuple[int, int]
    stride: int
    visible: dict[int, bool]
    order: list[Any]


class CompareWidget(WorkerDock):
    """Real and synthetic layers side by side, their H and E distributions, and the seam measure."""

    title = "PathUp Compare"

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__(napari_viewer)
        self.result: CompareResult | None = None
        self._saved: _Saved | None = None

        self.real = Select(label="real RoIs", choices=self.image_choices, allow_multiple=True)
        self.synthetic = Select(label="synthetic", choices=self.image_choices, allow_multiple=True)
        self.roi = ComboBox(
            label="real RoI",
            choices=self._roi_choices,
            tooltip="a Shapes layer: its selected (else last) rectangle limits the real layers to that RoI",
        )
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
        self.form = Container(widgets=[self.real, self.synthetic, self.roi, self.n_pixels])
        self.side_by_side = QPushButton("Side by side (grid)")
        self.side_by_side.setCheckable(True)
        self.plot_view = PlotView()
        self.seam_table = read_only_table(["synthetic layer", "seam measure", "patch / overlap"])
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
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(lambda _: self.roi.reset_choices())

    # -- layer choices ----------------------------------------------------------------------
    def _roi_choices(self, _widget: Any = None) -> list[str]:
        return [WHOLE_LAYERS, *(layer.name for layer in self.viewer.layers if isinstance(layer, Shapes))]

    def real_levels(self, layer: Image) -> list[Any]:
        """A real layer's levels, cropped (lazily) to the chosen rectangle when there is one."""
        levels = rgb_levels(layer)
        if self.roi.value in (None, WHOLE_LAYERS):
            return levels
        return cropped_levels(levels, rectangle_roi(self.viewer.layers[self.roi.value], layer).region)

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
            groups = {
                "real": [(layer.name, self.real_levels(layer)) for layer in chosen["real"]],
                "synthetic": [(layer.name, rgb_levels(layer)) for layer in chosen["synthetic"]],
            }
        except InputError as exc:
            self.report_error(str(exc))
            return None
        settings = {
            layer.name: layer.metadata["pathup"]["settings"] if is_synthetic(layer) else None
            for layer in chosen["synthetic"]
        }
        n_pixels, ratio = int(self.n_pixels.value), self.plot_view.ratio()
        return self.run_task(
            measure_compare, groups, settings, n_pixels, None, ratio, on_result=self.show_result
        )

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
