"""Find a model folder and check its files: a local folder or, when the user allows it, a hub id; its
layout from the files at its top; every component's config (present, valid JSON, a known class) and
weights (safetensors, never a pickle). No torch and no diffusers, so the command line can refuse a
wrong ``--model`` before seconds of imports; :mod:`napari_pathup.models.load` builds on the same
checks, and adds what needs diffusers (the scheduler's class) and the weights themselves.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from napari_pathup.errors import ModelLoadError
from napari_pathup.models.spec import (
    AUTOENCODER_DIR,
    DENOISER_DIR,
    LABEL_LAYOUT,
    PATHUP_FORMAT,
    PATHUP_JSON,
    SCALES,
    SCHEDULER_DIR,
    WEAK_DENOISER_DIR,
    num_class_embeds,
    weak_denoiser_mismatch,
)

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl")
AUTOENCODER_CLASSES = ("AutoencoderKL", "AutoencoderTiny", "PatchAutoencoder")
SCHEDULER_CONFIG = "scheduler_config.json"
#: a scheduler config's class as the JSON alone can check it; ``models.load`` then requires one of diffusers'
SCHEDULER_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]*Scheduler$")


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


def is_hub_id(spec: str | Path) -> bool:
    """Whether ``spec`` names a hub model: ``owner/name``, and no such local path."""
    return bool(HUB_ID.match(str(spec))) and not Path(spec).expanduser().exists()


def resolve_model_path(spec: str | Path, allow_download: bool = False) -> Path:
    """A local folder as it is; a hub id only when the user allows the download."""
    path = Path(spec).expanduser()
    if path.is_dir():
        return path
    if is_hub_id(spec):
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


@dataclass(frozen=True)
class ModelFiles:
    """A model folder as its files describe it, checked without torch (:func:`check_model_files`)."""

    path: Path
    layout: str  # "pathup" or "stable-diffusion"
    metadata: dict[str, Any]
    #: component folder name -> (class name, config)
    configs: dict[str, tuple[str, dict[str, Any]]]

    @property
    def classes(self) -> list[str]:
        """The model's classes (a text model without ``pathup.json`` classes: none, any prompt)."""
        return list(self.metadata.get("classes", []))


def check_component(
    folder: Path, config_name: str, allowed: Collection[str] | None
) -> tuple[str, dict[str, Any]]:
    """Check one component folder; return its diffusers/transformers class name and its config.

    Weights (safetensors) are required but for a scheduler (``config_name`` :data:`SCHEDULER_CONFIG`).
    ``allowed`` None: any class name of a scheduler's shape (the list of diffusers' schedulers needs
    diffusers imported; ``models.load`` checks against it)."""
    if not folder.is_dir():
        raise ModelLoadError(f"missing component folder {folder}")
    config = read_json(folder / config_name)
    class_name = config.get("_class_name") or (config.get("architectures") or [None])[0]
    if allowed is None and not (isinstance(class_name, str) and SCHEDULER_NAME.match(class_name)):
        raise ModelLoadError(
            f"{folder / config_name} names {class_name!r}; expected a diffusers scheduler class "
            "(e.g. DDIMScheduler)"
        )
    if allowed is not None and class_name not in allowed:
        raise ModelLoadError(
            f"{folder / config_name} names {class_name!r}; expected one of {', '.join(sorted(allowed))}"
        )
    if config_name != SCHEDULER_CONFIG and not any(folder.glob("*.safetensors")):
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
        hint = f" (found {', '.join(pickles)}: pickle weights are never loaded)" if pickles else ""
        raise ModelLoadError(f"no .safetensors weights in {folder}{hint}")
    return class_name, config


def check_model_files(path: Path) -> ModelFiles:
    """Check a model folder's metadata, component configs and weight files, without loading anything.

    Raises:
        ModelLoadError: naming the file and what was expected (the first problem found).
    """
    if detect_layout(path) == "pathup":
        return _pathup_files(path)
    return _stable_diffusion_files(path)


def _pathup_files(path: Path) -> ModelFiles:
    meta = read_json(path / PATHUP_JSON)
    classes, scales = meta.get("classes"), meta.get("scales", list(SCALES))
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise ModelLoadError(f"{path / PATHUP_JSON}: 'classes' must be a non-empty list of names")
    if meta.get("label_layout", LABEL_LAYOUT) != LABEL_LAYOUT:
        raise ModelLoadError(f"{path / PATHUP_JSON}: unsupported label_layout {meta.get('label_layout')!r}")
    if not isinstance(scales, list) or not all(s in scales for s in SCALES):
        raise ModelLoadError(f"{path / PATHUP_JSON}: 'scales' must be a list including {', '.join(SCALES)}")
    configs = {
        DENOISER_DIR: check_component(path / DENOISER_DIR, "config.json", ("UNet2DModel",)),
        AUTOENCODER_DIR: check_component(path / AUTOENCODER_DIR, "config.json", AUTOENCODER_CLASSES),
    }
    denoiser_config = configs[DENOISER_DIR][1]
    expected = num_class_embeds(len(classes), len(scales))
    if (got := denoiser_config.get("num_class_embeds")) != expected:
        raise ModelLoadError(
            f"{path / DENOISER_DIR / 'config.json'}: num_class_embeds is {got}, "
            f"but {len(classes)} classes x {len(scales)} scales need {expected}"
        )
    weak = path / WEAK_DENOISER_DIR
    if weak.exists():
        configs[WEAK_DENOISER_DIR] = check_component(weak, "config.json", ("UNet2DModel",))
        if mismatch := weak_denoiser_mismatch(denoiser_config, configs[WEAK_DENOISER_DIR][1]):
            raise ModelLoadError(
                f"{weak / 'config.json'}: the weak denoiser must take and give what the denoiser "
                f"({path / DENOISER_DIR / 'config.json'}) does; it differs in {mismatch}"
            )
    configs[SCHEDULER_DIR] = check_component(path / SCHEDULER_DIR, SCHEDULER_CONFIG, None)
    return ModelFiles(path, "pathup", meta, configs)


def _stable_diffusion_files(path: Path) -> ModelFiles:
    read_json(path / "model_index.json")
    meta = read_json(path / PATHUP_JSON) if (path / PATHUP_JSON).is_file() else {}
    configs = {
        "unet": check_component(path / "unet", "config.json", ("UNet2DConditionModel",)),
        "vae": check_component(path / "vae", "config.json", AUTOENCODER_CLASSES),
        "text_encoder": check_component(path / "text_encoder", "config.json", ("CLIPTextModel",)),
    }
    tokenizer_dir = path / "tokenizer"
    has_bpe_files = (tokenizer_dir / "vocab.json").is_file() and (tokenizer_dir / "merges.txt").is_file()
    if not has_bpe_files and not (tokenizer_dir / "tokenizer.json").is_file():
        raise ModelLoadError(
            f"missing CLIP tokenizer files in {tokenizer_dir}: "
            "expected vocab.json and merges.txt, or tokenizer.json"
        )
    configs["scheduler"] = check_component(path / "scheduler", SCHEDULER_CONFIG, None)
    return ModelFiles(path, "stable-diffusion", meta, configs)
