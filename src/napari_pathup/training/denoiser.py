"""Phase 2: a class- and scale-conditioned ``UNet2DModel`` trained on latents of the frozen autoencoder.

Latents of every training region are computed once, in all 8 flips/rotations, with the engine's own
tiled encoder (:func:`~napari_pathup.engine.vae.encode_tiled`), so the denoiser learns exactly the
latents that synthesis produces, and a training step costs only the denoiser. Labels come from
:func:`~napari_pathup.models.conditioning.class_label`; with probability ``label_dropout`` a label is
replaced by its scale's null label (classifier-free guidance). Noise follows the DDPM schedule of the
scheduler that is saved with the model; the loss is v- or epsilon-prediction MSE with min-SNR-γ
weighting (Hang et al. 2023), which speeds up convergence of small models.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import DDIMScheduler, UNet2DModel
from safetensors import safe_open
from safetensors.torch import save_file

from napari_pathup.datasets import CELL, DatasetIndex
from napari_pathup.engine.vae import crop_source, encode_tiled
from napari_pathup.io.atomic import replace_atomically
from napari_pathup.models.base import Autoencoder
from napari_pathup.models.build import build_denoiser
from napari_pathup.models.conditioning import class_label
from napari_pathup.models.spec import SCALES
from napari_pathup.training.augmentation import HedJitter, hed_jitter
from napari_pathup.training.data import (
    Crop,
    CropSampler,
    TrainingImages,
    crops_to_tensor,
    holdout_crops,
    orient,
    oriented_box,
)
from napari_pathup.training.loop import Phase

PREDICTION_TYPES: tuple[str, ...] = ("v_prediction", "epsilon")
#: latent tiles for encoding training regions: larger than synthesis tiles (less overlap to recompute)
BANK_TILE, BANK_OVERLAP = 128, 16
#: hold-out crops the validation loss is measured on
EVAL_CROPS = 16


def build_unet(classes: Sequence[str], preset: str, sample_size: int, latent_channels: int) -> UNet2DModel:
    """The denoiser of a training run (presets and config in :mod:`napari_pathup.models.build`)."""
    return build_denoiser(classes, preset=preset, sample_size=sample_size, latent_channels=latent_channels)


def training_scheduler(prediction_type: str = "v_prediction") -> DDIMScheduler:
    """The scheduler saved with the model; training noises with its ``alphas_cumprod``."""
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(
            f"unknown prediction type {prediction_type!r}; expected one of {', '.join(PREDICTION_TYPES)}"
        )
    return DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type=prediction_type,
    )


# --------------------------------------------------------------------------------------- latent bank


class LatentBank:
    """Latents of every source in every orientation: ``latents[source][orientation]`` is (C, h, w)."""

    def __init__(self, latents: list[list[torch.Tensor]], key: str) -> None:
        self.latents = latents
        self.key = key

    @staticmethod
    def cache_key(
        data: TrainingImages,
        encoder_digest: str,
        tile: int,
        overlap: int,
        jitter: HedJitter | None = None,
        seed: int = 0,
    ) -> str:
        parts = [(s.image, s.region.to_json(), s.scale, list(s.pixels.shape)) for s in data.sources]
        record: dict[str, Any] = {"ae": encoder_digest, "sources": parts, "tile": tile, "overlap": overlap}
        if jitter is not None and (jitter.scale or jitter.shift):
            record["hed"] = [jitter.scale, jitter.shift, seed]
        text = json.dumps(record)
        return hashlib.sha256(text.encode()).hexdigest()

    @classmethod
    def encode(
        cls,
        data: TrainingImages,
        autoencoder: Autoencoder,
        key: str,
        tile: int = BANK_TILE,
        overlap: int = BANK_OVERLAP,
        jitter: HedJitter | None = None,
        seed: int = 0,
        progress: bool = True,
    ) -> LatentBank:
        """Encode every source in its 8 orientations; with ``jitter``, orientations 1-7 each get their own
        seeded H&E stain perturbation (orientation 0 keeps the true colours), so colour augmentation
        costs no encoding at training time."""
        from tqdm import tqdm

        latents = []
        total = sum(s.pixels.shape[0] * s.pixels.shape[1] for s in data.sources) * 8
        with tqdm(
            total=total / 1e6,
            desc="encode latents",
            unit="Mpx",
            disable=not progress,
            bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} Mpx [{elapsed}<{remaining}]",
        ) as bar:
            for i, source in enumerate(data.sources):
                per_orientation = []
                for o in range(8):
                    pixels = orient(source.pixels, o)
                    if jitter is not None and o > 0:
                        pixels = hed_jitter(pixels, np.random.default_rng([seed, i, o]), jitter)
                    image = crops_to_tensor([np.ascontiguousarray(pixels)])[0]
                    h, w = pixels.shape[:2]
                    side = min(tile, h // CELL, w // CELL)  # a small region: one tile, little overlap
                    z = encode_tiled(autoencoder, crop_source(image), h, w, side, min(overlap, side // 4))[0]
                    per_orientation.append(z.contiguous())
                    bar.update(h * w / 1e6)
                latents.append(per_orientation)
        return cls(latents, key)

    def crop(self, crop: Crop, size: int) -> torch.Tensor:
        """The (C, size, size) latent of a crop sampled in source pixels (``size`` in latent pixels)."""
        base = self.latents[crop.source][0]
        h, w = base.shape[-2:]
        y, x = oriented_box(crop.y // CELL, crop.x // CELL, size, h, w, crop.orientation)
        return self.latents[crop.source][crop.orientation][:, y : y + size, x : x + size]

    def save(self, path: Path) -> None:
        tensors = {f"{i}.{o}": z for i, zs in enumerate(self.latents) for o, z in enumerate(zs)}
        metadata = {"key": self.key, "sources": str(len(self.latents))}
        replace_atomically(path, lambda t: save_file(tensors, t, metadata=metadata))

    @classmethod
    def load(cls, path: Path, key: str) -> LatentBank | None:
        """The cached bank at ``path`` if it was made for ``key``, else None."""
        if not path.is_file():
            return None
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("key") != key:
                return None
            n = int(meta["sources"])
            latents = [[f.get_tensor(f"{i}.{o}") for o in range(8)] for i in range(n)]
        return cls(latents, key)


# ------------------------------------------------------------------------------------------- phase


def diffusion_target(
    x0: torch.Tensor, noise: torch.Tensor, alpha_bar: torch.Tensor, prediction_type: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(noisy input x_t, regression target) for ``alpha_bar`` of shape (N, 1, 1, 1)."""
    a, s = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
    noisy = a * x0 + s * noise
    return noisy, (a * noise - s * x0 if prediction_type == "v_prediction" else noise)


