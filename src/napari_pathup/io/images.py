"""Read H&E images of the common formats as (H, W, 3) uint8 RGB, and the array helpers the writers share.

Pathology images come as PNG/JPEG crops, (OME-)TIFF and Aperio SVS slides or OME-Zarr stores; every
reader returns the same layout so that the engine never has to care where an image came from.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from napari_pathup.errors import ImageTooLargeError, InputError, PathupError
from napari_pathup.io.atomic import PARTIAL_MARKER

SUPPORTED_IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".svs", ".ome.zarr")

_PILLOW_SUFFIXES = (".png", ".jpg", ".jpeg")
_TIFF_SUFFIXES = (".tif", ".tiff", ".svs")
_SUPPORTED_TEXT = ", ".join(SUPPORTED_IMAGE_SUFFIXES)
_PIL_LOCK = threading.Lock()

#: Key under which napari-pathup stores its own metadata in every output format.
ATTRS_KEY = "pathup"

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
        from napari_pathup.io.ome_zarr import read_ome_zarr

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
                levels = tif.series[0].levels
                if level >= len(levels):
                    raise InputError(
                        f"{path}: pyramid level {level} does not exist; the file has {len(levels)} level(s)"
                    )
                axes, shape = levels[level].axes, levels[level].shape
            if "Y" not in axes or "X" not in axes:
                raise InputError(f"{path}: expected a 2-D image, found axes {axes!r}")
            return int(shape[axes.index("Y")]), int(shape[axes.index("X")])
        from napari_pathup.io.ome_zarr import ome_zarr_level_shapes

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
            from napari_pathup.io.ome_zarr import read_ome_zarr_attrs

            return read_ome_zarr_attrs(path)
        if kind == "pillow":
            with _pil_open(path) as im:
                text = getattr(im, "text", {}).get(ATTRS_KEY)
            value = json.loads(text) if text else {}
            return value if isinstance(value, dict) else {}
        import tifffile

        with tifffile.TiffFile(path) as tif:
            description = tif.pages.first.description
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
    if name.endswith(_TIFF_SUFFIXES):
        return "tiff"
    suffix = path.suffix or "(none)"
    raise InputError(f"{path}: unsupported image type {suffix}; supported: {_SUPPORTED_TEXT}")


@contextlib.contextmanager
def _wrap_errors(path: Path, kind: str) -> Iterator[None]:
    """Turn a reader library's exception into an :class:`InputError` that names the file."""
    try:
        yield
    except (PathupError, MemoryError):
        raise
    except Exception as exc:
        what = {"pillow": "a PNG/JPEG image", "tiff": "a TIFF/SVS image", "ome-zarr": "an OME-Zarr image"}
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
        levels = tif.series[0].levels
        if level >= len(levels):
            raise InputError(
                f"{path}: pyramid level {level} does not exist; the file has {len(levels)} level(s)"
            )
        series = levels[level]
        array, axes = series.asarray(), series.axes
    return to_rgb_uint8(channels_last(array, axes, str(path)), str(path))


# ------------------------------------------------------------------------------------------ conversion


def channels_last(array: np.ndarray, axes: str, source: str) -> np.ndarray:
    """Reorder an array with tifffile-style axes (e.g. ``"SYX"``, ``"YXS"``, ``"CYX"``) to (Y, X[, C]).

    Singleton axes other than Y, X and the channel axis are dropped; other non-singleton ones (a time or
    z series) are refused because an H&E image is a single 2-D RGB plane.
    """
    axes = axes.upper()
    if len(axes) != array.ndim or "Y" not in axes or "X" not in axes:
        raise InputError(f"{source}: expected a 2-D image, found axes {axes!r} and shape {array.shape}")
    index: list[int | slice] = []
    kept = []
    for name, size in zip(axes, array.shape, strict=True):
        if name in "YXSC" or size != 1:
            index.append(slice(None))
            kept.append(name)
        else:
            index.append(0)
    array = array[tuple(index)]
    channel = [name for name in kept if name not in "YX"]
    if len(channel) > 1:
        raise InputError(
            f"{source}: expected a single RGB plane, found axes {axes!r} and shape {array.shape}"
        )
    order = [kept.index("Y"), kept.index("X")] + [kept.index(c) for c in channel]
    return np.transpose(array, order)


