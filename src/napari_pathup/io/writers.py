"""Write an image in the format its file name asks for (OME-Zarr, OME-TIFF, TIFF or PNG), atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from napari_pathup.errors import InputError
from napari_pathup.io.arrays import ATTRS_KEY, attrs_json, check_rgb_image
from napari_pathup.io.atomic import atomic_output
from napari_pathup.io.ome_zarr import write_ome_zarr
from napari_pathup.io.tiff import write_tiff

#: Output extension -> format name. Compound suffixes (``.ome.zarr``, ``.ome.tif``) must be tested before
#: shorter ones.
OUTPUT_FORMATS: dict[str, str] = {
    ".ome.zarr": "ome-zarr",
    ".ome.tif": "ome-tiff",
    ".ome.tiff": "ome-tiff",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".png": "png",
}


def output_format(path: str | Path) -> str:
    """Return "ome-zarr", "ome-tiff", "tiff" or "png" for an output path, or raise :class:`InputError`.

    Cheap: call it to validate an output name before starting long work.
    """
    name = Path(path).name.lower()
    for suffix, kind in OUTPUT_FORMATS.items():
        if name.endswith(suffix) and len(name) > len(suffix):
            return kind
    expected = ", ".join(OUTPUT_FORMATS)
    raise InputError(f"unsupported output extension for {path}; expected one of {expected}")


def write_image(
    path: str | Path,
    image: Any,
    *,
    attrs: dict[str, Any] | None = None,
    overwrite: bool = False,
    pixel_size: float | None = None,
) -> Path:
    """Write an (H, W, 3) uint8 array-like in the format ``path``'s extension names, atomically.

    Args:
        path: ``.ome.zarr`` (multiscale OME-Zarr), ``.ome.tif``/``.ome.tiff`` (pyramidal OME-TIFF),
            ``.tif``/``.tiff`` (tiled pyramidal TIFF) or ``.png``.
        image: numpy, zarr or dask array; zarr and dask are written chunk by chunk (not for PNG).
        attrs: JSON-serialisable metadata, read back by :func:`~napari_pathup.io.images.read_attrs`.
        overwrite: replace an existing output (the old one is kept until the new one is complete).
        pixel_size: µm/px; becomes OME-Zarr's micrometre scale, OME-TIFF's PhysicalSizeX/Y and TIFF's
            resolution tags (PNG records it in ``attrs`` only).

    Returns:
        The resolved output path.

    Raises:
        InputError: bad extension, image or attributes. OutputExistsError: the output exists.
        OutputError: the operating system refused the write (permissions, read-only, full disk);
            nothing is left under the final name, nor a temporary.
    """
    kind = output_format(path)
    if kind == "ome-zarr":
        return write_ome_zarr(path, image, attrs=attrs, overwrite=overwrite, pixel_size=pixel_size)
    if kind in ("tiff", "ome-tiff"):
        ome = kind == "ome-tiff"
        return write_tiff(path, image, attrs=attrs, overwrite=overwrite, pixel_size=pixel_size, ome=ome)
    return write_png(path, image, attrs=attrs, overwrite=overwrite)


def write_png(
    path: str | Path, image: Any, *, attrs: dict[str, Any] | None = None, overwrite: bool = False
) -> Path:
    """Write a lossless RGB PNG with ``attrs`` as JSON in an iTXt chunk named "pathup".

    PNG cannot be written in pieces, so zarr/dask input is loaded whole: use OME-Zarr or TIFF for
    images larger than memory.
    """
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    image = check_rgb_image(image, path)
    info = PngInfo()
    info.add_itxt(ATTRS_KEY, attrs_json(attrs, path))
    with atomic_output(path, overwrite) as temp:
        pixels = np.ascontiguousarray(np.asarray(image), dtype=np.uint8)
        Image.fromarray(pixels).save(temp, format="PNG", pnginfo=info, compress_level=6)
    return Path(path).expanduser().resolve()
