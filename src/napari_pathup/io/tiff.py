"""Tiled pyramidal TIFF output: lossless (deflate), RGB, with sub-resolution levels as SubIFDs.

This is the layout of pyramidal OME-TIFF, which tifffile reads as a pyramid (OpenSlide reads level 0
only: it takes levels from the chain of IFDs, not from SubIFDs; QuPath and Bio-Formats are not installed
here to check). In a plain TIFF (``.tif``) our attributes are JSON ``{"pathup": {...}}`` in the
ImageDescription tag of the first page; in an OME-TIFF (``.ome.tif``, ``ome=True``) the OME-XML holds them
as a CommentAnnotation and the pixel size as PhysicalSizeX/Y. A known pixel size is also written as every
level's resolution tags (pixels per centimetre), where OpenSlide (a test checks), TIFF readers in general
and our own readers find it.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from napari_pathup.errors import InputError
from napari_pathup.io.arrays import (
    ATTRS_KEY,
    attrs_json,
    check_pixel_size,
    check_rgb_image,
    dask_pyramid,
    is_in_memory,
    numpy_pyramid,
    pyramid_shapes,
    store_chunkwise,
)
from napari_pathup.io.atomic import atomic_output

#: the namespace of the OME-XML CommentAnnotation that holds our attributes in an OME-TIFF
OME_NAMESPACE = "napari-pathup"

# Above this many uncompressed bytes use BigTIFF: classic TIFF offsets are 32-bit.
_BIGTIFF_BYTES = 2**31


def write_tiff(
    path: str | Path,
    image: Any,
    *,
    attrs: dict[str, Any] | None = None,
    overwrite: bool = False,
    tile: int = 256,
    min_level_size: int = 256,
    pixel_size: float | None = None,
    ome: bool = False,
) -> Path:
    """Write an (H, W, 3) uint8 array-like as a tiled, pyramidal, deflate-compressed RGB TIFF.

    Tiles are streamed to tifffile, so zarr and dask inputs are never loaded whole (their smaller
    levels are staged in a temporary zarr store beside the output). ``pixel_size``: µm/px of the image,
    written as each level's resolution (level k: 2^k times coarser). ``ome``: a pyramidal OME-TIFF, whose
    OME-XML holds the pixel size (PhysicalSizeX/Y) and our attributes (a CommentAnnotation in the
    "napari-pathup" namespace). Returns the resolved output path.
    """
    import tifffile

    image = check_rgb_image(image, path)
    check_pixel_size(path, pixel_size)
    description = json.dumps({ATTRS_KEY: json.loads(attrs_json(attrs, path))})
    first: dict[str, Any] = {"description": description, "metadata": None}
    if ome:
        first = {"metadata": _ome_metadata(description, pixel_size)}
    tile = int(tile)
    if tile < 16 or tile % 16:
        raise InputError(f"cannot write {path}: tile must be a multiple of 16, got {tile}")
    shapes = pyramid_shapes(image.shape[0], image.shape[1], min_level_size)
    bigtiff = image.shape[0] * image.shape[1] * 3 * 4 // 3 > _BIGTIFF_BYTES
    options: dict[str, Any] = {
        "dtype": np.uint8,
        "tile": (tile, tile),
        "photometric": "rgb",
        "planarconfig": "contig",
        "compression": "zlib",
        "predictor": True,
        "metadata": None,
    }
    with (
        atomic_output(path, overwrite) as temp,
        _levels(image, len(shapes), tile, temp) as levels,
        tifffile.TiffWriter(temp, bigtiff=bigtiff, ome=ome) as tw,
    ):
        tw.write(
            _tiles(levels[0], tile),
            shape=(*shapes[0], 3),
            subifds=len(levels) - 1,
            software="napari-pathup",
            **{**options, **first},
            **_resolution(pixel_size, 0),
        )
        for k, level in enumerate(levels[1:], start=1):
            tw.write(
                _tiles(level, tile),
                shape=tuple(level.shape),
                subfiletype=1,
                **options,
                **_resolution(pixel_size, k),
            )
    return Path(path).expanduser().resolve()


def _ome_metadata(description: str, pixel_size: float | None) -> dict[str, Any]:
    """tifffile's OME metadata for level 0: RGB axes, the pixel size in micrometres when known, and our
    attributes' JSON (``description``) as a CommentAnnotation in the :data:`OME_NAMESPACE` namespace."""
    metadata: dict[str, Any] = {
        "axes": "YXS",
        "Name": "napari-pathup synthesis",
        "CommentAnnotation": {"Namespace": OME_NAMESPACE, "Value": description},
    }
    if pixel_size is not None:
        metadata |= {
            "PhysicalSizeX": pixel_size,
            "PhysicalSizeXUnit": "µm",
            "PhysicalSizeY": pixel_size,
            "PhysicalSizeYUnit": "µm",
        }
    return metadata


def ome_attributes(ome_xml: str) -> str | None:
    """Our attributes' JSON from an OME-TIFF's OME-XML (:func:`write_tiff` with ``ome``), None if absent."""
    from xml.etree import ElementTree

    try:
        root = ElementTree.fromstring(ome_xml)
    except ElementTree.ParseError:
        return None
    for element in root.iter():
        if element.tag.endswith("}CommentAnnotation") and element.attrib.get("Namespace") == OME_NAMESPACE:
            return next((e.text for e in element if e.tag.endswith("}Value")), None)
    return None


def _resolution(pixel_size: float | None, level: int) -> dict[str, Any]:
    """tifffile's resolution keywords for pyramid level ``level`` of an image of ``pixel_size`` µm/px
    (pixels per centimetre); none when the pixel size is unknown."""
    if pixel_size is None:
        return {}
    per_cm = 1e4 / (pixel_size * 2**level)
    return {"resolution": (per_cm, per_cm), "resolutionunit": "CENTIMETER"}


@contextlib.contextmanager
def _levels(image: Any, n_levels: int, tile: int, temp: Path) -> Iterator[list[Any]]:
    """Yield all pyramid levels as sliceable arrays, computing them chunkwise for out-of-core input."""
    if is_in_memory(image):
        yield numpy_pyramid(image, n_levels)
        return
    import dask.array as da
    import zarr

    levels = dask_pyramid(image, n_levels, tile)
    # A dask input is staged whole so that its graph is computed once; other inputs are sliced directly.
    first = 0 if isinstance(image, da.Array) else 1
    with tempfile.TemporaryDirectory(prefix=f"{temp.name}.levels-", dir=temp.parent) as staging:
        group = zarr.open_group(staging, mode="w", zarr_format=3)
        targets = [
            group.create_array(str(i), shape=levels[i].shape, chunks=(tile, tile, 3), dtype=np.uint8)
            for i in range(first, n_levels)
        ]
        store_chunkwise(levels[first:], targets)
        yield ([image] if first else []) + targets


def _tiles(array: Any, tile: int) -> Iterator[np.ndarray]:
    """Row-major tiles of an (H, W, 3) array-like, reading one strip of ``tile`` rows at a time."""
    height, width = array.shape[:2]
    for y in range(0, height, tile):
        strip = np.asarray(array[y : y + tile])
        for x in range(0, width, tile):
            yield strip[:, x : x + tile]
