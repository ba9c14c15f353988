"""Nucleus size and haematoxylin density of real images as each model's autoencoder reconstructs them.

Run: ``python scripts/experiments/reconstruction_nuclei.py IMAGE [IMAGE ...] --model NAME=FOLDER ...``

Each IMAGE (e.g. the model's references, cut from training areas: no hold-out crop is read) is cut into
256-px tiles on a 128-px grid (those with at least half tissue), as the quality benchmark cuts crops;
the tiles and their reconstructions (decode(encode(tile)), float32) are measured with the benchmark's
nucleus measure: haematoxylin-dense components above Otsu's threshold of the real tiles' tissue
pixels, the median of the tiles' median areas. Forty-sixth session: does a decoder draw a class's
nuclei smaller because it draws them paler (the haematoxylin mean beside the area)?
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _quality import Morphology, grid_tiles, hed_stats, reconstruct, with_tissue  # noqa: E402
from napari_pathup.io import read_image  # noqa: E402
from napari_pathup.metrics.nuclei import haematoxylin_threshold  # noqa: E402
from napari_pathup.models.load import load_model  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("images", nargs="+", type=Path)
    p.add_argument("--model", action="append", required=True, metavar="NAME=FOLDER")
    args = p.parse_args()
    torch.set_num_threads(1)
    autoencoders = {}
    for spec in args.model:
        name, _, folder = spec.partition("=")
        autoencoders[name] = load_model(folder).autoencoder
    names = list(autoencoders)
    print(
        "| image | tiles | real: nuclei px / H mean | "
        + " | ".join(f"{n}: nuclei px / H mean" for n in names)
        + " |"
    )
    print("|---" * (3 + len(names)) + "|")
    for path in args.images:
        tiles, _ = with_tissue(grid_tiles(read_image(path), 256, 128), 0.5)
        threshold = haematoxylin_threshold(tiles)
        cells = [f"{Morphology.of(tiles, threshold).median_area:.2f} / {hed_stats(tiles)['H mean']:.4f}"]
        for name in names:
            decoded = reconstruct(autoencoders[name], tiles)
            area = Morphology.of(decoded, threshold).median_area
            cells.append(f"{area:.2f} / {hed_stats(decoded)['H mean']:.4f}")
        print(f"| {path.name} | {len(tiles)} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
