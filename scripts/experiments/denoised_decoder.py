"""Experiment (measured, not adopted): fine-tune the shipped decoder on latents the denoiser drew.

    python scripts/experiments/denoised_decoder.py ITERS WORK P_DENOISED ADVERSARIAL_WEIGHT
    # as measured: 3000 out/denoised-decoder 0.5 4.0, then
    python benchmarks/bench_default_model.py out/denoised-decoder/model \
        --baseline src/napari_pathup/data/default_model --quick --threads 1 --speed-threads 1

The decoder is trained as a conditional GAN (training/decoder_gan.py: patch discriminator, hinge loss)
on the shipped model's frozen encoder, as in phase 1b, except that with probability P_DENOISED a batch's
latents are replaced by what stage 2 makes of them: the crops blurred (1x, 2x or 4x down and up),
encoded, noised to one of the last 2-12 of 20 DDIM steps and denoised with guidance 2.5; the
reconstruction term then compares 8x low-passed images only (the denoised latent keeps the layout,
not the detail). The idea: a decoder that learns to paint real detail on the soft latents synthesis
produces. Measured (docs/model_experiments.md, fifth session): worse on every synthesis figure, so not used.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler

from napari_pathup.datasets import discover
from napari_pathup.models.conditioning import class_label
from napari_pathup.models.load import load_model
from napari_pathup.training.augmentation import HedJitter, hed_jitter
from napari_pathup.training.autoencoder import stain_densities
from napari_pathup.training.data import (
    CropSampler,
    build_sources,
    crops_to_tensor,
    holdout_crops,
    load_images,
)
from napari_pathup.training.decoder_gan import DecoderGanPhase, GanWeights, PatchDiscriminator, gan_optimizer
from napari_pathup.training.loop import make_ema, run_phase, seeded_generators
from napari_pathup.training.train import AE_OVERVIEW_FRACTION

GUIDANCE = 2.5


def main() -> None:
    iters, work = int(sys.argv[1]), Path(sys.argv[2])
    p_denoised, weight = float(sys.argv[3]), float(sys.argv[4])
    torch.set_num_threads(1)
    model = load_model(None)
    vae, unet = model.modules["autoencoder"], model.modules["denoiser"]
    vae.requires_grad_(False)
    vae.decoder.requires_grad_(True).train()
    shift, scale = model.autoencoder.shift_factor, model.autoencoder.scaling_factor
    scheduler = DDIMScheduler.from_config(model.scheduler.config)
    scheduler.set_timesteps(20)
    n_classes = len(model.classes)
    noise_rng = torch.Generator().manual_seed(7)

    index = discover(Path("data/demo"))
    arrays = load_images(index)
    sampler = CropSampler(build_sources(index, arrays, 96, 0.5, 512), overview_fraction=AE_OVERVIEW_FRACTION)
    eval_crops = [c for c, _ in holdout_crops(index, arrays, 128, limit=16)]

    @torch.no_grad()
    def denoised(x: torch.Tensor, labels: list[int], scales: list[int], rng: np.random.Generator):
        f = int(rng.choice([1, 2, 4]))
        if f > 1:
            small = F.interpolate(x, scale_factor=1 / f, mode="bilinear", antialias=True)
            x = F.interpolate(small, scale_factor=f, mode="bilinear")
        z = (vae.encoder(x) - shift) * scale
        steps = scheduler.timesteps[-int(rng.integers(2, 13)) :]
        z = scheduler.add_noise(z, torch.randn(z.shape, generator=noise_rng), steps[:1].repeat(len(z)))
        cond = torch.tensor(labels)
        null = torch.tensor([class_label(None, s, n_classes) for s in scales])
        for t in steps:
            out = unet(torch.cat([z, z]), t, class_labels=torch.cat([null, cond])).sample
            uncond_out, cond_out = out.chunk(2)
            z = scheduler.step(uncond_out + GUIDANCE * (cond_out - uncond_out), t, z).prev_sample
        return z / scale + shift

    class DenoisedDecoderPhase(DecoderGanPhase):
        pool = 2

        def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
            crops, labels, scales = [], [], []
            for _ in range(self.batch_size):
                crop = self.sampler.sample(self.numpy_rng, jitter=True)
                crops.append(hed_jitter(self.sampler.pixels(crop), self.numpy_rng, self.jitter))
                labels.append(class_label(crop.class_index, crop.scale_index, n_classes))
                scales.append(crop.scale_index)
            x = crops_to_tensor(crops)
            if self.numpy_rng.random() < p_denoised:
                self.pool = 8
                return x, denoised(x, labels, scales, self.numpy_rng)
            self.pool = 2
            with torch.no_grad():
                return x, self.encoder(x)

        def reconstruction(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            w, p = self.weights, self.pool
            l1 = (F.avg_pool2d(y, p) - F.avg_pool2d(x, p)).abs().mean()
            colour = (stain_densities(F.avg_pool2d(y, 4)) - stain_densities(F.avg_pool2d(x, 4))).abs().mean()
            return w.l1 * l1 + w.colour * colour

    torch.manual_seed(3)
    discriminator = PatchDiscriminator(vae.config.latent_channels)
    networks = torch.nn.ModuleDict({"decoder": vae.decoder, "discriminator": discriminator})
    numpy_rng, torch_rng = seeded_generators(0, 5)
    phase = DenoisedDecoderPhase(
        "decoder", networks, gan_optimizer(vae.decoder, discriminator, 1e-4), make_ema(networks), numpy_rng,
        torch_rng, lr=1e-4, warmup=0, encoder=vae.encoder, sampler=sampler, batch_size=4,
        eval_crops=eval_crops, weights=GanWeights(adversarial=weight), jitter=HedJitter(0.05, 0.02),
    )  # fmt: skip
    print("before", phase.evaluate(), flush=True)
    run_phase(phase, iters, work / "checkpoints", 250, 500, resume=True)
    phase.ema.copy_to(networks.parameters())
    print("after", phase.evaluate(), flush=True)
    dest = work / "model"
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(model.path, dest)
    vae.eval().save_pretrained(dest / "autoencoder", safe_serialization=True)
    print("wrote", dest)


if __name__ == "__main__":
    main()
