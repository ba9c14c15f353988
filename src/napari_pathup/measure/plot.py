"""Plots drawn off the GUI thread: a matplotlib figure rendered to RGBA pixels with the Agg backend."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

#: logical size of a plot in the dock (pixels); rendered at the screen's pixel ratio
PLOT_SIZE = (420, 440)


@dataclass
class RenderedPlot:
    """A drawn figure and its RGBA pixels (H, W, 4) uint8."""

    figure: Figure
    rgba: np.ndarray


def render(
    draw: Callable[[Figure], None], size: tuple[int, int] = PLOT_SIZE, ratio: float = 1.0
) -> RenderedPlot:
    """A figure of ``size`` logical pixels (``ratio`` device pixels each), filled by ``draw``, rendered."""
    dpi = 100 * ratio
    figure = Figure(figsize=(size[0] / 100, size[1] / 100), dpi=dpi, layout="constrained")
    canvas = FigureCanvasAgg(figure)
    draw(figure)
    canvas.draw()
    return RenderedPlot(figure, np.array(canvas.buffer_rgba(), copy=True))
