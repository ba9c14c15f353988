"""napari command (Layers > Metadata): open the associated images of the selected slide layer (its label,
macro and thumbnail, ``io.associated``) beside it, to check which slide it is and where on the glass its
tissue lies. They are photographs of the glass, not at the slide's scale (a label records no pixel size
at all): each is placed right of the slide, scaled to the slide's height, and says so in its metadata."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import napari
from napari.utils.notifications import show_info, show_warning

from napari_pathup.errors import InputError
from napari_pathup.io.associated import associated_images, read_associated_image

#: the space left between the slide and each associated image, as a share of the slide's height
GAP = 0.05


def open_associated_images(viewer: napari.viewer.Viewer) -> None:
    """Add the selected slide layer's associated images to ``viewer``; a warning, never an exception, when
    the selection is not a slide opened from a file or the slide holds none."""
    layer = viewer.layers.selection.active
    try:
        path = slide_path(layer)
        added = [viewer.add_image(data, **meta) for data, meta in associated_layers(layer, path)]
    except InputError as exc:
        show_warning(str(exc))
        return
    show_info(f"opened {', '.join(a.name for a in added)} beside {layer.name}")


def slide_path(layer: Any) -> Path:
    """The file a layer was opened from: the ``source`` our slide reader records, else napari's own
    record of the file (a layer opened by another reader, e.g. napari-wsi).

    Raises :class:`InputError` when no layer is selected or it was not opened from a file."""
    if layer is None:
        raise InputError("select a slide layer (SVS, NDPI or SCN) to open its associated images")
    source = (layer.metadata or {}).get("source") or getattr(getattr(layer, "source", None), "path", None)
    if not source or not Path(source).is_file():
        raise InputError(f"{layer.name}: not opened from a slide file, so it has no associated images")
    return Path(source)


def associated_layers(layer: Any, path: Path) -> list[tuple[Any, dict[str, Any]]]:
    """(data, add_image keywords) of each associated image of ``path``, left to right beside ``layer``
    (in its world units), each scaled to the layer's height.

    Raises :class:`InputError` naming the slide when it holds no associated image."""
    listed = associated_images(path)
    if not listed:
        raise InputError(f"{path.name}: the slide holds no associated images (label, macro, thumbnail)")
    top, _, bottom, right = pixel_edges(layer)
    height = bottom - top
    x = right + GAP * height
    layers = []
    for image in listed:
        data = read_associated_image(path, image.name)
        scale = height / image.height
        meta = {
            "rgb": True,
            "name": f"{layer.name} [{image.name}]",
            "scale": (scale, scale),
            "translate": (top + scale / 2, x + scale / 2),  # napari places pixel centres
            "units": tuple(layer.units[-2:]),
            "metadata": {
                "source": str(path),
                "associated_image": image.name,
                "note": "not to scale: placed beside the slide at the slide's height",
            },
        }
        layers.append((data, meta))
        x += image.width * scale + GAP * height
    return layers


def pixel_edges(layer: Any) -> tuple[float, float, float, float]:
    """(top, left, bottom, right) of a layer's outer pixel edges in world units (napari's extent spans
    the first to the last pixel's centre)."""
    (top, left), (bottom, right) = layer.extent.world[:, -2:]
    step_y, step_x = layer.extent.step[-2:]
    return (
        float(top - step_y / 2),
        float(left - step_x / 2),
        float(bottom + step_y / 2),
        float(right + step_x / 2),
    )
