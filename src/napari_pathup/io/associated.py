"""A slide's associated images: its label, the macro photograph of the whole glass and the scanner's
thumbnail, named as OpenSlide names them ("label", "macro", "thumbnail").

They tell which slide a reference comes from (the label) and where on the glass its tissue lies (the
macro) without another reader. Read with tifffile: an Aperio SVS's Thumbnail, Label and Macro pages, a
Hamamatsu NDPI's macro page (source lens -1), a Leica SCN's macro image (the image that spans the whole
collection). Listing reads headers only. A label often carries patient identifiers, so an associated
image is decoded only when asked for by name, and no output of napari-pathup copies one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_pathup.errors import InputError
from napari_pathup.io.arrays import channels_last, to_rgb_uint8
from napari_pathup.io.images import MAX_IMAGE_PIXELS, SLIDE_SUFFIXES, check_pixels, no_image_message

#: the names OpenSlide gives the associated images these formats hold
ASSOCIATED_NAMES: tuple[str, ...] = ("label", "macro", "thumbnail")


@dataclass(frozen=True)
class AssociatedImage:
    """One associated image of a slide: its OpenSlide name and its size in pixels."""

    name: str
    width: int
    height: int


def associated_images(path: str | Path) -> list[AssociatedImage]:
    """The associated images of a slide, by name, from its headers (nothing is decoded); empty for a file
    that holds none (a pyramidal (OME-)TIFF, PNG, JPEG or OME-Zarr).

    Raises :class:`InputError` naming the file when it does not exist or cannot be read."""
    path = Path(path).expanduser()
    if not _may_hold_associated(path):
        return []
    with _associated(path) as found:
        return [AssociatedImage(name, *_width_height(series)) for name, series in sorted(found.items())]


def read_associated_image(
    path: str | Path, name: str, max_pixels: int | None = MAX_IMAGE_PIXELS
) -> np.ndarray:
    """The associated image ``name`` ("label", "macro" or "thumbnail") of a slide as (H, W, 3) uint8 RGB.

    Raises :class:`InputError` naming the file and the associated images it has when it has no such
    image, and :class:`~napari_pathup.errors.ImageTooLargeError` above ``max_pixels`` (from the header)."""
    path = Path(path).expanduser()
    if name not in ASSOCIATED_NAMES:
        raise InputError(
            f"{name!r} is not an associated image's name; expected one of {', '.join(ASSOCIATED_NAMES)}"
        )
    names: list[str] = []
    if _may_hold_associated(path):
        with _associated(path) as found:
            series = found.get(name)
            if series is not None:
                width, height = _width_height(series)
                check_pixels(path, height, width, max_pixels)
                return to_rgb_uint8(channels_last(series.asarray(), series.axes, str(path)), str(path))
            names = sorted(found)
    has = f"its associated images: {', '.join(names)}" if names else "it holds no associated images"
    raise InputError(f"{path}: the slide has no {name} image; {has}")


def _may_hold_associated(path: Path) -> bool:
    """Whether ``path`` is a file of a kind that can hold associated images (a TIFF-family slide)."""
    if not path.exists():
        raise InputError(f"{path}: no such file; expected a slide ({', '.join(SLIDE_SUFFIXES)})")
    return path.is_file() and path.name.lower().endswith(SLIDE_SUFFIXES)


@contextlib.contextmanager
def _associated(path: Path) -> Iterator[dict[str, Any]]:
    """The file's associated series by name (:func:`_associated_series`) while the file is open; a reader
    library's error becomes an :class:`InputError` naming the file."""
    import tifffile

    from napari_pathup.io.images import _wrap_errors

    with _wrap_errors(path, "tiff"), tifffile.TiffFile(path) as tif:
        if not tif.series:
            raise InputError(no_image_message(path))
        yield _associated_series(tif)


def _width_height(series: Any) -> tuple[int, int]:
    axes = series.axes.upper()
    return int(series.shape[axes.index("X")]), int(series.shape[axes.index("Y")])


def _associated_series(tif: Any) -> dict[str, Any]:
    """The tifffile series of each associated image, by OpenSlide's name: for an SVS, the series tifffile
    names Thumbnail, Label and Macro (from the pages' descriptions, as OpenSlide finds them); for an NDPI,
    its Macro series (source lens -1); for a Leica SCN, the image whose view spans the whole collection."""
    if tif.is_svs:
        return {s.name.lower(): s for s in tif.series[1:] if s.name.lower() in ASSOCIATED_NAMES}
    if tif.is_ndpi:
        macros = [s for s in tif.series if s.name == "Macro"]
        return {"macro": macros[0]} if macros else {}
    if tif.is_scn:
        from napari_pathup.io.slide import scn_images

        images = scn_images(tif.pages.first.description, len(tif.series))
        macros = [tif.series[index] for index, image in enumerate(images) if image.macro]
        return {"macro": macros[0]} if macros else {}
    return {}
