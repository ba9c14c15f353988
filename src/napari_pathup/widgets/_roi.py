"""A reference RoI from the viewer: a rectangle of a Shapes layer over any RGB image layer.

The rectangle is taken to world coordinates by the Shapes layer's transform and from there to level-0
pixels of the image layer (which may be multiscale, dask-backed and opened by any reader); the pixels are
then read from one pyramid level only (:mod:`napari_pathup.io.slide`). The image layer's pixel size comes
from its scale when its units are a length (our slide reader, napari-ome-zarr), else from the reader's
metadata ("pixel_size_um" from ours, "resolution" from napari-wsi), else it is unknown.

:func:`layer_reference` is the whole step for the Synthesize dock: the RoI (checked now, read later) and
the :class:`Placement` of the output layer, at the RoI's physical scale, just right of the RoI.
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

    from napari_pathup.io.slide import ReferenceRoi

#: vertices this close (in level-0 pixels) count as on the same row or column
TOLERANCE = 0.5
#: gap between the RoI and the synthetic layer placed to its right, as a fraction of the RoI's width
PLACEMENT_GAP = 0.05


@dataclass(frozen=True)
class LayerRoi:
    """The rectangle in the image's level-0 pixels and in world coordinates (y0, x0, y1, x1)."""

    region: Box
    world_box: tuple[float, float, float, float]


@dataclass(frozen=True)
class Placement:
    """Where the output layer goes in world coordinates: its scale, translation and units."""

    scale: tuple[float, float] | None = None
    translate: tuple[float, float] | None = None
    units: tuple[str, str] | None = None

    @classmethod
    def at_pixel_size(cls, pixel_size: float | None) -> Placement:
        """A reference that is not a layer: the output at its pixel size in micrometres, if known."""
        if pixel_size is None:
            return cls()
        return cls(scale=(pixel_size, pixel_size), units=("micrometer", "micrometer"))

    def layer_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if self.scale is not None:
            kwargs["scale"] = self.scale
        if self.translate is not None:
            kwargs["translate"] = self.translate
        if self.units is not None:
            kwargs["units"] = self.units
        return kwargs


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


def layer_reference(
    image: Image,
    shapes: Shapes | None,
    level: int | None,
    min_size: int,
    model_mpp: float | None,
) -> tuple[ReferenceRoi, Placement]:
    """The reference RoI from ``image`` (the rectangle of ``shapes``, or the whole image when None), lazy:
    checked now, read in the worker, since a large RoI must not block the GUI thread; and the output
    layer's placement: the pixel size of the level read, right of the RoI in world coordinates.

    ``level`` is the pyramid level to read (None: the one nearest the model's µm/px ``model_mpp``);
    ``min_size`` the smallest side a drawn rectangle may have (level-0 pixels)."""
    from napari_pathup.io.slide import roi_from_levels

    levels = layer_levels(image)
    if shapes is None:
        region, min_size = None, 1
        h, w = levels[0].shape[:2]
        corners = np.array([image.data_to_world(p) for p in ((0, 0), (h, w))])[:, -2:]
        world_box = (*corners.min(axis=0), *corners.max(axis=0))
    else:
        roi_box = rectangle_roi(shapes, image)
        region, world_box = roi_box.region, roi_box.world_box
    roi = roi_from_levels(
        levels,
        layer_pixel_size(image),
        region,
        level=level,
        model_mpp=model_mpp,
        min_size=min_size,
        source=f"layer {image.name!r}",
        lazy=True,
    )
    downsample = float(levels[0].shape[1]) / float(levels[roi.level].shape[1])
    scale = tuple(float(s) * downsample for s in image.scale[-2:])
    y0, x0, _y1, x1 = (float(v) for v in world_box)
    units = tuple(str(u) for u in image.units[-2:])
    return roi, Placement(scale, (y0, x1 + PLACEMENT_GAP * (x1 - x0)), units)  # type: ignore[arg-type]
