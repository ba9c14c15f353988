"""Build class-conditioned PathUp models from explicit configs (random weights).

Used by training (which starts from these configs) and by tests and benchmarks, which need real
diffusers models without downloading weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, AutoencoderTiny, DDIMScheduler, UNet2DModel

from napari_pathup.models.conditioning import SCALES, num_class_embeds
from napari_pathup.models.layout import save_pathup_model

#: UNet sizes: ``tiny`` for tests, ``cpu`` for the shipped model (a 2048x2048 synthesis on a 2-core
#: CPU), ``small`` for benchmarks, ``small`` and ``base`` for training on GPUs
DENOISER_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"block_out_channels": (16, 32), "layers_per_block": 1, "norm_num_groups": 8},
    "cpu": {"block_out_channels": (32, 64, 128), "layers_per_block": 1, "norm_num_groups": 8},
    "small": {"block_out_channels": (64, 128, 128), "layers_per_block": 1, "norm_num_groups": 32},
    "base": {"block_out_channels": (64, 128, 256, 256), "layers_per_block": 2, "norm_num_groups": 32},
}


def denoiser_config(
    classes: Sequence[str],
    scales: Sequence[str] = SCALES,
    preset: str = "tiny",
    sample_size: int = 16,
    latent_channels: int = 4,
) -> dict[str, Any]:
    """A ``UNet2DModel`` config with one class embedding per (scale, class or null)."""
    if preset not in DENOISER_PRESETS:
        raise ValueError(f"unknown denoiser preset {preset!r}; expected one of {', '.join(DENOISER_PRESETS)}")
    p = DENOISER_PRESETS[preset]
    n = len(p["block_out_channels"])
    return {
        "sample_size": sample_size,
        "in_channels": latent_channels,
        "out_channels": latent_channels,
        "layers_per_block": p["layers_per_block"],
        "block_out_channels": p["block_out_channels"],
        "norm_num_groups": p["norm_num_groups"],
        "down_block_types": ("DownBlock2D",) * (n - 1) + ("AttnDownBlock2D",),
        "up_block_types": ("AttnUpBlock2D",) + ("UpBlock2D",) * (n - 1),
        "num_class_embeds": num_class_embeds(len(classes), len(scales)),
    }


def build_denoiser(classes: Sequence[str], **kwargs: Any) -> UNet2DModel:
    return UNet2DModel(**denoiser_config(classes, **kwargs))


def build_random_autoencoder(kind: str = "kl", width: int = 8, latent_channels: int = 4) -> torch.nn.Module:
    """An 8x autoencoder: ``kl`` (AutoencoderKL) or ``tiny`` (AutoencoderTiny)."""
    if kind == "kl":
        return AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(width,) * 4,
            layers_per_block=1,
            latent_channels=latent_channels,
            norm_num_groups=min(4, width),
            sample_size=64,
        )
    if kind == "tiny":
        return AutoencoderTiny(
            encoder_block_out_channels=(width,) * 4,
            decoder_block_out_channels=(width,) * 4,
            num_encoder_blocks=(1, 1, 1, 1),
            num_decoder_blocks=(1, 1, 1, 1),
            latent_channels=latent_channels,
        )
    raise ValueError(f"unknown autoencoder kind {kind!r}; expected 'kl' or 'tiny'")


def build_random_pathup_model(
    folder: str | Path,
    classes: Sequence[str] = ("tumour", "stroma", "normal"),
    preset: str = "tiny",
    sample_size: int = 16,
    autoencoder: str = "kl",
    seed: int = 0,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a random-weight PathUp model folder (for tests, benchmarks and smoke runs)."""
    torch.manual_seed(seed)
    denoiser = build_denoiser(classes, preset=preset, sample_size=sample_size)
    vae = build_random_autoencoder(autoencoder)
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", clip_sample=False)
    return save_pathup_model(folder, denoiser, vae, scheduler, classes, extra=extra)
