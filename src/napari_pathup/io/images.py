"""Read H&E images of the common formats as (H, W, 3) uint8 RGB (the writers live in their own modules).

Pathology images come as PNG/JPEG crops, (OME-)TIFF, Aperio SVS, Leica SCN and Hamamatsu NDPI slides or
OME-Zarr stores; every reader returns the same layout so that the engine never has to care where an image
came from.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from napari_pathup.errors import ImageTooLargeError, InputError, PathupError
from napari_pathup.io.arrays import ATTRS_KEY, channels_last, to_rgb_uint8
from napari_pathup.io.atomic import PARTIAL_MARKER
from napari_pathup.io.ome_zarr import ome_zarr_level_shapes, read_ome_zarr, read_ome_zarr_attrs
from napari_pathup.io.tiff import ome_attributes

SUPPORTED_IMAGE_SUFFIXES: tuple[str, ...] = (
    ".png",
    ".jpg",
    ".jpeg",
    ".tif",
    ".tiff",
    ".svs",
    ".scn",
    ".ndpi",
    ".ome.zarr",
)

_PILLOW_SUFFIXES = (".png", ".jpg", ".jpeg")
#: the files tifffile reads as slides (a pyramid or a single level); the plugin's slide reader and its
#: manifest pattern (napari.yaml) take exactly these
SLIDE_SUFFIXES: tuple[str, ...] = (".svs", ".scn", ".ndpi", ".tif", ".tiff")
#: whole-slide formats that OpenSlide reads and tifffile does not (or not correctly: a Ventana BIF's tiles
#: overlap, and tifffile does not stitch them); refused with a pointer to a reader that does
_OPENSLIDE_ONLY_SUFFIXES = (".bif", ".mrxs", ".vms", ".vmu", ".svslide", ".czi", ".dcm")
_SUPPORTED_TEXT = ", ".join(SUPPORTED_IMAGE_SUFFIXES)
_PIL_LOCK = threading.Lock()


#: Images declaring more pixels than this are refused from their header, before decoding (a 2.6 MB
#: PNG can declare 30000 x 30000 pixels and take gigabytes to decode). Raise it per call with
#: ``max_pixels`` or on the command line with ``--max-image-pixels``; pyramid levels below 0 of a
#: slide are read one at a time, so only the level read counts.
MAX_IMAGE_PIXELS = 250_000_000


def check_pixels(
    path: str | Path, height: int, width: int, max_pixels: int | None = MAX_IMAGE_PIXELS
) -> None:
    """Refuse an image of more than ``max_pixels`` pixels (None: no limit), naming the flag that raises it."""
    if max_pixels is not None and int(height) * int(width) > max_pixels:
        raise ImageTooLargeError(
            f"{path} declares {width}x{height} = {int(height) * int(width):,} pixels, more than the limit of "
            f"{max_pixels:,}; if the image is genuine, raise the limit with --max-image-pixels N "
            "(max_pixels=N)"
        )


# --------------------------------------------------------------------------------------------- reading


def read_image(path: str | Path, level: int = 0, *, max_pixels: int | None = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Read an image (PNG, JPEG, TIFF, SVS or OME-Zarr) as a C-contiguous (H, W, 3) uint8 RGB array.

    Args:
        path: the image file (or OME-Zarr folder).
        level: the pyramid level of TIFF/SVS and OME-Zarr (0 = full resolution; PNG/JPEG have only 0).
        max_pixels: refuse a level of more pixels than this, from its header, before decoding
            (default :data:`MAX_IMAGE_PIXELS`; None: no limit).

    Returns:
        The (H, W, 3) uint8 RGB pixels (greyscale repeated, alpha composited on white, 16-bit scaled).

    Raises:
        ImageTooLargeError: the image declares more than ``max_pixels`` pixels.
        InputError: the file is missing, of an unsupported type, or unreadable (the message names it).
    """
    path = Path(path).expanduser()
    kind = _kind(path)
    if level < 0 or (kind == "pillow" and level != 0):
        levels = "only level 0" if kind == "pillow" else "levels 0 and above"
        raise InputError(f"{path}: pyramid level {level} does not exist; this file has {levels}")
    with _wrap_errors(path, kind):
        check_pixels(path, *image_shape(path, level), max_pixels)
        if kind == "pillow":
            return _read_pillow(path)
        if kind == "tiff":
            return _read_tiff(path, level)
        return read_ome_zarr(path, level)