#: min-SNR-γ (Hang et al. 2023): caps the x0-loss weight of the low-noise timesteps at γ
DEFAULT_SNR_GAMMA = 5.0


def min_snr_weight(alpha_bar: torch.Tensor, prediction_type: str, gamma: float) -> torch.Tensor:
    """min(SNR, γ) / SNR for epsilon, min(SNR, γ) / (SNR + 1) for v (both: the x0-loss weight min(SNR, γ)).

    ``gamma <= 0`` turns the weighting off (the plain ε or v loss, whose x0-loss weight is SNR or
    SNR + 1): the low-noise timesteps, which decide the finest latent texture, then weigh far more.
    """
    if gamma <= 0:
        return torch.ones_like(alpha_bar)
    snr = alpha_bar / (1 - alpha_bar)
    clipped = snr.clamp(max=gamma)
    return clipped / (snr + 1) if prediction_type == "v_prediction" else clipped / snr


@dataclass
class DenoiserBatch:
    """One training batch of :class:`DenoiserPhase`: its crops, clean and noisy latents, timesteps,
    ``alpha_bar`` (N, 1, 1, 1), the denoiser's prediction and the weighted loss."""

    crops: list[Crop]
    x0: torch.Tensor
    t: torch.Tensor
    alpha_bar: torch.Tensor
    noisy: torch.Tensor
    prediction: torch.Tensor
    loss: torch.Tensor


