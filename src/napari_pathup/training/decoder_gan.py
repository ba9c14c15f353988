"""Phase 1b: the decoder retrained as a conditional GAN for the frozen encoder's latent space.

A decoder trained on L1/MSE alone predicts the average of every image that encodes alike, so it
blurs what the latent does not pin down (chromatin, nuclear membranes, fibres). As for the tiny
autoencoders that decode sharply (TAESD and its successors), the decoder is trained against a patch
discriminator (PatchGAN, Isola et al. 2017) that sees each image together with its latent (a
conditional GAN: it judges whether the image is a plausible decoding of *that* latent), with the hinge
loss and Adam with betas (0.9, 0.9). A reconstruction term on the 2x low-passed images and the stain
densities keeps layout and colour; the adversarial weight ramps up over the first iterations.

The encoder is frozen, so the latent space, the denoiser's training latents and any trained denoiser
stay valid: only the decoder changes. No pretrained feature network is used (the discriminator is
trained from scratch here), so nothing in training shares weights with the evaluation's extractor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from napari_pathup.training.augmentation import HedJitter, hed_jitter
from napari_pathup.training.autoencoder import psnr, stain_densities
from napari_pathup.training.data import CropSampler, crops_to_tensor
from napari_pathup.training.loop import Phase, make_ema, seeded_generators, update

if TYPE_CHECKING:
    from diffusers import ModelMixin


class PatchDiscriminator(nn.Module):
    """Real/fake logits per ~46-pixel patch of an image, given its latent (nearest-upsampled).

    Spectral-normalised convolutions without normalisation layers (stable with small batches).
    """

    def __init__(self, latent_channels: int, width: int = 32) -> None:
        super().__init__()

        def conv(cin: int, cout: int, k: int, s: int) -> nn.Module:
            return spectral_norm(nn.Conv2d(cin, cout, k, s, padding=k // 2))

        self.net = nn.Sequential(
            conv(3 + latent_channels, width, 4, 2),
            nn.LeakyReLU(0.2),
            conv(width, 2 * width, 4, 2),
            nn.LeakyReLU(0.2),
            conv(2 * width, 4 * width, 4, 2),
            nn.LeakyReLU(0.2),
            conv(4 * width, 4 * width, 3, 1),
            nn.LeakyReLU(0.2),
            conv(4 * width, 1, 3, 1),
        )

    def forward(self, image: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        z = F.interpolate(latent, size=image.shape[-2:], mode="nearest")
        return self.net(torch.cat([image, z], dim=1))


@dataclass(frozen=True)
class GanWeights:
    """Generator loss = l1 * |D(z) - x| (2x low-passed) + full * |D(z) - x| (full resolution)
    + glass * |D(z) - x| (full resolution, glass pixels only) + colour * stain L1 + adversarial * hinge.

    The 2x low-pass leaves the finest detail to the discriminator; it is also blind to a pattern of
    2-px period, which a decoder may then draw on flat glass (thirty-ninth session): ``full`` > 0
    pins that scale down too."""

    l1: float = 1.0
    colour: float = 1.0
    adversarial: float = 0.5
    ramp: int = 500  # iterations over which the adversarial weight grows from 0
    full: float = 0.0
    #: the full-resolution L1 on glass pixels only (every channel of the real pixel >= GLASS_LEVEL),
    #: a mean over those pixels: flat glass pinned down, tissue left to the discriminator
    glass: float = 0.0


#: a real pixel is glass when all three channels are at least this bright (of 255)
GLASS_LEVEL = 200


def reconstruction_loss(y: torch.Tensor, x: torch.Tensor, weights: GanWeights) -> torch.Tensor:
    """The generator's reconstruction terms of decoded ``y`` against real ``x`` (both in [-1, 1])."""
    l1 = (F.avg_pool2d(y, 2) - F.avg_pool2d(x, 2)).abs().mean()
    colour = (stain_densities(F.avg_pool2d(y, 4)) - stain_densities(F.avg_pool2d(x, 4))).abs().mean()
    loss = weights.l1 * l1 + weights.colour * colour
    if weights.full:
        loss = loss + weights.full * (y - x).abs().mean()
    if weights.glass:
        glass = (x >= GLASS_LEVEL / 127.5 - 1).all(dim=1, keepdim=True).to(y.dtype)
        loss = loss + weights.glass * ((y - x).abs() * glass).sum() / (3 * glass.sum()).clamp(min=1)
    return loss


def laplacian_energy(x: torch.Tensor) -> torch.Tensor:
    """Mean absolute 4-neighbour Laplacian of each sample over all its channels (a sharpness statistic
    of images, read on their grey mean, or of latents, as the denoiser's leg does)."""
    c = x.shape[1]
    kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], dtype=x.dtype)
    kernel = kernel.view(1, 1, 3, 3).repeat(c, 1, 1, 1).to(x.device)
    return F.conv2d(x, kernel, groups=c).abs().mean(dim=(1, 2, 3))


def grey(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) → (N, 1, H, W): the channels' mean."""
    return images.mean(dim=1, keepdim=True)