def image_shape(path: str | Path, level: int = 0) -> tuple[int, int]:
    """Return (height, width) of a pyramid level, reading only the header (never the pixels)."""
    path = Path(path).expanduser()
    kind = _kind(path)
    with _wrap_errors(path, kind):
        if kind == "pillow":
            with _pil_open(path) as im:
                width, height = im.size
            return int(height), int(width)
        if kind == "tiff":
            import tifffile

            with tifffile.TiffFile(path) as tif:
                levels = main_series(tif).levels
                if level >= len(levels):
                    raise InputError(
                        f"{path}: pyramid level {level} does not exist; the file has {len(levels)} level(s)"
                    )
                axes, shape = levels[level].axes, levels[level].shape
            if "Y" not in axes or "X" not in axes:
                raise InputError(f"{path}: expected a 2-D image, found axes {axes!r}")
            return int(shape[axes.index("Y")]), int(shape[axes.index("X")])
        shapes = ome_zarr_level_shapes(path)
        if level >= len(shapes):
            raise InputError(
                f"{path}: pyramid level {level} does not exist; the image has {len(shapes)} level(s)"
            )
        return shapes[level]


def read_attrs(path: str | Path) -> dict[str, Any]:
    """Return the napari-pathup attributes stored by :func:`~napari_pathup.io.write_image` ({} if none)."""
    path = Path(path).expanduser()
    kind = _kind(path)
    with _wrap_errors(path, kind):
        if kind == "ome-zarr":
            return read_ome_zarr_attrs(path)
        if kind == "pillow":
            with _pil_open(path) as im:
                text = getattr(im, "text", {}).get(ATTRS_KEY)
            value = json.loads(text) if text else {}
            return value if isinstance(value, dict) else {}
        import tifffile

        with tifffile.TiffFile(path) as tif:
            description = tif.pages.first.description
            if tif.is_ome and tif.ome_metadata:  # ours: the attributes in the OME-XML
                description = ome_attributes(tif.ome_metadata) or ""
        try:
            meta = json.loads(description)
        except ValueError:
            return {}
        value = meta.get(ATTRS_KEY, {}) if isinstance(meta, dict) else {}
        return value if isinstance(value, dict) else {}


def list_images(folder: str | Path) -> list[Path]:
    """Return the supported images directly inside ``folder``, sorted by name.

    ``*.ome.zarr`` folders count as images; hidden entries and unfinished ``.partial-`` outputs are skipped.
    """
    folder = Path(folder).expanduser()
    if not folder.exists():
        raise InputError(f"{folder}: no such folder; expected a folder of images ({_SUPPORTED_TEXT})")
    if not folder.is_dir():
        raise InputError(f"{folder} is a file; expected a folder of images ({_SUPPORTED_TEXT})")
    found = []
    for entry in folder.iterdir():
        name = entry.name.lower()
        if name.startswith(".") or PARTIAL_MARKER in name:
            continue
        if name.endswith(".ome.zarr"):
            if entry.is_dir():
                found.append(entry)
        elif name.endswith(SUPPORTED_IMAGE_SUFFIXES) and entry.is_file():
            found.append(entry)
    return sorted(found, key=lambda p: p.name)


def main_series(tif: Any) -> Any:
    """The series of a TIFF that holds the scan: the first, except in a Leica SCN, whose first series is
    the slide's low-resolution macro image; there the largest image (of a slide scanned in several
    regions, its largest; ``io.slide.open_slide_regions`` opens each).

    Raises :class:`InputError` for a Ventana/Roche scan (BIF, or the same saved as .tif): its tiles are
    stored in serpentine order and overlap, and tifffile places them without stitching, so its pixels
    would be silently misplaced; and for a file in which tifffile finds no image (cut short)."""
    if tif.is_bif:
        raise InputError(
            f"{tif.filehandle.path}: a Ventana/Roche (BIF) scan, whose overlapping tiles napari-pathup "
            "does not stitch; open it in napari with napari-wsi (OpenSlide) and use that layer as the "
            "reference, or convert it to OME-TIFF or OME-Zarr"
        )
    if not tif.series:
        raise InputError(no_image_message(tif.filehandle.path))
    if tif.is_scn and len(tif.series) > 1:
        return max(tif.series, key=_plane_pixels)
    return tif.series[0]


def no_image_message(path: str | Path) -> str:
    """What a TIFF whose header leads to no image (cut short, or damaged) is told."""
    return f"{path}: the TIFF holds no readable image (is the file cut short or damaged?)"


#: the NDPI tag of a page's focal plane: its Z offset from the slide's nominal focus, in nanometres
NDPI_FOCAL_PLANE_TAG = 65424


