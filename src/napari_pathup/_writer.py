"""npe2 writers: an RGB image layer to OME-Zarr (NGFF 0.5) or to a pyramidal OME-TIFF, the same writers
`pathup synthesize` uses."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from napari_pathup.errors import InputError
from napari_pathup.io.arrays import scale_pixel_size
from napari_pathup.io.ome_zarr import write_ome_zarr
from napari_pathup.io.tiff import write_tiff


def _json_safe(value: Any) -> Any:
    """Layer metadata as JSON (values that JSON cannot hold become their text)."""
    return json.loads(json.dumps(value, default=str))


def write_ome_zarr_layer(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Write one RGB uint8 image layer as OME-Zarr; its napari-pathup metadata goes into the file's
    attributes.

    The file appears under ``path`` only when complete (temporary name, then rename); napari's save
    dialog has already asked before replacing an existing file.
    """
    return _write_layer(path, data, meta, "OME-Zarr", write_ome_zarr)


def write_ome_tiff_layer(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Write one RGB uint8 image layer as a pyramidal OME-TIFF (the layer's µm/px as PhysicalSizeX/Y, its
    napari-pathup metadata in the OME-XML), for QuPath and other OME-TIFF readers; atomically, as above."""

    def write(target: str, image: Any, **options: Any) -> Any:
        return write_tiff(target, image, ome=True, **options)

    return _write_layer(path, data, meta, "OME-TIFF", write)


def _write_layer(
    path: str, data: Any, meta: dict[str, Any], what: str, write: Callable[..., Any]
) -> list[str]:
    """Check that the layer is an RGB uint8 image and write its full-resolution level with ``write``."""
    if isinstance(data, list | tuple):  # a multiscale layer: the full-resolution level
        data = data[0]
    shape, dtype = tuple(getattr(data, "shape", ())), str(getattr(data, "dtype", ""))
    if not meta.get("rgb", False) or len(shape) != 3 or shape[-1] != 3 or dtype != "uint8":
        raise InputError(
            f"layer {meta.get('name', '')!r}: the {what} writer saves RGB uint8 images of shape (H, W, 3); "
            f"got shape {shape}, dtype {dtype or 'unknown'}, rgb={meta.get('rgb', False)}"
        )
    metadata = meta.get("metadata") or {}
    attrs = metadata.get("pathup", {}) if isinstance(metadata.get("pathup"), dict) else {}
    written = write(
        path,
        data,
        attrs=_json_safe(attrs),
        overwrite=True,
        pixel_size=scale_pixel_size(meta.get("scale"), meta.get("units")),
    )
    return [str(written)]
