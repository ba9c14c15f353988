"""Array helpers shared by the readers and the writers: layout conversion to (H, W, 3) uint8 RGB,
checks of what a writer is given, and the 2x pyramids the multiscale writers build.

The readers (``io.images``) and the writers (``io.ome_zarr``, ``io.tiff``, ``io.writers``) all build on
this module and never on each other's helpers, so the io package has no import cycle.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from napari_pathup.errors import InputError

#: Key under which napari-pathup stores its own metadata in every output format.
ATTRS_KEY = "pathup"
#: NGFF / OME length units, in micrometres
UNIT_MICROMETERS: dict[str, float] = {
    "micrometer": 1.0,
    "µm": 1.0,
    "um": 1.0,
    "micron": 1.0,
    "nanometer": 1e-3,
    "nm": 1e-3,
    "millimeter": 1e3,
    "mm": 1e3,
    "centimeter": 1e4,
    "cm": 1e4,
    "meter": 1e6,
    "m": 1e6,
    "inch": 25400.0,  # an NGFF unit, and ImageJ's for a resolution in dots per inch
}


def scale_pixel_size(scale: Any, units: Any) -> float | None:
    """µm per pixel of the last axis when its unit (napari/NGFF ``units``) is a length and its scale is
    positive, else None (a layer of pixels, or no units)."""
    if scale is None or not units:
        return None
    factor = UNIT_MICROMETERS.get(str(units[-1]).lower())
    return float(scale[-1]) * factor if factor is not None and float(scale[-1]) > 0 else None


# ------------------------------------------------------------------------------------------ conversion


def check_pixel_size(path: str | Path, pixel_size: float | None) -> None:
    """Refuse, before anything is written to ``path``, a pixel size that is not a length (None: unknown)."""
    if pixel_size is not None and not (np.isfinite(pixel_size) and pixel_size > 0):
        raise InputError(
            f"cannot write {path}: pixel size must be a positive number of µm/px, got {pixel_size}"
        )


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
        least, most = float(a.min()), float(a.max())
        if least >= 0 and most <= 1:
            return np.rint(a * 255).astype(np.uint8)
        if least >= 0 and most <= 255:
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
    from dask.threaded import get

    pool = ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1))
    try:  # the threaded scheduler named as a callable: a name makes dask import dask.distributed (0.1 s)
        da.store(sources, targets, lock=False, scheduler=get, pool=pool)
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
