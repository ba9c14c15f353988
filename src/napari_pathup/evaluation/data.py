"""What ``pathup evaluate`` classifies: real items from DATA, synthetic items from an augment STORE.

An *item* is one image to classify, or one RoI cut from it (``roi_size``); its *group* is the
source image, or the slide/patient when the data says so (BRACS file names ``BRACS_<slide>_...``
or a groups CSV). A synthetic item takes the group of its reference image, read from the STORE's
manifest (:func:`~napari_pathup.datasets.read_synthetic_records`).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_pathup.datasets import (
    discover,
    find_manifest,
    read_synthetic_records,
    select_classes,
    tissue_mask,
)
from napari_pathup.errors import InputError
from napari_pathup.geometry import Box, window_starts
from napari_pathup.io.images import image_shape, read_image

#: BRACS RoI file names start with the slide they were cut from: BRACS_<slide>_<CLASS>_<n>.png
BRACS_SLIDE = re.compile(r"^(BRACS_\d+)_")


@dataclass(frozen=True)
class EvaluationItem:
    """One image (or RoI of one) to classify. ``box`` is the RoI in ``path``'s level 0 pixels (the
    package's one rectangle type, :class:`~napari_pathup.geometry.Box`), or None for the whole image."""

    name: str
    path: Path
    class_index: int
    group: str
    box: Box | None = None
    synthetic: bool = False

    def pixels(self, image: np.ndarray) -> np.ndarray:
        """This item's (H, W, 3) pixels out of its whole image."""
        if self.box is None:
            return image
        return image[self.box.slices()]


@dataclass
class EvaluationData:
    """Real and synthetic items, the classes in label order, and how items were grouped."""

    root: Path
    layout: str
    classes: tuple[str, ...]
    real: list[EvaluationItem]
    synthetic: list[EvaluationItem] = field(default_factory=list)
    group_kind: str = "source image"
    store: Path | None = None
    manifest: Path | None = None
    dropped: list[str] = field(default_factory=list)
    #: the group of every source image of the kept classes, by its path relative to DATA
    source_groups: dict[str, str] = field(default_factory=dict)

    @property
    def n_sources(self) -> int:
        return len({item.path for item in self.real})


# ------------------------------------------------------------------------------------------- groups


def read_groups_csv(path: Path) -> dict[str, str]:
    """``image,group`` rows (image: the path relative to DATA, as in a hold-out file) → {image: group}."""
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"groups file {path}: cannot read it as CSV: {exc}") from exc
    if not rows or not {"image", "group"} <= set(rows[0]):
        raise InputError(f"groups file {path}: expected a CSV with columns image,group (one row per image)")
    return {r["image"].strip(): r["group"].strip() for r in rows}


def group_of(key: str, layout: str, mode: str, table: dict[str, str] | None) -> str:
    """The group of the image ``key`` (its path relative to DATA)."""
    if table is not None:
        if key not in table:
            raise InputError(f"groups file names no group for {key}; every image needs one")
        return table[key]
    if mode == "slide":
        match = BRACS_SLIDE.match(Path(key).name)
        if match is None:
            raise InputError(f"{key}: the file name does not start with BRACS_<slide>_; use --groups image")
        return match.group(1)
    return key


# --------------------------------------------------------------------------------------------- RoIs


def roi_boxes(image: np.ndarray, roi_size: int, min_tissue: float) -> list[Box]:
    """Non-overlapping ``roi_size`` RoIs from the top-left corner (a partial edge row/column is left
    out) with at least ``min_tissue`` tissue; an image smaller than ``roi_size`` on a side is one RoI."""
    h, w = image.shape[:2]
    if h < roi_size or w < roi_size:
        return [Box(0, 0, h, w)] if tissue_mask(image).mean() >= min_tissue else []
    ys, xs = window_starts(h, roi_size, edge="drop"), window_starts(w, roi_size, edge="drop")
    boxes = (Box(y, x, y + roi_size, x + roi_size) for y in ys for x in xs)
    return [b for b in boxes if tissue_mask(image[b.slices()]).mean() >= min_tissue]


