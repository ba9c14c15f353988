"""Phase 1: an 8x ``AutoencoderTiny`` trained on tissue crops with a colour-aware loss.

Loss = L1 on RGB + L1 on image gradients (sharpness) + L1 on haematoxylin/eosin densities of the
4x low-passed images (colour: optical densities separated with the Ruifrok & Johnston stain
vectors, so a washed-out eosin costs as much as a wrong nucleus) + a small latent L2 term (keeps
latents in the decoder's linear range, which the denoiser then models). PSNR is measured on
hold-out crops.

Presets keep full resolution cheap, since a 2048x2048 synthesis encodes and decodes 4 megapixels:
the ``cpu`` preset has no residual block at full resolution (the decoder ends in an upsampling
convolution) and puts its depth at 1/2 to 1/8 resolution. The ``patch`` preset
(:class:`~napari_pathup.models.patch_autoencoder.PatchAutoencoder`) puts all of it at 1/8 and starts
from the principal components of the training crops' 8x8 pixel blocks (:func:`initialise`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderTiny, ModelMixin

from napari_pathup.models.patch_autoencoder import PatchAutoencoder
from napari_pathup.training.augmentation import UNMIX
from napari_pathup.training.data import CropSampler, crops_to_tensor
from napari_pathup.training.loop import Phase

#: AutoencoderTiny needs one width for all levels; blocks per level (encoder: full → 1/8 resolution,
#: decoder: 1/8 → full resolution)
AUTOENCODER_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"width": 8, "encoder_blocks": (1, 1, 1, 1), "decoder_blocks": (1, 1, 1, 1)},
    "cpu": {"width": 32, "encoder_blocks": (0, 2, 2, 2), "decoder_blocks": (2, 2, 2, 0)},
    "cpu-wide": {"width": 48, "encoder_blocks": (0, 1, 2, 3), "decoder_blocks": (3, 2, 1, 0)},
}
#: PatchAutoencoder presets: width and residual pairs of its encoder's and decoder's stacks
PATCH_PRESETS: dict[str, dict[str, int]] = {"patch": {"width": 64, "num_blocks": 2}}
PRESET_NAMES: tuple[str, ...] = (*AUTOENCODER_PRESETS, *PATCH_PRESETS)

_UNMIX = torch.tensor(UNMIX, dtype=torch.float32)  # optical density (rgb) @ _UNMIX = stain densities


def build_autoencoder(preset: str = "cpu", latent_channels: int = 4) -> AutoencoderTiny | PatchAutoencoder:
    """A new, untrained autoencoder of one of :data:`PRESET_NAMES`."""
    if preset in PATCH_PRESETS:
        return PatchAutoencoder(latent_channels=latent_channels, **PATCH_PRESETS[preset])
    if preset not in AUTOENCODER_PRESETS:
        raise ValueError(f"unknown autoencoder preset {preset!r}; expected one of {', '.join(PRESET_NAMES)}")
    p = AUTOENCODER_PRESETS[preset]
    return AutoencoderTiny(
        encoder_block_out_channels=(p["width"],) * 4,
        decoder_block_out_channels=(p["width"],) * 4,
        num_encoder_blocks=tuple(p["encoder_blocks"]),
        num_decoder_blocks=tuple(p["decoder_blocks"]),
        latent_channels=latent_channels,
    )


def initialise(
    vae: ModelMixin, sampler: CropSampler, rng: np.random.Generator, crops: int = 512
) -> dict[str, float]:
    """Start a :class:`PatchAutoencoder` from the principal components of ``crops`` training crops'
    pixel blocks (see ``initialise_from_blocks``); other autoencoders keep their random start."""
    if not isinstance(vae, PatchAutoencoder):
        return {}
    images = crops_to_tensor([sampler.pixels(sampler.sample(rng)) for _ in range(crops)])
    return vae.initialise_from_blocks(images)


def stain_densities(image: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB in [-1, 1] → haematoxylin, eosin, residual optical densities (N, 3, H, W)."""
    intensity = ((image + 1) * 127.5 + 1) / 256  # (I + 1) / 256 in (0, 1], as in skimage.color.rgb2hed
    od = -torch.log(intensity.clamp(min=1 / 256))
    return torch.einsum("nchw,cd->ndhw", od, _UNMIX.to(image.device, image.dtype))


