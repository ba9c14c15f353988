"""Training data: find the images of every class, hold regions out, and sample tissue crops at two scales.

Layouts: ``DATA/<class>/IMAGE`` (one folder per class), or the BRACS RoI layout
``DATA/<split>/<k>_<CLASS>/*.png`` (class names without the numeric prefix, ordered by it; ``DATA``
may also be one split folder). A hold-out file names one pixel rectangle per image that training
never reads: the rest of the image is cut into up to four bands around it (:func:`training_regions`),
and every crop comes from inside one band, so no crop (and no encoder tile) ever touches it.

Scales follow Algorithm 1: ``native`` crops are full-magnification pixels; ``overview`` crops come
from a training band shrunk by the factor that stage 1 applies to a whole reference
(``reference_size / min(H, W)``), jittered by a few ``overview_scales``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_pathup.errors import InputError
from napari_pathup.io.images import SUPPORTED_IMAGE_SUFFIXES, image_shape, list_images, read_image
from napari_pathup.models.conditioning import SCALES

#: BRACS class folders: ``0_N``, ``1_PB``, ... (numeric prefix, underscore, class name)
BRACS_CLASS = re.compile(r"^(\d+)_(.+)$")
BRACS_SPLITS: tuple[str, ...] = ("train", "val", "test")
HOLDOUT_FILE = "holdout.json"
#: tissue maps and crop positions use cells of this many pixels (the autoencoder factor)
CELL = 8
NATIVE, OVERVIEW = SCALES.index("native"), SCALES.index("overview")
_SUPPORTED = ", ".join(SUPPORTED_IMAGE_SUFFIXES)
#: overview crops: the stage-1 shrink factor times these (larger, so the bands around a hold-out still fit)
OVERVIEW_SCALES: tuple[float, ...] = (1.0, 1.25, 1.5)


# ------------------------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class Rect:
    """A pixel rectangle ``[x0, x1) x [y0, y1)``."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    def intersects(self, other: Rect) -> bool:
        return self.x0 < other.x1 and other.x0 < self.x1 and self.y0 < other.y1 and other.y0 < self.y1

    def to_json(self) -> dict[str, int]:
        return {"x": self.x0, "y": self.y0, "width": self.width, "height": self.height}


def training_regions(height: int, width: int, holdout: Rect | None, min_side: int = 1) -> list[Rect]:
    """The bands of an image around its hold-out rectangle (above, below, left, right of it).

    Bands span the whole image in their long direction, so they overlap at the corners; each is
    trimmed to a multiple of :data:`CELL` from its own origin and dropped when shorter than
    ``min_side`` on either side. Without a hold-out the whole image is one region.
    """
    if holdout is None:
        bands = [Rect(0, 0, width, height)]
    else:
        h = holdout
        bands = [
            Rect(0, 0, width, h.y0),
            Rect(0, h.y1, width, height),
            Rect(0, 0, h.x0, height),
            Rect(h.x1, 0, width, height),
        ]
    out = []
    for r in bands:
        w8, h8 = r.width // CELL * CELL, r.height // CELL * CELL
        if min(w8, h8) >= max(min_side, CELL):
            out.append(Rect(r.x0, r.y0, r.x0 + w8, r.y0 + h8))
    return out


def orient(array: Any, orientation: int, spatial: tuple[int, int] = (0, 1)) -> Any:
    """One of the 8 flips/90° rotations: ``orientation // 4`` flips the second spatial axis, then
    ``orientation % 4`` quarter turns (``np.rot90``/``torch.rot90`` convention). NumPy or torch."""
    k, flip = orientation % 4, orientation >= 4
    if isinstance(array, np.ndarray):
        out = array[(slice(None),) * spatial[1] + (slice(None, None, -1),)] if flip else array
        return np.rot90(out, k, axes=spatial)
    out = array.flip(spatial[1]) if flip else array
    return out.rot90(k, dims=spatial) if k else out


def oriented_box(y: int, x: int, size: int, height: int, width: int, orientation: int) -> tuple[int, int]:
    """Where the square box at (y, x) of an ``height`` x ``width`` array lands after :func:`orient`."""
    if orientation >= 4:
        x = width - x - size
    for _ in range(orientation % 4):
        y, x, height, width = width - x - size, y, width, height
    return y, x


