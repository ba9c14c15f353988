"""What a synthetic image records about how it was made, so that it can be reproduced.

The CLI writes these attributes into every output file; the napari widget puts the same dictionary
in the layer's metadata (under "pathup"), where the OME-Zarr writer finds it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from napari_pathup import __version__
from napari_pathup.checksum import tagged_sha256
from napari_pathup.models.base import PathupModel
from napari_pathup.models.load import model_hash


def file_sha256(path: str | Path) -> str:
    """sha256 of a file ("" for a folder such as an OME-Zarr store)."""
    path = Path(path)
    return "" if path.is_dir() else tagged_sha256(path)


def run_attributes(
    model: PathupModel, settings: dict[str, Any], reference: str | Path | None
) -> dict[str, Any]:
    """Settings, seed, model hash and reference of a finished run (``settings`` as resolved)."""
    import torch

    return {
        "generator": f"napari-pathup {__version__}",
        "method": "PathUp (two-stage latent diffusion with patch-wise timestep tracking)",
        "class": settings["class_name"],
        "seed": settings["seed"],
        "settings": settings,
        "model": {"path": str(model.path), "kind": model.kind, "hash": model_hash(model.path)},
        "reference": (
            {"path": str(reference), "sha256": file_sha256(reference)}
            if reference
            else {"path": "", "sha256": ""}
        ),
        "device": str(model.device),
        "dtype": str(model.dtype).replace("torch.", ""),
        "torch": torch.__version__,
    }
