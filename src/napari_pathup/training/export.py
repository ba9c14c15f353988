"""The final model: EMA weights in the class-conditioned PathUp layout, synthesis defaults, one real
reference image per class (from a training region, never from a hold-out) and a training record."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import SchedulerMixin

from napari_pathup.datasets import CELL, Box, DatasetIndex, ImageEntry, tissue_cells, training_regions
from napari_pathup.models.base import cast_floating
from napari_pathup.models.layout import save_pathup_model
from napari_pathup.training import DENOISER_STORAGES
from napari_pathup.training.data import TrainingImages

#: synthesis defaults written to ``pathup.json`` (chosen so that a 2048x2048 synthesis of the ``cpu``
#: presets stays near a minute on a 2-core CPU; see scripts/train_default_model.sh)
DEFAULT_SYNTHESIS: dict[str, Any] = {
    "steps": 20,
    "strength": 0.6,
    "upscale_strength": 0.45,
    "guidance": 2.5,
    "weights": "cosine",
}
#: how the exported denoiser's weights may be stored (``pathup train --denoiser-storage``)
STORAGE_DTYPES: dict[str, torch.dtype] = {name: getattr(torch, name) for name in DENOISER_STORAGES}
REFERENCE_DIR = "references"
MAX_REFERENCE_SIDE = 1024


def image_window(
    rgb: np.ndarray, holdout: Box | None, max_side: int = MAX_REFERENCE_SIDE
) -> tuple[float, np.ndarray] | None:
    """One image's window (at most ``max_side`` square) with the most tissue among its training
    regions, with its tissue score; None when it has no training region. Hold-out pixels are never
    part of it."""
    best: tuple[float, np.ndarray] | None = None
    height, width = rgb.shape[:2]
    for r in training_regions(height, width, holdout, CELL):
        cells = tissue_cells(rgb[r.y0 : r.y1, r.x0 : r.x1])
        wh, ww = min(cells.shape[0], max_side // CELL), min(cells.shape[1], max_side // CELL)
        table = np.zeros((cells.shape[0] + 1, cells.shape[1] + 1))
        table[1:, 1:] = cells.cumsum(0).cumsum(1)
        sums = table[wh:, ww:] - table[:-wh, ww:] - table[wh:, :-ww] + table[:-wh, :-ww]
        cy, cx = np.unravel_index(int(np.argmax(sums)), sums.shape)
        if best is None or sums[cy, cx] > best[0]:
            y, x = r.y0 + cy * CELL, r.x0 + cx * CELL
            best = (float(sums[cy, cx]), rgb[y : y + wh * CELL, x : x + ww * CELL])
    return best


def image_references(
    index: DatasetIndex, arrays: list[np.ndarray], max_side: int = MAX_REFERENCE_SIDE
) -> list[tuple[ImageEntry, np.ndarray]]:
    """(entry, its window of :func:`image_window`) per image of ``index`` that has a training region:
    one reference per slide, for a class whose slides differ (``scripts/slide_references.py``)."""
    out = []
    for entry, rgb in zip(index.images, arrays, strict=True):
        found = image_window(rgb, entry.holdout, max_side)
        if found is not None:
            out.append((entry, np.ascontiguousarray(found[1])))
    return out


def choose_references(data: TrainingImages, max_side: int = MAX_REFERENCE_SIDE) -> dict[str, np.ndarray]:
    """Per class, the window (at most ``max_side`` square) with the most tissue among the training
    regions of its images; hold-out pixels are never part of a reference."""
    out = {}
    for name in data.classes:
        best: tuple[float, np.ndarray] | None = None
        for entry, rgb in zip(data.index.images, data.arrays, strict=True):
            found = image_window(rgb, entry.holdout, max_side) if entry.class_name == name else None
            if found is not None and (best is None or found[0] > best[0]):
                best = found
        if best is not None:
            out[name] = np.ascontiguousarray(best[1])
    return out


def write_references(folder: Path, references: dict[str, np.ndarray]) -> dict[str, str]:
    from PIL import Image

    (folder / REFERENCE_DIR).mkdir(parents=True, exist_ok=True)
    names = {}
    for class_name, image in references.items():
        relative = f"{REFERENCE_DIR}/{class_name}.png"
        Image.fromarray(image).save(folder / relative, optimize=True)
        names[class_name] = relative
    return names


def export_model(
    folder: Path,
    denoiser: torch.nn.Module,
    autoencoder: torch.nn.Module,
    scheduler: SchedulerMixin,
    data: TrainingImages,
    defaults: dict[str, Any],
    training: dict[str, Any],
    denoiser_storage: str = "float32",
    class_defaults: dict[str, dict[str, Any]] | None = None,
) -> Path:
    """Write the model folder that :func:`napari_pathup.models.load.load_model` loads.

    ``denoiser_storage`` "float16" writes the denoiser's weights in half precision (recorded in
    "training"); loading upcasts them to float32. ``class_defaults`` (class -> settings) become
    ``pathup.json`` "class_defaults", which a run of that class starts from over "defaults"."""
    if denoiser_storage not in STORAGE_DTYPES:
        raise ValueError(
            f"denoiser storage must be one of {', '.join(STORAGE_DTYPES)}, got {denoiser_storage!r}"
        )
    references = write_references(folder, choose_references(data))
    holdout = {e.key: e.holdout.to_json() for e in data.index.images if e.holdout is not None}
    extra: dict[str, Any] = {"defaults": {**DEFAULT_SYNTHESIS, **defaults}}
    if class_defaults:
        extra["class_defaults"] = class_defaults
    extra |= {
        "references": references,
        "holdout": holdout,
        "training": training,
    }
    if denoiser_storage != "float32":
        extra["training"] = {**training, "denoiser_storage": denoiser_storage}
    stored = cast_floating(copy.deepcopy(denoiser).cpu(), STORAGE_DTYPES[denoiser_storage])
    return save_pathup_model(folder, stored, autoencoder.cpu(), scheduler, data.classes, extra=extra)


def folder_megabytes(folder: Path, skip: str = "checkpoints") -> float:
    """Size of a model folder without its checkpoints."""
    return (
        sum(
            p.stat().st_size
            for p in folder.rglob("*")
            if p.is_file() and skip not in p.relative_to(folder).parts
        )
        / 1e6
    )
