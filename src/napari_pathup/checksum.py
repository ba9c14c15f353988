"""One file checksum for the whole package: weight files, reference images, data provenance."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks (never the whole file in memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def tagged_sha256(path: str | Path) -> str:
    """``sha256:<hex>`` of a file: the form pathup.json and output attributes record."""
    return "sha256:" + sha256_of(path)
