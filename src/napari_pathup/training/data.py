"""Training crops: the images of a data set in memory, cut into tissue crops at two scales.

The data set, its hold-out regions and tissue masks come from :mod:`napari_pathup.datasets`: every
crop comes from inside one band around an image's hold-out rectangle
(:func:`~napari_pathup.datasets.training_regions`), so no crop (and no encoder tile) ever touches it.

Scales follow Algorithm 1: ``native`` crops are full-magnification pixels; ``overview`` crops come
from a training band shrunk by the factor that stage 1 applies to a whole reference
(``reference_size / min(H, W)``), jittered by a few ``overview_scales``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_pathup.datasets import (
    CELL,
    DatasetIndex,
    cell_fractions,
    tissue_cells,
    tissue_mask,
    training_regions,
)
from napari_pathup.errors import InputError
from napari_pathup.geometry import Box, window_starts
from napari_pathup.io.images import image_shape, read_image
from napari_pathup.metrics.nuclei import otsu_threshold
from napari_pathup.models.spec import SCALES

NATIVE, OVERVIEW = SCALES.index("native"), SCALES.index("overview")
#: overview crops: the stage-1 shrink factor times these (larger, so the bands around a hold-out still fit)
OVERVIEW_SCALES: tuple[float, ...] = (1.0, 1.25, 1.5)


# ---------------------------------------------------------------------------------------- orientation


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


def window_sums(cells: np.ndarray, size: int) -> np.ndarray:
    """The sum of every ``size`` x ``size``-cell window of ``cells`` (indexed by its top-left cell)."""
    h, w = cells.shape
    table = np.zeros((h + 1, w + 1), np.float64)
    table[1:, 1:] = cells.cumsum(0).cumsum(1)
    return table[size:, size:] - table[:-size, size:] - table[size:, :-size] + table[:-size, :-size]


def valid_positions(cells: np.ndarray, size: int, min_tissue: float) -> tuple[np.ndarray, int]:
    """Flat indices of the top-left cells whose ``size`` x ``size``-cell window holds enough tissue.

    Returns the indices and the width of the position grid (``cells.shape[1] - size + 1``).
    """
    h, w = cells.shape
    if h < size or w < size:
        return np.zeros(0, np.int64), 0
    ok = window_sums(cells, size) / (size * size) >= min_tissue - 1e-9
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
    region: Box
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
                    src_region = Box(
                        region.y0 + y0 * CELL,
                        region.x0 + x0 * CELL,
                        region.y0 + y1 * CELL,
                        region.x0 + x1 * CELL,
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


def dark_cells(rgb: np.ndarray, threshold: float, cell: int = CELL) -> np.ndarray:
    """The share of dark tissue pixels of every ``cell`` x ``cell`` block, (H // cell, W // cell)
    float32: tissue whose grey level (mean of R, G, B) is below ``threshold``. In H&E the dark tissue
    is the haematoxylin-rich, cellular part (nuclei, an epidermis, a tumour nest); collagen and other
    fibrous tissue is lighter."""
    h, w = rgb.shape[0] // cell, rgb.shape[1] // cell
    rgb = rgb[: h * cell, : w * cell]
    return cell_fractions((rgb.mean(axis=-1) < threshold) & tissue_mask(rgb), cell)


def tissue_grey(rgb: np.ndarray) -> np.ndarray:
    """The grey levels (mean of R, G, B) of the tissue pixels of an image, flat."""
    return rgb.mean(axis=-1)[tissue_mask(rgb)]


def dark_threshold(grey: np.ndarray) -> float:
    """Otsu's threshold of tissue grey levels (:func:`tissue_grey`): cellular tissue lies below it
    (-inf, nothing dark, when the levels do not differ)."""
    return otsu_threshold(grey) if grey.size >= 2 and grey.min() < grey.max() else float("-inf")


def draw(cumulative: np.ndarray, rng: np.random.Generator) -> int:
    """An index drawn in proportion to the weights whose normalised cumulative sum is ``cumulative``."""
    return min(int(np.searchsorted(cumulative, rng.random(), side="right")), len(cumulative) - 1)


class CropSampler:
    """Class-balanced crops: a class uniformly, then a scale, then a tissue crop uniformly over its area.

    ``emphasis`` (class index -> factor k >= 0) draws the crops of a class inside each of its images
    in proportion to ``1 + k * d / mean(d)`` instead, where ``d`` is a crop's share of dark tissue
    (:func:`dark_cells`, at the image's own :func:`dark_threshold`) and the mean runs over the image's
    crops at that scale: cellular tissue (an epidermis, a tumour nest) is drawn more often than the
    fibrous tissue beside it, and every image keeps its share of the class.
    """

    def __init__(
        self, data: TrainingImages, overview_fraction: float = 0.3, emphasis: dict[int, float] | None = None
    ) -> None:
        self.data = data
        self.overview_fraction = overview_fraction
        self.emphasis = {c: float(k) for c, k in (emphasis or {}).items() if k}
        for c, k in self.emphasis.items():
            if not 0 <= c < len(data.classes) or not np.isfinite(k) or k < 0:
                raise InputError(f"crop emphasis {c}={k}: expected a class index and a finite factor >= 0")
        self.pools: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        #: per emphasised source: the cumulative weights of its valid crops
        self.position_weights: dict[int, np.ndarray] = {}
        thresholds = self._thresholds()
        for c in range(len(data.classes)):
            for s in (NATIVE, OVERVIEW):
                ids = np.array(
                    [i for i, src in enumerate(data.sources) if (src.class_index, src.scale_index) == (c, s)]
                )
                if not len(ids):
                    continue
                # crops per area of the original image: larger overview scales are not favoured
                mass = np.array([len(data.sources[i].valid) for i in ids], np.float64)
                if c in self.emphasis:
                    mass = self._emphasise(ids, self.emphasis[c], thresholds)
                weights = mass / np.array([data.sources[i].scale ** 2 for i in ids])
                self.pools[(c, s)] = (ids, np.cumsum(weights) / weights.sum())

    def _thresholds(self) -> dict[str, float]:
        """Per emphasised image, :func:`dark_threshold` of its training regions' native pixels (of its
        shrunk ones where it has none): the hold-out is never read, not even for a threshold."""
        out: dict[str, float] = {}
        for key in {src.image for src in self.data.sources if src.class_index in self.emphasis}:
            mine = [src for src in self.data.sources if src.image == key]
            native = [src for src in mine if src.scale_index == NATIVE] or mine
            out[key] = dark_threshold(np.concatenate([tissue_grey(src.pixels) for src in native]))
        return out

    def dark_shares(self, source_id: int, threshold: float) -> np.ndarray:
        """The dark-tissue share of every valid crop of a source (in the order of its ``valid``)."""
        src, size = self.data.sources[source_id], self.data.crop // CELL
        sums = window_sums(dark_cells(src.pixels, threshold), size)  # the grid ``valid`` indexes
        return sums.ravel()[src.valid] / (size * size)

    def _emphasise(self, ids: np.ndarray, factor: float, thresholds: dict[str, float]) -> np.ndarray:
        """Weight the valid crops of ``ids`` by their dark share against the mean of their image's
        crops (so each image keeps its share of the class); return each source's total weight."""
        images = [self.data.sources[int(i)].image for i in ids]
        shares = [self.dark_shares(int(i), thresholds[image]) for i, image in zip(ids, images, strict=True)]
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        for d, image in zip(shares, images, strict=True):
            sums[image] = sums.get(image, 0.0) + float(d.sum())
            counts[image] = counts.get(image, 0) + len(d)
        totals = []
        for i, d, image in zip(ids, shares, images, strict=True):
            mean = sums[image] / counts[image]
            w = 1 + factor * d / mean if mean > 0 else np.full_like(d, 1 + factor)
            self.position_weights[int(i)] = np.cumsum(w) / w.sum()
            totals.append(w.sum() / (1 + factor))  # an image's crops weigh 1 each on average, as without
        return np.array(totals, np.float64)

    def scale_for(self, rng: np.random.Generator, class_index: int) -> int:
        has = [s for s in (NATIVE, OVERVIEW) if (class_index, s) in self.pools]
        want = OVERVIEW if rng.random() < self.overview_fraction else NATIVE
        return want if want in has else has[0]

    def sample(self, rng: np.random.Generator, jitter: bool = False) -> Crop:
        """One crop; ``jitter`` adds a sub-cell pixel offset (pixel crops; latent crops stay on the grid)."""
        c = int(rng.integers(len(self.data.classes)))
        s = self.scale_for(rng, c)
        ids, cumulative = self.pools[(c, s)]
        source_id = int(ids[draw(cumulative, rng)])
        src = self.data.sources[source_id]
        weights = self.position_weights.get(source_id)
        k = draw(weights, rng) if weights is not None else int(rng.integers(len(src.valid)))
        cy, cx = divmod(int(src.valid[k]), src.grid_width)
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


def crops_to_tensor(batch: Sequence[np.ndarray]):
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
        for y in (r.y0 + dy for dy in window_starts(r.height, crop, edge="drop")):
            for x in (r.x0 + dx for dx in window_starts(r.width, crop, edge="drop")):
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
