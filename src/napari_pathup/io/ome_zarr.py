"""OME-Zarr (OME-NGFF 0.5, zarr v3) images: the large-output format, chunked and pyramidal.

Outputs have axes (c, y, x) with three RGB channels, a 2x mean-downsampled pyramid and ``omero``
channel metadata so that napari, QuPath, OMERO and other NGFF viewers show them in colour. The
metadata is written with ome-zarr-py; our own attributes live under the group attribute "pathup",
beside the "ome" key.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from napari_pathup.errors import InputError
from napari_pathup.io.arrays import (
    ATTRS_KEY,
    attrs_json,
    channels_last,
    check_pixel_size,
    check_rgb_image,
    dask_pyramid,
    pyramid_shapes,
    store_chunkwise,
    to_rgb_uint8,
)
from napari_pathup.io.atomic import atomic_output, split_suffixes

AXES: list[dict[str, str]] = [
    {"name": "c", "type": "channel"},
    {"name": "y", "type": "space"},
    {"name": "x", "type": "space"},
]

OMERO: dict[str, Any] = {
    "channels": [
        {
            "label": label,
            "color": color,
            "window": {"min": 0, "max": 255, "start": 0, "end": 255},
            "active": True,
            "coefficient": 1.0,
            "family": "linear",
            "inverted": False,
        }
        for label, color in (("red", "FF0000"), ("green", "00FF00"), ("blue", "0000FF"))
    ],
    "rdefs": {"model": "color"},
}


def write_ome_zarr(
    path: str | Path,
    image: Any,
    *,
    attrs: dict[str, Any] | None = None,
    overwrite: bool = False,
    chunk: int = 512,
    min_level_size: int = 256,
    pixel_size: float | None = None,
) -> Path:
    """Write an (H, W, 3) uint8 array-like (NumPy, zarr or dask) as a pyramidal OME-Zarr image.

    Zarr and dask inputs are processed chunk by chunk, never loaded whole. The store appears under
    ``path`` only once complete. ``pixel_size`` (µm per pixel of level 0) becomes the NGFF scale of
    micrometre y/x axes; without it the axes carry no unit and the scale is in pixels. Returns the
    resolved output path.
    """
    image = check_rgb_image(image, path)
    text = attrs_json(attrs, path)
    chunk = int(chunk)
    if chunk < 2 or chunk % 2:
        raise InputError(f"cannot write {path}: chunk must be an even number >= 2, got {chunk}")
    check_pixel_size(path, pixel_size)
    shapes = pyramid_shapes(image.shape[0], image.shape[1], min_level_size)
    with atomic_output(path, overwrite) as temp:
        levels = [level.transpose(2, 0, 1) for level in dask_pyramid(image, len(shapes), chunk)]
        root = create_pyramid_group(temp, shapes, chunk, pixel_size, split_suffixes(Path(path).name)[0])
        store_chunkwise(levels, [root[str(i)] for i in range(len(levels))])
        root.attrs[ATTRS_KEY] = json.loads(text)
    return Path(path).expanduser().resolve()


def create_pyramid_group(
    path: str | Path, shapes: list[tuple[int, int]], chunk: int, pixel_size: float | None, name: str = ""
) -> Any:
    """Create an empty OME-Zarr (NGFF 0.5) RGB pyramid of the given level shapes, metadata included.

    Levels are (3, h, w) uint8 arrays filled with zeros until written; the writer above and the
    widget's live output (:mod:`napari_pathup.io.live_zarr`) both start from here.
    """
    import zarr
    from ome_zarr.format import FormatV05

    with warnings.catch_warnings():  # ome-zarr-py warns about its own deprecated Scaler on import
        warnings.simplefilter("ignore", DeprecationWarning)
        from ome_zarr.writer import write_multiscales_metadata

    root = zarr.open_group(path, mode="w", zarr_format=3)
    for i, (h, w) in enumerate(shapes):
        root.create_array(
            str(i),
            shape=(3, h, w),
            chunks=(3, chunk, chunk),
            dtype=np.uint8,
            fill_value=0,
            dimension_names=[axis["name"] for axis in AXES],
        )
    write_multiscales_metadata(
        root,
        pyramid_datasets(len(shapes), pixel_size),
        fmt=FormatV05(),
        axes=axes_with_unit(pixel_size),
        name=name or "image",
        metadata={"omero": json_copy(OMERO)},
    )
    return root


def axes_with_unit(pixel_size: float | None) -> list[dict[str, str]]:
    """The c/y/x axes, y and x in micrometres when the pixel size is known."""
    if pixel_size is None:
        return json_copy(AXES)
    return [dict(axis, unit="micrometer") if axis["type"] == "space" else dict(axis) for axis in AXES]


def pyramid_datasets(n_levels: int, pixel_size: float | None) -> list[dict[str, Any]]:
    """NGFF datasets of a 2x mean pyramid: level i has scale ``pixel_size * 2**i`` (1.0 without a
    pixel size) and is shifted by half its extra pixel size, so every level covers the same area."""
    unit = 1.0 if pixel_size is None else float(pixel_size)
    return [
        {
            "path": str(i),
            "coordinateTransformations": [
                {"type": "scale", "scale": [1.0, unit * 2**i, unit * 2**i]},
                {"type": "translation", "translation": [0.0, unit * (2**i - 1) / 2, unit * (2**i - 1) / 2]},
            ],
        }
        for i in range(n_levels)
    ]


def ome_zarr_pixel_size(path: str | Path) -> float | None:
    """µm per pixel of level 0 from the NGFF scale of the x axis when that axis has a length unit."""
    from napari_pathup.io.arrays import UNIT_MICROMETERS

    _, meta = _open(Path(path))
    axes = meta.get("axes") or []
    names = [str(a.get("name", "") if isinstance(a, dict) else a).lower() for a in axes]
    if "x" not in names:
        return None
    x_axis = axes[names.index("x")]
    unit = x_axis.get("unit") if isinstance(x_axis, dict) else None
    factor = UNIT_MICROMETERS.get(str(unit).lower()) if unit else None
    if factor is None:
        return None
    scale = 1.0
    transforms = list(meta.get("coordinateTransformations") or []) + list(
        meta["datasets"][0].get("coordinateTransformations") or []
    )
    for transform in transforms:
        if transform.get("type") == "scale" and len(transform.get("scale", [])) == len(axes):
            scale *= float(transform["scale"][names.index("x")])
    return scale * factor if scale > 0 else None


def json_copy(value: Any) -> Any:
    """Deep copy of JSON-like data (ome-zarr-py edits the metadata dicts it is given)."""
    return json.loads(json.dumps(value))


def read_ome_zarr(path: str | Path, level: int = 0) -> np.ndarray:
    """Read one pyramid level of an OME-Zarr image as (H, W, 3) uint8 RGB.

    Accepts NGFF 0.4 (zarr v2) and 0.5 (zarr v3) images with a channel axis of 1, 3 or 4 channels
    (or yx data with a trailing RGB dimension); singleton t/z axes are dropped.
    """
    array, axes = _level_array(Path(path), level)
    return to_rgb_uint8(channels_last(array[...], axes, str(path)), str(path))


def ome_zarr_level_shapes(path: str | Path) -> list[tuple[int, int]]:
    """(H, W) of every pyramid level, largest first, from the metadata alone."""
    group, meta = _open(Path(path))
    shapes = []
    for dataset in meta["datasets"]:
        array = group[dataset["path"]]
        axes = _array_axes(meta, array, Path(path))
        shapes.append((int(array.shape[axes.index("Y")]), int(array.shape[axes.index("X")])))
    return shapes


def read_ome_zarr_attrs(path: str | Path) -> dict[str, Any]:
    """The napari-pathup attributes of an OME-Zarr image ({} if it has none)."""
    group, _ = _open(Path(path))
    value = group.attrs.get(ATTRS_KEY, {})
    return dict(value) if isinstance(value, dict) else {}


def _open(path: Path) -> tuple[Any, dict[str, Any]]:
    """Open the group and return it with its first ``multiscales`` entry."""
    import zarr

    path = path.expanduser()
    if not path.is_dir():
        raise InputError(f"{path}: no such OME-Zarr folder")
    try:
        group = zarr.open_group(path, mode="r")
    except Exception as exc:
        raise InputError(f"cannot read {path} as an OME-Zarr image: {type(exc).__name__}: {exc}") from exc
    attrs = group.attrs.asdict()
    meta = attrs.get("ome", attrs)
    multiscales = meta.get("multiscales") if isinstance(meta, dict) else None
    if not multiscales or not multiscales[0].get("datasets"):
        raise InputError(f"{path} is a zarr store but not an OME-Zarr image (no 'multiscales' metadata)")
    return group, multiscales[0]


def _axes(meta: dict[str, Any], path: Path) -> str:
    """Axis names as one upper-case letter each (NGFF 0.1/0.2 without axes: trailing of t, c, z, y, x)."""
    axes = meta.get("axes") or ["t", "c", "z", "y", "x"]
    names = "".join(str(a["name"] if isinstance(a, dict) else a)[:1] for a in axes).upper()
    if "Y" not in names or "X" not in names:
        raise InputError(f"{path}: expected an image with y and x axes, found axes {names.lower()!r}")
    return names


def _array_axes(meta: dict[str, Any], array: Any, path: Path) -> str:
    """Axis letters of one pyramid level, allowing for missing axes and interleaved RGB samples."""
    axes = _axes(meta, path)
    if meta.get("axes") is None:
        return axes[-array.ndim :]
    if array.ndim == len(axes) + 1 and array.shape[-1] in (3, 4):
        return axes + "S"  # yx image with interleaved RGB(A) samples
    return axes


def _level_array(path: Path, level: int) -> tuple[Any, str]:
    group, meta = _open(path)
    datasets = meta["datasets"]
    if not 0 <= level < len(datasets):
        raise InputError(
            f"{path}: pyramid level {level} does not exist; the image has {len(datasets)} level(s)"
        )
    array = group[datasets[level]["path"]]
    return array, _array_axes(meta, array, path)


def lazy_rgb_levels(path: str | Path) -> list[Any]:
    """Every pyramid level as a lazy (H, W, 3) uint8 dask array, largest first.

    Channel-first uint8 images with three channels (what this package writes) stay lazy; other
    layouts are read level by level through :func:`read_ome_zarr` and wrapped.
    """
    import dask.array as da

    path = Path(path)
    group, meta = _open(path)
    levels = []
    for index, dataset in enumerate(meta["datasets"]):
        array = group[dataset["path"]]
        axes = _array_axes(meta, array, path)
        if axes == "CYX" and array.shape[0] == 3 and array.dtype == np.uint8:
            levels.append(da.moveaxis(da.from_zarr(array), 0, -1))
        else:
            levels.append(da.from_array(read_ome_zarr(path, index)))
    return levels
