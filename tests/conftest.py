"""Shared fixtures: tiny random-weight diffusers models built from configs (no downloads)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

SHARED_HE = Path(__file__).resolve().parents[2] / "shared" / "data" / "he"
CLASSES = ("tumour", "stroma", "normal")


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


def build_random_stable_diffusion(folder: Path, seed: int = 0) -> Path:
    """A tiny text-conditioned Stable Diffusion pipeline folder, saved as safetensors."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from napari_pathup.models.build import build_random_autoencoder

    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    vocab_dir = folder.parent / f".{folder.name}-vocab"
    vocab_dir.mkdir(exist_ok=True)
    (vocab_dir / "vocab.json").write_text(json.dumps(_byte_vocab()))
    (vocab_dir / "merges.txt").write_text("#version: 0.2\n")
    (vocab_dir / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 77}))
    tokenizer = CLIPTokenizer.from_pretrained(vocab_dir, local_files_only=True)
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


@pytest.fixture(scope="session")
def pathup_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from napari_pathup.models.build import build_random_pathup_model

    return build_random_pathup_model(tmp_path_factory.mktemp("models") / "pathup", classes=CLASSES)


@pytest.fixture(scope="session")
def sd_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_random_stable_diffusion(tmp_path_factory.mktemp("models") / "sd")


@pytest.fixture(scope="session")
def pathup_model(pathup_model_dir: Path):
    from napari_pathup.models.load import load_model

    return load_model(pathup_model_dir)


@pytest.fixture
def reference() -> np.ndarray:
    """A real H&E field when the shared data is present, else a seeded H&E-coloured random image."""
    path = SHARED_HE / "tumour_stardist.jpg"
    if path.is_file():
        from napari_pathup.io import read_image

        return read_image(path)
    rng = np.random.default_rng(0)
    base = np.array([200, 120, 170], np.float64)
    return np.clip(base + rng.normal(0, 30, (300, 500, 3)), 0, 255).astype(np.uint8)
