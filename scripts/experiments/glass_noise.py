"""How flat the model draws glass: luma spread in background windows of real, decoded and synthetic images.

Run: ``python scripts/experiments/glass_noise.py MODEL IMAGE [IMAGE ...] [--synthetic PNG ...]``

Each IMAGE (a real field, e.g. the model's references) is measured as it is and as the model's
autoencoder reconstructs it (decode(encode(image)), untiled, float32); each ``--synthetic`` image
(e.g. ``pathup synthesize --class normal --seed 0 --out normal.png``) as it is. Glass: 16x16 windows
whose every pixel has all three channels >= 200; the figure is the median over those windows of the
luma's standard deviation (0: flat). Blockiness: mean absolute luma step across the 8-px grid's
lines over that at every other offset (1: no grid), since the autoencoder codes 8x8 pixel blocks.
Reconstruction rows add PSNR against the real image and the sharpness ratio (the benchmark's
high-frequency power share, reconstruction over real), over the whole image and over tissue alone
(32-px windows at most 2 % glass), since dither on glass is high-frequency power too, and the edge
acutance: the mean luma gradient at the real image's strongest 5 % of edges, reconstruction over
real, which blur lowers and grain hardly raises (fortieth session).
Thirty-ninth session: version 4.9's decoder draws a pink/cyan dither on glass (luma spread 4.2-4.4
against the real fields' 0.4 and 1.8); docs/model_experiments.md has the figures.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _quality import psnr, reconstruct  # noqa: E402
from napari_pathup.metrics.sharpness import (  # noqa: E402
    EDGE_FRACTION,
    high_frequency_share,
    luma_gradient,
    luminance,
)
from napari_pathup.models.load import load_model  # noqa: E402
from napari_pathup.training.decoder_gan import GLASS_LEVEL  # noqa: E402  (the glass term's own)

#: the side of a glass window (pixels)
WINDOW = 16
#: the autoencoder's block (pixels per latent pixel)
BLOCK = 8
#: the side of a tissue window (pixels) and the largest share of glass pixels it may hold (pale
#: eosin passes the glass test too, so a window without any glass pixel is rare in some fields)
TISSUE = 32
TISSUE_GLASS = 0.02


def luma(rgb: np.ndarray) -> np.ndarray:
    """The sharpness metric's luma, on the 0-255 scale of the pixels."""
    return luminance(np.ascontiguousarray(rgb)) * 255.0


def glass_spread(rgb: np.ndarray) -> tuple[float, int]:
    """Median luma standard deviation over the WINDOW-px windows that are all glass, and their count."""
    glass = np.all(rgb[..., :3] >= GLASS_LEVEL, axis=-1)
    y = luma(rgb)
    spreads = [
        float(y[i : i + WINDOW, j : j + WINDOW].std())
        for i in range(0, y.shape[0] - WINDOW + 1, WINDOW)
        for j in range(0, y.shape[1] - WINDOW + 1, WINDOW)
        if glass[i : i + WINDOW, j : j + WINDOW].all()
    ]
    return (float(np.median(spreads)) if spreads else float("nan")), len(spreads)


def blockiness(rgb: np.ndarray) -> float:
    """Mean |luma step| across the BLOCK-px grid's lines over that at the other offsets."""
    y = luma(rgb)
    dx, dy = np.abs(np.diff(y, axis=1)), np.abs(np.diff(y, axis=0))
    on_x = np.arange(dx.shape[1]) % BLOCK == BLOCK - 1
    on_y = np.arange(dy.shape[0]) % BLOCK == BLOCK - 1
    return float((dx[:, on_x].mean() + dy[on_y].mean()) / (dx[:, ~on_x].mean() + dy[~on_y].mean()))


def tissue_sharpness(rgb: np.ndarray, real: np.ndarray) -> float:
    """Mean high-frequency share over the TISSUE-px windows of ``real`` that are at most TISSUE_GLASS
    glass, ``rgb`` over ``real``: the decoder's detail on tissue, little inflated by dither on glass."""
    glass = np.all(real[..., :3] >= GLASS_LEVEL, axis=-1)
    spots = [
        (i, j)
        for i in range(0, real.shape[0] - TISSUE + 1, TISSUE)
        for j in range(0, real.shape[1] - TISSUE + 1, TISSUE)
        if glass[i : i + TISSUE, j : j + TISSUE].mean() <= TISSUE_GLASS
    ]
    if not spots:
        return float("nan")

    def share(image: np.ndarray) -> float:
        return float(np.mean([high_frequency_share(image[i : i + TISSUE, j : j + TISSUE]) for i, j in spots]))

    return share(rgb) / share(real)


def edge_acutance(rgb: np.ndarray, real: np.ndarray) -> float:
    """Mean luma gradient of ``rgb`` over that of ``real`` at ``real``'s strongest EDGE_FRACTION of edges:
    blur lowers it, while grain barely moves it there (it adds in quadrature to a strong edge)."""
    g_real = luma_gradient(real)
    edges = g_real >= np.quantile(g_real, 1 - EDGE_FRACTION)
    return float(luma_gradient(rgb)[edges].mean() / g_real[edges].mean())


def row(name: str, rgb: np.ndarray, real: np.ndarray | None = None) -> str:
    """A table row; with ``real`` (the image ``rgb`` reconstructs) also PSNR and sharpness ratios."""
    spread, windows = glass_spread(rgb)
    cells = f"| {name} | {spread:.2f} | {windows} | {blockiness(rgb):.3f} |"
    if real is None:
        return cells + " | | | |"
    sharp = high_frequency_share(rgb) / high_frequency_share(real)
    ratios = f"{sharp:.3f} | {tissue_sharpness(rgb, real):.3f} | {edge_acutance(rgb, real):.3f}"
    return cells + f" {psnr([real], [rgb]):.2f} | {ratios} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="PathUp model folder (its autoencoder reconstructs the real images)")
    parser.add_argument("images", nargs="+", help="real RGB fields")
    parser.add_argument("--synthetic", nargs="*", default=[], help="synthetic RGB images, as they are")
    args = parser.parse_args()
    model = load_model(args.model)  # float32 on the CPU
    print(
        "| image | glass luma spread (median) | glass windows | blockiness (8-px grid) | PSNR (dB) "
        "| sharpness / real | tissue sharpness / real | edge acutance / real |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for path in args.images:
        rgb = np.asarray(Image.open(path).convert("RGB"))
        rgb = rgb[: rgb.shape[0] // BLOCK * BLOCK, : rgb.shape[1] // BLOCK * BLOCK]
        with torch.no_grad():
            recon = reconstruct(model.autoencoder, [rgb], batch=1)[0]
        print(row(f"{Path(path).name}, real", rgb))
        print(row(f"{Path(path).name}, reconstruction", recon, rgb))
    for path in args.synthetic:
        print(row(f"{Path(path).name}, synthetic", np.asarray(Image.open(path).convert("RGB"))))


if __name__ == "__main__":
    main()