# ------------------------------------------------------------------------------------------ discovery


@dataclass(frozen=True)
class ImageEntry:
    path: Path
    class_name: str
    key: str  # the path relative to the data folder, with "/" separators: hold-out files use it
    holdout: Rect | None = None
    why: str = ""


@dataclass(frozen=True)
class DatasetIndex:
    """What :func:`discover` found: the layout, the classes in label order and every image."""

    root: Path
    layout: str
    classes: tuple[str, ...]
    images: tuple[ImageEntry, ...]
    holdout_file: Path | None = None

    def images_of(self, class_name: str) -> list[ImageEntry]:
        return [e for e in self.images if e.class_name == class_name]


def _subfolders(folder: Path) -> list[Path]:
    return sorted(
        (
            d
            for d in folder.iterdir()
            if d.is_dir() and not d.name.startswith(".") and not d.name.endswith(".ome.zarr")
        ),
        key=lambda d: d.name,
    )


def _class_folders(folder: Path) -> tuple[str, list[tuple[str, Path]]]:
    """(layout, [(class name, folder)]) of one folder of class folders; BRACS names lose their prefix."""
    subs = _subfolders(folder)
    if subs and all(BRACS_CLASS.match(d.name) for d in subs):
        ordered = sorted(subs, key=lambda d: (int(BRACS_CLASS.match(d.name).group(1)), d.name))
        return "bracs", [(BRACS_CLASS.match(d.name).group(2), d) for d in ordered]
    return "class-folders", [(d.name, d) for d in subs]


def discover(
    root: str | Path,
    splits: Sequence[str] = ("train",),
    holdout: str | Path | None = None,
    max_images_per_class: int | None = None,
    seed: int = 0,
) -> DatasetIndex:
    """Find the classes and images under ``root``; raise :class:`InputError` for empty or unknown layouts.

    ``holdout`` is a hold-out file (default: ``root/holdout.json`` when it exists; pass ``"none"``
    for none). ``max_images_per_class`` keeps a seeded random subset of each class.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise InputError(f"training data {root}: no such folder")
    expected = (
        f"expected DATA/<class>/<image> (one sub-folder of images per class; {_SUPPORTED}) or the BRACS "
        "layout DATA/<split>/<k>_<CLASS>/*.png"
    )
    split_dirs = [root / s for s in BRACS_SPLITS if (root / s).is_dir()]
    if split_dirs:
        missing = [s for s in splits if not (root / s).is_dir()]
        if missing:
            found = ", ".join(d.name for d in split_dirs)
            raise InputError(
                f"{root}: no split folder {', '.join(missing)} (found {found}); choose with --split"
            )
        folders: list[tuple[str, Path]] = []
        for split in splits:
            layout, found_folders = _class_folders(root / split)
            if layout != "bracs":
                raise InputError(f"{root / split}: expected BRACS class folders <k>_<CLASS>; {expected}")
            folders += found_folders
        layout = "bracs"
    else:
        layout, folders = _class_folders(root)
    if not folders:
        loose = list_images(root)
        if loose:
            raise InputError(f"{root} holds images but no class folders; {expected}")
        raise InputError(f"{root} holds no class folders; {expected}")

    classes: list[str] = []
    by_class: dict[str, list[Path]] = {}
    for name, folder in folders:
        images = [p for p in list_images(folder)]
        if not images:
            raise InputError(f"class folder {folder} holds no images ({_SUPPORTED}); {expected}")
        if name not in by_class:
            classes.append(name)
            by_class[name] = []
        by_class[name] += images
    rng = np.random.default_rng(seed)
    entries = []
    for name in classes:
        paths = sorted(by_class[name])
        if max_images_per_class is not None and len(paths) > max_images_per_class:
            keep = sorted(rng.choice(len(paths), max_images_per_class, replace=False))
            paths = [paths[i] for i in keep]
        entries += [ImageEntry(p, name, p.relative_to(root).as_posix()) for p in paths]

    holdout_path = _holdout_path(root, holdout)
    if holdout_path is not None:
        entries = _apply_holdout(entries, read_holdout(holdout_path))
    return DatasetIndex(root, layout, tuple(classes), tuple(entries), holdout_path)


def _holdout_path(root: Path, holdout: str | Path | None) -> Path | None:
    if holdout is None:
        default = root / HOLDOUT_FILE
        return default if default.is_file() else None
    if str(holdout).lower() == "none":
        return None
    path = Path(holdout).expanduser()
    if not path.is_file():
        raise InputError(f"hold-out file {path}: no such file")
    return path


def read_holdout(path: str | Path) -> dict[str, tuple[Rect, str]]:
    """Read a hold-out file: ``{"regions": {"<class>/<image>": {"x", "y", "width", "height", "why"}}}``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"hold-out file {path} is not valid JSON: {exc}") from exc
    regions = data.get("regions") if isinstance(data, dict) else None
    if not isinstance(regions, dict):
        raise InputError(f"hold-out file {path}: expected an object with a 'regions' object")
    out = {}
    for key, value in regions.items():
        try:
            x, y, w, h = (int(value[k]) for k in ("x", "y", "width", "height"))
        except (TypeError, KeyError, ValueError) as exc:
            raise InputError(
                f"hold-out file {path}: region {key!r} needs integer x, y, width, height"
            ) from exc
        if x < 0 or y < 0 or w <= 0 or h <= 0:
            raise InputError(f"hold-out file {path}: region {key!r} must have x, y >= 0 and a positive size")
        out[key] = (Rect(x, y, x + w, y + h), str(value.get("why", "")))
    return out


