"""Quality bars of a trained PathUp model, measured on the held-out regions of its training data, and
optionally the same measurements on a second model (``--baseline``) for a before/after table.

Run: ``python benchmarks/bench_default_model.py MODEL_DIR [--baseline OTHER_MODEL_DIR] [--data data/demo]
[--out docs/img] [--quick] [--sweep]``. Prints markdown tables and writes them as JSON beside a contact
sheet PNG in ``--out`` (``default_model_quality.json``, ``default_model_contact_sheet.png``; ``--quick``
adds ``_quick`` to both names).

1. Autoencoder: decode(encode(x)) of held-out 256x256 crops against the crops: PSNR (bar >= 25 dB),
   sharpness ratio (bar 0.8-1.25) and the ratios of the mean haematoxylin (H) and eosin (E) optical
   densities (bar: within 10 %).
2. Fréchet distance in EfficientNet-Lite0 features to real held-out crops, per class, beside
   colour-matched Gaussian noise, stage 1 alone upsampled bicubically to the output size, the
   real-vs-real floor, real crops of the training areas and half B's own reconstructions (what the
   autoencoder alone costs). The real crops (a ``--stride`` grid) are split in a checkerboard into halves
   A and B; every set is compared with A at the size of B (mean over ``--draws`` subsets). Bar:
   PathUp's FD <= 2.5x the floor.
3. Class fidelity: a logistic regression on features of real crops of the training areas (outside
   the hold-outs), applied to synthetic crops (bar: accuracy >= 0.8).
4. Realism without a feature network: sharpness ratio of synthetic over real held-out crops of the
   class (bar 0.8-1.25), and nucleus morphology: the median area and solidity of the haematoxylin-dense
   components of each crop (``napari_pathup.metrics.nuclei``; one threshold per class, Otsu's on the
   real held-out crops' haematoxylin density, used for every set); bar: the median over synthetic crops
   lies inside the range the real crops of the class span.
5. Seams: ``seam_measure`` of every synthetic output at the default settings (bar: <= 1.05); with
   ``--sweep`` also an overlap sweep (0 to 3/4 of the patch, without and with jitter, one seed).
6. Stain colour: haematoxylin and eosin optical densities (colour deconvolution as skimage's ``rgb2hed``).
7. Speed: the last synthesis of each model (warm; default settings) with ``--speed-threads`` threads.
A summary table with every bar ends the output; with ``--baseline`` it has a column per model.

Sharpness: ``napari_pathup.metrics.sharpness.high_frequency_share``, the share of the luma's spectral
power (Hann-windowed, mean removed) above a quarter of the Nyquist frequency; a ratio is the mean share
of one set over that of the other (1: as sharp; a blurry decoder scores below 0.8).

Defaults (a full measurement): ``--images 3`` syntheses of ``--size 2048`` per class (seeds 0, 1, 2),
cut into non-overlapping 256-px tiles (``--synthetic-stride 256``); ``--train-crops 200`` probe crops
per class; no overlap sweep. ``--quick`` (a meaningful before/after in about a third of the time):
one 2048x2048 synthesis per class (seed 0; its 64 tiles still outnumber real half B, so every Fréchet
distance is taken at the same sample count), 100 probe crops per class. Any option given explicitly
overrides these (``--synthetic-stride 128`` cuts overlapping crops, as the real crops are cut).
``--first-seed S`` draws seeds S, S+1, ... instead: the same command with another first seed says how
far a figure moves with the draw alone, before reading a difference between two models.

``--baseline`` measures a second model on the same real crops, features, probe, nucleus thresholds,
references, seeds and settings, and adds its columns to the summary and its crops to the contact sheet.

Synthetic images start from the reference images shipped in MODEL_DIR (``pathup.json`` "references",
cut from training areas), else from ``--reference-dir/<class>.png``, else from the window with the most
tissue in each class's training areas of ``--data`` (as training picks them); with ``--references
per-image``, from one such window per training image of the class, seed s from window s mod their
number (as augmentation starts from many real RoIs). The baseline model starts from the same references.
Everything else uses ``--threads`` torch threads (default 1). The feature network of the Fréchet
distance and the probe is EfficientNet-Lite0 (printed with every table); no training loss of the
shipped model may use it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_info, markdown_table
from _quality import (
    Morphology,
    RealCrops,
    TimedRun,
    colour_noise,
    contact_sheet,
    edge_values,
    grid_tiles,
    hed_stats,
    holdout_crops,
    linear_probe,
    matched_fd,
    psnr,
    reconstruct,
    sharpness_values,
    timed_run,
    tissue_selection,
    training_crops,
    upsample,
    with_tissue,
)
from napari_pathup.datasets import DatasetIndex, discover
from napari_pathup.engine.device import select_dtype
from napari_pathup.engine.pipeline import SynthesisSettings
from napari_pathup.engine.plan import DTYPE_CHOICES
from napari_pathup.engine.seams import seam_measure
from napari_pathup.io.images import read_image
from napari_pathup.metrics import FeatureExtractor, extract_features, get_extractor
from napari_pathup.metrics.nuclei import haematoxylin_threshold
from napari_pathup.models.base import PathupModel
from napari_pathup.models.default import class_references
from napari_pathup.models.load import load_model
from napari_pathup.training.data import TrainingImages, load_images
from napari_pathup.training.export import choose_references, image_references

CROP = 256
MIN_TISSUE = 0.5  # as training: real crops hold at least half tissue


@dataclass(frozen=True)
class Bars:
    """The issue's bars, each named once."""

    psnr: float = 25.0  # autoencoder PSNR (dB), at least
    accuracy: float = 0.8  # linear-probe class fidelity, at least
    seam: float = 1.05  # seam measure, at most
    fd_ratio: float = 2.5  # FD / real-vs-real floor, at most
    sharpness: tuple[float, float] = (0.8, 1.25)  # ratio to real, inside
    stain: float = 0.10  # H and E optical density off real, at most


BARS = Bars()
OVERLAPS: tuple[tuple[str, float], ...] = (
    ("0", 0),
    ("1/8", 1 / 8),
    ("1/4", 1 / 4),
    ("1/2", 1 / 2),
    ("3/4", 3 / 4),
)
KINDS: tuple[str, ...] = ("PathUp", "stage-1 upsampled", "colour noise")
SETTING_KEYS = (
    "steps",
    "strength",
    "upscale_strength",
    "guidance",
    "guidance_interval",
    "scheduler",
    "weights",
    "patch_size",
    "overlap",
    "jitter",
)
SWEEP_COLUMNS = (
    "overlap (latent px)",
    "jitter",
    "seam measure",
    "stage-2 patch evaluations",
    "all patch evaluations",
    "wall time (s)",
)
SHEET_CROPS = 4  # crops per class and set on the contact sheet


