"""Matplotlib plots for the dock widgets, rendered in the worker thread and shown as an image.

Drawing a figure with text (titles, ticks, legends) takes hundreds of milliseconds on a busy CPU
(measured in benchmarks/bench_widget_stalls.py: 340-910 ms for these plots on a
FigureCanvasQTAgg), which would freeze the viewer at the end of every measurement. So the worker
draws the figure on its own Agg canvas (one figure per thread, nothing shared with the GUI) and
the GUI thread only shows the pixels; the ``Figure`` is kept for inspection.
"""

from __future__ import annotations

from matplotlib.figure import Figure
from qtpy.QtCore import Qt
from qtpy.QtGui import QImage, QPixmap
from qtpy.QtWidgets import QLabel, QSizePolicy

from napari_pathup.measure.plot import PLOT_SIZE, RenderedPlot, render

__all__ = ["PLOT_SIZE", "PlotView", "RenderedPlot", "render"]


class PlotView(QLabel):
    """Shows a ``RenderedPlot``, scaled down (never up) to fit the space the dock gives it."""

    def __init__(self, size: tuple[int, int] = PLOT_SIZE) -> None:
        super().__init__()
        self.plot: RenderedPlot | None = None
        self._pixmap: QPixmap | None = None
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setMinimumSize(size[0] // 2, size[1])
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self._size = size

    @property
    def figure(self) -> Figure | None:
        return self.plot.figure if self.plot else None

    def ratio(self) -> float:
        return float(self.devicePixelRatioF())

    def show_plot(self, plot: RenderedPlot) -> None:
        self.plot = plot
        h, w = plot.rgba.shape[:2]
        image = QImage(plot.rgba.tobytes(), w, h, 4 * w, QImage.Format.Format_RGBA8888).copy()
        self._pixmap = QPixmap.fromImage(image)
        self._pixmap.setDevicePixelRatio(w / self._size[0])
        self._rescale()

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        super().resizeEvent(event)
        self._rescale()

    def _rescale(self) -> None:
        """Fit the plot into the label (keeping its aspect ratio), never larger than it was drawn."""
        if self._pixmap is None:
            return
        ratio = self._pixmap.devicePixelRatio()
        width = min(self.width(), int(self._pixmap.width() / ratio))
        height = min(self.height(), int(self._pixmap.height() / ratio))
        scaled = self._pixmap.scaled(
            int(width * ratio),
            int(height * ratio),
            Qt.AspectRatioMode.KeepAspectRatio,
            Qt.TransformationMode.SmoothTransformation,
        )
        scaled.setDevicePixelRatio(ratio)
        self.setPixmap(scaled)
