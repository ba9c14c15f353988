"""The class-conditioned PathUp folder layout (diffusers format, safetensors only).

```
MODEL/
  pathup.json                  {"format": "pathup", "version": 1, "classes": [...], "scales": [...],
                                "label_layout": "scale-major-with-null", ...}
  denoiser/config.json         UNet2DModel with num_class_embeds = scales * (classes + 1)
  denoiser/diffusion_pytorch_model.safetensors
  autoencoder/config.json      AutoencoderKL, AutoencoderTiny or PatchAutoencoder
  autoencoder/diffusion_pytorch_model.safetensors
  scheduler/scheduler_config.json
```
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from diffusers import ModelMixin, SchedulerMixin

from napari_pathup.io.atomic import write_text_atomic
from napari_pathup.models.spec import (
    AUTOENCODER_DIR,
    DENOISER_DIR,
    LABEL_LAYOUT,
    PATHUP_FORMAT,
    PATHUP_JSON,
    SCALES,
    SCHEDULER_DIR,
    num_class_embeds,
)

#: config keys that a diffusers class registers itself in ``__init__`` but does not accept as an
#: argument: saved, they make every load warn ("... are not expected and will be ignored")
DERIVED_CONFIG_KEYS: dict[str, tuple[str, ...]] = {"AutoencoderTiny": ("block_out_channels",)}
#: keys that record where the weights were loaded from (a local path of the machine that saved them)
LOCAL_CONFIG_KEYS = ("_name_or_path",)


def clean_saved_config(config_path: Path) -> None:
    """Remove derived and machine-local keys from a saved ``config.json`` (rewritten atomically)."""
    config = json.loads(config_path.read_text())
    drop = [*DERIVED_CONFIG_KEYS.get(config.get("_class_name", ""), ()), *LOCAL_CONFIG_KEYS]
    if not any(key in config for key in drop):
        return
    for key in drop:
        config.pop(key, None)
    write_text_atomic(config_path, json.dumps(config, indent=2, sort_keys=True) + "\n")


def save_pathup_model(
    folder: str | Path,
    denoiser: ModelMixin,
    autoencoder: ModelMixin,
    scheduler: SchedulerMixin,
    classes: Sequence[str],
    scales: Sequence[str] = SCALES,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a model in the PathUp layout; the engine (and ``pathup``) load it with ``load_model``."""
    folder = Path(folder)
    expected = num_class_embeds(len(classes), len(scales))
    got = getattr(denoiser.config, "num_class_embeds", None)
    if got != expected:
        raise ValueError(
            f"denoiser has num_class_embeds={got}; "
            f"{len(classes)} classes and {len(scales)} scales need {expected}"
        )
    folder.mkdir(parents=True, exist_ok=True)
    denoiser.save_pretrained(folder / DENOISER_DIR, safe_serialization=True)
    autoencoder.save_pretrained(folder / AUTOENCODER_DIR, safe_serialization=True)
    for part in (DENOISER_DIR, AUTOENCODER_DIR):
        clean_saved_config(folder / part / "config.json")
    scheduler.save_pretrained(folder / SCHEDULER_DIR)
    meta = {
        "format": PATHUP_FORMAT,
        "version": 1,
        "classes": list(classes),
        "scales": list(scales),
        "label_layout": LABEL_LAYOUT,
        **(extra or {}),
    }
    write_text_atomic(folder / PATHUP_JSON, json.dumps(meta, indent=2) + "\n")
    return folder