def to_rgb_uint8(array: Any, source: str = "image") -> np.ndarray:
    """Convert greyscale, grey+alpha, RGB or RGBA data of any common dtype to (H, W, 3) uint8 RGB.

    Channels-first data is moved to the end, 16-bit data is scaled to 8 bits and transparency is
    composited on white (the colour of an empty slide).
    """
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[0] in (1, 2, 3, 4) and a.shape[-1] not in (1, 2, 3, 4):
        a = np.moveaxis(a, 0, -1)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[-1] not in (1, 2, 3, 4) or 0 in a.shape:
        raise InputError(
            f"{source}: expected a greyscale, RGB or RGBA image, found an array of shape {a.shape}"
        )
    a = _to_uint8(a, source)
    if a.shape[-1] in (2, 4):
        colour = a[..., :-1].astype(np.uint32)
        alpha = a[..., -1:].astype(np.uint32)
        a = ((colour * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8)
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    return np.ascontiguousarray(a)


def _to_uint8(a: np.ndarray, source: str) -> np.ndarray:
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * 255
    if a.dtype.kind in "iu":
        low, high = int(a.min()), int(a.max())
        if low >= 0 and high <= 255 and a.dtype.itemsize > 2:
            return a.astype(np.uint8)  # e.g. Pillow's 32-bit "I" mode holding 8-bit values
        if low >= 0 and high <= 65535:
            return ((a.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if a.dtype.kind == "f" and np.isfinite(a).all():
        low, high = float(a.min()), float(a.max())
        if low >= 0 and high <= 1:
            return np.rint(a * 255).astype(np.uint8)
        if low >= 0 and high <= 255:
            return np.rint(a).astype(np.uint8)
    raise InputError(f"{source}: cannot convert pixel values of type {a.dtype} to 8-bit RGB")


# ----------------------------------------------------------------------------- helpers for the writers


def check_rgb_image(image: Any, path: str | Path) -> Any:
    """Return ``image`` if it is an array-like (H, W, 3) uint8; otherwise raise :class:`InputError`."""
    if not (hasattr(image, "shape") and hasattr(image, "dtype")):
        try:
            image = np.asarray(image)
        except Exception as exc:
            raise InputError(
                f"cannot write {path}: expected an (H, W, 3) uint8 RGB array, got {type(image).__name__}"
            ) from exc
    shape, dtype = tuple(image.shape), np.dtype(image.dtype)
    if len(shape) != 3 or shape[2] != 3 or dtype != np.uint8 or min(shape[:2]) < 1:
        raise InputError(
            f"cannot write {path}: expected an (H, W, 3) uint8 RGB array, got shape {shape} and dtype {dtype}"
        )
    return image


def attrs_json(attrs: dict[str, Any] | None, path: str | Path) -> str:
    """Serialise user attributes to JSON (NumPy scalars/arrays and paths are converted)."""

    def default(value: Any) -> Any:
        if isinstance(value, np.generic | np.ndarray):
            return value.tolist()
        if isinstance(value, Path):
            return str(value)
        raise TypeError(f"{type(value).__name__} is not JSON-serialisable")

    if attrs is not None and not isinstance(attrs, dict):
        raise InputError(f"cannot write {path}: attrs must be a dict, got {type(attrs).__name__}")
    try:
        return json.dumps(attrs or {}, default=default)
    except (TypeError, ValueError) as exc:
        raise InputError(f"cannot write {path}: attrs are not JSON-serialisable ({exc})") from exc


def pyramid_shapes(height: int, width: int, min_level_size: int) -> list[tuple[int, int]]:
    """Shapes of a 2x pyramid: halve (rounding down) while the smaller side stays >= ``min_level_size``."""
    shapes = [(int(height), int(width))]
    while min(shapes[-1]) // 2 >= max(1, int(min_level_size)):
        h, w = shapes[-1]
        shapes.append((h // 2, w // 2))
    return shapes


def mean_2x2(block: np.ndarray) -> np.ndarray:
    """Average 2x2 pixel blocks of an (H, W, C) uint8 array (rounded; an odd last row/column is dropped)."""
    h, w = block.shape[0] // 2, block.shape[1] // 2
    view = block[: 2 * h, : 2 * w].reshape(h, 2, w, 2, block.shape[2])
    total = view.sum(axis=(1, 3), dtype=np.uint16)
    return ((total + 2) // 4).astype(np.uint8)


def dask_pyramid(image: Any, n_levels: int, chunk: int) -> list[Any]:
    """Lazy pyramid of an (H, W, 3) array-like as dask arrays chunked (chunk, chunk, 3).

    Each level is computed chunkwise from the one above, so a zarr or dask input is never loaded whole;
    computing all levels in one ``dask.array.store`` call reads the input once.
    """
    import dask.array as da

    chunk = max(2, int(chunk))
    if isinstance(image, da.Array):
        level = image.rechunk((chunk, chunk, 3))
    else:
        level = da.from_array(image, chunks=(chunk, chunk, 3), lock=False)
    levels = [level]
    for _ in range(1, n_levels):
        prev = levels[-1]
        h, w = prev.shape[0] - prev.shape[0] % 2, prev.shape[1] - prev.shape[1] % 2
        prev = prev[:h, :w].rechunk((2 * chunk, 2 * chunk, 3))
        halved = (*(tuple(c // 2 for c in chunks) for chunks in prev.chunks[:2]), prev.chunks[2])
        levels.append(prev.map_blocks(mean_2x2, chunks=halved, dtype=np.uint8))
    return levels


def store_chunkwise(sources: list[Any], targets: list[Any]) -> None:
    """Compute dask arrays into zarr arrays on a private thread pool.

    The pool is shut down (waiting for running tasks) before an error propagates, so no worker is
    still writing chunks when :func:`~napari_pathup.io.atomic.atomic_output` deletes the temporary.
    """
    import dask.array as da

    pool = ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1))
    try:
        da.store(sources, targets, lock=False, scheduler="threads", pool=pool)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def numpy_pyramid(image: np.ndarray, n_levels: int) -> list[np.ndarray]:
    """In-memory pyramid of an (H, W, 3) uint8 array (level 0 is ``image`` itself)."""
    levels = [image]
    for _ in range(1, n_levels):
        levels.append(mean_2x2(levels[-1]))
    return levels


def is_in_memory(image: Any) -> bool:
    """True for a plain in-memory NumPy array (not a memory map), which may be processed whole."""
    return isinstance(image, np.ndarray) and not isinstance(image, np.memmap)
