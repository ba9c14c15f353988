"""Whole-slide images without loading them: lazy pyramid levels, their pixel size, and RoI reads.

A slide (Aperio SVS, Leica SCN, Hamamatsu NDPI, pyramidal (OME-)TIFF, OME-Zarr) opens as a :class:`Slide`:
every pyramid level as a lazy (H, W, 3) uint8 dask array (tifffile's zarr interface for TIFF/SVS/SCN/NDPI,
zarr for OME-Zarr) and the microns per pixel of level 0 from the file's metadata when it records one. A
region of interest is given in level-0 pixels and read from one level only, so a gigapixel slide is never
loaded.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from napari_pathup.errors import InputError
from napari_pathup.geometry import Box
from napari_pathup.io.arrays import UNIT_MICROMETERS
from napari_pathup.io.images import MAX_IMAGE_PIXELS, focal_offsets, focal_plane, nominal_plane

#: a RoI read at its level may hold at most this many pixels (8192^2 RGB: 192 MiB)
MAX_ROI_PIXELS = 8192 * 8192


@dataclass(frozen=True)
class Slide:
    """Lazy pyramid levels (largest first) of an RGB slide and the microns per pixel of level 0; for one
    of several scanned regions of a slide (:func:`open_slide_regions`), where its corner lies, (y, x) in
    micrometres from the top-left corner of the box around all the regions (OpenSlide's bounds)."""

    levels: list[Any]
    mpp: float | None
    name: str
    source: str
    offset_um: tuple[float, float] = (0.0, 0.0)
    notes: tuple[str, ...] = ()  # what was chosen for the user when the file held more (focal planes)

    @property
    def downsamples(self) -> list[float]:
        return level_downsamples(self.levels)

    def level_mpp(self, level: int) -> float | None:
        return None if self.mpp is None else self.mpp * self.downsamples[level]


def open_slide(path: str | Path, max_pixels: int | None = MAX_IMAGE_PIXELS) -> Slide:
    """Open an SVS, SCN, NDPI, (pyramidal, OME-)TIFF or OME-Zarr slide lazily; a PNG/JPEG is one level,
    checked from its header (refused above ``max_pixels``) and decoded whole when its pixels are first read
    (so the napari widget's click does not decode the reference; its worker does).

    Raises :class:`InputError` naming the file when it is not a 2-D RGB(A) image.
    """
    from napari_pathup.io.images import _kind, _wrap_errors

    path = Path(path).expanduser()
    kind = _kind(path)
    name = path.name
    notes: tuple[str, ...] = ()
    with _wrap_errors(path, kind):
        if kind == "tiff":
            levels, mpp, notes = _tiff_levels(path)
        elif kind == "ome-zarr":
            from napari_pathup.io.ome_zarr import lazy_rgb_levels, ome_zarr_pixel_size

            levels, mpp = lazy_rgb_levels(path), ome_zarr_pixel_size(path)
            name = name[: -len(".ome.zarr")] if name.lower().endswith(".ome.zarr") else name
        else:
            import dask
            import dask.array as da

            from napari_pathup.io.images import check_pixels, image_shape, read_image

            height, width = image_shape(path)
            check_pixels(path, height, width, max_pixels)
            pixels = dask.delayed(read_image, pure=True)(path, max_pixels=max_pixels)
            levels, mpp = [da.from_delayed(pixels, shape=(height, width, 3), dtype=np.uint8)], None
    return Slide(levels=levels, mpp=mpp, name=name, source=str(path), notes=notes)


def open_slide_regions(path: str | Path, max_pixels: int | None = MAX_IMAGE_PIXELS) -> list[Slide]:
    """Every scanned region of a slide, each a :class:`Slide` placed by ``offset_um``: a Leica SCN's
    main images (its macro image left out), in the file's order, each from the XML's ``view`` offset;
    any other slide is one region, :func:`open_slide`'s. OpenSlide composites an SCN's regions onto the
    macro image's canvas instead; this keeps each region's own pixel grid."""
    path = Path(path).expanduser()
    if not path.name.lower().endswith(".scn"):
        return [open_slide(path, max_pixels)]
    import tifffile

    from napari_pathup.io.images import _wrap_errors

    with _wrap_errors(path, "tiff"):
        tif = tifffile.TiffFile(path)  # kept open by the zarr stores for as long as the levels live
        images = scn_images(tif.pages.first.description if tif.is_scn else None, len(tif.series))
        regions = [(index, image) for index, image in enumerate(images) if not image.macro]
        if not regions:
            tif.close()
            return [open_slide(path, max_pixels)]
        first = (min(r.offset_nm[0] for _, r in regions), min(r.offset_nm[1] for _, r in regions))
        slides = []
        for k, (index, region) in enumerate(regions, start=1):
            series = tif.series[index]
            slides.append(
                Slide(
                    levels=_series_levels(tif, series, path),
                    mpp=tiff_pixel_size(tif, series, scn=images),  # the XML read once, above
                    name=f"{path.name} [region {k}]" if len(regions) > 1 else path.name,
                    source=str(path),
                    offset_um=(
                        (region.offset_nm[0] - first[0]) / 1000.0,
                        (region.offset_nm[1] - first[1]) / 1000.0,
                    ),
                )
            )
    return slides


def open_scan_region(
    path: str | Path, scan_region: int | None, max_pixels: int | None = MAX_IMAGE_PIXELS
) -> Slide:
    """The scanned region ``scan_region`` of a slide (1, 2, ... in the file's order, the ``[region N]``
    of :func:`open_slide_regions`' names), or :func:`open_slide`'s largest when None.

    Raises :class:`InputError` naming the file and the regions it has when there is no such region.
    """
    if scan_region is None:
        return open_slide(path, max_pixels)
    regions = open_slide_regions(path, max_pixels)
    if not 1 <= scan_region <= len(regions):
        count = len(regions)
        slide = Path(path).name.lower().endswith((".svs", ".scn", ".ndpi")) or len(regions[0].levels) > 1
        if count == 1 and not slide:  # a plain image (PNG, JPEG, a flat TIFF, OME-Zarr of one level)
            has = "the image is one region (1); scanned regions are those of a slide scanned in several"
        else:
            has = "the slide has " + (
                "one scanned region (1)" if count == 1 else f"{count} scanned regions (1-{count})"
            )
        raise InputError(f"{Path(path).name}: scanned region {scan_region} asked for; {has}")
    return regions[scan_region - 1]


@dataclass(frozen=True)
class ScnImage:
    """An image of a Leica SCN's XML that holds pixel data (tifffile makes one series of each, in the same
    order): its ``view`` offset and size (y, x) in nanometres, the collection's unit, its level-0 width in
    pixels, and whether it is the macro image, which spans the whole collection from its origin
    (OpenSlide's rule)."""

    offset_nm: tuple[float, float]
    size_nm: tuple[float, float]
    width_px: float
    macro: bool

    @property
    def mpp(self) -> float | None:
        """Microns per pixel of level 0: the view's width over the level-0 width; None if either is 0."""
        mpp = self.size_nm[1] / self.width_px / 1000.0 if self.size_nm[1] > 0 and self.width_px > 0 else None
        return mpp if mpp is not None and math.isfinite(mpp) else None


def scn_images(xml: str | None, series_count: int) -> list[ScnImage]:
    """The images of a Leica SCN's XML that hold pixel data, in order, one per tifffile series (images are
    matched to series by position: their ``name`` is optional and need not be unique). Empty when the XML
    cannot be read or does not list ``series_count`` such images."""
    from xml.etree import ElementTree

    def number(element: Any, name: str) -> float:
        return float(element.attrib.get(name, "0")) if element is not None else 0.0

    try:
        tree = ElementTree.fromstring(xml or "")
        found: list[ScnImage] = []
        for collection in (e for e in tree if e.tag.endswith("}collection")):
            size = (number(collection, "sizeY"), number(collection, "sizeX"))
            for image in (e for e in collection if e.tag.endswith("}image")):
                dimensions = [d for d in image.iter() if d.tag.endswith("}dimension")]
                if not dimensions:
                    continue  # no pixel data: no series
                level0 = next((d for d in dimensions if d.attrib.get("r", "0") == "0"), None)
                view = next((e for e in image if e.tag.endswith("}view")), None)
                offset = (number(view, "offsetY"), number(view, "offsetX"))
                extent = (number(view, "sizeY"), number(view, "sizeX"))
                macro = offset == (0.0, 0.0) and extent == size
                found.append(ScnImage(offset, extent, number(level0, "sizeX"), macro))
    except (ElementTree.ParseError, ValueError):
        return []
    return found if len(found) == series_count else []


def _tiff_levels(path: Path) -> tuple[list[Any], float | None, tuple[str, ...]]:
    import tifffile

    from napari_pathup.io.images import main_series

    tif = tifffile.TiffFile(path)  # kept open by the zarr store for as long as the levels live
    try:
        series = main_series(tif)
    except InputError:  # e.g. a Ventana scan: refused, and its file closed now
        tif.close()
        raise
    offsets = focal_offsets(series)
    notes = () if offsets is None else (_focal_note(offsets),)
    return _series_levels(tif, series, path), tiff_pixel_size(tif, series), notes


def _focal_note(offsets: list[int]) -> str:
    read = offsets[nominal_plane(offsets)]
    return (
        f"scanned at {len(offsets)} focal planes (Z {min(offsets)} to {max(offsets)} nm from the nominal "
        f"focus); the plane at Z {read} nm is read, as OpenSlide does"
    )


def _series_levels(tif: Any, series: Any, path: Path) -> list[Any]:
    """The lazy (H, W, 3) uint8 levels of one tifffile series (its zarr store keeps ``tif`` open)."""
    import dask.array as da
    import zarr

    axes = series.axes.upper()
    if "Y" not in axes or "X" not in axes or series.dtype != np.uint8:
        tif.close()
        raise InputError(
            f"{path}: expected an 8-bit RGB slide, found axes {series.axes!r} and dtype {series.dtype}"
        )
    store = series.aszarr()
    group = zarr.open(store, mode="r", zarr_format=2)
    arrays = [group[str(i)] for i in range(len(series.levels))] if isinstance(group, zarr.Group) else [group]
    levels = []
    for array, level in zip(arrays, series.levels, strict=True):
        lazy = da.from_zarr(array)
        plane = focal_plane(level)
        if plane is not None:  # an NDPI scanned at several focal planes: the nominal one, as OpenSlide
            lazy, axes = lazy[plane], level.axes.upper()[1:]
        else:
            axes = level.axes.upper()
        levels.append(_channels_last_lazy(lazy, axes, str(path)))
    return levels


def _channels_last_lazy(array: Any, axes: str, source: str) -> Any:
    """A lazy array with tifffile axes as (Y, X, 3) uint8 (alpha dropped; grey repeated); never loaded."""
    import dask.array as da

    index: list[Any] = []
    kept = []
    for name, size in zip(axes, array.shape, strict=True):
        if name in "YXSC":
            index.append(slice(None))
            kept.append(name)
        elif size == 1:
            index.append(0)
        else:
            raise InputError(
                f"{source}: expected a single 2-D RGB plane, found axes {axes!r} and shape {array.shape}"
            )
    array = array[tuple(index)]
    channel = [name for name in kept if name not in "YX"]
    order = [kept.index("Y"), kept.index("X")] + [kept.index(c) for c in channel]
    array = da.transpose(array, order)
    if array.ndim == 2:
        array = da.stack([array] * 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (3, 4):
        raise InputError(
            f"{source}: expected an RGB or RGBA image, found axes {axes!r} and shape {array.shape}"
        )
    return array[..., :3]


def tiff_pixel_size(tif: Any, series: Any = None, scn: Sequence[ScnImage] | None = None) -> float | None:
    """Microns per pixel of level 0 of ``series`` (default: the first) from SVS ("MPP = 0.499"), OME-XML
    (PhysicalSizeX) or the TIFF resolution tags of the series' first page (pixels per centimetre or inch,
    or per the ``unit`` of an ImageJ/Fiji TIFF, whose tags say no unit), a Philips TIFF's XML, or, for a
    Leica SCN without resolution tags, its XML (the image's ``view`` width in nanometres over its
    level-0 width in pixels; ``scn``: its :func:`scn_images` when the caller has read them); None when
    the file records none."""
    if tif.is_philips:
        return philips_pixel_size(tif.philips_metadata)
    if tif.is_svs:
        match = re.search(r"\|\s*MPP\s*=\s*([0-9.eE+-]+)", tif.pages.first.description or "")
        if match and _positive(match.group(1)):
            return float(match.group(1))
    if tif.is_ome and tif.ome_metadata:
        match = re.search(r'PhysicalSizeX="([0-9.eE+-]+)"', tif.ome_metadata)
        unit = re.search(r'PhysicalSizeXUnit="([^"]+)"', tif.ome_metadata)
        if match and _positive(match.group(1)):
            factor = UNIT_MICROMETERS.get(unit.group(1) if unit else "µm")
            if factor is not None:
                return float(match.group(1)) * factor
    page = tif.pages.first if series is None else series.keyframe
    mpp = _resolution_tags_mpp(tif, page)
    if mpp is None and tif.is_scn and series is not None:
        images = scn_images(tif.pages.first.description, len(tif.series)) if scn is None else scn
        return images[tif.series.index(series)].mpp if images else None
    return mpp


def _resolution_tags_mpp(tif: Any, page: Any) -> float | None:
    resolution = page.tags.get("XResolution")
    unit = page.tags.get("ResolutionUnit")
    if resolution is None or unit is None:
        return None
    numerator, denominator = resolution.value
    per_unit = numerator / denominator if denominator else 0.0
    microns = {2: 25400.0, 3: 10000.0}.get(int(unit.value))  # INCH, CENTIMETER; NONE has no length
    if int(unit.value) == 1 and tif.is_imagej:  # NONE: ImageJ keeps the unit in its own description
        microns = UNIT_MICROMETERS.get(imagej_unit(tif.imagej_metadata))
    if not microns or per_unit <= 0:
        return None
    return microns / per_unit


def philips_pixel_size(xml: str | None) -> float | None:
    """Microns per pixel of a Philips TIFF's level 0: the first ``DICOM_PIXEL_SPACING`` of its pixel-data
    representations (row and column spacing in millimetres, the attributes tifffile sizes the levels
    by); its column spacing, along x. None when the XML holds none."""
    from xml.etree import ElementTree

    try:
        tree = ElementTree.fromstring(xml or "")
    except ElementTree.ParseError:
        return None
    path = './/DataObject[@ObjectType="PixelDataRepresentation"]/Attribute[@Name="DICOM_PIXEL_SPACING"]'
    level0 = tree.find(path)  # the representations are listed from level 0 down
    values = (level0.text or "").replace('"', " ").split() if level0 is not None else []
    return float(values[1]) * 1000.0 if len(values) == 2 and _positive(values[1]) else None


def imagej_unit(metadata: dict[str, Any] | None) -> str:
    """The length unit of an ImageJ TIFF's description, lower case: Fiji writes ``micron`` or ``\\u00B5m``
    (escaped), ``um`` and ``µm`` are seen too; "" when it records none (ImageJ's ``pixel``)."""
    unit = str((metadata or {}).get("unit", "")).strip().lower()
    return unit.replace("\\u00b5", "µ")


def _positive(value: Any) -> bool:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return False
    return math.isfinite(number) and number > 0


def level_downsamples(levels: Sequence[Any]) -> list[float]:
    """Each level's downsample from level 0 (level-0 width over the level's width)."""
    width = float(levels[0].shape[1])
    return [width / float(level.shape[1]) for level in levels]


def choose_level(
    levels: Sequence[Any],
    mpp: float | None,
    *,
    level: int | None = None,
    target_mpp: float | None = None,
    source: str | None = None,
) -> int:
    """The pyramid level to read a RoI from: ``level`` when given, else the one whose pixel size is
    closest (in ratio) to ``target_mpp``, else level 0. Raises :class:`InputError` (naming ``source``,
    the file, when given) for a level that does not exist or a target pixel size on a slide that records
    none."""
    named = f"{source}: " if source else ""
    if level is not None and target_mpp is not None:
        raise InputError("give a pyramid level or a pixel size (µm/px) for the RoI, not both")
    if level is not None:
        if not 0 <= level < len(levels):
            count = len(levels)
            raise InputError(
                f"{named}pyramid level {level} does not exist; it has {count} level(s) (0-{count - 1})"
            )
        return level
    if target_mpp is None:
        return 0
    if not _positive(target_mpp):
        raise InputError(f"pixel size must be a positive number of µm/px, got {target_mpp}")
    if mpp is None:
        raise InputError(
            f"{named}cannot choose a level for {target_mpp} µm/px: it records no pixel size; "
            "give a pyramid level instead"
        )
    ratios = [abs(math.log(mpp * d / target_mpp)) for d in level_downsamples(levels)]
    return int(np.argmin(ratios))


def region_at_level(levels: Sequence[Any], region: Box, level: int) -> tuple[slice, slice]:
    """The (rows, columns) of ``region`` (level-0 pixels) at ``level``; refuses a region that is not
    wholly inside the slide."""
    height, width = levels[0].shape[:2]
    if region.x0 < 0 or region.y0 < 0 or region.x1 > width or region.y1 > height:
        raise InputError(
            f"region {region.xywh_text()} (x,y,w,h in level-0 pixels) is not inside the image of "
            f"{width}x{height} pixels (width x height)"
        )
    d = level_downsamples(levels)[level]
    lh, lw = levels[level].shape[:2]
    y0, x0 = int(region.y0 / d), int(region.x0 / d)
    y1 = min(lh, max(y0 + 1, round(region.y1 / d)))
    x1 = min(lw, max(x0 + 1, round(region.x1 / d)))
    return slice(y0, y1), slice(x0, x1)


def read_region(
    levels: Sequence[Any],
    region: Box,
    level: int = 0,
    *,
    min_size: int = 1,
    source: str = "image",
    lazy: bool = False,
) -> Any:
    """Read ``region`` (level-0 pixels) from one pyramid level as (h, w, 3) uint8; only that part is read.

    ``min_size`` is the smallest side allowed at that level (the model's native patch in pixels).
    With ``lazy`` the region is checked but not read: the level's slice is returned (a dask array for
    lazy levels), for :func:`load_roi` to read later, e.g. in a worker thread.
    """
    from napari_pathup.io.arrays import to_rgb_uint8

    rows, cols = region_at_level(levels, region, level)
    h, w = rows.stop - rows.start, cols.stop - cols.start
    if min(h, w) < min_size:
        raise InputError(
            f"region {region.xywh_text()} of {source} is {w}x{h} pixels at level {level}, smaller than the "
            f"model's native patch of {min_size}x{min_size} pixels; draw a larger rectangle or read a "
            "finer level"
        )
    if h * w > MAX_ROI_PIXELS:
        raise InputError(
            f"region {region.xywh_text()} of {source} is {w}x{h} pixels at level {level}, more than "
            f"{MAX_ROI_PIXELS} pixels; read it from a coarser level (--level / --mpp)"
        )
    block = levels[level][rows, cols]
    return block if lazy else to_rgb_uint8(materialise(block), source)


def materialise(block: Any) -> np.ndarray:
    """A lazy (dask) block read into memory with dask's thread pool, named as a callable: dask's
    default look-up imports dask.distributed (0.1 s) only to find no client; other arrays as they are."""
    if hasattr(block, "dask") and hasattr(block, "compute"):
        from dask.threaded import get

        return np.asarray(block.compute(scheduler=get))
    return np.asarray(block)


def load_roi(image: Any, source: str = "reference") -> np.ndarray:
    """A RoI as (h, w, 3) uint8 in memory: reads a lazy RoI (see ``read_region(lazy=True)``)."""
    from napari_pathup.io.arrays import to_rgb_uint8

    return (
        image
        if isinstance(image, np.ndarray) and image.dtype == np.uint8
        else to_rgb_uint8(materialise(image), source)
    )


def native_mpp(metadata: dict[str, Any]) -> float | None:
    """The model's native pixel size (``pathup.json`` "native_mpp", µm/px), or None when it records none."""
    value = metadata.get("native_mpp") if isinstance(metadata, dict) else None
    return float(value) if value is not None and _positive(value) else None


@dataclass(frozen=True)
class ReferenceRoi:
    """A reference RoI as read for a run: its pixels, where they came from, and the output pixel size.

    ``pixel_size`` is the µm/px the synthetic image gets: the RoI level's when the slide records one,
    else the model's native one, else None (the output is then unitless); ``notes`` say which, so a
    fallback is never silent.
    """

    image: Any  # (h, w, 3) uint8; a lazy slice when read with lazy=True (see load_roi)
    region: Box | None
    level: int
    pixel_size: float | None
    notes: tuple[str, ...] = ()
    scan_region: int | None = None  # which scanned region of the slide, when one was asked for

    def attributes(self) -> dict[str, Any]:
        """What the output file records about the RoI (beside the run's own attributes)."""
        scan = {} if self.scan_region is None else {"scan_region": self.scan_region}
        return {
            "reference_region": None
            if self.region is None
            else {**self.region.to_json(), "level": self.level, **scan},
            "pixel_size_um": self.pixel_size,
        }


def roi_from_levels(
    levels: Sequence[Any],
    mpp: float | None,
    region: Box | None,
    *,
    level: int | None = None,
    target_mpp: float | None = None,
    model_mpp: float | None = None,
    min_size: int = 1,
    source: str = "image",
    lazy: bool = False,
) -> ReferenceRoi:
    """Read a RoI (the whole image when ``region`` is None) from the level that ``level``,
    ``target_mpp`` or the model's native ``model_mpp`` asks for (in that order), with its pixel size.
    With ``lazy``, everything is checked but ``image`` is not read yet (see :func:`load_roi`)."""
    notes: list[str] = []
    if level is None and target_mpp is None and model_mpp is not None and mpp is not None:
        target_mpp = model_mpp
    chosen = choose_level(levels, mpp, level=level, target_mpp=target_mpp, source=source)
    if region is None:
        region = Box(0, 0, int(levels[0].shape[0]), int(levels[0].shape[1]))
    image = read_region(levels, region, chosen, min_size=min_size, source=source, lazy=lazy)
    pixel_size = None if mpp is None else mpp * level_downsamples(levels)[chosen]
    if pixel_size is None:
        if model_mpp is not None:
            pixel_size = model_mpp
            notes.append(
                f"{source} records no pixel size: the output gets the model's native {model_mpp:g} µm/px"
            )
        else:
            notes.append(f"{source} records no pixel size and neither does the model: the output has no unit")
    return ReferenceRoi(image, region, chosen, pixel_size, tuple(notes))


def read_reference_roi(
    path: str | Path,
    region: str | Box | None,
    level: int | None,
    target_mpp: float | None,
    model: Any,
    *,
    lazy: bool = False,
    max_pixels: int | None = MAX_IMAGE_PIXELS,
    scan_region: int | None = None,
) -> ReferenceRoi:
    """The reference for a run from a file: a RoI of a slide (``region``, level-0 pixels of the scanned
    region ``scan_region``, else of the largest, saying so in a note when the slide has several) read from
    one pyramid level, or the whole image; the model's native patch is the smallest RoI side allowed."""
    slide = open_scan_region(path, scan_region, max_pixels)
    if isinstance(region, str):
        region = Box.parse_xywh(region)
    roi = roi_from_levels(
        slide.levels,
        slide.mpp,
        region,
        level=level,
        target_mpp=target_mpp,
        model_mpp=native_mpp(getattr(model, "metadata", {})),
        min_size=int(model.native_size * model.vae_scale_factor) if region is not None else 1,
        source=str(path),
        lazy=lazy,
    )
    if slide.notes:  # e.g. which focal plane of several is read
        roi = replace(roi, notes=(*(f"{Path(path).name}: {note}" for note in slide.notes), *roi.notes))
    if scan_region is not None:
        return replace(roi, scan_region=scan_region)
    chosen = _largest_of_several(path)
    return roi if chosen is None else replace(roi, notes=(*roi.notes, chosen))


def _largest_of_several(path: str | Path) -> str | None:
    """A note naming the scanned region a slide scanned in several is read from (the series
    :func:`~napari_pathup.io.images.main_series` picks for :func:`open_slide`, the largest), and how to
    read another; None for a slide of one region."""
    name = Path(path).name
    if not name.lower().endswith(".scn"):
        return None
    import tifffile

    from napari_pathup.io.images import main_series

    with tifffile.TiffFile(Path(path).expanduser()) as tif:  # headers only: no pixel store is opened
        images = scn_images(tif.pages.first.description if tif.is_scn else None, len(tif.series))
        regions = [index for index, image in enumerate(images) if not image.macro]
        read = tif.series.index(main_series(tif))
    if len(regions) < 2 or read not in regions:
        return None
    return (
        f"note: {name} holds {len(regions)} scanned regions; the reference is read from region "
        f"{regions.index(read) + 1}, "
        "the largest (pathup synthesize --scan-region N reads another, `pathup slide` lists them; in "
        "napari the slide opens as one layer per region)"
    )
