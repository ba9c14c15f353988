"""How much epidermis the denoiser's training draws from ``normal``, with and without crop emphasis.

Run: ``python scripts/experiments/crop_emphasis_share.py [--data data/demo] [--factors 0 1 3 10]``

The epidermis is approximated per ``normal`` image as the top quartile of its tissue by the local
density of dark pixels (grey level below Otsu's threshold of the image's tissue, Gaussian-smoothed
over 16 px): on ``data/demo`` that covers the epidermis of both skin fields and a few dense
lymphocyte clusters of the dermis (``--figure`` draws it). For each factor the script draws 3,000
native 256-px ``normal`` crops as phase 2b's sampler does (``CropSampler(emphasis={normal: k})``,
seed 0) and prints the mean share of that mask in them and the share of crops that are at least a
quarter epidermis. Training-data figures only: no model is run.
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy import ndimage as ndi

from napari_pathup.datasets import discover, tissue_mask
from napari_pathup.training.data import (
    NATIVE,
    CropSampler,
    build_sources,
    dark_threshold,
    load_images,
    tissue_grey,
)


def epidermis_mask(rgb: np.ndarray, sigma: float = 16.0) -> np.ndarray:
    """The top quartile of the image's tissue by the smoothed density of dark pixels."""
    tissue = tissue_mask(rgb)
    dark = (rgb.mean(axis=-1) < dark_threshold(tissue_grey(rgb))) & tissue
    density = ndi.gaussian_filter(dark.astype(np.float32), sigma)
    return density > np.quantile(density[tissue], 0.75)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="data/demo")
    p.add_argument("--class-name", default="normal")
    p.add_argument("--factors", type=float, nargs="+", default=[0.0, 1.0, 3.0, 10.0])
    p.add_argument("--crops", type=int, default=3000)
    p.add_argument("--figure", help="write the masks over the images (PNG, one per image, this prefix)")
    args = p.parse_args()

    index = discover(args.data)
    arrays = load_images(index)
    data = build_sources(index, arrays, 256, 0.5, 512)
    c = index.classes.index(args.class_name)
    tables = {}
    for entry, rgb in zip(index.images, arrays, strict=True):
        if entry.class_name != args.class_name:
            continue
        mask = epidermis_mask(rgb)
        tables[entry.key] = np.pad(mask, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
        print(f"{entry.key}: mask covers {mask[tissue_mask(rgb)].mean():.2f} of the tissue")
        if args.figure:
            from PIL import Image

            shown = rgb.copy()
            shown[mask] = (shown[mask] * 0.5 + np.array([0, 127, 0])).astype(np.uint8)
            Image.fromarray(shown).save(f"{args.figure}_{entry.key.replace('/', '_')}.png")
    print("| factor | mean epidermis share of the drawn crops | crops >= 25 % epidermis | from each image |")
    print("|---|---|---|---|")
    for k in args.factors:
        sampler, rng = CropSampler(data, 0.3, {c: k}), np.random.default_rng(0)
        shares: list[float] = []
        images: list[str] = []
        while len(shares) < args.crops:
            crop = sampler.sample(rng)
            if crop.class_index != c or crop.scale_index != NATIVE:
                continue
            src = data.sources[crop.source]
            t = tables[src.image]
            y0, x0 = src.region.y0 + crop.y, src.region.x0 + crop.x
            y1, x1 = y0 + 256, x0 + 256
            shares.append((t[y1, x1] - t[y0, x1] - t[y1, x0] + t[y0, x0]) / 256**2)
            images.append(src.image)
        s = np.array(shares)
        each = ", ".join(f"{key.split('/')[-1]} {images.count(key) / len(images):.2f}" for key in tables)
        print(f"| {k:g} | {s.mean():.3f} | {(s >= 0.25).mean():.2f} | {each} |")


if __name__ == "__main__":
    main()