def _apply_holdout(entries: list[ImageEntry], holdout: dict[str, tuple[Rect, str]]) -> list[ImageEntry]:
    keys = {e.key for e in entries}
    unknown = sorted(set(holdout) - keys)
    if unknown:
        raise InputError(f"hold-out regions name images that are not in the data: {', '.join(unknown)}")
    out = []
    for e in entries:
        if e.key in holdout:
            rect, why = holdout[e.key]
            h, w = image_shape(e.path)
            if rect.x1 > w or rect.y1 > h:
                raise InputError(
                    f"hold-out region of {e.key} {rect.to_json()} lies outside the {w}x{h} image"
                )
            e = ImageEntry(e.path, e.class_name, e.key, rect, why)
        out.append(e)
    return out


# ------------------------------------------------------------------------------------------- tissue


def tissue_mask(rgb: np.ndarray, min_chroma: int = 25, max_dark: int = 120) -> np.ndarray:
    """Tissue pixels: coloured (max - min of RGB >= ``min_chroma``) or dark; white and grey glass is not."""
    a = rgb.astype(np.int16)
    high, low = a.max(axis=-1), a.min(axis=-1)
    return ((high - low) >= min_chroma) | (high <= max_dark)


def tissue_cells(rgb: np.ndarray, cell: int = CELL) -> np.ndarray:
    """The tissue fraction of every ``cell`` x ``cell`` block, (H // cell, W // cell) float32."""
    h, w = rgb.shape[0] // cell, rgb.shape[1] // cell
    mask = tissue_mask(rgb[: h * cell, : w * cell])
    return mask.reshape(h, cell, w, cell).mean(axis=(1, 3), dtype=np.float32)


def valid_positions(cells: np.ndarray, size: int, min_tissue: float) -> tuple[np.ndarray, int]:
    """Flat indices of the top-left cells whose ``size`` x ``size``-cell window holds enough tissue.

    Returns the indices and the width of the position grid (``cells.shape[1] - size + 1``).
    """
    h, w = cells.shape
    if h < size or w < size:
        return np.zeros(0, np.int64), 0
    table = np.zeros((h + 1, w + 1), np.float64)
    table[1:, 1:] = cells.cumsum(0).cumsum(1)
    window = table[size:, size:] - table[:-size, size:] - table[size:, :-size] + table[:-size, :-size]
    ok = window / (size * size) >= min_tissue - 1e-9
    return np.flatnonzero(ok), ok.shape[1]


# ------------------------------------------------------------------------------------------ sources