def _items_of(
    path: Path, name: str, label: int, group: str, roi_size: int | None, min_tissue: float, synthetic: bool
) -> list[EvaluationItem]:
    if roi_size is None:
        image_shape(path)  # fails here, naming the file, when it cannot be read
        return [EvaluationItem(name, path, label, group, None, synthetic)]
    boxes = roi_boxes(read_image(path), roi_size, min_tissue)
    return [EvaluationItem(f"{name}@y{b.y0}x{b.x0}", path, label, group, b, synthetic) for b in boxes]


def collect_real(
    data: str | Path,
    *,
    splits: Sequence[str] = ("train",),
    classes: Sequence[str] | None = None,
    groups: str = "auto",
    roi_size: int | None = None,
    min_tissue: float = 0.5,
) -> EvaluationData:
    """Find DATA's images (class folders or BRACS layout) and turn them into grouped items.

    ``groups``: ``auto`` (the slide for BRACS file names, else the source image), ``image``,
    ``slide`` or the path of an ``image,group`` CSV. Images are read (or, without ``roi_size``,
    their headers) here, so an unreadable file fails before anything is computed.
    """
    index = discover(data, splits=splits, holdout="none")
    names = select_classes(data, index.classes, classes)
    if classes and len(names) < 2:
        raise InputError("--classes must keep at least two classes")
    table, kind, mode = None, "source image", "image"
    if groups not in ("auto", "image", "slide"):
        table, kind = read_groups_csv(Path(groups).expanduser()), "group"
    elif groups == "slide" or (
        groups == "auto"
        and index.layout == "bracs"
        and all(BRACS_SLIDE.match(e.path.name) for e in index.images)
    ):
        mode, kind = "slide", "slide"
    real: list[EvaluationItem] = []
    dropped = []
    source_groups = {}
    for entry in index.images:
        if entry.class_name not in names:
            continue
        group = source_groups[entry.key] = group_of(entry.key, index.layout, mode, table)
        items = _items_of(
            entry.path, entry.key, names.index(entry.class_name), group, roi_size, min_tissue, False
        )
        if not items:
            dropped.append(entry.key)
        real += items
    empty = [c for i, c in enumerate(names) if not any(it.class_index == i for it in real)]
    if empty:
        raise InputError(
            f"class(es) {', '.join(empty)} have no RoI with {min_tissue:.0%} tissue; "
            "lower --min-tissue or --roi-size"
        )
    return EvaluationData(
        index.root,
        index.layout,
        tuple(names),
        real,
        group_kind=kind,
        dropped=dropped,
        source_groups=source_groups,
    )


# ---------------------------------------------------------------------------------------- synthetic


def _reference_group(reference: str, data: EvaluationData, by_path: dict[Path, str]) -> str:
    ref = Path(reference).expanduser()
    candidates = [ref] if ref.is_absolute() else [data.root / ref, ref]
    group = next((by_path[c.resolve()] for c in candidates if c.resolve() in by_path), None)
    if group is None:
        raise InputError(
            f"synthetic image reference {reference} is not an image of {data.root}: its fold cannot be "
            "known, so it cannot be used without risking leakage into validation"
        )
    return group


def add_synthetic(
    data: EvaluationData, store: str | Path, *, roi_size: int | None = None, min_tissue: float = 0.5
) -> EvaluationData:
    """Add the finished images of an augment STORE to ``data`` (classes outside ``data`` are skipped),
    each in the group of its reference image; cut into RoIs like the real images."""
    store = Path(store).expanduser()
    records = read_synthetic_records(store)
    by_path = {(data.root / key).resolve(): group for key, group in data.source_groups.items()}
    synthetic = []
    for rec in records:
        if rec.class_name not in data.classes:
            continue
        group = _reference_group(rec.reference, data, by_path)
        name = f"synthetic/{rec.output.name}"
        label = data.classes.index(rec.class_name)
        synthetic += _items_of(rec.output, name, label, group, roi_size, min_tissue, True)
    data.synthetic = synthetic
    data.store = store
    data.manifest = find_manifest(store)
    return data
