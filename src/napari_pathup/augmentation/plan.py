"""What ``pathup augment`` makes: one item per synthetic image, with its reference, seed and output name.

Everything here follows from the data and the options alone, so every run (and every rerun after a
crash) plans exactly the same items with the same seeds and output names:

- ``ratio`` synthetic images per real image, per class: every reference gets ``floor(ratio)`` copies,
  and the fraction adds one more copy to ``round(frac(ratio) * n)`` of the ``n`` references of each
  class, the first ones in the order of a hash of their path (deterministic, spread over the data,
  independent of file order). Raising the ratio only adds items: the items of a smaller ratio are a
  subset of the items of a larger one.
- the seed of an item is a hash of (base seed, the reference's path relative to DATA, copy index).
- the output is ``<class>/<reference stem>_syn<copy>.ome.zarr`` inside the store (the reference's
  path relative to DATA, flattened, where two references of a class share a stem).
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from napari_pathup.datasets import DatasetIndex, ImageEntry
from napari_pathup.errors import InputError
from napari_pathup.io.atomic import split_suffixes

OUTPUT_SUFFIX = ".ome.zarr"
#: seeds stay below 2**62: the engine adds an offset for its jitter generator and torch takes < 2**64
SEED_BITS = 62


@dataclass(frozen=True)
class AugmentItem:
    """One synthetic image to make: ``copy`` is its index among the copies of ``key``."""

    index: int
    key: str  # the reference's path relative to DATA, "/" separators
    reference: str  # the reference's absolute path
    class_name: str
    copy: int
    seed: int
    output: str  # relative to the store, "/" separators


def item_seed(key: str, copy: int, base_seed: int = 0) -> int:
    """A seed from the item alone: the same reference and copy always get the same seed."""
    digest = hashlib.sha256(f"pathup-augment\0{base_seed}\0{key}\0{copy}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> (64 - SEED_BITS)


def _rank(key: str) -> bytes:
    return hashlib.sha256(f"pathup-augment-pick\0{key}".encode()).digest()


def copies_per_reference(entries: list[ImageEntry], ratio: float) -> dict[str, int]:
    """Copies of each reference (by key) of one class for ``ratio`` (see the module docstring)."""
    whole = math.floor(ratio)
    extra = math.floor((ratio - whole) * len(entries) + 0.5)
    ranked = sorted(entries, key=lambda e: _rank(e.key))
    return {e.key: whole + (1 if i < extra else 0) for i, e in enumerate(ranked)}


def _output_stems(entries: list[ImageEntry]) -> dict[str, str]:
    """Output stem per key: the file stem, or the flattened relative path where stems collide."""
    stems = {e.key: split_suffixes(Path(e.key).name)[0] for e in entries}
    counts = Counter((e.class_name, stems[e.key]) for e in entries)
    out = {}
    for e in entries:
        if counts[(e.class_name, stems[e.key])] > 1:
            out[e.key] = e.key.replace("/", "__").replace(".", "_")
        else:
            out[e.key] = stems[e.key]
    return out


def plan_items(index: DatasetIndex, ratio: float, base_seed: int = 0) -> list[AugmentItem]:
    """Every item for ``ratio`` synthetic images per real image, in class order then reference order."""
    if not math.isfinite(ratio) or ratio <= 0:
        raise InputError(f"--ratio must be a positive number of synthetic images per real image, got {ratio}")
    stems = _output_stems(list(index.images))
    items: list[AugmentItem] = []
    for class_name in index.classes:
        entries = index.images_of(class_name)
        copies = copies_per_reference(entries, ratio)
        for entry in entries:
            for copy in range(copies[entry.key]):
                items.append(
                    AugmentItem(
                        index=len(items),
                        key=entry.key,
                        reference=str(entry.path.resolve()),
                        class_name=class_name,
                        copy=copy,
                        seed=item_seed(entry.key, copy, base_seed),
                        output=f"{class_name}/{stems[entry.key]}_syn{copy}{OUTPUT_SUFFIX}",
                    )
                )
    if not items:
        raise InputError(
            f"--ratio {ratio} gives no synthetic image for {len(index.images)} real image(s); raise the ratio"
        )
    return items
