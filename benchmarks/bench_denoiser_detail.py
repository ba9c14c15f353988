"""How much fine detail a model's denoiser keeps: the diagnostic behind version 4 of the default model.

Synthetic crops can come out soft although the decoder is sharp (decoded real latents are as sharp as
real crops). This benchmark separates the denoiser from the rest, on held-out real crops only:

1. **x0 estimates by timestep**: encode a real crop, noise it to timestep t, take the denoiser's
   one-step estimate of the clean latent, decode it. Its sharpness over the decoded real latent's
   says how much texture the denoiser restores at that noise level (1.0: all of it).
2. **img2img from real crops**: denoise the noised real latent with the model's scheduler from
   strength s to 0 (as stage 2 does), decode, and compare the sharpness with the real crops'.
   A sound denoiser keeps real sharpness at every strength; a denoiser that smooths low-noise
   latents loses it even at s = 0.1.

Sharpness is the share of spectral power above a quarter of Nyquist (``napari_pathup.metrics.sharpness``).
No feature network is used. Deterministic: fixed seeds, one torch thread by default.

    python benchmarks/bench_denoiser_detail.py MODEL [--baseline MODEL] [--classes tumour normal]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import drain, machine_info, markdown_table
from _quality import holdout_crops, sharpness_values, to_unit
from napari_pathup.datasets import discover
from napari_pathup.engine.preview import to_uint8
from napari_pathup.engine.sampler import PatchSampling, denoise_patches, guided_output, x0_estimate
from napari_pathup.models.base import PathupModel
from napari_pathup.models.load import load_model
from napari_pathup.training.data import load_images

TIMESTEPS = (1, 26, 51, 101, 201, 401)
STRENGTHS = (0.1, 0.6)
#: stage 2's own input: the crop shrunk 4x and enlarged again (bicubic), noised to these strengths
BLURRED_STRENGTHS = (0.6, 0.75, 0.9)


def blurred(crop: np.ndarray) -> np.ndarray:
    """What stage 2 starts from: detail lost to a 4x smaller stage-1 image, enlarged bicubically."""
    x = to_unit([crop])
    small = F.interpolate(x, scale_factor=0.25, mode="bilinear", antialias=True)
    return image_of(F.interpolate(small, size=crop.shape[:2], mode="bicubic").clamp(-1, 1))


def image_of(batch: torch.Tensor) -> np.ndarray:
    """The first image of a (N, 3, H, W) batch in [-1, 1] as (H, W, 3) uint8."""
    return to_uint8(batch[0].permute(1, 2, 0))


def mean_sharpness(model: PathupModel, latents: list[torch.Tensor]) -> float:
    return float(sharpness_values([image_of(model.autoencoder.decode(z)) for z in latents]).mean())


@torch.inference_mode()
def x0_sharpness(
    model: PathupModel, latents: list[torch.Tensor], class_name: str, t: int, guidance: float
) -> float:
    scheduler = model.scheduler
    step = torch.tensor(t)
    cond, uncond = model.conditioner(class_name, "native"), model.conditioner(None, "native")
    estimates = []
    for i, z in enumerate(latents):
        noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(i), dtype=z.dtype)
        noisy = scheduler.add_noise(z, noise, step[None])
        out = guided_output(model.denoiser, noisy, step, cond, uncond, guidance)
        estimates.append(x0_estimate(scheduler, noisy, out, step))
    return mean_sharpness(model, estimates)


def img2img_sharpness(
    model: PathupModel,
    latents: list[torch.Tensor],
    class_name: str,
    strength: float,
    steps: int,
    guidance: float,
) -> float:
    side = latents[0].shape[-1]
    sampling = PatchSampling(steps=steps, strength=strength, guidance=guidance, patch_size=side, overlap=0)
    cond, uncond = model.conditioner(class_name, "native"), model.conditioner(None, "native")
    outs = []
    for i, z in enumerate(latents):
        scheduler = model.scheduler.from_config(model.scheduler.config)
        run = denoise_patches(
            model.denoiser, scheduler, z, cond, uncond, sampling, torch.Generator().manual_seed(i)
        )
        outs.append(drain(run))
    return mean_sharpness(model, outs)


def measure(
    model: PathupModel, crops: dict[str, list[np.ndarray]], steps: int, guidance: float
) -> list[list[str]]:
    rows = []
    for class_name, images in crops.items():
        real = float(sharpness_values(images).mean())
        latents = [model.autoencoder.encode(to_unit([c])) for c in images]
        decoded = mean_sharpness(model, latents)
        row = [class_name, str(len(images)), f"{decoded / real:.2f}"]
        row += [f"{x0_sharpness(model, latents, class_name, t, guidance) / decoded:.2f}" for t in TIMESTEPS]
        row += [
            f"{img2img_sharpness(model, latents, class_name, s, steps, guidance) / real:.2f}"
            for s in STRENGTHS
        ]
        soft = [model.autoencoder.encode(to_unit([blurred(c)])) for c in images]
        row += [
            f"{img2img_sharpness(model, soft, class_name, s, steps, guidance) / real:.2f}"
            for s in BLURRED_STRENGTHS
        ]
        rows.append(row)
        print(f"  {class_name}: done", file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="PathUp model folder")
    p.add_argument("--baseline", help="a second model folder, measured the same way")
    p.add_argument("--data", default="data/demo", help="training data with holdout.json (data/demo)")
    p.add_argument("--classes", nargs="+", default=None, help="classes to measure (all)")
    p.add_argument("--crops", type=int, default=6, help="256-px hold-out crops per class (6)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    index = discover(args.data)
    arrays = load_images(index)
    real = holdout_crops(index, arrays, 256, 256, 0.5)
    classes = args.classes or list(index.classes)
    crops = {c: [real.images[i] for i in real.of(index.classes.index(c))][: args.crops] for c in classes}
    header = ["class", "crops", "decoded / real"]
    header += [f"x0 t={t}" for t in TIMESTEPS] + [f"img2img s={s}" for s in STRENGTHS]
    header += [f"blurred s={s}" for s in BLURRED_STRENGTHS]
    print("# Denoiser detail retention\n")
    given = " ".join(sys.argv[1:] if argv is None else argv)
    print(f"Command: `python benchmarks/{Path(__file__).name} {given}`  ")
    print(f"Machine: {machine_info()}; {args.threads} torch thread(s)  ")
    print(
        "Hold-out 256-px crops of the data (256-px grid). 'decoded / real': sharpness of "
        "decode(encode(crop)) over the crop's. 'x0 t=...': sharpness of the decoded one-step clean "
        "estimate at that timestep over the decoded real latent's (1.0: the denoiser restores all "
        "texture). 'img2img s=...': sharpness of a whole denoising run from that strength (the model's "
        "scheduler and default steps and guidance) over the real crops' (1.0: real detail kept). 'blurred"
        " s=...': the same from the crop shrunk 4x and enlarged bicubically, what stage 2 starts from "
        "(1.0: the denoiser draws all the missing detail).\n"
    )
    for name in [args.model, args.baseline] if args.baseline else [args.model]:
        model = load_model(name)
        defaults = model.metadata.get("defaults", {})
        steps, guidance = int(defaults.get("steps", 20)), float(defaults.get("guidance", 2.5))
        print(f"## {name} ({type(model.scheduler).__name__}, {steps} steps, guidance {guidance})\n")
        print(markdown_table(header, measure(model, crops, steps, guidance)))
        print()
    print(f"Run time: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