@dataclass(frozen=True)
class LossWeights:
    colour: float = 1.0
    gradient: float = 0.5
    latent: float = 1e-3


def reconstruction_loss(
    pred: torch.Tensor, target: torch.Tensor, latents: torch.Tensor, w: LossWeights
) -> tuple[torch.Tensor, dict[str, float]]:
    l1 = (pred - target).abs().mean()
    low_pred, low_target = F.avg_pool2d(pred, 4), F.avg_pool2d(target, 4)
    colour = (stain_densities(low_pred) - stain_densities(low_target)).abs().mean()
    gradient = sum((torch.diff(pred, dim=d) - torch.diff(target, dim=d)).abs().mean() for d in (-1, -2))
    latent = latents.pow(2).mean()
    total = l1 + w.colour * colour + w.gradient * gradient + w.latent * latent
    return total, {"l1": float(l1.detach()), "colour": float(colour.detach())}


def psnr(pred: torch.Tensor, target: torch.Tensor) -> float:
    """PSNR in dB over a batch of [-1, 1] images, on the 0-255 scale after rounding to 8 bits."""
    a = ((pred.clamp(-1, 1) + 1) * 127.5).round()
    b = ((target + 1) * 127.5).round()
    mse = float((a - b).pow(2).mean())
    return 10 * np.log10(255**2 / max(mse, 1e-10))


class AutoencoderPhase(Phase):
    """Train ``model`` (an AutoencoderTiny) on crops from ``sampler``; evaluate on ``eval_crops``."""

    model: ModelMixin

    def __init__(
        self,
        *args: Any,
        sampler: CropSampler,
        batch_size: int,
        eval_crops: list[np.ndarray],
        weights: LossWeights | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.sampler = sampler
        self.batch_size = batch_size
        self.weights = weights or LossWeights()
        self.eval_batch = crops_to_tensor(eval_crops) if eval_crops else None

    def loss(self) -> torch.Tensor:
        crops = [
            self.sampler.pixels(self.sampler.sample(self.numpy_rng, jitter=True))
            for _ in range(self.batch_size)
        ]
        x = crops_to_tensor(crops).to(self.device)
        z = self.model.encoder(x)
        y = self.model.decoder(z)
        total, _ = reconstruction_loss(y, x, z, self.weights)
        return total

    def evaluate(self) -> dict[str, float]:
        batch = self.eval_batch
        if batch is None:
            return {}
        return self.with_ema_weights(lambda: {"psnr": reconstruct_psnr(self.model, batch, self.device)})


def reconstruct_psnr(
    vae: AutoencoderTiny, images: torch.Tensor, device: torch.device, batch: int = 4
) -> float:
    """PSNR of decode(encode(x)) over ``images`` (N, 3, H, W) in [-1, 1]."""
    outs = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = images[i : i + batch].to(device)
            outs.append(vae.decoder(vae.encoder(x)).cpu())
    return psnr(torch.cat(outs), images)


def latent_statistics(
    vae: AutoencoderTiny, images: torch.Tensor, device: torch.device
) -> tuple[float, float]:
    """Mean and standard deviation of the raw latents of ``images`` (for scaling_factor/shift_factor)."""
    zs = []
    with torch.no_grad():
        for i in range(0, len(images), 8):
            zs.append(vae.encoder(images[i : i + 8].to(device)).float().cpu())
    z = torch.cat(zs)
    return float(z.mean()), float(z.std())


def set_latent_scale(vae: AutoencoderTiny, mean: float, std: float) -> None:
    """Record the latent normalisation the engine applies: latent = (z - shift_factor) * scaling_factor."""
    vae.register_to_config(scaling_factor=1.0 / max(std, 1e-6), shift_factor=mean)
