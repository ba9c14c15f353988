"""Progress events streamed by the engine, so a viewer or a progress bar can follow a run.

The engine is a generator of these; the consumer decides what to show. Stopping the iteration
(``generator.close()``, or a napari worker's ``quit``) cancels the run between patch batches.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from napari_pathup.geometry import Box


@dataclass(frozen=True)
class StageStarted:
    """A stage of Algorithm 1 begins (1: reference img2img at 512, 2: patch-wise upscaling).

    ``steps`` is the number of timesteps the stage runs (the tail of the schedule that its
    strength leaves), so ``steps * patches_per_step`` previews follow.
    """

    stage: int
    steps: int
    patches_per_step: int
    image_shape: tuple[int, int]
    latent_shape: tuple[int, int]


@dataclass(frozen=True)
class StepStarted:
    """One sampler timestep begins; ``step`` counts from 0 to ``steps - 1``."""

    stage: int
    step: int
    steps: int
    timestep: float


@dataclass(frozen=True, eq=False)
class PatchPreview:
    """A cheap RGB preview of one patch's current x0 estimate, at latent resolution.

    ``box`` is in latent pixels, ``pixel_box`` in output pixels (``box`` times the VAE factor);
    ``rgb`` is (h, w, 3) uint8 at latent resolution, to be shown scaled by the VAE factor. It is
    computed on first access only, so a consumer that ignores previews pays nothing for them.
    """

    stage: int
    step: int
    steps: int
    box: Box
    pixel_box: Box
    patch_index: int
    patches: int
    render: Callable[[], np.ndarray] = field(repr=False)

    @cached_property
    def rgb(self) -> np.ndarray:
        return self.render()


@dataclass(frozen=True)
class TileDecoded:
    """A region of the output whose decoded pixels are final (already written to the sink)."""

    stage: int
    box: Box
    rgb: np.ndarray
    tile_index: int
    tiles: int


@dataclass(frozen=True)
class Finished:
    """The run is complete; ``image`` is the sink holding the (H, W, 3) uint8 result."""

    image: Any
    reference: np.ndarray
    settings: dict[str, Any] = field(default_factory=dict)


Event = StageStarted | StepStarted | PatchPreview | TileDecoded | Finished
