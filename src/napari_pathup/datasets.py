"""Data sets: where the images that training, augmentation and evaluation read come from.

- **DATA folders** (:func:`discover`): ``DATA/<class>/IMAGE`` (one folder per class), or the BRACS RoI
  layout ``DATA/<split>/<k>_<CLASS>/*.png`` (class names without the numeric prefix, ordered by it;
  ``DATA`` may also be one split folder).
- **Hold-out regions** (:func:`read_holdout`): a hold-out file names one pixel rectangle per image that
  training never reads: the rest of the image is cut into up to four bands around it
  (:func:`training_regions`), and every training crop comes from inside one band.
- **Tissue masks** (:func:`tissue_mask`, :func:`tissue_cells`): which pixels are tissue and not glass,
  for choosing crops (training), RoIs and feature tiles (evaluation).
- **Synthetic stores** (:func:`read_synthetic_records`): the finished images of a ``pathup augment``
  store, read from its manifest (written by :mod:`napari_pathup.augmentation.manifest`; a Parquet
  file with the same columns is read too).

Rectangles are :class:`~napari_pathup.geometry.Box` es; files record them as ``x, y, width, height``.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_pathup.augmentation.manifest import MANIFEST_NAME
from napari_pathup.errors import InputError
from napari_pathup.geometry import Box
from napari_pathup.io.images import SUPPORTED_IMAGE_SUFFIXES, image_shape, list_images

#: BRACS class folders: ``0_N``, ``1_PB``, ... (numeric prefix, underscore, class name)
BRACS_CLASS = re.compile(r"^(\d+)_(.+)$")
BRACS_SPLITS: tuple[str, ...] = ("train", "val", "test")
HOLDOUT_FILE = "holdout.json"
#: tissue maps and training crop positions use cells of this many pixels (the autoencoder factor)
CELL = 8
_SUPPORTED = ", ".join(SUPPORTED_IMAGE_SUFFIXES)
#: manifest file names looked for in a STORE, in order
MANIFEST_NAMES: tuple[str, ...] = (MANIFEST_NAME, "manifest.parquet")
#: manifest columns a reader of a store needs (the augment manifest has more: seed, settings, checksum)
MANIFEST_COLUMNS: tuple[str, ...] = ("output", "class", "reference", "status")


# ------------------------------------------------------------------------------------------ discovery


@dataclass(frozen=True)
class ImageEntry:
    """One image of a data set: its class, its key, and the region training must not read (if any)."""

    path: Path
    class_name: str
    key: str  # the path relative to the data folder, with "/" separators: hold-out files use it
    holdout: Box | None = None
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
    named = [(match, d) for d in subs if (match := BRACS_CLASS.match(d.name))]
    if subs and len(named) == len(subs):
        ordered = sorted(named, key=lambda md: (int(md[0].group(1)), md[1].name))
        return "bracs", [(match.group(2), d) for match, d in ordered]
    return "class-folders", [(d.name, d) for d in subs]


def select_classes(data: str | Path, found: Sequence[str], wanted: Sequence[str] | None) -> list[str]:
    """The classes of ``found`` (DATA's, in its order) that ``--classes`` keeps, all when it names none;
    :class:`InputError` for a named class that DATA lacks."""
    if not wanted:
        return list(found)
    unknown = [c for c in wanted if c not in found]
    if unknown:
        raise InputError(f"--classes names {', '.join(unknown)}, not classes of {data} ({', '.join(found)})")
    return [c for c in found if c in wanted]


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


# ------------------------------------------------------------------------------------------ hold-out


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


def read_holdout(path: str | Path) -> dict[str, tuple[Box, str]]:
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
        out[key] = (Box.from_xywh(x, y, w, h), str(value.get("why", "")))
    return out


def _apply_holdout(entries: list[ImageEntry], holdout: dict[str, tuple[Box, str]]) -> list[ImageEntry]:
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


def training_regions(height: int, width: int, holdout: Box | None, min_side: int = 1) -> list[Box]:
    """The bands of an image around its hold-out rectangle (above, below, left, right of it).

    Bands span the whole image in their long direction, so they overlap at the corners; each is
    trimmed to a multiple of :data:`CELL` from its own origin and dropped when shorter than
    ``min_side`` on either side. Without a hold-out the whole image is one region.
    """
    if holdout is None:
        bands = [Box(0, 0, height, width)]
    else:
        h = holdout
        bands = [
            Box(0, 0, h.y0, width),
            Box(h.y1, 0, height, width),
            Box(0, 0, height, h.x0),
            Box(0, h.x1, height, width),
        ]
    out = []
    for r in bands:
        w8, h8 = r.width // CELL * CELL, r.height // CELL * CELL
        if min(w8, h8) >= max(min_side, CELL):
            out.append(Box(r.y0, r.x0, r.y0 + h8, r.x0 + w8))
    return out


# ------------------------------------------------------------------------------------------- tissue


def tissue_mask(rgb: np.ndarray, min_chroma: int = 25, max_dark: int = 120) -> np.ndarray:
    """Tissue pixels: coloured (max - min of RGB >= ``min_chroma``) or dark; white and grey glass is not."""
    a = rgb.astype(np.int16)
    high, low = a.max(axis=-1), a.min(axis=-1)
    return ((high - low) >= min_chroma) | (high <= max_dark)


def cell_fractions(mask: np.ndarray, cell: int = CELL) -> np.ndarray:
    """The fraction of true pixels of every whole ``cell`` x ``cell`` block of a mask,
    (H // cell, W // cell) float32 (a partial last row or column of blocks is dropped)."""
    h, w = mask.shape[0] // cell, mask.shape[1] // cell
    return mask[: h * cell, : w * cell].reshape(h, cell, w, cell).mean(axis=(1, 3), dtype=np.float32)


def tissue_cells(rgb: np.ndarray, cell: int = CELL) -> np.ndarray:
    """The tissue fraction of every ``cell`` x ``cell`` block, (H // cell, W // cell) float32."""
    h, w = rgb.shape[0] // cell, rgb.shape[1] // cell
    return cell_fractions(tissue_mask(rgb[: h * cell, : w * cell]), cell)


# --------------------------------------------------------------------------------- synthetic stores


@dataclass(frozen=True)
class SyntheticRecord:
    """A finished row of an augment manifest."""

    output: Path
    class_name: str
    reference: str
    seed: str = ""


def find_manifest(store: Path) -> Path:
    """The manifest file of an augment STORE; :class:`InputError` naming the store when there is none."""
    if not store.is_dir():
        raise InputError(
            f"synthetic store {store}: no such folder (expected the --out folder of pathup augment)"
        )
    for name in MANIFEST_NAMES:
        if (store / name).is_file():
            return store / name
    raise InputError(
        f"synthetic store {store} has no manifest ({' or '.join(MANIFEST_NAMES)}); expected the --out folder "
        "of pathup augment"
    )


def read_synthetic_records(store: str | Path) -> list[SyntheticRecord]:
    """The finished (``status == "done"``) rows of a STORE's manifest.

    The contract: a CSV (or Parquet) with at least the columns ``output`` (the OME-Zarr image, relative
    to the store or absolute), ``class``, ``reference`` (the real image it was synthesised from,
    relative to DATA or absolute) and ``status``; ``seed`` is kept when present. Rows of any other
    status (pending, failed) are ignored. Every ``done`` output must exist.
    """
    store = Path(store).expanduser()
    path = find_manifest(store)
    try:
        if path.suffix == ".parquet":
            import pandas as pd

            rows = pd.read_parquet(path).astype(str).to_dict("records")
            columns = set(rows[0]) if rows else set()
        else:
            with path.open(newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                rows = list(reader)
                columns = set(reader.fieldnames or ())
    except Exception as exc:
        raise InputError(f"manifest {path}: cannot read it: {type(exc).__name__}: {exc}") from exc
    missing = [c for c in MANIFEST_COLUMNS if c not in columns]
    if missing:
        raise InputError(
            f"manifest {path}: missing column(s) {', '.join(missing)}; expected {', '.join(MANIFEST_COLUMNS)}"
        )
    records = []
    for row in rows:
        if str(row["status"]).strip() != "done":
            continue
        output = Path(row["output"])
        output = output if output.is_absolute() else store / output
        if not output.exists():
            raise InputError(f"manifest {path}: output {row['output']} is marked done but does not exist")
        records.append(
            SyntheticRecord(output, str(row["class"]), str(row["reference"]), str(row.get("seed", "")))
        )
    if not records:
        raise InputError(f"manifest {path} lists no finished (status done) image")
    return records