class DecoderGanPhase(Phase):
    """Train ``model`` = ``{"decoder", "discriminator"}`` against the frozen ``encoder``.

    One optimizer holds both networks (param groups; the discriminator's may run at a multiple of
    the rate through ``lr_scale``); each step first updates the discriminator, then the decoder,
    with the other network's gradients dropped, so Adam skips it.
    """

    model: nn.ModuleDict

    def __init__(
        self,
        *args: Any,
        encoder: nn.Module,
        sampler: CropSampler,
        batch_size: int,
        eval_crops: list[np.ndarray],
        weights: GanWeights | None = None,
        jitter: HedJitter | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.encoder = encoder.eval().requires_grad_(False)
        self.sampler = sampler
        self.batch_size = batch_size
        self.weights = weights or GanWeights()
        self.jitter = jitter or HedJitter(0, 0)
        self.eval_batch = crops_to_tensor(eval_crops) if eval_crops else None

    @property
    def decoder(self) -> nn.Module:
        return self.model["decoder"]

    @property
    def discriminator(self) -> nn.Module:
        return self.model["discriminator"]

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        crops = []
        for _ in range(self.batch_size):
            pixels = self.sampler.pixels(self.sampler.sample(self.numpy_rng, jitter=True))
            crops.append(hed_jitter(pixels, self.numpy_rng, self.jitter))
        x = crops_to_tensor(crops).to(self.device)
        with torch.no_grad():
            z = self.encoder(x)
        return x, z

    def adversarial_weight(self) -> float:
        w = self.weights
        return w.adversarial * min(1.0, self.iteration / w.ramp) if w.ramp else w.adversarial

    def reconstruction(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return reconstruction_loss(y, x, self.weights)

    def train_step(self) -> float:
        x, z = self.batch()
        decoder, disc, opt = self.decoder, self.discriminator, self.optimizer
        y = decoder(z)
        # discriminator: hinge loss on real vs decoded
        d_loss = F.relu(1 - disc(x, z)).mean() + F.relu(1 + disc(y.detach(), z)).mean()
        update(opt, d_loss, frozen=decoder)
        # decoder: reconstruction + adversarial (hinge generator loss)
        g_rec = self.reconstruction(y, x)
        g_adv = -disc(y, z).mean()
        g_loss = g_rec + self.adversarial_weight() * g_adv
        if not (torch.isfinite(g_loss) and torch.isfinite(d_loss)):
            raise FloatingPointError(f"{self.name}: loss became {float(g_loss)} / {float(d_loss)}")
        update(opt, g_loss, frozen=disc, clipped=decoder, grad_clip=self.grad_clip)
        self.ema.step(self.model.parameters())
        return float(g_rec.detach())

    def evaluate(self) -> dict[str, float]:
        """Hold-out PSNR and sharpness (Laplacian energy of decoded / real), with the EMA weights."""
        batch = self.eval_batch
        if batch is None:
            return {}

        def run() -> dict[str, float]:
            outs = []
            for i in range(0, len(batch), 4):
                x = batch[i : i + 4].to(self.device)
                outs.append(self.decoder(self.encoder(x)).clamp(-1, 1).cpu())
            y = torch.cat(outs)
            sharp, real = laplacian_energy(grey(y)).mean(), laplacian_energy(grey(batch)).mean()
            ratio = sharp / real.clamp(min=1e-8)
            return {"psnr": psnr(y, batch), "sharpness": float(ratio)}

        return self.with_ema_weights(run)


def decoder_gan_phase(
    vae: ModelMixin,
    sampler: CropSampler,
    *,
    lr: float,
    batch_size: int,
    seed: int,
    device: torch.device,
    eval_crops: list[np.ndarray],
    weights: GanWeights,
    jitter: HedJitter | None = None,
) -> DecoderGanPhase:
    """``vae``'s decoder against a fresh discriminator (seeded from ``seed``), the encoder frozen: the
    decoder phase of ``pathup train`` and a decoder leg from a trained model build it alike."""
    torch.manual_seed(seed + 3)
    discriminator = PatchDiscriminator(vae.config.latent_channels).to(device)
    model = nn.ModuleDict({"decoder": vae.decoder, "discriminator": discriminator})
    numpy_rng, torch_rng = seeded_generators(seed, 3)
    return DecoderGanPhase(
        "decoder",
        model,
        gan_optimizer(vae.decoder, discriminator, lr),
        make_ema(model),
        numpy_rng,
        torch_rng,
        lr=lr,
        warmup=0,
        device=device,
        encoder=vae.encoder,
        sampler=sampler,
        batch_size=batch_size,
        eval_crops=eval_crops,
        weights=weights,
        jitter=jitter,
    )


def gan_optimizer(decoder: nn.Module, discriminator: nn.Module, lr: float, d_lr_scale: float = 2.0):
    """Adam with betas (0.9, 0.9) for both networks; the discriminator at ``d_lr_scale`` x the rate."""
    return torch.optim.Adam(
        [
            {"params": list(decoder.parameters()), "lr_scale": 1.0},
            {"params": list(discriminator.parameters()), "lr_scale": d_lr_scale},
        ],
        lr=lr,
        betas=(0.9, 0.9),
    )