@dataclass
class Shared:
    """What every model is measured against: the data, real crops and their features, the references,
    the class probe, the nucleus thresholds (computed once, so that two models meet the same yardstick)."""

    args: argparse.Namespace
    index: DatasetIndex
    arrays: list[np.ndarray]
    extractor: FeatureExtractor
    real: RealCrops
    real_feats: np.ndarray = field(default_factory=lambda: np.zeros(0))
    references: dict[str, list[np.ndarray]] = field(default_factory=dict)  # seed s uses [s % len]
    reference_note: str = ""
    probe: tuple[str, Callable[[np.ndarray], np.ndarray], np.ndarray] | None = None
    train_crops: list[np.ndarray] = field(default_factory=list)  # the probe's crops (training areas)
    train_sources: list[str] = field(default_factory=list)  # their images' keys
    train_feats: np.ndarray = field(default_factory=lambda: np.zeros(0))  # and their features
    thresholds: dict[str, float] = field(default_factory=dict)  # class → haematoxylin density
    real_sharpness: np.ndarray = field(default_factory=lambda: np.zeros(0))  # per real crop
    real_edges: np.ndarray = field(default_factory=lambda: np.zeros(0))  # per real crop (edge_contrast)
    real_morphology: dict[str, Morphology] = field(default_factory=dict)

    @property
    def classes(self) -> list[str]:
        return list(self.index.classes)  # data order: the crop labels index it

    def features(self, crops: list[np.ndarray]) -> np.ndarray:
        return extract_features(self.extractor, crops, batch_size=16) if crops else np.zeros((0, 1280))

    def real_of(self, label: int, half: int | None = None) -> list[np.ndarray]:
        return [self.real.images[i] for i in self.real.of(label, half)]


