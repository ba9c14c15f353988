"""Stain matching (Macenko et al., ISBI 2009) of the default model's syntheses to their references: measured,
not shipped (forty-eighth session, rule 97; docs/model_experiments.md).

Run: ``python scripts/experiments/stain_match.py [--model DIR] [--size 2048] [--seeds 0 1] [--threads 2]``.

``fit`` estimates an image's two stain vectors in optical density and the 99th percentiles of their
concentrations, as the reference implementation (``HEnorm_python``, as ``torchstain``'s numpy
``MacenkoNormalizer``: checked to agree within one grey level, where torchstain truncates and this
rounds); ``StainMatch`` is the per-pixel map (one 3x3 matrix in optical density) that draws a source
image in a target's stains, so a synthesis can be matched tile by tile as it is decoded.

For each class of the model and each seed, one synthesis from the class's own reference (the model's
defaults), then three versions of the output against the reference: as drawn; matched with the
output's stains estimated on its stage-1 result (what a streaming engine could do); and estimated on
the finished output (two passes). Each row gives the angle between the haematoxylin and eosin vectors
(degrees), the ratio of their 99th-percentile concentrations, and the mean H and E optical densities of
the tissue pixels by Ruifrok & Johnston's deconvolution (``metrics.stain``, a measure the match does not
fit to), and the seconds the map takes on the whole output. ``colour_fix.py`` scores the same matches
on the training areas (FD, sharpness, class fidelity, nucleus area).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import machine_info, markdown_table  # noqa: E402

#: transmitted light intensity: the brightness of glass, as in Macenko's reference implementation
LIGHT = 240.0
#: angular percentile of the extreme stain directions
ALPHA = 1.0
#: optical density under which a channel counts as background
BETA = 0.15
#: pixels sampled to fit an image (a 1024x1024 image's worth)
MAX_PIXELS = 1 << 20
#: fewest tissue pixels a fit accepts
MIN_TISSUE = 256


@dataclass(frozen=True)
class Stains:
    """An image's stain vectors (3x2, columns haematoxylin and eosin, unit length) and their strength."""

    vectors: np.ndarray
    max_concentrations: np.ndarray

    def __post_init__(self) -> None:
        if self.vectors.shape != (3, 2) or self.max_concentrations.shape != (2,):
            raise ValueError(
                f"stains: expected 3x2 vectors and 2 concentrations, got {self.vectors.shape} and "
                f"{self.max_concentrations.shape}"
            )


#: the optical density of each uint8 level (float64: fitting; a float32 copy: mapping pixels)
_DENSITY = -np.log((np.arange(256, dtype=np.float64) + 1.0) / LIGHT)
_DENSITY32 = _DENSITY.astype(np.float32)


def optical_density(rgb: np.ndarray) -> np.ndarray:
    """(N, 3) uint8 pixels → (N, 3) optical densities relative to ``LIGHT`` (float64)."""
    return _DENSITY[rgb]


def _sample(rgb: np.ndarray, max_pixels: int, name: str) -> np.ndarray:
    """At most about ``max_pixels`` pixels of ``rgb`` on a regular grid, as (N, 3)."""
    if rgb.ndim != 3 or rgb.shape[2] < 3 or rgb.dtype != np.uint8:
        raise ValueError(f"{name}: expected an (H, W, 3) uint8 RGB image, got {rgb.dtype} {rgb.shape}")
    step = max(1, int(np.ceil(np.sqrt(rgb.shape[0] * rgb.shape[1] / max_pixels))))
    return np.asarray(rgb[::step, ::step, :3]).reshape(-1, 3)


def fit(rgb: np.ndarray, *, max_pixels: int = MAX_PIXELS, name: str = "image") -> Stains:
    """The stain vectors and concentration percentiles of ``rgb`` (H, W, 3 uint8), on a regular sample."""
    density = optical_density(_sample(rgb, max_pixels, name))
    tissue = density[np.all(density >= BETA, axis=1)]
    if len(tissue) < MIN_TISSUE:
        raise ValueError(
            f"{name}: too little stained tissue to estimate its stains ({len(tissue)} pixels with an "
            f"optical density of at least {BETA} in every channel; at least {MIN_TISSUE} needed)"
        )
    _, eigenvectors = np.linalg.eigh(np.cov(tissue.T))
    plane = eigenvectors[:, 1:3]
    projected = tissue @ plane
    angle = np.arctan2(projected[:, 1], projected[:, 0])
    low, high = np.percentile(angle, [ALPHA, 100 - ALPHA])
    v_low = plane @ np.array([np.cos(low), np.sin(low)])
    v_high = plane @ np.array([np.cos(high), np.sin(high)])
    # haematoxylin absorbs red light more than eosin does: its vector has the larger red component
    vectors = np.stack([v_low, v_high] if v_low[0] > v_high[0] else [v_high, v_low], axis=1)
    concentrations = np.linalg.lstsq(vectors, density.T, rcond=None)[0]
    max_concentrations = np.percentile(concentrations, 99, axis=1)
    if not np.all(np.isfinite(vectors)) or not np.all(max_concentrations > 0):
        raise ValueError(f"{name}: its stains could not be estimated (no haematoxylin or eosin found)")
    return Stains(vectors, max_concentrations)


