"""Find and identify a model folder: a local folder or, when the user allows it, a hub id; its layout
from the files at its top. No torch and no diffusers, so the command line can refuse a wrong
``--model`` before seconds of imports; :mod:`napari_pathup.models.load` then checks the folder whole.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from napari_pathup.errors import ModelLoadError
from napari_pathup.models.spec import PATHUP_FORMAT, PATHUP_JSON

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; a missing file, invalid JSON or another value is a ModelLoadError."""
    if not path.is_file():
        raise ModelLoadError(f"missing {path}")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path} must hold a JSON object")
    return data


def detect_layout(path: Path) -> str:
    """``pathup`` or ``stable-diffusion``, from the files at the top of the folder."""
    if (path / PATHUP_JSON).is_file() and read_json(path / PATHUP_JSON).get("format") == PATHUP_FORMAT:
        return "pathup"
    if (path / "model_index.json").is_file():
        return "stable-diffusion"
    raise ModelLoadError(
        f"{path} is not a model folder: expected {PATHUP_JSON} (PathUp layout) or model_index.json "
        "(diffusers Stable Diffusion pipeline)"
    )


def resolve_model_path(spec: str | Path, allow_download: bool = False) -> Path:
    """A local folder as it is; a hub id only when the user allows the download."""
    path = Path(spec).expanduser()
    if path.is_dir():
        return path
    if HUB_ID.match(str(spec)) and not path.exists():
        if not allow_download:
            raise ModelLoadError(
                f"{spec} is not a local folder; to download the hub model {spec!r} allow it explicitly "
                "(--allow-download)"
            )
        from huggingface_hub import snapshot_download

        patterns = ["*.json", "*.safetensors", "*.txt", "tokenizer/*", "*.model"]
        try:
            return Path(snapshot_download(str(spec), allow_patterns=patterns))
        except Exception as exc:  # no network, no such repository, a refused token: one line, whatever it is
            reason = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
            raise ModelLoadError(f"cannot download the hub model {spec!r}: {reason}") from exc
    raise ModelLoadError(f"model folder {path} does not exist")