def focal_offsets(series: Any) -> list[int] | None:
    """For a pyramid level of a Hamamatsu NDPI scanned at several focal planes (tifffile stacks them on
    the level's first axis, Z or I), each plane's Z offset from the nominal focus in nanometres, in the
    order of that axis; None for any other series, whose planes are refused as not one H&E image."""
    axes = series.axes.upper()
    if axes[:1] not in ("Z", "I") or series.shape[0] < 2 or not series.keyframe.is_ndpi:
        return None
    return [int(page.tags.valueof(NDPI_FOCAL_PLANE_TAG) or 0) for page in series.pages]


def nominal_plane(offsets: list[int]) -> int:
    """The index of the plane nearest the nominal focus (Z offset 0, the plane OpenSlide reads)."""
    return min(range(len(offsets)), key=lambda k: abs(offsets[k]))


def focal_plane(series: Any) -> int | None:
    """:func:`nominal_plane` of an NDPI level scanned at several focal planes (:func:`focal_offsets`);
    None for any other series."""
    offsets = focal_offsets(series)
    return None if offsets is None else nominal_plane(offsets)


def _plane_pixels(series: Any) -> int:
    axes, shape = series.axes.upper(), series.shape
    return int(shape[axes.index("Y")]) * int(shape[axes.index("X")]) if "Y" in axes and "X" in axes else 0


def _kind(path: Path) -> str:
    """Classify ``path`` as "pillow", "tiff" or "ome-zarr", or raise a helpful :class:`InputError`."""
    name = path.name.lower()
    if not path.exists():
        raise InputError(f"{path}: no such file; expected an image ({_SUPPORTED_TEXT})")
    if path.is_dir():
        if (path / "zarr.json").is_file() or (path / ".zattrs").is_file() or (path / ".zgroup").is_file():
            return "ome-zarr"
        raise InputError(f"{path} is a folder but not an OME-Zarr image (it has no zarr.json or .zattrs)")
    if name.endswith(".ome.zarr"):
        raise InputError(f"{path}: expected an OME-Zarr folder, found a file")
    if name.endswith(_PILLOW_SUFFIXES):
        return "pillow"
    if name.endswith(SLIDE_SUFFIXES):
        return "tiff"
    suffix = path.suffix or "(none)"
    if name.endswith(_OPENSLIDE_ONLY_SUFFIXES):
        raise InputError(
            f"{path}: {suffix} slides are not read by napari-pathup itself (supported: {_SUPPORTED_TEXT}); "
            "open it in napari with napari-wsi (OpenSlide) and use that layer as the reference, "
            "or convert it to OME-TIFF or OME-Zarr (e.g. with bioformats2raw)"
        )
    raise InputError(f"{path}: unsupported image type {suffix}; supported: {_SUPPORTED_TEXT}")


@contextlib.contextmanager
def _wrap_errors(path: Path, kind: str) -> Iterator[None]:
    """Turn a reader library's exception into an :class:`InputError` that names the file."""
    try:
        yield
    except (PathupError, MemoryError):
        raise
    except Exception as exc:
        what = {
            "pillow": "a PNG/JPEG image",
            "tiff": "a TIFF/SVS/SCN/NDPI image",
            "ome-zarr": "an OME-Zarr image",
        }
        raise InputError(f"cannot read {path} as {what[kind]}: {type(exc).__name__}: {exc}") from exc


@contextlib.contextmanager
def _pil_open(path: Path) -> Iterator[Any]:
    """Open with Pillow without its own decompression-bomb limit: ours (:func:`check_pixels`, with a
    flag to raise it) is applied from the header before any decoding, in every format alike."""
    from PIL import Image

    with _PIL_LOCK:
        previous = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            im = Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = previous
    try:
        yield im
    finally:
        im.close()


def _read_pillow(path: Path) -> np.ndarray:
    with _pil_open(path) as im:
        if im.mode in ("P", "PA") or (im.mode in ("L", "RGB") and "transparency" in im.info):
            im = im.convert("RGBA")
        elif im.mode not in ("1", "L", "LA", "RGB", "RGBA", "I", "I;16", "I;16B", "I;16L", "F"):
            im = im.convert("RGB")  # CMYK, YCbCr, LAB, ...
        array = np.asarray(im)
    return to_rgb_uint8(array, str(path))


def _read_tiff(path: Path, level: int) -> np.ndarray:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        levels = main_series(tif).levels
        if level >= len(levels):
            raise InputError(
                f"{path}: pyramid level {level} does not exist; the file has {len(levels)} level(s)"
            )
        series = levels[level]
        plane = focal_plane(series)
        part = series if plane is None else series.pages[plane]  # one focal plane of several: its page
        array, axes = part.asarray(), part.axes
    return to_rgb_uint8(channels_last(array, axes, str(path)), str(path))