@dataclass
class Source:
    """Pixels crops are cut from: one training region of one image at one scale.

    ``pixels`` has sides that are multiples of :data:`CELL`; ``valid`` holds the flat indices (in a
    grid ``grid_width`` wide) of the top-left cells of crops with enough tissue.
    """

    pixels: np.ndarray
    class_index: int
    scale_index: int
    image: str
    region: Rect
    scale: float
    valid: np.ndarray = field(repr=False)
    grid_width: int = 0


@dataclass(frozen=True)
class Crop:
    source: int
    y: int
    x: int
    orientation: int
    class_index: int
    scale_index: int


def resize_uint8(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear, antialiased resize (as stage 1 of the engine shrinks a reference)."""
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.array(rgb, dtype=np.float32)).permute(2, 0, 1)[None]
    out = F.interpolate(t, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return out[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


@dataclass
class TrainingImages:
    """The images of a :class:`DatasetIndex` in memory, cut into :class:`Source` s of both scales."""

    index: DatasetIndex
    arrays: list[np.ndarray]
    sources: list[Source]
    crop: int
    min_tissue: float

    @property
    def classes(self) -> tuple[str, ...]:
        return self.index.classes


def load_images(index: DatasetIndex, max_pixels: int = 1_500_000_000) -> list[np.ndarray]:
    """Read every image at full resolution; refuse more than ``max_pixels`` in all (memory)."""
    total = 0
    for entry in index.images:
        h, w = image_shape(entry.path)
        total += h * w
    if total > max_pixels:
        raise InputError(
            f"the training images hold {total / 1e6:.0f} megapixels, more than the {max_pixels / 1e6:.0f} "
            "allowed in memory; keep fewer with --max-images-per-class"
        )
    return [read_image(entry.path) for entry in index.images]


def build_sources(
    index: DatasetIndex,
    arrays: list[np.ndarray],
    crop: int,
    min_tissue: float = 0.5,
    reference_size: int = 512,
    overview_scales: Sequence[float] = OVERVIEW_SCALES,
) -> TrainingImages:
    """Cut every image into its training regions, natively and shrunk for the overview scale."""
    if crop % CELL:
        raise ValueError(f"crop must be a multiple of {CELL}, got {crop}")
    size = crop // CELL
    sources: list[Source] = []
    for entry, rgb in zip(index.images, arrays, strict=True):
        h, w = rgb.shape[:2]
        label = index.classes.index(entry.class_name)
        base = reference_size / min(h, w)
        for region in training_regions(h, w, entry.holdout):
            native = rgb[region.y0 : region.y1, region.x0 : region.x1]
            scaled = [(1.0, NATIVE, native)]
            for jitter in overview_scales:
                s = base * jitter
                rh, rw = round(region.height * s / CELL) * CELL, round(region.width * s / CELL) * CELL
                if min(rh, rw) >= crop:
                    scaled.append((s, OVERVIEW, resize_uint8(native, rh, rw)))
            for s, scale_index, pixels in scaled:
                cells = tissue_cells(pixels)
                valid, grid_width = valid_positions(cells, size, min_tissue)
                if not len(valid):
                    continue
                src_region = region
                if scale_index == NATIVE:  # keep only the box that holds tissue crops (less to encode)
                    rows, cols = np.divmod(valid, grid_width)
                    y0, x0 = int(rows.min()), int(cols.min())
                    y1, x1 = int(rows.max()) + size, int(cols.max()) + size
                    pixels, cells = pixels[y0 * CELL : y1 * CELL, x0 * CELL : x1 * CELL], cells[y0:y1, x0:x1]
                    src_region = Rect(
                        region.x0 + x0 * CELL,
                        region.y0 + y0 * CELL,
                        region.x0 + x1 * CELL,
                        region.y0 + y1 * CELL,
                    )
                    valid, grid_width = valid_positions(cells, size, min_tissue)
                sources.append(
                    Source(pixels, label, scale_index, entry.key, src_region, s, valid, grid_width)
                )
    empty = [c for i, c in enumerate(index.classes) if not any(s.class_index == i for s in sources)]
    if empty:
        raise InputError(
            f"class(es) {', '.join(empty)} have no {crop}-pixel crops with {min_tissue:.0%} tissue outside "
            "their hold-out regions; lower --crop or --min-tissue, or give larger images"
        )
    return TrainingImages(index, arrays, sources, crop, min_tissue)


# ----------------------------------------------------------------------------------------- sampling


class CropSampler:
    """Class-balanced crops: a class uniformly, then a scale, then a tissue crop uniformly over its area."""

    def __init__(self, data: TrainingImages, overview_fraction: float = 0.3) -> None:
        self.data = data
        self.overview_fraction = overview_fraction
        self.pools: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        for c in range(len(data.classes)):
            for s in (NATIVE, OVERVIEW):
                ids = np.array(
                    [i for i, src in enumerate(data.sources) if (src.class_index, src.scale_index) == (c, s)]
                )
                if len(ids):
                    # crops per area of the original image: larger overview scales are not favoured
                    weights = np.array([len(data.sources[i].valid) / data.sources[i].scale ** 2 for i in ids])
                    self.pools[(c, s)] = (ids, np.cumsum(weights) / weights.sum())

    def scale_for(self, rng: np.random.Generator, class_index: int) -> int:
        has = [s for s in (NATIVE, OVERVIEW) if (class_index, s) in self.pools]
        want = OVERVIEW if rng.random() < self.overview_fraction else NATIVE
        return want if want in has else has[0]

    def sample(self, rng: np.random.Generator, jitter: bool = False) -> Crop:
        """One crop; ``jitter`` adds a sub-cell pixel offset (pixel crops; latent crops stay on the grid)."""
        c = int(rng.integers(len(self.data.classes)))
        s = self.scale_for(rng, c)
        ids, cumulative = self.pools[(c, s)]
        source_id = int(ids[min(int(np.searchsorted(cumulative, rng.random(), side="right")), len(ids) - 1)])
        src = self.data.sources[source_id]
        cy, cx = divmod(int(src.valid[rng.integers(len(src.valid))]), src.grid_width)
        y, x = cy * CELL, cx * CELL
        if jitter:
            dy, dx = (int(v) for v in rng.integers(0, CELL, 2))
            h, w = src.pixels.shape[:2]
            y, x = min(y + dy, h - self.data.crop), min(x + dx, w - self.data.crop)
        return Crop(source_id, y, x, int(rng.integers(8)), c, s)

    def pixels(self, crop: Crop) -> np.ndarray:
        """The (crop, crop, 3) uint8 pixels of a crop, oriented."""
        n = self.data.crop
        src = self.data.sources[crop.source].pixels
        return np.ascontiguousarray(orient(src[crop.y : crop.y + n, crop.x : crop.x + n], crop.orientation))


def to_tensor(batch: Sequence[np.ndarray]):
    """(N, H, W, 3) uint8 crops → (N, 3, H, W) float32 in [-1, 1]."""
    import torch

    return torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).float() / 127.5 - 1


def holdout_crops(
    index: DatasetIndex, arrays: list[np.ndarray], crop: int, limit: int = 16, min_tissue: float = 0.5
) -> list[tuple[np.ndarray, int]]:
    """(crop, class index) of non-overlapping tissue crops of the hold-out regions, taken in turn from
    every image (evaluation only; training never reads these pixels)."""
    per_image = []
    for entry, rgb in zip(index.images, arrays, strict=True):
        r = entry.holdout
        if r is None:
            continue
        label = index.classes.index(entry.class_name)
        tiles = []
        for y in range(r.y0, r.y1 - crop + 1, crop):
            for x in range(r.x0, r.x1 - crop + 1, crop):
                tile = rgb[y : y + crop, x : x + crop]
                if tissue_mask(tile).mean() >= min_tissue:
                    tiles.append((np.ascontiguousarray(tile), label))
        if tiles:
            per_image.append(tiles)
    out: list[tuple[np.ndarray, int]] = []
    k = 0
    while len(out) < limit and any(k < len(t) for t in per_image):
        out += [t[k] for t in per_image if k < len(t)]
        k += 1
    return out[:limit]
