"""Autoencoder latent channels: 4 vs 8 vs 16 at equal decode cost (same decoder, same training).

Run: ``python benchmarks/bench_latent_channels.py [--data data/demo] [--iters 2000] [--channels 4 8 16]
[--presets cpu cpu-wide patch] [--lr 2e-3]``.

Each preset and channel count trains the shipped recipe's phase-1 autoencoder (``cpu`` preset by
default; batch 8 of 64-px crops, lr ``--lr``, seed 0, the training areas of ``--data``) for ``--iters``
iterations (the ``patch`` preset from the principal components of the crops' 8x8 blocks), then
prints, on the held-out 128-px crops: PSNR before and after training, sharpness (Laplacian energy of decoded /
real; 1 = as sharp as real) and the decoder's time per megapixel with one torch thread (within a
preset the decoder differs only in its first convolution, so the decode cost stays equal; a wider
preset shows what PSNR its decode cost buys). The numbers compare autoencoders under one short budget;
they are not the shipped model's final figures.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_info, markdown_table
from napari_pathup.datasets import discover
from napari_pathup.training.autoencoder import (
    PRESET_NAMES,
    AutoencoderPhase,
    build_autoencoder,
    initialise,
    reconstruct_psnr,
)
from napari_pathup.training.data import (
    CropSampler,
    build_sources,
    crops_to_tensor,
    holdout_crops,
    load_images,
)
from napari_pathup.training.decoder_gan import grey, laplacian_energy
from napari_pathup.training.loop import make_ema, run_phase
from napari_pathup.training.train import AE_OVERVIEW_FRACTION


def decode_ms_per_mpx(vae: Any, channels: int, side: int = 64, repeats: int = 3) -> float:
    """Mean time of ``vae.decoder`` on a ``side``² random latent (8x: ``8 * side`` px), ms per megapixel."""
    z = torch.randn(1, channels, side, side, dtype=next(vae.decoder.parameters()).dtype)
    with torch.no_grad():
        vae.decoder(z)
        t0 = time.perf_counter()
        for _ in range(repeats):
            vae.decoder(z)
    return (time.perf_counter() - t0) / repeats * 1000 / ((8 * side) ** 2 / 1e6)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=Path("data/demo"))
    p.add_argument("--iters", type=int, default=2000)
    p.add_argument("--channels", type=int, nargs="+", default=[4, 8, 16])
    p.add_argument("--presets", nargs="+", default=["cpu"], choices=PRESET_NAMES)
    p.add_argument("--lr", type=float, default=2e-3, help="2e-3 (the cpu recipe); patch: 5e-4")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work", type=Path, default=Path("out/bench_latent_channels"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(machine_info())
    index = discover(args.data)
    arrays = load_images(index)
    data = build_sources(index, arrays, 64, 0.5, 512)
    eval_crops = [c for c, _ in holdout_crops(index, arrays, 128, limit=16)]
    real = crops_to_tensor(eval_crops)
    rows = []
    for preset, channels in [(p, c) for p in args.presets for c in args.channels]:
        torch.manual_seed(0)
        vae = build_autoencoder(preset, channels)
        sampler = CropSampler(data, overview_fraction=AE_OVERVIEW_FRACTION)
        initialise(vae, sampler, np.random.default_rng([0, 98]))  # patch: principal components
        start = reconstruct_psnr(vae, real, torch.device("cpu"))
        phase = AutoencoderPhase(
            f"autoencoder-{preset}-{channels}ch",
            vae,
            torch.optim.AdamW(vae.parameters(), lr=args.lr, weight_decay=1e-4),
            make_ema(vae),
            np.random.default_rng([0, 1]),
            torch.Generator().manual_seed(1),
            lr=args.lr,
            warmup=min(200, args.iters // 10),
            sampler=sampler,
            batch_size=8,
            eval_crops=[],
        )
        t0 = time.perf_counter()
        run_phase(
            phase, args.iters, args.work / f"{preset}-{channels}ch", checkpoint_every=args.iters, eval_every=0
        )
        minutes = (time.perf_counter() - t0) / 60
        phase.ema.copy_to(vae.parameters())
        vae.eval()
        with torch.no_grad():
            decoded = torch.cat([vae.decoder(vae.encoder(real[i : i + 4])) for i in range(0, len(real), 4)])
        sharp = float(
            laplacian_energy(grey(decoded.clamp(-1, 1))).mean() / laplacian_energy(grey(real)).mean()
        )
        rows.append(
            [
                preset,
                channels,
                f"{start:.2f}",
                f"{reconstruct_psnr(vae, real, torch.device('cpu')):.2f}",
                f"{sharp:.3f}",
                f"{decode_ms_per_mpx(vae, channels):.0f}",
                f"{sum(q.numel() for q in vae.decoder.parameters()) / 1e3:.0f} k",
                f"{minutes:.1f}",
            ]
        )
        print(
            markdown_table(
                [
                    "preset",
                    "latent channels",
                    "PSNR dB at start",
                    "PSNR dB",
                    "sharpness",
                    "decode ms/Mpx",
                    "decoder",
                    "train min",
                ],
                rows,
            )
        )
    print(f"{args.iters} iterations each, {len(eval_crops)} held-out 128-px crops, {args.threads} thread(s)")


if __name__ == "__main__":
    main()
