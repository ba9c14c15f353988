"""Build models from explicit configs (random weights): class-conditioned PathUp models, and tiny
text-conditioned Stable Diffusion pipelines.

Used by training (which starts from these configs), by tests and benchmarks, which need real
diffusers models without downloading weights, and by the CPU rehearsal of docs/reproduce_pathup.md.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, AutoencoderTiny, DDIMScheduler, UNet2DModel

from napari_pathup.models.layout import save_pathup_model
from napari_pathup.models.spec import SCALES, num_class_embeds

#: UNet sizes: ``tiny`` for tests, ``cpu`` (2.7 M parameters, the first shipped model) and ``cpu-large``
#: (7.2 M, the current shipped model) for a 2048x2048 synthesis on a 2-core CPU, ``cpu-deep`` (10.4 M:
#: cpu-large with two resnets per block; ``pathup train --init`` deepens a cpu-large model to it),
#: ``cpu-xl`` (11.3 M: cpu-large 1.25x as wide, for 16 latent channels' detail; about 1.5x its cost per
#: call, docs/model_card.md), ``small`` for benchmarks, ``small`` and ``base`` for training on GPUs
DENOISER_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"block_out_channels": (16, 32), "layers_per_block": 1, "norm_num_groups": 8},
    "cpu": {"block_out_channels": (32, 64, 128), "layers_per_block": 1, "norm_num_groups": 8},
    "cpu-large": {"block_out_channels": (64, 128, 192), "layers_per_block": 1, "norm_num_groups": 16},
    "cpu-deep": {"block_out_channels": (64, 128, 192), "layers_per_block": 2, "norm_num_groups": 16},
    "cpu-xl": {"block_out_channels": (80, 160, 240), "layers_per_block": 1, "norm_num_groups": 16},
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


def preset_of(config: Mapping[str, Any]) -> str | None:
    """The preset a denoiser's config was built from (its widths, depth and groups), or None for another
    architecture; a warm start continues its model under that name (scripts/train_default_model.sh)."""
    shape = (tuple(config["block_out_channels"]), config["layers_per_block"], config["norm_num_groups"])
    for name, p in DENOISER_PRESETS.items():
        if shape == (tuple(p["block_out_channels"]), p["layers_per_block"], p["norm_num_groups"]):
            return name
    return None


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


def _byte_vocab() -> dict[str, int]:
    """A minimal CLIP byte-level BPE vocabulary: every byte symbol, with and without </w>."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    extra = [256 + i for i, b in enumerate(b for b in range(256) if b not in printable)]
    symbols = [chr(c) for c in printable + extra]  # GPT-2's byte → unicode table
    vocab = symbols + [s + "</w>" for s in symbols] + ["<|startoftext|>", "<|endoftext|>"]
    return {token: i for i, token in enumerate(vocab)}


def build_random_stable_diffusion(folder: str | Path, seed: int = 0) -> Path:
    """Write a tiny random-weight Stable Diffusion pipeline folder (safetensors; a CLIP tokenizer with a
    byte-level vocabulary, a 2-layer text encoder, a 2-level UNet with native size 16, the ``kl``
    autoencoder above): the same layout and classes as a real SD 1.x pipeline, for tests and rehearsals."""
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    folder = Path(folder)
    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as vocab_dir:
        vocab = Path(vocab_dir)
        (vocab / "vocab.json").write_text(json.dumps(_byte_vocab()))
        (vocab / "merges.txt").write_text("#version: 0.2\n")
        (vocab / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 77}))
        tokenizer = CLIPTokenizer.from_pretrained(vocab, local_files_only=True)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            vocab_size=len(tokenizer),
            max_position_embeddings=77,
            bos_token_id=len(tokenizer) - 2,
            eos_token_id=len(tokenizer) - 1,
            pad_token_id=len(tokenizer) - 1,
        )
    )
    unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        norm_num_groups=8,
        attention_head_dim=4,
    )
    pipe = StableDiffusionPipeline(
        vae=build_random_autoencoder("kl"),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=DDIMScheduler(beta_schedule="scaled_linear", clip_sample=False, steps_offset=1),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder
