"""npe2 reader: the project's OME-Zarr outputs open as one (multiscale) RGB image layer.

Levels are opened lazily (dask over zarr), so a 8192x8192 synthesis opens at once; the layer
metadata carries the file's napari-pathup attributes (settings, seed, model hash).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from napari_pathup.errors import InputError
from napari_pathup.io.ome_zarr import lazy_rgb_levels, read_ome_zarr_attrs

LayerData = tuple[Any, dict[str, Any], str]


def _single(path: str | Sequence[str]) -> Path | None:
    if isinstance(path, list | tuple):
        if len(path) != 1:
            return None
        path = path[0]
    p = Path(path)
    return p if p.name.lower().endswith(".ome.zarr") and p.is_dir() else None


def get_reader(path: str | Sequence[str]) -> Callable[[Any], list[LayerData]] | None:
    """The reader for an RGB OME-Zarr image folder, or None when this is not one."""
    p = _single(path)
    if p is None:
        return None
    try:
        lazy_rgb_levels(p)
    except InputError:
        return None
    return read_ome_zarr_layer


def read_ome_zarr_layer(path: str | Sequence[str]) -> list[LayerData]:
    p = _single(path)
    if p is None:
        raise InputError(f"{path}: expected one .ome.zarr folder")
    levels = lazy_rgb_levels(p)
    name = p.name[: -len(".ome.zarr")]
    meta = {
        "rgb": True,
        "name": name,
        "multiscale": len(levels) > 1,
        "metadata": {"pathup": read_ome_zarr_attrs(p), "source": str(p)},
    }
    return [(levels if len(levels) > 1 else levels[0], meta, "image")]