class DenoiserPhase(Phase):
    """Train a UNet on latent crops from ``bank``; ``eval_set`` = (hold-out latents, their labels)."""

    def __init__(
        self,
        *args: Any,
        sampler: CropSampler,
        bank: LatentBank,
        n_classes: int,
        batch_size: int,
        scheduler: DDIMScheduler,
        label_dropout: float = 0.1,
        snr_gamma: float = DEFAULT_SNR_GAMMA,
        eval_set: tuple[torch.Tensor, torch.Tensor] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.sampler = sampler
        self.bank = bank
        self.n_classes = n_classes
        self.batch_size = batch_size
        self.scheduler = scheduler
        self.prediction_type = scheduler.config.prediction_type
        self.alphas = scheduler.alphas_cumprod.to(torch.float32)
        self.T = int(scheduler.config.num_train_timesteps)
        self.label_dropout = label_dropout
        self.snr_gamma = snr_gamma
        self.size = sampler.data.crop // CELL
        self.eval_set = eval_set

    def _label(self, crop: Crop) -> int:
        drop = self.numpy_rng.random() < self.label_dropout
        return class_label(None if drop else crop.class_index, crop.scale_index, self.n_classes)

    @property
    def denoiser(self) -> torch.nn.Module:
        return self.model

    def predict(self) -> DenoiserBatch:
        """Draw a batch of latent crops, noise them and run the denoiser on them (on ``self.device``)."""
        crops = [self.sampler.sample(self.numpy_rng) for _ in range(self.batch_size)]
        x0 = torch.stack([self.bank.crop(c, self.size) for c in crops])
        labels = torch.tensor([self._label(c) for c in crops], dtype=torch.long)
        t = torch.randint(0, self.T, (len(crops),), generator=self.torch_rng)
        noise = torch.randn(x0.shape, generator=self.torch_rng)
        alpha_bar = self.alphas[t].view(-1, 1, 1, 1)
        noisy, target = diffusion_target(x0, noise, alpha_bar, self.prediction_type)
        d = self.device
        x0, noisy, alpha_bar = x0.to(d), noisy.to(d), alpha_bar.to(d)
        pred = self.denoiser(noisy, t.to(d), class_labels=labels.to(d)).sample.float()
        per_sample = (pred - target.to(d)).pow(2).mean(dim=(1, 2, 3))
        weight = min_snr_weight(alpha_bar.view(-1), self.prediction_type, self.snr_gamma)
        return DenoiserBatch(crops, x0, t, alpha_bar, noisy, pred, (weight * per_sample).mean())

    def loss(self) -> torch.Tensor:
        return self.predict().loss

    def evaluate(self) -> dict[str, float]:
        """The EMA denoiser's :func:`validation_loss` on the hold-out latents."""
        if self.eval_set is None:
            return {}
        eval_set = self.eval_set
        return self.with_ema_weights(
            lambda: {"val": validation_loss(self.denoiser, eval_set, self.scheduler)}
        )


def validation_loss(
    denoiser: torch.nn.Module, eval_set: tuple[torch.Tensor, torch.Tensor], scheduler: DDIMScheduler
) -> float:
    """Unweighted MSE of the prediction on hold-out latents at fixed timesteps (evenly spread over
    50..T-50) and fixed noise (seed 1234): comparable across runs, iterations and machines."""
    x0, labels = eval_set
    alphas = scheduler.alphas_cumprod.to(torch.float32)
    T = int(scheduler.config.num_train_timesteps)
    g = torch.Generator().manual_seed(1234)
    t = torch.linspace(50, T - 50, len(x0)).round().long()
    noise = torch.randn(x0.shape, generator=g)
    noisy, target = diffusion_target(x0, noise, alphas[t].view(-1, 1, 1, 1), scheduler.config.prediction_type)
    d = next(denoiser.parameters()).device
    with torch.no_grad():
        pred = denoiser(noisy.to(d), t.to(d), class_labels=labels.to(d)).sample.float().cpu()
    return float((pred - target).pow(2).mean())


def holdout_latents(
    index: DatasetIndex, images: list[np.ndarray], crop: int, min_tissue: float, autoencoder: Autoencoder
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The validation set of :func:`validation_loss`: latents of up to :data:`EVAL_CROPS` hold-out crops
    of ``crop`` px with their native-scale labels (None when the data has none), built the same way by
    the training and by ``training.validate``."""
    held = holdout_crops(index, images, crop, limit=EVAL_CROPS, min_tissue=min_tissue)
    if not held:
        return None
    with torch.no_grad():
        z = torch.cat([autoencoder.encode(crops_to_tensor([c])).float().cpu() for c, _ in held])
    labels = [native_label(k, len(index.classes)) for _, k in held]
    return z, torch.tensor(labels, dtype=torch.long)


def native_label(class_index: int, n_classes: int) -> int:
    return class_label(class_index, SCALES.index("native"), n_classes)
