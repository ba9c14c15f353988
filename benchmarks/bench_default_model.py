"""Quality bars of a trained PathUp model, measured on the held-out regions of its training data.

Run: ``python benchmarks/bench_default_model.py MODEL_DIR [--data data/demo] [--out docs/img] [--quick]``.
Prints markdown tables and writes them as JSON beside a contact sheet PNG in ``--out``
(``default_model_quality.json``, ``default_model_contact_sheet.png``; ``--quick`` adds ``_quick``).

1. Autoencoder: PSNR of decode(encode(x)) on held-out 256x256 crops (bar: >= 25 dB).
2. Fréchet distance in EfficientNet-Lite0 features to real held-out crops, per class, beside
   colour-matched Gaussian noise, stage 1 alone upsampled bicubically to the output size, and the
   real-vs-real floor. The real crops (a ``--stride`` grid) are split in a checkerboard into halves
   A and B; every set is compared with A at the size of B (mean over ``--draws`` subsets).
3. Class fidelity: a logistic regression on features of real crops of the training areas (outside
   the hold-outs), applied to synthetic crops (bar: accuracy >= 0.8).
4. Seams: ``seam_measure`` of every synthetic output at the default settings (bar: <= 1.05), and an
   overlap sweep (0 to 3/4 of the patch), without and with jitter, for one seed.
5. Stain colour: haematoxylin and eosin optical densities (``skimage.color.rgb2hed``).
6. Speed: the last synthesis (warm; default settings) with ``--speed-threads`` torch threads.

Synthetic images start from the reference images shipped in the model (``pathup.json``
"references", cut from training areas), else from ``--reference-dir/<class>.png``, else from the
window with the most tissue in each class's training areas of ``--data`` (as training picks them).
Everything else uses ``--threads`` torch threads (default 1).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_info, markdown_table
from _quality import (
    RealCrops,
    TimedRun,
    colour_noise,
    contact_sheet,
    grid_tiles,
    hed_stats,
    holdout_crops,
    linear_probe,
    matched_fd,
    psnr,
    reconstruct,
    timed_run,
    training_crops,
    upsample,
    with_tissue,
)
from napari_pathup.engine.pipeline import SynthesisSettings
from napari_pathup.engine.seams import seam_measure
from napari_pathup.io.images import read_image
from napari_pathup.metrics import FeatureExtractor, extract_features, get_extractor
from napari_pathup.models.base import PathupModel
from napari_pathup.models.load import load_model
from napari_pathup.training.data import DatasetIndex, TrainingImages, discover, load_images
from napari_pathup.training.export import choose_references

CROP = 256
MIN_TISSUE = 0.5  # as training: real crops hold at least half tissue
BARS = {"psnr": 25.0, "accuracy": 0.8, "seam": 1.05}
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
SHEET_CROPS = 4  # crops per class and kind on the contact sheet


@dataclass
class Bench:
    """What every section reads: the model, the real crops, the syntheses and the compared sets."""

    args: argparse.Namespace
    model: PathupModel
    index: DatasetIndex
    arrays: list[np.ndarray]
    extractor: FeatureExtractor
    real: RealCrops
    real_feats: np.ndarray
    recon: list[np.ndarray] = field(default_factory=list)
    references: dict[str, np.ndarray] = field(default_factory=dict)
    runs: dict[str, list[TimedRun]] = field(default_factory=dict)
    crops: dict[str, dict[str, list[np.ndarray]]] = field(default_factory=dict)  # class → kind → crops
    feats: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    tissue: dict[str, float] = field(default_factory=dict)  # class → share of synthetic tiles kept
    speed_load: tuple[float, float] = (0.0, 0.0)

    @property
    def classes(self) -> list[str]:
        return list(self.index.classes)  # data order: the crop labels index it

    def features(self, crops: list[np.ndarray]) -> np.ndarray:
        return extract_features(self.extractor, crops, batch_size=16) if crops else np.zeros((0, 1280))

    def real_of(self, label: int, half: int | None = None) -> list[np.ndarray]:
        return [self.real.images[i] for i in self.real.of(label, half)]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model", type=Path, help="PathUp model folder")
    p.add_argument("--data", type=Path, default=Path("data/demo"), help="training data with holdout.json")
    p.add_argument("--out", type=Path, default=Path("docs/img"), help="folder for the PNG and the JSON")
    p.add_argument("--quick", action="store_true", help="smoke run: 1024x1024, one image per class")
    p.add_argument("--reference-dir", type=Path, help="<class>.png references (when the model has none)")
    p.add_argument("--images", type=int, help="synthetic images per class (default 3; --quick 1)")
    p.add_argument("--size", type=int, help="output side in pixels (default 2048; --quick 1024)")
    p.add_argument("--sweep-size", type=int, help="output side of the overlap sweep (2048; --quick 512)")
    p.add_argument("--stride", type=int, default=128, help="grid stride of the real 256-px crops")
    p.add_argument("--train-crops", type=int, help="training-area crops per class (200; --quick 60)")
    p.add_argument("--draws", type=int, default=5, help="random subsets averaged per Fréchet distance")
    p.add_argument("--threads", type=int, default=1, help="torch threads (all but the speed run)")
    p.add_argument("--speed-threads", type=int, default=2, help="torch threads of the speed run")
    args = p.parse_args()
    args.images = args.images or (1 if args.quick else 3)
    args.size = args.size or (1024 if args.quick else 2048)
    args.sweep_size = args.sweep_size or (512 if args.quick else 2048)
    args.train_crops = args.train_crops or (60 if args.quick else 200)
    return args


def fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def verdict(ok: bool) -> str:
    return "pass" if ok else "**fail**"


def section(title: str, *parts: str) -> None:
    print(f"\n## {title}\n")
    print("\n\n".join(parts))


def references_for(bench: Bench) -> tuple[dict[str, np.ndarray], str]:
    model, classes = bench.model, bench.classes
    shipped = model.metadata.get("references") or {}
    if all(c in shipped for c in classes):
        refs = {c: read_image(Path(model.path) / shipped[c]) for c in classes}
        return refs, "the model's shipped references (pathup.json 'references', cut from training areas)"
    if bench.args.reference_dir is not None:
        folder = bench.args.reference_dir
        return {c: read_image(folder / f"{c}.png") for c in classes}, f"{folder}/<class>.png"
    data = TrainingImages(bench.index, bench.arrays, [], CROP, MIN_TISSUE)
    return choose_references(data), (
        f"the window with the most tissue in each class's training areas of {bench.index.root} (the "
        "model ships no references; picked as training picks them, never from a hold-out)"
    )


# ---------------------------------------------------------------------------------------- sections


def autoencoder(bench: Bench) -> dict[str, float]:
    bench.recon = reconstruct(bench.model, bench.real.images)
    rows, out = [], {}
    for c, name in enumerate(bench.classes):
        ids = bench.real.of(c)
        out[name] = psnr(bench.real_of(c), [bench.recon[i] for i in ids]) if ids else math.nan
        rows.append([name, len(ids), fmt(out[name]), verdict(out[name] >= BARS["psnr"])])
    out["all"] = psnr(bench.real.images, bench.recon)
    rows.append(["**all**", len(bench.real.images), fmt(out["all"]), verdict(out["all"] >= BARS["psnr"])])
    header = ["class", "crops", "PSNR (dB)", f"bar >= {BARS['psnr']:.0f} dB"]
    section("1. Autoencoder reconstruction (held-out crops)", markdown_table(header, rows))
    return out


def synthesize_all(bench: Bench) -> dict[str, Any]:
    """``--images`` outputs per class (seeds 0, 1, ...) at the default settings; the last is the speed run."""
    args, classes = bench.args, bench.classes
    bench.references, note = references_for(bench)
    print(
        f"\nSynthesis: {args.images} image(s) of {args.size}x{args.size} per class "
        f"(seeds 0-{args.images - 1}), default settings, from {note}."
    )
    for name in classes:
        bench.runs[name] = []
        for seed in range(args.images):
            speed_run = name == classes[-1] and seed == args.images - 1
            torch.set_num_threads(args.speed_threads if speed_run else args.threads)
            load = os.getloadavg()[0]
            settings = SynthesisSettings(name, height=args.size, width=args.size, seed=seed)
            bench.runs[name].append(timed_run(bench.model, bench.references[name], settings))
            if speed_run:
                bench.speed_load = (load, os.getloadavg()[0])
            print(f"  {name} seed {seed}: {bench.runs[name][-1].seconds['total']:.1f} s", file=sys.stderr)
    torch.set_num_threads(args.threads)
    settings = {k: bench.runs[classes[0]][0].settings[k] for k in SETTING_KEYS}
    print(f"Resolved default settings: {settings}")

    for c, name in enumerate(classes):
        synthetic, bench.tissue[name] = with_tissue(
            [t for r in bench.runs[name] for t in grid_tiles(r.image, CROP)], MIN_TISSUE
        )
        upsampled = [upsample(r.stage_one, args.size, args.size) for r in bench.runs[name]]
        upsampled, _ = with_tissue([t for u in upsampled for t in grid_tiles(u, CROP)], MIN_TISSUE)
        real = bench.real_of(c)
        noise = colour_noise(real, max(16, len(bench.real.of(c, 1))), CROP, seed=c) if real else []
        bench.crops[name] = dict(zip(KINDS, (synthetic, upsampled, noise), strict=True))
        bench.feats[name] = {k: bench.features(v) for k, v in bench.crops[name].items()}
    return {"images_per_class": args.images, "size": args.size, "references": note, "settings": settings}


def frechet(bench: Bench) -> dict[str, Any]:
    args, real, feats = bench.args, bench.real, bench.real_feats
    rows, out = [], {}
    for c, name in enumerate(bench.classes):
        a, b = real.of(c, 0), real.of(c, 1)
        values = {"real B (floor)": matched_fd(feats[a], [feats[b]], [len(b)], 1, 0)}
        values |= {k: matched_fd(feats[a], [bench.feats[name][k]], [len(b)], args.draws, c) for k in KINDS}
        out[name] = {"n_A": len(a), "n_B": len(b), **values}
        rows.append(
            [name, len(a), len(b), *(fmt(v, 1) for v in values.values()), f"{bench.tissue[name]:.0%}"]
        )
    a, b = feats[real.half == 0], feats[real.half == 1]
    sizes = [len(real.of(c, 1)) for c in range(len(bench.classes))]
    values = {"real B (floor)": matched_fd(a, [b], [len(b)], 1, 0)}
    values |= {
        k: matched_fd(a, [bench.feats[n][k] for n in bench.classes], sizes, args.draws, 99) for k in KINDS
    }
    out["all"] = {"n_A": len(a), "n_B": len(b), **values}
    rows.append(["**all**", len(a), len(b), *(fmt(v, 1) for v in values.values()), ""])
    stage_one = bench.runs[bench.classes[0]][0].stage_one.shape[0]
    label = bench.extractor.metric_label("FD")
    section(
        f"2. {label} to real held-out crops (lower is better)",
        f"Reference: real held-out half A (n_A crops). Every column is a set of n_B crops (the mean over "
        f"{args.draws} random subsets when larger): real half B (the floor, what real tissue scores), "
        f"PathUp ({args.size}x{args.size} outputs cut into {CROP}-px tiles), stage 1 alone (its "
        f"{stage_one}-px result upsampled bicubically to {args.size}), Gaussian noise with the class's mean "
        f"colour and RGB covariance. The halves interleave as a checkerboard of the {args.stride}-px crop "
        "grid, so neighbouring A and B crops overlap and the floor is optimistic. With far fewer crops than "
        "the 1280 feature dimensions the values are noisy and biased upwards: compare columns within a row, "
        f"never with published FIDs. 'tissue': share of PathUp tiles with >= {MIN_TISSUE:.0%} tissue (only "
        "those are compared).",
        markdown_table(
            [
                "class",
                "n_A",
                "n_B",
                "real B (floor)",
                "PathUp",
                "stage 1 upsampled",
                "colour noise",
                "tissue",
            ],
            rows,
        ),
    )
    return {"label": label, "per_class": out}


def class_fidelity(bench: Bench) -> dict[str, Any]:
    args, classes = bench.args, bench.classes
    train_x, train_y = training_crops(
        bench.index, bench.arrays, CROP, args.stride, MIN_TISSUE, args.train_crops
    )
    probe, predict = linear_probe(bench.features(train_x), train_y)
    columns = ("real held-out", *KINDS)
    accuracy: dict[str, dict[str, float]] = {}
    counts: dict[str, list[int]] = {k: [] for k in columns}
    confusion: dict[str, dict[str, int]] = {}  # class asked for → class the probe sees in PathUp crops
    rows = []
    for c, name in enumerate(classes):
        sets = {"real held-out": bench.real_feats[bench.real.of(c)], **bench.feats[name]}
        predicted = {k: predict(v) if len(v) else np.zeros(0, int) for k, v in sets.items()}
        accuracy[name] = {k: float(np.mean(v == c)) if len(v) else math.nan for k, v in predicted.items()}
        confusion[name] = {n: int((predicted["PathUp"] == j).sum()) for j, n in enumerate(classes)}
        for k in columns:
            counts[k].append(len(sets[k]))
        seen = ", ".join(f"{n} {v}" for n, v in confusion[name].items())
        rows.append([name, int((train_y == c).sum()), *(fmt(accuracy[name][k]) for k in columns), seen])
    accuracy["all"] = {
        k: float(np.average([accuracy[n][k] for n in classes], weights=counts[k])) for k in columns
    }
    rows.append(["**all**", len(train_y), *(fmt(accuracy["all"][k]) for k in columns), ""])
    section(
        "3. Class fidelity (linear probe on EfficientNet-Lite0 features)",
        f"Probe: {probe}, trained on {len(train_y)} real {CROP}-px crops of the training areas (outside "
        f"the hold-outs; {args.stride}-px grid, at most {args.train_crops} per class). Accuracy: the share "
        f"of crops assigned to the class they were made for. Bar: PathUp >= {BARS['accuracy']}: "
        f"{verdict(accuracy['all']['PathUp'] >= BARS['accuracy'])}. A class that also takes the noise "
        "crops is the probe's default guess, so its accuracy alone says little.",
        markdown_table(["class", "training crops", *columns, "PathUp crops assigned to"], rows),
    )
    return {"probe": probe, "training_crops": len(train_y), "accuracy": accuracy, "confusion": confusion}


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
    rows.append(["**max**", f"{fmt(worst, 3)} ({verdict(worst <= BARS['seam'])})"])
    size = args.sweep_size
    patch = SynthesisSettings(first, height=size, width=size).resolve(model).patch_size
    sweep, sweep_rows = [], []
    for label, fraction in OVERLAPS:
        overlap = min(round(patch * fraction), patch - 1)
        for jitter in (False, True):
            s = SynthesisSettings(first, height=size, width=size, seed=0, overlap=overlap, jitter=jitter)
            run = timed_run(model, bench.references[first], s)
            value = seam_measure(run.image, patch, overlap, f)
            sweep.append(
                {"overlap": overlap, "fraction": label, "jitter": jitter, "seam": value}
                | {"evaluations": run.evaluations, "seconds": run.seconds["total"]}
            )
            sweep_rows.append(
                [
                    f"{overlap} ({label})",
                    "yes" if jitter else "no",
                    fmt(value, 3),
                    run.evaluations["stage 2"],
                    run.evaluations["total"],
                    fmt(run.seconds["total"], 1),
                ]
            )
    first_run = bench.runs[first][0].settings
    section(
        "4. Seams",
        f"Seam measure (1.0: no seam; bar <= {BARS['seam']}) of every {args.size}x{args.size} output at the "
        f"default settings (patch {first_run['patch_size']}, overlap {first_run['overlap']} latent px):",
        markdown_table(["class", "seam measure per seed"], rows),
        f"Overlap sweep: class {first}, seed 0, {size}x{size}, patch {patch} latent px, other settings "
        f"default, {args.threads} torch thread(s). Patch evaluations count the denoiser's batch rows "
        "(guidance doubles them). With jitter the patch borders move every step; the measure reads the "
        "unjittered grid.",
        markdown_table(SWEEP_COLUMNS, sweep_rows),
    )
    return {"default": default, "max": worst, "sweep_size": size, "sweep": sweep}


def stain(bench: Bench) -> dict[str, Any]:
    rows, out = [], {}
    for c, name in enumerate(bench.classes):
        groups = {
            "real held-out": bench.real_of(c),
            "reconstruction": [bench.recon[i] for i in bench.real.of(c)],
            "PathUp": bench.crops[name]["PathUp"],
            "stage-1 upsampled": bench.crops[name]["stage-1 upsampled"],
        }
        stats = {k: hed_stats(v) for k, v in groups.items() if v}
        eosin = stats.get("real held-out", {}).get("E mean", math.nan)
        for k, st in stats.items():
            st["E ratio"] = st["E mean"] / eosin
            h, e = f"{st['H mean']:.4f} ± {st['H std']:.4f}", f"{st['E mean']:.4f} ± {st['E std']:.4f}"
            rows.append([name, k, h, e, fmt(st["E ratio"])])
        out[name] = stats
    section(
        "5. Stain colour (colour deconvolution, skimage rgb2hed)",
        "Mean ± standard deviation over all pixels of the haematoxylin (H) and eosin (E) optical "
        "densities. E ratio: mean E over that of the real held-out crops of the class (eosin washing out "
        "shows as a ratio well below 1).",
        markdown_table(["class", "set", "H", "E", "E ratio"], rows),
    )
    return out


def speed(bench: Bench) -> dict[str, Any]:
    args, name = bench.args, bench.classes[-1]
    run = bench.runs[name][-1]
    section(
        "6. Speed",
        f"One {args.size}x{args.size} synthesis (class {name}, seed {args.images - 1}, default settings, not "
        f"the process's first run), CPU, {args.speed_threads} torch thread(s); load average "
        f"{bench.speed_load[0]:.2f} before and {bench.speed_load[1]:.2f} after (other jobs share the cores). "
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


def sheet(bench: Bench, path: Path) -> None:
    def spread(items: list[Any]) -> list[Any]:
        picks = np.linspace(0, len(items) - 1, min(SHEET_CROPS, len(items))).astype(int) if items else []
        return [items[k] for k in picks]

    rows = [
        (name, spread(bench.real_of(c)), spread(bench.crops[name]["PathUp"]), bench.runs[name][0].image)
        for c, name in enumerate(bench.classes)
    ]
    contact_sheet(rows).save(path)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    started = time.perf_counter()
    print("# Default-model quality benchmark\n")
    print(f"Command: `python {' '.join(sys.argv)}`  ")
    print(f"Machine: {machine_info()}  ")
    print(f"Threads: {args.threads} torch thread(s); the speed run {args.speed_threads}.  ")
    model = load_model(args.model)
    index = discover(args.data)
    if set(model.classes) != set(index.classes):
        raise SystemExit(f"model classes {model.classes} differ from the data's {list(index.classes)}")
    holdout = {e.key: e.holdout.to_json() for e in index.images if e.holdout is not None}
    if model.metadata.get("holdout", holdout) != holdout:
        print("**Warning**: the hold-out regions recorded in the model differ from those of --data.  ")
    arrays = load_images(index)
    real = holdout_crops(index, arrays, CROP, args.stride, MIN_TISSUE)
    extractor = get_extractor("effnet-lite0", device="cpu")
    bench = Bench(args, model, index, arrays, extractor, real, np.zeros(0))
    bench.real_feats = bench.features(real.images)
    print(f"Model: {args.model} ({model.kind}, {model.parameter_count()} parameters)  ")
    empty = sorted(set(holdout) - set(real.sources))
    print(
        f"Real crops: {len(real.images)} tissue crops of {CROP}x{CROP} on a {args.stride}-px grid inside the "
        f"hold-out regions of {args.data}" + (f" (none fits in {', '.join(empty)})" if empty else "")
    )
    report: dict[str, Any] = {
        "command": " ".join(sys.argv),
        "machine": machine_info(),
        "quick": args.quick,
        "model": {"path": str(args.model), "parameters": model.parameter_count()},
        "training": model.metadata.get("training"),
        "real_crops": {name: len(real.of(c)) for c, name in enumerate(bench.classes)},
        "autoencoder_psnr_db": autoencoder(bench),
        "synthesis": synthesize_all(bench),
    }
    report["frechet_distance"] = frechet(bench)
    report["class_fidelity"] = class_fidelity(bench)
    report["seams"] = seams(bench)
    report["stain"] = stain(bench)
    report["speed"] = speed(bench)
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "_quick" if args.quick else ""
    sheet_path = args.out / f"default_model_contact_sheet{suffix}.png"
    sheet(bench, sheet_path)
    json_path = args.out / f"default_model_quality{suffix}.json"
    report["seconds"] = time.perf_counter() - started
    json_path.write_text(json.dumps(report, indent=1, default=float) + "\n")
    print(f"\nContact sheet: {sheet_path}  \nJSON: {json_path}  ")
    print(f"Benchmark time: {report['seconds'] / 60:.1f} min")


if __name__ == "__main__":
    main()
