"""Quality dock widget: FD/FID, KD/KID, precision, recall, density and coverage of synthetic vs real images.

A thin front end of ``metrics.compute_metrics`` (the same function ``pathup metrics`` calls): each
side is a set of image layers or a folder; the run happens in a thread worker with a napari
progress bar over the images and can be cancelled between images. The result is shown as a table
(with the feature extractor named, as the metrics report labels it) and a bar plot.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.types import FileDialogMode
from magicgui.widgets import ComboBox, Container, FileEdit, Label, PushButton, Select, SpinBox
from qtpy.QtWidgets import QSizePolicy, QTableWidgetItem

from napari_pathup.errors import InputError
from napari_pathup.measure.quality import measure_quality
from napari_pathup.metrics import (
    EXTRACTORS,
    MetricsReport,
    MetricsWarning,
    effnet_lite,  # noqa: F401  (imported here, not in the worker thread)
)
from napari_pathup.widgets._base import (
    WorkerDock,
    chosen_path,
    follow_real_and_synthetic,
    read_only_table,
    rgb_levels,
)
from napari_pathup.widgets._plot import PlotView, RenderedPlot

if TYPE_CHECKING:
    import napari
    from napari.layers import Image


class QualityWidget(WorkerDock):
    """Choose real and synthetic layers or folders; compute the metrics in a worker; table and plot."""

    title = "PathUp Quality"

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__(napari_viewer)
        self.report: MetricsReport | None = None
        self._extractors: dict[tuple, Any] = {}

        self.real_layers = Select(label="real layers", choices=self.image_choices, allow_multiple=True)
        self.real_folder = FileEdit(label="or real folder", mode=FileDialogMode.EXISTING_DIRECTORY)
        self.synth_layers = Select(label="synthetic layers", choices=self.image_choices, allow_multiple=True)
        self.synth_folder = FileEdit(label="or synthetic folder", mode=FileDialogMode.EXISTING_DIRECTORY)
        self.crops = SpinBox(
            label="crop size",
            min=0,
            max=65536,
            step=64,
            value=0,
            tooltip="0: whole images; e.g. 512 for 2048x2048",
        )
        self.extractor = ComboBox(
            label="extractor",
            choices=["auto", *EXTRACTORS],
            value="auto",
            tooltip="auto: inception when its weights are given, else effnet-lite0; only inception gives FID",
        )
        self.inception_weights = FileEdit(label="inception weights", mode=FileDialogMode.EXISTING_FILE)
        self.k = SpinBox(label="k (nearest neighbours)", min=1, max=100, value=3)
        self.kid_subsets = SpinBox(label="KID subsets", min=1, max=10000, value=100)
        self.kid_subset_size = SpinBox(label="KID subset size", min=2, max=100000, value=1000)
        self.device = ComboBox(label="device", choices=["auto", "cpu", "cuda", "mps"], value="auto")
        self.compute_button = PushButton(text="Compute")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.summary = Label(value="")
        self.k_options = Container(
            layout="horizontal",
            label="k, KID subsets, size",
            widgets=[self.k, self.kid_subsets, self.kid_subset_size],
            labels=False,
        )
        self.k.tooltip, self.kid_subsets.tooltip = "k of the k-NN balls", "number of KID subsets"
        self.kid_subset_size.tooltip = "samples per KID subset (shrunk with a warning for smaller sets)"
        buttons = Container(
            layout="horizontal", widgets=[self.compute_button, self.cancel_button], labels=False
        )
        self.form = Container(
            widgets=[
                self.real_layers, self.real_folder, self.synth_layers, self.synth_folder, self.crops,
                self.extractor, self.inception_weights, self.k_options, self.device, buttons,
            ]
        )  # fmt: skip
        for select in (self.real_layers, self.synth_layers):
            select.native.setMaximumHeight(90)
        self.summary.native.setWordWrap(True)
        self.summary.native.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.table = read_only_table(["metric", "value"])
        self.table.setMinimumHeight(200)
        self.plot_view = PlotView(size=(420, 260))

        layout = self.scrolling_layout()
        layout.addWidget(self.form.native)
        layout.addWidget(self.summary.native)
        layout.addWidget(self.table)
        layout.addWidget(self.plot_view)

        self.compute_button.changed.connect(self.compute)
        self.cancel_button.changed.connect(self.cancel)
        follow_real_and_synthetic(self.viewer, self.real_layers, self.synth_layers)

    def set_busy(self, busy: bool) -> None:
        self.compute_button.enabled, self.cancel_button.enabled = not busy, busy

    def _side(self, layers: list[Image], folder: Any, what: str) -> list[Any] | Path:
        """A folder when one is given, else the chosen layers' level-0 arrays (not loaded yet)."""
        if (path := chosen_path(folder)) is not None:
            return path
        if not layers:
            raise InputError(f"choose {what} layers or a {what} folder")
        return [rgb_levels(layer)[0] for layer in layers]

    def options(self) -> dict[str, Any]:
        return {
            "crops": int(self.crops.value) or None,
            "extractor": str(self.extractor.value),
            "inception_weights": None
            if (weights := chosen_path(self.inception_weights.value)) is None
            else str(weights),
            "device": None if self.device.value == "auto" else str(self.device.value),
            "k": int(self.k.value),
            "kid_subsets": int(self.kid_subsets.value),
            "kid_subset_size": int(self.kid_subset_size.value),
        }

    def compute(self, _value: Any = None) -> Any:
        """Start the metrics in a worker; returns the worker (None when the inputs are invalid)."""
        try:
            real = self._side(list(self.real_layers.value), self.real_folder.value, "real")
            synth = self._side(list(self.synth_layers.value), self.synth_folder.value, "synthetic")
        except InputError as exc:
            self.report_error(str(exc))
            return None
        return self.run_task(
            measure_quality,
            real,
            synth,
            self.options(),
            self._extractors,
            self.plot_view.ratio(),
            on_result=self.show_report,
            surface=(MetricsWarning,),
        )

    def show_report(self, result: tuple[MetricsReport, RenderedPlot]) -> None:
        report, plot = result
        self.report = report
        ext = report.extractor
        crops = f"{report.crops}x{report.crops} crops" if report.crops else "whole images"
        rows = [
            ("feature extractor", f"{ext['label']} [{ext['name']}]"),
            ("samples (real / synthetic)", f"{report.real.n_samples} / {report.synth.n_samples} ({crops})"),
        ]
        labels, values = report.labels(), report.values()
        rows += [(labels[key], f"{value:.6g}") for key, value in values.items()]
        self.table.setRowCount(len(rows))
        for row, cells in enumerate(rows):
            for col, text in enumerate(cells):
                self.table.setItem(row, col, QTableWidgetItem(text))
        self.table.resizeColumnsToContents()
        fd_label = labels[report.fd_key]
        self.summary.value = f"{fd_label} = {report.frechet_distance:.4g}" + "".join(
            f"\nnote: {note}" for note in report.notes
        )
        self.plot_view.show_plot(plot)
