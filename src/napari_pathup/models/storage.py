"""Rewrite a PathUp model folder's denoiser weights in another storage dtype.

The engine computes in bfloat16 on a CPU that computes it in hardware (``--dtype auto``), casting the
weights it loads with torch's round-to-nearest-even. A denoiser stored in bfloat16 is then the same bits
on such a CPU at half a float32 file's size; elsewhere (float32 compute) it loads upcast, exactly. The
default model's denoiser is stored so since version 4.10 (docs/model_card.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from napari_pathup.checksum import tagged_sha256
from napari_pathup.errors import InputError, ModelLoadError
from napari_pathup.io.atomic import atomic_output, write_text_atomic
from napari_pathup.models.base import cast_floating
from napari_pathup.models.layout import clean_saved_config
from napari_pathup.models.spec import DENOISER_DIR, PATHUP_JSON
from napari_pathup.training import DENOISER_STORAGES


def store_denoiser(model: str | Path, storage: str) -> dict[str, str]:
    """Rewrite ``model``'s denoiser (a PathUp model folder) with its weights in ``storage``, one of
    :data:`napari_pathup.training.DENOISER_STORAGES`, as ``pathup train --denoiser-storage`` exports.

    The folder is written under a temporary name and renamed (the old one stays until the new one is
    whole); ``pathup.json`` "training" then records "denoiser_storage". A narrower dtype rounds the
    weights once; a wider one cannot restore what an earlier rounding lost. Returns the record.
    """
    from diffusers import UNet2DModel

    from napari_pathup.models.load import load_model

    if storage not in DENOISER_STORAGES:
        raise InputError(f"denoiser storage: expected one of {', '.join(DENOISER_STORAGES)}, got {storage!r}")
    model = Path(model)
    unet = load_model(model).modules["denoiser"]
    if not isinstance(unet, UNet2DModel):
        raise ModelLoadError(f"{model}: only a PathUp model's denoiser (a UNet2DModel) can be re-stored")
    cast_floating(unet, getattr(torch, storage))
    final = model / DENOISER_DIR
    with atomic_output(final, overwrite=True) as temp:
        unet.save_pretrained(temp, safe_serialization=True)
        clean_saved_config(temp / "config.json")
    meta = json.loads((model / PATHUP_JSON).read_text())
    meta["training"] = {**meta.get("training", {}), "denoiser_storage": storage}
    write_text_atomic(model / PATHUP_JSON, json.dumps(meta, indent=2) + "\n")
    return {"denoiser_storage": storage, "sha256": tagged_sha256(next(final.glob("*.safetensors")))}
