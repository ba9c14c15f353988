"""The io package is layered: arrays and atomic at the bottom, writers on them, readers on top; no cycle."""

from __future__ import annotations

import ast
from pathlib import Path

IO = Path(__file__).resolve().parents[2] / "src" / "napari_pathup" / "io"

#: module -> the io modules it may import (at any depth in the file, lazily or not)
ALLOWED = {
    "arrays": set(),
    "atomic": set(),
    "optimizer_state": set(),
    "sink": {"atomic"},
    "ome_zarr": {"arrays", "atomic"},
    "tiff": {"arrays", "atomic"},
    "writers": {"arrays", "atomic", "ome_zarr", "tiff"},
    "images": {"arrays", "atomic", "ome_zarr", "tiff"},
    "live_zarr": {"arrays", "atomic", "ome_zarr"},
    "slide": {"arrays", "images", "ome_zarr"},
    "associated": {"arrays", "images", "slide"},
}


def io_imports(module: str) -> set[str]:
    tree = ast.parse((IO / f"{module}.py").read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("napari_pathup.io."):
            found.add(node.module.split(".")[2])
    return found


def test_io_modules_import_only_the_layers_below_them():
    assert {p.stem for p in IO.glob("*.py")} - {"__init__"} == set(ALLOWED)
    for module, allowed in ALLOWED.items():
        assert io_imports(module) <= allowed, (module, io_imports(module) - allowed)
