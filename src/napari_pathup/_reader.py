"""npe2 readers: the project's OME-Zarr outputs and whole-slide images open as one (multiscale) RGB layer.

Levels are opened lazily (dask over zarr; tifffile's zarr interface for SVS and (OME-)TIFF), so a
gigapixel slide or an 8192x8192 synthesis opens at once. The microns per pixel recorded in the file
become the layer's scale in micrometres, so slides and syntheses overlay at their physical size; the
layer metadata carries the source, the pixel size and the file's napari-pathup attributes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from napari_pathup.errors import InputError
from napari_pathup.io.images import SLIDE_SUFFIXES
from napari_pathup.io.ome_zarr import lazy_rgb_levels, read_ome_zarr_attrs
from napari_pathup.io.slide import Slide, open_slide, open_slide_regions

LayerData = tuple[Any, dict[str, Any], str]


def _single(path: str | Sequence[str]) -> Path | None:
    if isinstance(path, str):
        return Path(path)
    return Path(path[0]) if len(path) == 1 else None


def _is_ome_zarr(p: Path) -> bool:
    return p.name.lower().endswith(".ome.zarr") and p.is_dir()


def get_reader(path: str | Sequence[str]) -> Callable[[Any], list[LayerData]] | None:
    """The reader for an RGB OME-Zarr image folder, or None when this is not one."""
    p = _single(path)
    if p is None or not _is_ome_zarr(p):
        return None
    try:
        lazy_rgb_levels(p)
    except InputError:
        return None
    return read_ome_zarr_layer


def get_slide_reader(path: str | Sequence[str]) -> Callable[[Any], list[LayerData]] | None:
    """The reader for an 8-bit RGB SVS, SCN, NDPI or (pyramidal, OME-)TIFF slide, or None (other readers may
    then take it: multi-channel fluorescence, 16-bit data, ...)."""
    p = _single(path)
    if p is None or not p.name.lower().endswith(SLIDE_SUFFIXES) or not p.is_file():
        return None
    try:
        open_slide(p)
    except InputError:
        return None
    return read_slide_layer


def read_ome_zarr_layer(path: str | Sequence[str]) -> list[LayerData]:
    p = _single(path)
    if p is None or not _is_ome_zarr(p):
        raise InputError(f"{path}: expected one .ome.zarr folder")
    slide = open_slide(p)
    return [_layer(slide, {"pathup": read_ome_zarr_attrs(p)})]


def read_slide_layer(path: str | Sequence[str]) -> list[LayerData]:
    p = _single(path)
    if p is None:
        raise InputError(f"{path}: expected one slide file")
    return [_layer(slide, {}) for slide in open_slide_regions(p)]  # a Leica SCN: each scanned region


def _layer(slide: Slide, metadata: dict[str, Any]) -> LayerData:
    levels = slide.levels
    meta: dict[str, Any] = {
        "rgb": True,
        "name": slide.name,
        "multiscale": len(levels) > 1,
        "metadata": {**metadata, "source": slide.source, "pixel_size_um": slide.mpp},
    }
    if slide.mpp is not None:
        meta["scale"] = (slide.mpp, slide.mpp)
        meta["units"] = ("micrometer", "micrometer")
        if slide.offset_um != (0.0, 0.0):  # where the region lies on the glass, beside the others
            meta["translate"] = slide.offset_um
    return (levels if len(levels) > 1 else levels[0], meta, "image")
