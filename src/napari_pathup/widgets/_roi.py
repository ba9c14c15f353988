"""A reference RoI from the viewer: a rectangle of a Shapes layer over any RGB image layer.

The rectangle is taken to world coordinates by the Shapes layer's transform and from there to level-0
pixels of the image layer (which may be multiscale, dask-backed and opened by any reader); the pixels are
then read from one pyramid level only (:mod:`napari_pathup.io.slide`). The image layer's pixel size comes
from its scale when its units are a length (our slide reader, napari-ome-zarr), else from the reader's
metadata ("pixel_size_um" from ours, "resolution" from napari-wsi), else it is unknown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_pathup.errors import InputError
from napari_pathup.geometry import Box
from napari_pathup.io.arrays import scale_pixel_size

if TYPE_CHECKING:
    from napari.layers import Image, Shapes

#: vertices this close (in level-0 pixels) count as on the same row or column
TOLERANCE = 0.5


@dataclass(frozen=True)
class LayerRoi:
    """The rectangle in the image's level-0 pixels and in world coordinates (y0, x0, y1, x1)."""

    region: Box
    world_box: tuple[float, float, float, float]


def layer_levels(layer: Image) -> list[Any]:
    """The image layer's pyramid levels, largest first (one for a plain layer); nothing is read."""
    levels = list(layer.data) if layer.multiscale else [layer.data]
    first = levels[0]
    if not layer.rgb or len(first.shape) != 3 or first.shape[-1] not in (3, 4):
        raise InputError(
            f"layer {layer.name!r} is not an RGB(A) image: expected (H, W, 3|4), got {tuple(first.shape)}"
        )
    return levels


def layer_pixel_size(layer: Image) -> float | None:
    """µm per level-0 pixel of an image layer, or None when nothing records it."""
    from_scale = scale_pixel_size(layer.scale, tuple(getattr(layer, "units", ())))
    if from_scale is not None:
        return from_scale
    meta = layer.metadata if isinstance(layer.metadata, dict) else {}
    value = meta.get("pixel_size_um")
    if value is None and isinstance(meta.get("resolution"), list | tuple) and meta["resolution"]:
        value = meta["resolution"][-1]  # napari-wsi: (y, x) microns per pixel
    try:
        value = float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
    return value if value is not None and np.isfinite(value) and value > 0 else None


def rectangle_roi(shapes: Shapes, image: Image) -> LayerRoi:
    """The chosen rectangle of ``shapes`` (the selected one, else the last drawn) as a RoI of ``image``.

    Raises :class:`InputError` for an empty layer, a shape that is not a rectangle, or a rectangle
    that is rotated relative to the image's pixel grid.
    """
    if len(shapes.data) == 0:
        raise InputError(f"shapes layer {shapes.name!r} has no shapes; draw a rectangle on the image")
    selected = sorted(shapes.selected_data)
    index = selected[0] if len(selected) == 1 else len(shapes.data) - 1
    kind = shapes.shape_type[index]
    vertices = np.asarray(shapes.data[index], dtype=float)[:, -2:]
    if kind != "rectangle" or len(vertices) != 4:
        raise InputError(
            f"shape {index} of {shapes.name!r} is a {kind}; the reference RoI must be a rectangle"
        )
    world = np.array([shapes.data_to_world(v) for v in vertices])[:, -2:]
    pixels = np.array([image.world_to_data(w) for w in world])[:, -2:]
    ys, xs = pixels[:, 0], pixels[:, 1]
    on_grid = all(
        min(abs(y - ys.min()), abs(y - ys.max())) <= TOLERANCE
        and min(abs(x - xs.min()), abs(x - xs.max())) <= TOLERANCE
        for y, x in pixels
    )
    if not on_grid:
        raise InputError(
            f"shape {index} of {shapes.name!r} is rotated relative to {image.name!r}; the reference RoI "
            "must be a rectangle aligned with the image's rows and columns"
        )
    y0, x0 = int(np.floor(ys.min() + 0.5)), int(np.floor(xs.min() + 0.5))
    y1, x1 = int(np.floor(ys.max() + 0.5)), int(np.floor(xs.max() + 0.5))
    if y1 <= y0 or x1 <= x0:
        raise InputError(f"shape {index} of {shapes.name!r} has no area")
    wy, wx = world[:, 0], world[:, 1]
    return LayerRoi(Box(y0, x0, y1, x1), (wy.min(), wx.min(), wy.max(), wx.max()))


def cropped_levels(levels: list[Any], region: Box) -> list[Any]:
    """Every pyramid level cropped to ``region`` (level-0 pixels), lazily (dask): nothing is read."""
    import dask.array as da

    from napari_pathup.io.slide import region_at_level

    cropped = []
    for index, level in enumerate(levels):
        rows, cols = region_at_level(levels, region, index)
        lazy = level if isinstance(level, da.Array) else da.from_array(level, chunks=(512, 512, -1))
        cropped.append(lazy[rows, cols])
    return cropped
