"""Give a PathUp model folder the weak denoiser that autoguidance steers away from.

Autoguidance (Karras et al. 2024, "Guiding a diffusion model with a bad version of itself") replaces
classifier-free guidance's unconditional output by the class-conditional output of a weaker denoiser of
the same latent space and labels: the same line trained for less long, or a smaller network. The engine uses
it for ``guidance_mode`` "auto" (``engine.sampler.guided_output``); this module writes it into a model
folder as ``weak_denoiser/`` (safetensors) and records where it came from in ``pathup.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from napari_pathup.checksum import tagged_sha256
from napari_pathup.io.atomic import atomic_output, write_text_atomic
from napari_pathup.models.layout import clean_saved_config
from napari_pathup.models.spec import DENOISER_DIR, PATHUP_JSON, WEAK_DENOISER_DIR, weak_denoiser_mismatch

#: the pathup.json key that records the weak denoiser's provenance
WEAK_DENOISER_KEY = "weak_denoiser"


def add_weak_denoiser(
    model: str | Path, source: str | Path, note: str = "", dtype: torch.dtype | None = None
) -> dict[str, Any]:
    """Copy ``source``'s denoiser (a PathUp model folder) into ``model`` as its weak denoiser.

    ``dtype`` stores the weights in that dtype (e.g. float16, half the bytes; they load as float32);
    ``note`` says what the weak denoiser is (e.g. "the same line at 14,250 iterations"). The folder is
    written under a temporary name and renamed, replacing an earlier weak denoiser; pathup.json then
    records the provenance under "weak_denoiser". Both models are loaded first, so a source of another
    latent space or other inputs and outputs (``models.spec.weak_denoiser_mismatch``) fails before
    anything is written. Returns the recorded provenance.
    """
    from diffusers import UNet2DModel

    from napari_pathup.errors import ModelLoadError
    from napari_pathup.models.load import load_model

    model, source = Path(model), Path(source)
    own = load_model(model)
    weak = load_model(source)
    if weak.latent_channels != own.latent_channels or weak.vae_scale_factor != own.vae_scale_factor:
        raise ModelLoadError(f"{source}'s denoiser works in another latent space than {model}'s")
    unet = weak.modules["denoiser"]
    if not isinstance(unet, UNet2DModel):
        raise ModelLoadError(f"{source}: a weak denoiser must be a PathUp model's UNet2DModel")
    if mismatch := weak_denoiser_mismatch(dict(own.modules["denoiser"].config), dict(unet.config)):
        raise ModelLoadError(f"{source}'s denoiser cannot guide {model}'s: it differs in {mismatch}")
    if dtype is not None:
        unet = unet.to(dtype)
    final = model / WEAK_DENOISER_DIR
    with atomic_output(final, overwrite=True) as temp:  # an earlier one stays until this one is whole
        unet.save_pretrained(temp, safe_serialization=True)
        clean_saved_config(temp / "config.json")
    record = {
        "source": str(source),
        "note": note,
        "source_denoiser_sha256": tagged_sha256(next((source / DENOISER_DIR).glob("*.safetensors"))),
        "sha256": tagged_sha256(next(final.glob("*.safetensors"))),
        "dtype": str(dtype or torch.float32).removeprefix("torch."),
    }
    meta = json.loads((model / PATHUP_JSON).read_text())
    meta[WEAK_DENOISER_KEY] = record
    write_text_atomic(model / PATHUP_JSON, json.dumps(meta, indent=2) + "\n")
    return record
