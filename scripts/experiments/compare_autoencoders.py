"""Compare autoencoders on the quality benchmark's held-out crops, and show three of them at 1:1.

Run: ``python scripts/experiments/compare_autoencoders.py AE [AE ...] [--figure PNG] [--dtype float32]``
where each AE is an autoencoder folder (config.json + safetensors) or a PathUp model folder.

Prints, per autoencoder, what ``benchmarks/bench_default_model.py`` reports in its autoencoder section
(PSNR of decode(encode(crop)) per class and over all 69 held-out 256-px crops of data/demo, the
sharpness ratio, the H and E optical-density ratios; the same functions) and a block-border ratio:
the mean absolute step between pixel columns 8k-1 and 8k over that between other neighbours
(1 = no 8-px grid; the JPEG sources of data/demo score about 1.2 themselves), and the decoder's time
per megapixel on one torch thread (``bench_latent_channels.decode_ms_per_mpx``: a 512x512-px image's
latent, mean of three; time it on a quiet machine).
``--figure`` writes
three crops at 1:1: the real ones on top, then one row per autoencoder.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _quality import hed_stats, holdout_crops, psnr, reconstruct, sharpness_values  # noqa: E402
from bench_latent_channels import decode_ms_per_mpx  # noqa: E402
from napari_pathup.datasets import discover  # noqa: E402
from napari_pathup.models.base import Autoencoder, cast_floating  # noqa: E402
from napari_pathup.training.data import load_images  # noqa: E402
from napari_pathup.training.train import load_autoencoder  # noqa: E402

CROP, STRIDE, MIN_TISSUE = 256, 128, 0.5  # as bench_default_model.py
FIGURE_CROPS = (30, 46, 64)  # skin (normal), ovarian stroma and the HGSC tumour nest, of the 69


def block_border_ratio(crops: list[np.ndarray], block: int = 8) -> float:
    steps = np.mean([np.abs(np.diff(c.astype(float), axis=1)).mean(axis=(0, 2)) for c in crops], axis=0)
    border = steps[block - 1 :: block]
    inner = np.delete(steps, np.s_[block - 1 :: block])
    return float(border.mean() / inner.mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("autoencoders", nargs="+", type=Path)
    p.add_argument("--data", type=Path, default=ROOT / "data" / "demo")
    p.add_argument("--figure", type=Path)
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    args = p.parse_args()
    torch.set_num_threads(1)
    index = discover(args.data)
    real = holdout_crops(index, load_images(index), CROP, STRIDE, MIN_TISSUE)
    real_sharpness = sharpness_values(real.images).mean()
    real_stain = hed_stats(real.images)
    print(f"{len(real.images)} held-out {CROP}-px crops; {args.dtype}")
    columns = ["PSNR all", *index.classes, "sharpness", "H", "E", "block border", "decode ms/Mpx"]
    print("| autoencoder | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    rows = [[real.images[i] for i in FIGURE_CROPS]]
    for path in args.autoencoders:
        vae = cast_floating(load_autoencoder(path).eval(), getattr(torch, args.dtype))
        ae = Autoencoder(vae)
        recon = reconstruct(ae, real.images)  # the benchmark's own
        per_class = []
        for k in range(len(index.classes)):
            ids = np.flatnonzero(real.labels == k)
            per_class.append(f"{psnr([real.images[i] for i in ids], [recon[i] for i in ids]):.2f}")
        stain = hed_stats(recon)
        print(
            f"| {path} | {psnr(real.images, recon):.2f} | {' | '.join(per_class)} | "
            f"{sharpness_values(recon).mean() / real_sharpness:.3f} | "
            f"{stain['H mean'] / real_stain['H mean']:.3f} | {stain['E mean'] / real_stain['E mean']:.3f} | "
            f"{block_border_ratio(recon):.3f} | {decode_ms_per_mpx(vae, ae.latent_channels):.0f} |"
        )
        rows.append([recon[i] for i in FIGURE_CROPS])
    print(f"| (real crops) | | {' | ' * len(index.classes)}| | | {block_border_ratio(real.images):.3f} | |")
    if args.figure:
        from PIL import Image

        grid = np.concatenate([np.concatenate(row, axis=1) for row in rows], axis=0)
        Image.fromarray(grid).save(args.figure)
        print(f"wrote {args.figure} (rows: real, then {', '.join(str(a) for a in args.autoencoders)})")


if __name__ == "__main__":
    main()