@dataclass
class Bench:
    """One model's measurement: the model, its reconstructions, syntheses and compared crop sets."""

    shared: Shared
    label: str  # "model" or "baseline"
    model: PathupModel
    recon: list[np.ndarray] = field(default_factory=list)
    runs: dict[str, list[TimedRun]] = field(default_factory=dict)
    crops: dict[str, dict[str, list[np.ndarray]]] = field(default_factory=dict)  # class → kind → crops
    feats: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    tissue: dict[str, float] = field(default_factory=dict)  # class → share of synthetic tiles kept
    image_of: dict[str, np.ndarray] = field(default_factory=dict)  # class → the image of each PathUp crop
    speed_load: tuple[float, float] = (0.0, 0.0)
    references: dict[str, list[np.ndarray]] = field(default_factory=dict)  # seed s uses [s % len]
    reference_note: str = ""

    def __post_init__(self) -> None:
        if self.args.references == "own":  # each model from its own references
            self.references, self.reference_note = references_for(self.shared, self.model)
        else:  # the same references for every model, so that only the networks differ
            self.references, self.reference_note = self.shared.references, self.shared.reference_note

    @property
    def args(self) -> argparse.Namespace:
        return self.shared.args

    @property
    def classes(self) -> list[str]:
        """The classes synthesised and measured: ``--classes``, in the data's order, else every class."""
        chosen = self.args.classes
        return [c for c in self.shared.classes if not chosen or c in chosen]

    def label_of(self, name: str) -> int:
        """The data's label of class ``name`` (the real crops, the probe and the seeds of the draws use
        it, so that a class measured alone scores as it does beside the others)."""
        return self.shared.classes.index(name)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("model", type=Path, help="PathUp model folder")
    p.add_argument(
        "--baseline", type=Path, help="a second model folder, measured the same way (before/after)"
    )
    p.add_argument("--data", type=Path, default=Path("data/demo"), help="training data with holdout.json")
    p.add_argument("--out", type=Path, default=Path("docs/img"), help="folder for the PNG and the JSON")
    p.add_argument("--quick", action="store_true", help="one 2048 image per class, 100 probe crops per class")
    p.add_argument("--reference-dir", type=Path, help="<class>.png references (when the model has none)")
    p.add_argument(
        "--references",
        choices=("shipped", "own", "per-image"),
        default="shipped",
        help="shipped: the model's references for both models (default; of several, seed s from reference "
        "s mod their number); own: each model its own shipped references (a change of references, "
        "measured before/after); per-image: one reference per training image of the class (its window "
        "with the most tissue, never from a hold-out), seed s of a class from reference s mod their "
        "number, as augmentation draws them from real RoIs",
    )
    p.add_argument(
        "--classes",
        nargs="+",
        metavar="CLASS",
        help="synthesise and measure only these classes (default: every class): each scores as it does "
        "beside the others (same crops, seeds and draws); the 'all' rows then pool only these classes, and "
        "the autoencoder's figures stay over every class",
    )
    p.add_argument("--images", type=int, help="synthetic images per class (default 3; --quick 1)")
    p.add_argument(
        "--first-seed",
        type=int,
        default=0,
        help="seed of each class's first image (the others count on): another seed draws other images "
        "from the same model, references and crops, to see how much a figure moves with the draw alone",
    )
    p.add_argument("--size", type=int, help="output side in pixels (default 2048)")
    p.add_argument("--synthetic-stride", type=int, default=CROP, help="grid of the synthetic crops")
    p.add_argument("--sweep", action="store_true", help="also run the overlap sweep (slow)")
    p.add_argument("--sweep-size", type=int, default=2048, help="output side of the overlap sweep")
    p.add_argument("--stride", type=int, default=128, help="grid stride of the real 256-px crops")
    p.add_argument("--train-crops", type=int, help="training-area crops per class (200; --quick 100)")
    p.add_argument("--draws", type=int, default=5, help="random subsets averaged per Fréchet distance")
    p.add_argument("--threads", type=int, default=1, help="torch threads (all but the speed run)")
    p.add_argument("--speed-threads", type=int, default=2, help="torch threads of the speed run")
    p.add_argument(
        "--dtype",
        default="auto",
        choices=DTYPE_CHOICES,
        help="the models' dtype, as `pathup synthesize --dtype` (auto: bfloat16 on a CPU that computes it)",
    )
    args = p.parse_args(argv)
    args.images = args.images or (1 if args.quick else 3)
    args.size = args.size or 2048
    args.train_crops = args.train_crops or (100 if args.quick else 200)
    if args.first_seed < 0:
        p.error(f"--first-seed must be 0 or more, got {args.first_seed}")
    for name in ("images", "size", "synthetic_stride", "sweep_size", "stride", "train_crops", "draws"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be a positive number, got {getattr(args, name)}")
    if args.size < CROP:
        p.error(f"--size must be at least the {CROP}-px crop, got {args.size}")
    return args


def fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def verdict(ok: bool) -> str:
    return "pass" if ok else "**fail**"


def within(value: float, low: float, high: float) -> bool:
    return not math.isnan(value) and low <= value <= high


def section(title: str, *parts: str) -> None:
    print(f"\n## {title}\n")
    print("\n\n".join(parts))


def ratio(a: float, b: float) -> float:
    return a / b if b else math.nan


def references_for(shared: Shared, model: PathupModel) -> tuple[dict[str, list[np.ndarray]], str]:
    classes = shared.classes
    shipped = model.metadata.get("references") or {}
    if shared.args.references == "per-image":
        refs: dict[str, list[np.ndarray]] = {c: [] for c in classes}
        for entry, window in image_references(shared.index, shared.arrays):
            refs[entry.class_name].append(window)
        sizes = "; ".join(
            f"{c}: " + ", ".join(f"{r.shape[1]}x{r.shape[0]}" for r in refs[c]) for c in classes
        )
        return refs, (
            "one reference per training image of each class (its window of at most 1024x1024 with the most "
            f"tissue in its training areas, never from a hold-out; {sizes}), seed s from reference s mod "
            "their number"
        )
    if all(c in shipped for c in classes):
        refs = {c: [read_image(path) for path in class_references(model, c)] for c in classes}
        several = [f"{c} {len(refs[c])}" for c in classes if len(refs[c]) > 1]
        return (
            refs,
            f"the shipped references of {model.path} (pathup.json 'references', cut from training areas"
            + (f"; {', '.join(several)}, seed s from reference s mod their number" if several else "")
            + ")",
        )
    if shared.args.reference_dir is not None:
        folder = shared.args.reference_dir
        return {c: [read_image(folder / f"{c}.png")] for c in classes}, f"{folder}/<class>.png"
    data = TrainingImages(shared.index, shared.arrays, [], CROP, MIN_TISSUE)
    return {c: [r] for c, r in choose_references(data).items()}, (
        f"the window with the most tissue in each class's training areas of {shared.index.root} (the "
        "model ships no references; picked as training picks them, never from a hold-out)"
    )


# ---------------------------------------------------------------------------------------- sections


def autoencoder(bench: Bench) -> dict[str, Any]:
    shared = bench.shared
    bench.recon = reconstruct(bench.model.autoencoder, shared.real.images)
    low, high = BARS.sharpness
    rows: list[list[Any]] = []
    out: dict[str, dict[str, float]] = {}
    groups = [(name, shared.real.of(c)) for c, name in enumerate(shared.classes)]
    groups.append(("all", list(range(len(shared.real.images)))))
    for name, ids in groups:
        if not ids:
            out[name] = {"crops": 0}
            rows.append([name, 0, *["n/a"] * 7])
            continue
        real = [shared.real.images[i] for i in ids]
        recon = [bench.recon[i] for i in ids]
        real_stain, recon_stain = hed_stats(real), hed_stats(recon)
        entry = {
            "crops": len(ids),
            "psnr_db": psnr(real, recon),
            "sharpness_ratio": ratio(
                float(np.mean(sharpness_values(recon))), float(shared.real_sharpness[ids].mean())
            ),
            "h_ratio": ratio(recon_stain["H mean"], real_stain["H mean"]),
            "e_ratio": ratio(recon_stain["E mean"], real_stain["E mean"]),
        }
        out[name] = entry
        stain_ok = all(abs(entry[k] - 1) <= BARS.stain for k in ("h_ratio", "e_ratio"))
        rows.append(
            [
                "**all**" if name == "all" else name,
                len(ids),
                fmt(entry["psnr_db"]),
                verdict(entry["psnr_db"] >= BARS.psnr),
                fmt(entry["sharpness_ratio"]),
                verdict(within(entry["sharpness_ratio"], low, high)),
                fmt(entry["h_ratio"]),
                fmt(entry["e_ratio"]),
                verdict(stain_ok),
            ]
        )
    header = [
        "class",
        "crops",
        "PSNR (dB)",
        f">= {BARS.psnr:.0f} dB",
        "sharpness ratio",
        f"{low}-{high}",
        "H ratio",
        "E ratio",
        f"H, E within {BARS.stain:.0%}",
    ]
    section(
        f"1. Autoencoder reconstruction (held-out crops) — {bench.label}",
        "decode(encode(crop)) against the crop. Sharpness ratio: mean high-frequency power share (above "
        "1/4 Nyquist) of the reconstructions over that of the real crops. H, E ratio: mean haematoxylin "
        "and eosin optical densities of the reconstructions over those of the real crops.",
        markdown_table(header, rows),
    )
    return out


def synthesize_all(bench: Bench) -> dict[str, Any]:
    """``--images`` outputs per class (seeds ``--first-seed``, and on) at the default settings; the last is
    the speed run."""
    args, classes, shared = bench.args, bench.classes, bench.shared
    print(
        f"\nSynthesis ({bench.label}): {args.images} image(s) of {args.size}x{args.size} per class "
        f"(seeds {args.first_seed}-{args.first_seed + args.images - 1}), default settings, from "
        f"{bench.reference_note}."
    )
    for name in classes:
        bench.runs[name] = []
        for k in range(args.images):
            seed = args.first_seed + k
            speed_run = name == classes[-1] and k == args.images - 1
            torch.set_num_threads(args.speed_threads if speed_run else args.threads)
            load = os.getloadavg()[0]
            settings = SynthesisSettings(name, height=args.size, width=args.size, seed=seed)
            references = bench.references[name]
            bench.runs[name].append(timed_run(bench.model, references[seed % len(references)], settings))
            if speed_run:
                bench.speed_load = (load, os.getloadavg()[0])
            print(f"  {name} seed {seed}: {bench.runs[name][-1].seconds['total']:.1f} s", file=sys.stderr)
    torch.set_num_threads(args.threads)
    per_class = {name: {k: bench.runs[name][0].settings[k] for k in SETTING_KEYS} for name in classes}
    resolved = per_class[classes[0]]
    differing = {name: s for name, s in per_class.items() if s != resolved}  # pathup.json "class_defaults"
    print(f"Resolved default settings: {resolved}")
    for name, s in differing.items():
        print(f"  for {name}: {s}")

    stride = args.synthetic_stride
    for name in classes:
        c = bench.label_of(name)
        grids = [grid_tiles(r.image, CROP, stride) for r in bench.runs[name]]
        tiles = [t for grid in grids for t in grid]
        kept, bench.tissue[name] = tissue_selection(tiles, MIN_TISSUE)
        synthetic = [tiles[i] for i in kept]
        bench.image_of[name] = np.repeat(np.arange(len(grids)), [len(g) for g in grids])[kept]
        upsampled = [upsample(r.stage_one, args.size, args.size) for r in bench.runs[name]]
        upsampled, _ = with_tissue([t for u in upsampled for t in grid_tiles(u, CROP, stride)], MIN_TISSUE)
        real = shared.real_of(c)
        noise = colour_noise(real, max(16, len(shared.real.of(c, 1))), CROP, seed=c) if real else []
        bench.crops[name] = dict(zip(KINDS, (synthetic, upsampled, noise), strict=True))
        bench.feats[name] = {k: shared.features(v) for k, v in bench.crops[name].items()}
    return {
        "images_per_class": args.images,
        "size": args.size,
        "synthetic_stride": stride,
        "references": bench.reference_note,
        "settings": resolved,
        **({"class_settings": per_class} if differing else {}),
    }


def frechet(bench: Bench) -> dict[str, Any]:
    args, shared = bench.args, bench.shared
    real, feats = shared.real, shared.real_feats
    _, _, train_y = probe_of(shared)  # its crops of the training areas are a real set as well
    labels = [bench.label_of(name) for name in bench.classes]
    trained = [shared.train_feats[train_y == c] for c in labels]
    rows, out = [], {}

    # half B decoded from its own latents: what a denoiser that drew real latents exactly would score
    # through this autoencoder, so that the gap above the floor splits into the decoder's and the rest
    recon_feats = shared.features(bench.recon) if bench.recon else None

    def add(name: str, values: dict[str, float], n_a: int, n_b: int, tissue: str) -> None:
        out[name] = {"n_A": n_a, "n_B": n_b, **values}
        for k in ("PathUp", "real training areas", "reconstruction B"):
            out[name][f"{k} / floor"] = ratio(values[k], values["real B (floor)"])
        rows.append(
            [
                name if name != "all" else "**all**",
                n_a,
                n_b,
                *(fmt(v, 1) for v in values.values()),
                fmt(out[name]["PathUp / floor"]),
                verdict(out[name]["PathUp / floor"] <= BARS.fd_ratio),
                fmt(out[name]["real training areas / floor"]),
                fmt(out[name]["reconstruction B / floor"]),
                tissue,
            ]
        )

    for k_class, (c, name) in enumerate(zip(labels, bench.classes, strict=True)):
        a, b = real.of(c, 0), real.of(c, 1)
        values = {"real B (floor)": matched_fd(feats[a], [feats[b]], [len(b)], 1, 0)}
        values |= {k: matched_fd(feats[a], [bench.feats[name][k]], [len(b)], args.draws, c) for k in KINDS}
        values["real training areas"] = matched_fd(feats[a], [trained[k_class]], [len(b)], args.draws, c)
        values["reconstruction B"] = (
            matched_fd(feats[a], [recon_feats[b]], [len(b)], 1, 0) if recon_feats is not None else math.nan
        )
        add(name, values, len(a), len(b), f"{bench.tissue[name]:.0%}")
    measured = np.isin(real.labels, labels)  # every crop when every class is measured
    a, b = feats[measured & (real.half == 0)], feats[measured & (real.half == 1)]
    sizes = [len(real.of(c, 1)) for c in labels]
    values = {"real B (floor)": matched_fd(a, [b], [len(b)], 1, 0)}
    values |= {
        k: matched_fd(a, [bench.feats[n][k] for n in bench.classes], sizes, args.draws, 99) for k in KINDS
    }
    values["real training areas"] = matched_fd(a, trained, sizes, args.draws, 99)
    values["reconstruction B"] = (
        matched_fd(a, [recon_feats[measured & (real.half == 1)]], [len(b)], 1, 0)
        if recon_feats is not None
        else math.nan
    )
    add("all", values, len(a), len(b), "")
    stage_one = bench.runs[bench.classes[0]][0].stage_one.shape[0]
    label = shared.extractor.metric_label("FD")
    section(
        f"2. {label} to real held-out crops (lower is better) — {bench.label}",
        f"Feature network: {shared.extractor.label}. Reference: real held-out half A (n_A crops). Every "
        f"column is a set of n_B crops (the mean over {args.draws} random subsets when larger): real half B "
        f"(the floor, what real tissue scores), PathUp ({args.size}x{args.size} outputs cut into {CROP}-px "
        f"crops on a {args.synthetic_stride}-px grid), stage 1 alone (its {stage_one}-px result upsampled "
        f"bicubically to {args.size}), Gaussian noise with the class's mean colour and RGB covariance, "
        "real crops of the same slides' training areas (the class probe's crops: what a model that "
        "reproduced its training tissue exactly would score), and half B's own reconstructions "
        "(decode(encode(crop)): what a denoiser that drew real latents exactly would score through this "
        "autoencoder). The "
        f"halves interleave as a checkerboard of the {args.stride}-px crop grid, so neighbouring A and B "
        "crops overlap and the floor is optimistic. With far fewer crops than the 1280 feature dimensions "
        "the values are noisy and biased upwards: compare columns within a row, never with published FIDs. "
        f"Bar: PathUp / floor <= {BARS.fd_ratio}. 'tissue': share of PathUp crops with >= "
        f"{MIN_TISSUE:.0%} tissue (only those are compared).",
        markdown_table(
            [
                "class",
                "n_A",
                "n_B",
                "real B (floor)",
                "PathUp",
                "stage 1 upsampled",
                "colour noise",
                "real training areas",
                "reconstruction B",
                "PathUp / floor",
                f"<= {BARS.fd_ratio}",
                "training areas / floor",
                "reconstruction B / floor",
                "tissue",
            ],
            rows,
        ),
    )
    return {"label": label, "extractor": shared.extractor.label, "per_class": out}


def probe_of(shared: Shared) -> tuple[str, Callable[[np.ndarray], np.ndarray], np.ndarray]:
    """The class probe (trained once, then shared by every model measured)."""
    if shared.probe is None:
        args = shared.args
        train_x, train_y, shared.train_sources = training_crops(
            shared.index, shared.arrays, CROP, args.stride, MIN_TISSUE, args.train_crops
        )
        shared.train_crops = train_x
        shared.train_feats = shared.features(train_x)
        description, predict = linear_probe(shared.train_feats, train_y)
        shared.probe = (description, predict, train_y)
    return shared.probe


def class_fidelity(bench: Bench) -> dict[str, Any]:
    args, classes, shared = bench.args, bench.classes, bench.shared
    probe, predict, train_y = probe_of(shared)
    columns = ("real held-out", *KINDS)
    accuracy: dict[str, dict[str, float]] = {}
    counts: dict[str, list[int]] = {k: [] for k in columns}
    confusion: dict[str, dict[str, int]] = {}  # class asked for → class the probe sees in PathUp crops
    rows = []
    for name in classes:
        c = bench.label_of(name)
        sets = {"real held-out": shared.real_feats[shared.real.of(c)], **bench.feats[name]}
        predicted = {k: predict(v) if len(v) else np.zeros(0, int) for k, v in sets.items()}
        accuracy[name] = {k: float(np.mean(v == c)) if len(v) else math.nan for k, v in predicted.items()}
        confusion[name] = {n: int((predicted["PathUp"] == j).sum()) for j, n in enumerate(shared.classes)}
        for k in columns:
            counts[k].append(len(sets[k]))
        seen = ", ".join(f"{n} {v}" for n, v in confusion[name].items())
        rows.append([name, int((train_y == c).sum()), *(fmt(accuracy[name][k]) for k in columns), seen])
    accuracy["all"] = {
        k: float(np.average([accuracy[n][k] for n in classes], weights=counts[k])) for k in columns
    }
    rows.append(["**all**", len(train_y), *(fmt(accuracy["all"][k]) for k in columns), ""])
    section(
        f"3. Class fidelity (linear probe on {shared.extractor.label} features) — {bench.label}",
        f"Probe: {probe}, trained on {len(train_y)} real {CROP}-px crops of the training areas (outside "
        f"the hold-outs; {args.stride}-px grid, at most {args.train_crops} per class). Accuracy: the share "
        f"of crops assigned to the class they were made for. Bar: PathUp >= {BARS.accuracy}: "
        f"{verdict(accuracy['all']['PathUp'] >= BARS.accuracy)}. A class that also takes the noise "
        "crops is the probe's default guess, so its accuracy alone says little.",
        markdown_table(["class", "training crops", *columns, "PathUp crops assigned to"], rows),
    )
    return {"probe": probe, "training_crops": len(train_y), "accuracy": accuracy, "confusion": confusion}


def prepare_realism(shared: Shared) -> None:
    """Per class: the nucleus threshold and the real crops' morphology; the real crops' sharpness."""
    shared.real_sharpness = sharpness_values(shared.real.images)
    shared.real_edges = edge_values(shared.real.images)
    for c, name in enumerate(shared.classes):
        real = shared.real_of(c)
        if real:
            shared.thresholds[name] = haematoxylin_threshold(real)
            shared.real_morphology[name] = Morphology.of(real, shared.thresholds[name])


def slide_sharpness(shared: Shared) -> dict[str, dict[str, dict[str, Any]]]:
    """Per class and slide: the sharpness of its held-out and training-area crops over the class's
    held-out mean (printed once: it does not depend on the model). A class's held-out crops can mix
    slides of very different sharpness, and a synthesis follows the slide of its reference."""
    _, _, train_y = probe_of(shared)
    train_sharpness = sharpness_values(shared.train_crops)
    rows: list[list[Any]] = []
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for c, name in enumerate(shared.classes):
        held = shared.real.of(c)
        if not held:
            continue
        mean = float(shared.real_sharpness[held].mean())
        trained = np.flatnonzero(train_y == c)
        slides = sorted({shared.real.sources[i] for i in held} | {shared.train_sources[i] for i in trained})
        out[name] = {}
        for slide in slides:
            h = [i for i in held if shared.real.sources[i] == slide]
            t = [int(i) for i in trained if shared.train_sources[i] == slide]
            entry = {
                "held_out_crops": len(h),
                "held_out_ratio": ratio(float(shared.real_sharpness[h].mean()), mean) if h else math.nan,
                "training_crops": len(t),
                "training_ratio": ratio(float(train_sharpness[t].mean()), mean) if t else math.nan,
            }
            out[name][slide] = entry
            rows.append(
                [
                    name,
                    slide,
                    entry["held_out_crops"],
                    fmt(entry["held_out_ratio"]),
                    entry["training_crops"],
                    fmt(entry["training_ratio"]),
                ]
            )
    section(
        "0. Sharpness of the real slides (no model)",
        "Per slide, the mean sharpness of its held-out crops and of its training-area crops (the class "
        "probe's), each over the mean of all held-out crops of the class: the yardstick of the "
        "sharpness bar. A synthesis draws the tissue of its reference's slide.",
        markdown_table(
            ["class", "slide", "held-out crops", "held-out / class", "training crops", "training / class"],
            rows,
        ),
    )
    return out


def span(values: np.ndarray) -> tuple[float, float]:
    return (float(values.min()), float(values.max())) if len(values) else (math.nan, math.nan)


def control_sets(bench: Bench, c: int, name: str) -> dict[str, list[np.ndarray]]:
    """Real tissue measured like the synthetic crops, as yardsticks for them (no bar): the class
    probe's crops of the training areas (what a model that reproduced its training tissue exactly
    would score) and the class's references cut into 1:1 tiles (what the synthesis starts from)."""
    shared = bench.shared
    _, _, train_y = probe_of(shared)
    trained = [shared.train_crops[i] for i in np.flatnonzero(train_y == c)]
    tiles = [t for ref in bench.references.get(name, []) for t in grid_tiles(ref, CROP)]
    return {"real training areas": trained, "reference, 1:1 tiles": with_tissue(tiles, MIN_TISSUE)[0]}


def span_text(values: list[float], digits: int) -> str:
    return f"{min(values):.{digits}f}-{max(values):.{digits}f}" if values else ""


def realism(bench: Bench) -> dict[str, Any]:
    """Sharpness and nucleus morphology of the synthetic crops against the real held-out crops."""
    shared = bench.shared
    low, high = BARS.sharpness
    sharp_rows: list[list[Any]] = []
    morph_rows: list[list[Any]] = []
    out: dict[str, Any] = {}
    for name in bench.classes:
        c = bench.label_of(name)
        sets = {
            "PathUp": bench.crops[name]["PathUp"],
            "stage-1 upsampled": bench.crops[name]["stage-1 upsampled"],
        }
        ids = shared.real.of(c)
        sets |= control_sets(bench, c, name)
        if bench.recon:  # what the decoder alone makes of the held-out crops' nuclei
            sets["reconstruction"] = [bench.recon[i] for i in ids]
        if not ids or name not in shared.thresholds:
            out[name] = {}
            continue
        real_share = float(shared.real_sharpness[ids].mean())
        real_edges = float(shared.real_edges[ids].mean())
        real_m = shared.real_morphology[name]
        entry: dict[str, Any] = {
            "threshold_h": shared.thresholds[name],
            "real": {
                "sharpness": real_share,
                "edge_contrast": real_edges,
                "components_per_crop": span(real_m.count),
                "median_area_px": span(real_m.area),
                "median_solidity": span(real_m.solidity),
                "crops_with_components": len(real_m.area),
            },
        }
        morph_rows.append(
            [
                name,
                "real held-out (range over crops)",
                len(ids),
                "{:.0f}-{:.0f}".format(*span(real_m.count)),
                "{:.0f}-{:.0f}".format(*span(real_m.area)),
                "{:.2f}-{:.2f}".format(*span(real_m.solidity)),
                "",
                "",
            ]
        )
        for kind, crops in sets.items():
            if not crops:
                continue
            shares, edges = sharpness_values(crops), edge_values(crops)
            if kind == "PathUp":  # pooled in image order; each image's crops on their own too: how much
                # one image moves a figure shows how far a reading of a few images can be trusted
                images = [np.flatnonzero(bench.image_of[name] == i) for i in np.unique(bench.image_of[name])]
                parts = [Morphology.of([crops[j] for j in i], shared.thresholds[name]) for i in images]
                m = Morphology.joined(parts)
            else:
                m = Morphology.of(crops, shared.thresholds[name])
            area, solidity = m.median_area, m.median_solidity
            area_ok = within(area, *entry["real"]["median_area_px"])
            solidity_ok = within(solidity, *entry["real"]["median_solidity"])
            entry[kind] = {
                "crops": len(crops),
                "sharpness": float(shares.mean()),
                "sharpness_ratio": ratio(float(shares.mean()), real_share),
                "edge_contrast": float(edges.mean()),
                "edge_ratio": ratio(float(edges.mean()), real_edges),
                "components_per_crop": float(np.median(m.count)),
                "median_area_px": area,
                "median_solidity": solidity,
                "area_in_real_range": area_ok,
                "solidity_in_real_range": solidity_ok,
                # crops without components count as outside
                "crops_in_real_range": sum(
                    within(a, *entry["real"]["median_area_px"])
                    and within(s, *entry["real"]["median_solidity"])
                    for a, s in zip(m.area, m.solidity, strict=True)
                )
                / max(len(crops), 1),
            }
            if kind == "PathUp":
                entry[kind]["sharpness_ratio_per_image"] = [
                    ratio(float(shares[i].mean()), real_share) for i in images
                ]
                entry[kind]["median_area_px_per_image"] = [p.median_area for p in parts]
            e = entry[kind]
            sharp_rows.append(
                [
                    name,
                    kind,
                    len(crops),
                    fmt(e["sharpness"], 3),
                    fmt(real_share, 3),
                    fmt(e["sharpness_ratio"]),
                    verdict(within(e["sharpness_ratio"], low, high)) if kind == "PathUp" else "",
                    span_text(e.get("sharpness_ratio_per_image", []), 2),
                    fmt(e["edge_ratio"]),
                ]
            )
            morph_rows.append(
                [
                    name,
                    f"{kind} (median over crops)",
                    len(crops),
                    f"{e['components_per_crop']:.0f}",
                    f"{fmt(area, 0)} ({'in' if area_ok else 'out'})",
                    f"{fmt(solidity)} ({'in' if solidity_ok else 'out'})",
                    span_text(e.get("median_area_px_per_image", []), 0),
                    f"{e['crops_in_real_range']:.0%}"
                    + (f" {verdict(area_ok and solidity_ok)}" if kind == "PathUp" else ""),
                ]
            )
        out[name] = entry
    section(
        f"4. Sharpness and nucleus morphology (no feature network) — {bench.label}",
        "Sharpness: mean share of the luma's spectral power above 1/4 Nyquist (Hann window, mean removed) "
        f"over the crops; ratio: over that of the real held-out crops of the class (bar {low}-{high} for "
        "PathUp). Three rows are yardsticks, not bars: 'real training areas' (the class "
        "probe's crops: what a model that reproduced its training tissue exactly would score), "
        f"'reference, 1:1 tiles' (the references the syntheses start from, cut into {CROP}-px tiles at "
        "their own size, before any enlargement) and 'reconstruction' (section 1's "
        "reconstructions: what the decoder alone keeps of the real crops' sharpness and nuclei). "
        "Edge ratio (no bar): the mean luma gradient over each crop's strongest 5 % of pixels "
        "(napari_pathup.metrics.sharpness.edge_contrast), over that of the real held-out crops: blur "
        "lowers it, while fine grain, which the spectral share counts as detail, hardly moves it. "
        "Per image: the range of the ratio over PathUp's images, each measured on its own crops.",
        markdown_table(
            [
                "class",
                "set",
                "crops",
                "sharpness",
                "real",
                "ratio",
                f"{low}-{high}",
                "per image",
                "edge ratio",
            ],
            sharp_rows,
        ),
        "Nucleus morphology: haematoxylin-dense components (haematoxylin density Gaussian-smoothed by 1 px, "
        "above the class's threshold: Otsu's on the pooled tissue pixels of its real held-out crops; holes "
        "filled; at least 12 px; not touching the crop border). Per crop: the number of components, their "
        "median area (px) and median solidity (area / convex hull). Real rows give the range over the real "
        "crops; synthetic rows the median over their crops, 'in' when inside the real range (the bar, for "
        "PathUp: area and solidity in), and the share of crops whose own area and solidity both are; "
        "per image: the range of the median area over PathUp's images, each on its own crops.",
        markdown_table(
            [
                "class",
                "set",
                "crops",
                "components per crop",
                "median area (px)",
                "median solidity",
                "median area per image",
                "crops in real range",
            ],
            morph_rows,
        ),
    )
    return out


def seams(bench: Bench) -> dict[str, Any]:
    args, model, first = bench.args, bench.model, bench.classes[0]
    f = model.vae_scale_factor
    default = {
        n: [seam_measure(r.image, r.settings["patch_size"], r.settings["overlap"], f) for r in runs]
        for n, runs in bench.runs.items()
    }
    measured = [v for vs in default.values() for v in vs if not math.isnan(v)]
    worst = max(measured) if measured else math.nan
    rows = [[n, ", ".join(fmt(v, 3) for v in vs)] for n, vs in default.items()]
    rows.append(["**max**", f"{fmt(worst, 3)} ({verdict(worst <= BARS.seam)})"])
    first_run = bench.runs[first][0].settings
    parts = [
        f"Seam measure (1.0: no seam; bar <= {BARS.seam}) of every {args.size}x{args.size} output at the "
        f"default settings (patch {first_run['patch_size']}, overlap {first_run['overlap']} latent px):",
        markdown_table(["class", "seam measure per seed"], rows),
    ]
    out: dict[str, Any] = {"default": default, "max": worst}
    if args.sweep:
        out |= sweep(bench, parts)
    else:
        parts.append("Overlap sweep: not run (`--sweep` runs it).")
    section(f"5. Seams — {bench.label}", *parts)
    return out


def sweep(bench: Bench, parts: list[str]) -> dict[str, Any]:
    args, model, first = bench.args, bench.model, bench.classes[0]
    f, size = model.vae_scale_factor, args.sweep_size
    patch = SynthesisSettings(first, height=size, width=size).resolve(model).patch_size
    results, rows = [], []
    for label, fraction in OVERLAPS:
        overlap = min(round(patch * fraction), patch - 1)
        for jitter in (False, True):
            s = SynthesisSettings(first, height=size, width=size, seed=0, overlap=overlap, jitter=jitter)
            run = timed_run(model, bench.references[first][0], s)
            value = seam_measure(run.image, patch, overlap, f)
            results.append(
                {"overlap": overlap, "fraction": label, "jitter": jitter, "seam": value}
                | {"evaluations": run.evaluations, "seconds": run.seconds["total"]}
            )
            rows.append(
                [
                    f"{overlap} ({label})",
                    "yes" if jitter else "no",
                    fmt(value, 3),
                    run.evaluations["stage 2"],
                    run.evaluations["total"],
                    fmt(run.seconds["total"], 1),
                ]
            )
    parts += [
        f"Overlap sweep: class {first}, seed 0, {size}x{size}, patch {patch} latent px, other settings "
        f"default, {args.threads} torch thread(s). Patch evaluations count the denoiser's batch rows "
        "(guidance doubles them). With jitter the patch borders move every step; the measure reads the "
        "unjittered grid.",
        markdown_table(SWEEP_COLUMNS, rows),
    ]
    return {"sweep_size": size, "sweep": results}


def stain(bench: Bench) -> dict[str, Any]:
    shared = bench.shared
    rows, out = [], {}
    for name in bench.classes:
        c = bench.label_of(name)
        groups = {
            "real held-out": shared.real_of(c),
            "reconstruction": [bench.recon[i] for i in shared.real.of(c)],
            "PathUp": bench.crops[name]["PathUp"],
            "stage-1 upsampled": bench.crops[name]["stage-1 upsampled"],
            **control_sets(bench, c, name),
        }
        stats = {k: hed_stats(v) for k, v in groups.items() if v}
        real = stats.get("real held-out", {})
        for k, st in stats.items():
            st["H ratio"] = ratio(st["H mean"], real.get("H mean", math.nan))
            st["E ratio"] = ratio(st["E mean"], real.get("E mean", math.nan))
            h, e = f"{st['H mean']:.4f} ± {st['H std']:.4f}", f"{st['E mean']:.4f} ± {st['E std']:.4f}"
            rows.append([name, k, h, e, fmt(st["H ratio"]), fmt(st["E ratio"])])
        out[name] = stats
    section(
        f"6. Stain colour (colour deconvolution, as skimage rgb2hed) — {bench.label}",
        "Mean ± standard deviation over all pixels of the haematoxylin (H) and eosin (E) optical "
        "densities. H, E ratio: mean over that of the real held-out crops of the class (eosin washing out "
        "shows as an E ratio well below 1). The yardstick rows (no bar) say how much of a synthesis's "
        "colour is its reference's: a synthesis keeps its reference's stain, so compare it with the "
        "'reference, 1:1 tiles' row as well as with the held-out crops.",
        markdown_table(["class", "set", "H", "E", "H ratio", "E ratio"], rows),
    )
    return out


def speed(bench: Bench) -> dict[str, Any]:
    args, name = bench.args, bench.classes[-1]
    run = bench.runs[name][-1]
    section(
        f"7. Speed — {bench.label}",
        f"One {args.size}x{args.size} synthesis (class {name}, seed {args.first_seed + args.images - 1}, "
        f"default settings, not the process's first run), CPU, {args.speed_threads} torch thread(s); "
        f"load average {bench.speed_load[0]:.2f} before and {bench.speed_load[1]:.2f} after (other jobs "
        "share the cores). "
        f"Patch evaluations: {run.evaluations}. Parts from the engine's events: stage 1 (reference encode, "
        "sampling, decode), encode (resize to the output size, tiled encode), stage 2 sampling, decode.",
        markdown_table(["part", "wall time (s)"], [[k, fmt(v, 1)] for k, v in run.seconds.items()]),
    )
    return {
        "size": args.size,
        "class": name,
        "threads": args.speed_threads,
        "load_average": bench.speed_load,
        "seconds": run.seconds,
        "evaluations": run.evaluations,
    }


def measure(bench: Bench) -> dict[str, Any]:
    """Every section for one model, in order; the report of that model."""
    model = bench.model
    print(f"\n# {bench.label}: {model.path} ({model.kind}, {model.parameter_count()} parameters)")
    report: dict[str, Any] = {
        "model": {"path": str(model.path), "parameters": model.parameter_count()},
        "training": model.metadata.get("training"),
    }
    steps: tuple[tuple[str, Callable[[Bench], dict[str, Any]]], ...] = (
        ("autoencoder", autoencoder),
        ("synthesis", synthesize_all),
        ("frechet_distance", frechet),
        ("class_fidelity", class_fidelity),
        ("realism", realism),
        ("seams", seams),
        ("stain", stain),
        ("speed", speed),
    )
    seconds = {}
    for key, run in steps:
        start = time.perf_counter()
        report[key] = run(bench)
        seconds[key] = time.perf_counter() - start
        print(f"  [{bench.label}] {key}: {seconds[key]:.0f} s", file=sys.stderr)
    report["section_seconds"] = seconds
    return report


# ----------------------------------------------------------------------------------------- summary


def summary_rows(report: dict[str, Any], classes: list[str]) -> list[tuple[str, str, str]]:
    """(measure, bar, "value (pass|fail...)") for every bar of one model's report."""
    low, high = BARS.sharpness
    rows: list[tuple[str, str, str]] = []

    def add(measure_name: str, bar: str, value: str, ok: bool, detail: str = "") -> None:
        rows.append((measure_name, bar, f"{value} ({'pass' if ok else 'fail'}{detail})"))

    ae = report["autoencoder"]["all"]
    psnr, sharp = ae.get("psnr_db", math.nan), ae.get("sharpness_ratio", math.nan)
    add("Autoencoder PSNR, all held-out crops", f">= {BARS.psnr:.0f} dB", fmt(psnr), psnr >= BARS.psnr)
    add("Autoencoder sharpness ratio (decoded / real)", f"{low}-{high}", fmt(sharp), within(sharp, low, high))
    for stain, key in (("H", "h_ratio"), ("E", "e_ratio")):
        v = ae.get(key, math.nan)
        add(
            f"Autoencoder {stain} density ratio (decoded / real)",
            f"within {BARS.stain:.0%}",
            fmt(v, 3),
            abs(v - 1) <= BARS.stain,
        )
    fd = report["frechet_distance"]["per_class"]
    for name in [*classes, "all"]:
        row = fd.get(name, {})
        r = row.get("PathUp / floor", math.nan)
        ours, floor = fmt(row.get("PathUp", math.nan), 1), fmt(row.get("real B (floor)", math.nan), 1)
        add(
            f"FD / floor, {name} (FD; floor)",
            f"<= {BARS.fd_ratio}",
            fmt(r),
            r <= BARS.fd_ratio,
            f"; {ours}; {floor}",
        )
    accuracy = report["class_fidelity"]["accuracy"]
    per_class = ", ".join(f"{n} {fmt(accuracy[n]['PathUp'])}" for n in classes)
    value = accuracy["all"]["PathUp"]
    add(
        "Class fidelity, PathUp crops",
        f">= {BARS.accuracy}",
        fmt(value),
        value >= BARS.accuracy,
        f"; {per_class}",
    )
    realism_report = report["realism"]
    synthetic = {n: realism_report[n]["PathUp"] for n in classes if realism_report.get(n, {}).get("PathUp")}
    for name, e in synthetic.items():
        r, each = e["sharpness_ratio"], e.get("sharpness_ratio_per_image", [])
        detail = f"; per image {span_text(each, 2)}" if len(each) > 1 else ""
        add(
            f"Sharpness ratio synthetic / real, {name}", f"{low}-{high}", fmt(r), within(r, low, high), detail
        )
    for name, e in synthetic.items():
        real = realism_report[name]["real"]
        ranges = "; real {:.0f}-{:.0f}".format(*real["median_area_px"]) + " / {:.2f}-{:.2f}".format(
            *real["median_solidity"]
        )
        if len(each_area := e.get("median_area_px_per_image", [])) > 1:
            ranges += f"; area per image {span_text(each_area, 0)}"
        add(
            f"Nucleus area / solidity, {name} (real range)",
            "inside real range",
            f"{fmt(e['median_area_px'], 0)} / {fmt(e['median_solidity'])}",
            e["area_in_real_range"] and e["solidity_in_real_range"],
            ranges,
        )
    worst = report["seams"]["max"]
    add("Seam measure, max", f"<= {BARS.seam}", fmt(worst, 3), worst <= BARS.seam)
    sp = report["speed"]
    rows.append(
        (
            f"Synthesis {sp['size']}x{sp['size']}, default settings",
            "(seconds)",
            f"{fmt(sp['seconds']['total'], 1)} s ({sp['threads']} thread(s), "
            f"load {sp['load_average'][0]:.1f})",
        )
    )
    return rows


def summary(
    reports: dict[str, dict[str, Any]],
    classes: list[str],
    extractor: str,
    own_references: bool = False,
    every_class: bool = True,
) -> list[list[str]]:
    """Print the summary table (one value column per model) and return its rows."""
    per_model = {label: summary_rows(r, classes) for label, r in reports.items()}
    first = next(iter(per_model.values()))
    rows = [
        [measure_name, bar, *(per_model[label][k][2] for label in per_model)]
        for k, (measure_name, bar, _) in enumerate(first)
    ]
    paths = "; ".join(f"{label}: {r['model']['path']}" for label, r in reports.items())
    references = "each model from its own references" if own_references else "the same references"
    section(
        "Summary" + (" (before/after)" if len(reports) > 1 else ""),
        f"{paths}. Same real crops and seeds for every model, {references}, each at its own default "
        f"settings; FD and class fidelity in {extractor} features."
        + ("" if every_class else f" Classes measured: {', '.join(classes)} ('all' pools only these)."),
        markdown_table(["measure", "bar", *per_model], rows),
    )
    return rows


def write_sheet(shared: Shared, benches: list[Bench], path: Path) -> None:
    def spread(items: list[Any]) -> list[Any]:
        if not items:
            return []
        picks = np.linspace(0, len(items) - 1, min(SHEET_CROPS, len(items))).astype(int)
        return [items[k] for k in picks]

    classes = benches[0].classes
    groups = [("real, held-out", {n: spread(shared.real_of(shared.classes.index(n))) for n in classes})]

    def tiles(bench: Bench, name: str) -> list[np.ndarray]:  # non-overlapping, spread over every image
        grid = [t for run in bench.runs[name] for t in grid_tiles(run.image, CROP)]
        return spread(with_tissue(grid, MIN_TISSUE)[0])

    groups += [(f"synthetic, {b.label}", {n: tiles(b, n) for n in classes}) for b in benches]
    first = shared.args.first_seed
    wholes = [(f"{b.label}, seed {first}", {n: b.runs[n][0].image for n in classes}) for b in benches]
    image = contact_sheet(classes, groups, wholes, CROP)
    partial = path.with_name(path.stem + ".partial.png")
    image.save(partial)
    partial.replace(path)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    started = time.perf_counter()
    print("# Default-model quality benchmark\n")
    print(f"Command: `python {' '.join(sys.argv)}`  ")
    print(f"Machine: {machine_info()}  ")
    print(f"Threads: {args.threads} torch thread(s); the speed run {args.speed_threads}.  ")
    index = discover(args.data)
    dtype = select_dtype(args.dtype, torch.device("cpu"))
    print(f"Model dtype: {str(dtype).removeprefix('torch.')} (--dtype {args.dtype}).  ")
    models = {"model": load_model(args.model).to("cpu", dtype)}
    if args.baseline is not None:
        models["baseline"] = load_model(args.baseline).to("cpu", dtype)
    for label, model in models.items():
        if set(model.classes) != set(index.classes):
            raise SystemExit(
                f"{label} {model.path}: classes {model.classes} differ from the data's {list(index.classes)}"
            )
    unknown = sorted(set(args.classes or ()) - set(index.classes))
    if unknown:
        raise SystemExit(f"--classes {' '.join(unknown)}: not a class of {args.data} ({list(index.classes)})")
    holdout = {e.key: e.holdout.to_json() for e in index.images if e.holdout is not None}
    for label, model in models.items():
        if model.metadata.get("holdout", holdout) != holdout:
            print(f"**Warning**: the hold-out regions recorded in the {label} differ from those of --data.  ")
    arrays = load_images(index)
    real = holdout_crops(index, arrays, CROP, args.stride, MIN_TISSUE)
    extractor = get_extractor("effnet-lite0", device="cpu")
    shared = Shared(args, index, arrays, extractor, real)
    shared.real_feats = shared.features(real.images)
    shared.references, shared.reference_note = references_for(shared, models["model"])
    prepare_realism(shared)
    print(
        f"  [shared] real crops, features, thresholds: {time.perf_counter() - started:.0f} s", file=sys.stderr
    )
    print(f"Feature network (FD, class probe): {extractor.label}  ")
    empty = sorted(set(holdout) - set(real.sources))
    print(
        f"Real crops: {len(real.images)} tissue crops of {CROP}x{CROP} on a {args.stride}-px grid inside the "
        f"hold-out regions of {args.data}" + (f" (none fits in {', '.join(empty)})" if empty else "")
    )
    per_slide = slide_sharpness(shared)
    benches = [Bench(shared, label, model) for label, model in models.items()]
    reports = {b.label: measure(b) for b in benches}
    report: dict[str, Any] = {
        "command": " ".join(sys.argv),
        "machine": machine_info(),
        "quick": args.quick,
        "feature_network": extractor.label,
        "real_crops": {name: len(real.of(c)) for c, name in enumerate(shared.classes)},
        "nucleus_thresholds_h": shared.thresholds,
        "real_sharpness_per_slide": per_slide,
        **reports["model"],
    }
    if "baseline" in reports:
        report["baseline"] = reports["baseline"]
    measured = benches[0].classes
    report["classes_measured"] = measured
    report["summary"] = summary(
        reports, measured, extractor.label, args.references == "own", measured == shared.classes
    )
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = ("_quick" if args.quick else "") + (
        "" if measured == shared.classes else "_" + "-".join(measured)
    )
    sheet_path = args.out / f"default_model_contact_sheet{suffix}.png"
    write_sheet(shared, benches, sheet_path)
    json_path = args.out / f"default_model_quality{suffix}.json"
    report["seconds"] = time.perf_counter() - started
    partial = json_path.with_name(json_path.name + ".partial")
    partial.write_text(json.dumps(report, indent=1, default=float) + "\n")
    partial.replace(json_path)
    print(f"\nContact sheet: {sheet_path}  \nJSON: {json_path}  ")
    print(f"Benchmark time: {report['seconds'] / 60:.1f} min")


if __name__ == "__main__":
    main()