@dataclass(frozen=True)
class StainMatch:
    """The per-pixel map that draws ``source``'s pixels in ``target``'s stains (Macenko normalisation)."""

    source: Stains
    target: Stains

    @property
    def matrix(self) -> np.ndarray:
        """3x3: optical density in the source → optical density in the target's stains."""
        scale = np.diag(self.target.max_concentrations / self.source.max_concentrations)
        return self.target.vectors @ scale @ np.linalg.pinv(self.source.vectors)

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """(..., 3) uint8 pixels of the source → the same pixels in the target's stains (uint8)."""
        pixels = np.asarray(rgb)
        if pixels.dtype != np.uint8 or pixels.ndim < 1 or pixels.shape[-1] < 3:
            got = f"{pixels.dtype} {pixels.shape}"
            raise ValueError(f"stain matching: expected uint8 RGB pixels (..., 3), got {got}")
        density = _DENSITY32[pixels[..., :3]] @ self.matrix.T.astype(np.float32)
        out = np.exp(-density, out=density)
        out *= LIGHT
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def match(rgb: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``rgb`` drawn in ``target``'s stains (both (H, W, 3) uint8), fitted on both whole images."""
    return StainMatch(fit(rgb, name="image"), fit(target, name="target"))(rgb)


def angle(a: np.ndarray, b: np.ndarray) -> float:
    cos = float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
    return float(np.degrees(np.arccos(min(1.0, cos))))


def ruifrok_means(image: np.ndarray) -> np.ndarray:
    """Mean H and E optical density of the tissue pixels (the benchmark's independent measure)."""
    from napari_pathup.metrics.stain import rgb_to_hed, tissue_pixels

    return rgb_to_hed(tissue_pixels(image))[:, :2].mean(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="model folder (default: the embedded model)")
    parser.add_argument("--size", type=int, default=2048, help="output side in pixels")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args()

    import torch

    from napari_pathup.engine.device import select_dtype
    from napari_pathup.engine.pipeline import SynthesisSettings, run
    from napari_pathup.io import read_image
    from napari_pathup.models.default import default_model_path, reference_for_class
    from napari_pathup.models.load import load_model

    torch.set_num_threads(args.threads)
    folder = args.model or default_model_path()
    model = load_model(folder).to("cpu", select_dtype("auto", torch.device("cpu")))
    print(machine_info())
    print(
        f"model {folder}, {args.size}x{args.size}, seeds {args.seeds}, {args.threads} threads, "
        f"{model.dtype}\n"
    )
    rows = []
    for class_name in model.classes:
        for seed in args.seeds:
            reference = read_image(reference_for_class(model, class_name, seed))
            target = fit(reference)
            settings = SynthesisSettings(class_name, height=args.size, width=args.size, seed=seed)
            result = run(model, reference, settings)
            start = time.perf_counter()
            engine = StainMatch(fit(result.reference), target)(result.image)
            seconds = time.perf_counter() - start
            whole = StainMatch(fit(result.image), target)(result.image)
            wanted = ruifrok_means(reference)
            for name, image in (
                ("as drawn", result.image),
                ("fitted on stage 1", engine),
                ("fitted on the output", whole),
            ):
                got = fit(image)
                h, e = (angle(got.vectors[:, k], target.vectors[:, k]) for k in range(2))
                ch, ce = got.max_concentrations / target.max_concentrations
                rh, re = ruifrok_means(image) / wanted
                rows.append(
                    [
                        class_name,
                        seed,
                        name,
                        f"{h:.1f} / {e:.1f}",
                        f"{ch:.2f} / {ce:.2f}",
                        f"{rh:.2f} / {re:.2f}",
                        f"{seconds:.2f}" if name == "fitted on stage 1" else "",
                    ]
                )
            print(f"  {class_name} seed {seed} done", file=sys.stderr)
    print(
        markdown_table(
            [
                "class",
                "seed",
                "output",
                "H / E angle to the reference (deg)",
                "H / E 99th-pct concentration / reference",
                "H / E mean OD (Ruifrok) / reference",
                "map s",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
