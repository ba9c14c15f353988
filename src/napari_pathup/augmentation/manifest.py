"""The manifest of an augmentation store: one CSV row per synthetic image, written atomically.

Columns: ``output`` (path relative to the store), ``class``, ``reference`` (the real image's path
relative to DATA), ``seed``, ``settings`` (the resolved synthesis settings as JSON), ``model_checksum``
(sha256 of the model folder), ``status`` (``done``, ``failed`` or ``pending``), ``error`` (the
reason of a failure) and ``seconds`` (time to synthesise and write the image; empty when unknown).
A row says ``done`` only when its output exists complete under its final name.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from napari_pathup.errors import InputError
from napari_pathup.io.atomic import replace_atomically

MANIFEST_NAME = "manifest.csv"
STATUSES: tuple[str, ...] = ("done", "failed", "pending")


@dataclass
class ManifestRow:
    output: str
    class_name: str
    reference: str
    seed: int
    settings: dict[str, Any]
    model_checksum: str
    status: str = "pending"
    error: str = ""
    seconds: float | None = None

    def to_csv(self) -> dict[str, str]:
        row = asdict(self)
        row["class"] = row.pop("class_name")
        row["settings"] = json.dumps(self.settings, sort_keys=True)
        row["seconds"] = "" if self.seconds is None else f"{self.seconds:.3f}"
        return {k: str(v) for k, v in row.items()}


COLUMNS: tuple[str, ...] = tuple("class" if f.name == "class_name" else f.name for f in fields(ManifestRow))


def write_manifest(path: str | Path, rows: Iterable[ManifestRow]) -> Path:
    """Write ``rows`` (sorted by output) to a temporary sibling and rename it over ``path``."""

    def write(temp: Path) -> None:
        with open(temp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS)
            writer.writeheader()
            for row in sorted(rows, key=lambda r: r.output):
                writer.writerow(row.to_csv())
            handle.flush()
            os.fsync(handle.fileno())

    return replace_atomically(path, write)


def read_manifest(path: str | Path) -> list[ManifestRow]:
    """Read a manifest written by :func:`write_manifest`; :class:`InputError` if it is not one."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if tuple(reader.fieldnames or ()) != COLUMNS:
                raise InputError(f"{path}: expected the columns {', '.join(COLUMNS)}")
            return [
                ManifestRow(
                    output=r["output"],
                    class_name=r["class"],
                    reference=r["reference"],
                    seed=int(r["seed"]),
                    settings=json.loads(r["settings"]),
                    model_checksum=r["model_checksum"],
                    status=r["status"],
                    error=r["error"],
                    seconds=float(r["seconds"]) if r["seconds"] else None,
                )
                for r in reader
            ]
    except (OSError, UnicodeDecodeError, ValueError, KeyError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(f"cannot read the augmentation manifest {path}: {exc}") from exc
