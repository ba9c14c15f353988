"""Choose among candidate models without reading the quality benchmark's evaluation crops.

Run: ``python benchmarks/bench_select_model.py MODEL_DIR [MODEL_DIR ...] [--data data/demo]
[--images 2] [--first-seed 100] [--out FOLDER]``. Prints a markdown table, the rule and the model it
chooses, and writes them as ``selection.json`` in ``--out``. Candidates measured by separate runs of
the same settings (each measurement depends only on its candidate, so two processes can share the
work) are ranked together with ``--merge A/selection.json B/selection.json``.

Why: legs of one training recipe that differ only in their seed spread as widely as the settings
compared in docs/model_experiments.md (ninth session). Choosing the best of them by
``bench_default_model.py`` would select on its held-out crops, so the figures it then reports for
the choice would be biased upwards.
This script measures every candidate on other real tissue and another draw of images:

- Selection tissue: real 256-px crops of the **training areas** of ``--data`` (outside every hold-out
  rectangle; the class probe's crops of the quality benchmark), never a held-out crop.
- Selection draw: ``--images`` syntheses of ``--size`` per class from seeds ``--first-seed`` (100) on,
  another draw than the quality benchmark's seeds 0-2, at the model's defaults, from its shipped
  references (which lie in the training areas too), cut into 256-px tiles with >= 50 % tissue.
- Per candidate and class: the Fréchet distance (EfficientNet-Lite0 features, the same
  ``--fd-crops`` tiles for every candidate, mean over ``--draws`` subsets) to the selection tissue of
  the class, the tiles' sharpness over that tissue's, and the share of tiles a linear probe trained on
  the selection tissue assigns to the class. Beside them, not ranked: the median nucleus area of the
  tiles (median over tiles of each tile's median haematoxylin component, ``metrics.nuclei``, at the
  class's threshold on the selection tissue), with the selection tissue's own median, as the quality
  benchmark measures nucleus morphology on the hold-outs. The threshold is Otsu's over the class's
  tissue pixels up to their 99th percentile (the quality benchmark's spans to the 99.9th): 0.3 %
  of `normal`'s training-area pixels are pigment or ink at haematoxylin densities up to 1.8, which
  the wider histogram splits off at 0.97 instead of the nuclei (0.08). Also beside, not ranked: the
  largest seam measure (``engine.seams.seam_measure``, the quality benchmark's bar: <= 1.05) of the
  class's syntheses, for candidates whose tiling (patch size, overlap) differs.
- ``--classes`` measures some classes only (the probe still learns every class): for a change that
  touches one class, such as a ``class_defaults`` entry of ``pathup.json``.

Rule (fixed before any candidate was measured; docs/model_experiments.md, tenth session): a candidate is
eligible when its class fidelity over all classes is >= ``--min-fidelity`` (0.9). Eligible candidates
are ranked by their mean Fréchet distance over the classes (ascending) and by the mean sharpness ratio
of ``--sharp-classes`` (normal and tumour: the classes below the sharpness bar; descending); the chosen
one has the lowest sum of the two ranks, ties going to the lower Fréchet distance. Only the chosen
model is then measured on the quality benchmark.

The training areas are tissue the candidates were trained on: a model that copied them would score
best here. Among legs that start from the same weights and differ in their seed, that bias is shared;
it would not be a fair yardstick between models trained on different data.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_info, markdown_table
from _quality import (
    Morphology,
    grid_tiles,
    linear_probe,
    matched_fd,
    sharpness_values,
    timed_run,
    training_crops,
    with_tissue,
)
from napari_pathup.datasets import DatasetIndex, discover
from napari_pathup.engine.device import select_dtype
from napari_pathup.engine.pipeline import SynthesisSettings
from napari_pathup.engine.plan import DTYPE_CHOICES
from napari_pathup.engine.seams import seam_measure
from napari_pathup.io.atomic import write_text_atomic
from napari_pathup.io.images import read_image
from napari_pathup.metrics import extract_features, get_extractor, haematoxylin_threshold
from napari_pathup.models.default import reference_for_class
from napari_pathup.models.load import load_model
from napari_pathup.training.data import load_images

CROP = 256
MIN_TISSUE = 0.5  # as training and the quality benchmark
NUCLEUS_TOP = 0.99  # the quantile the nucleus threshold's histogram spans to (module docstring)


@dataclass
class SelectionTissue:
    """The real training-area crops a draw is scored against, and how a class's tiles are scored."""

    classes: list[str]  # the data's classes, in label order
    extractor: Any  # the feature network (FD, probe)
    labels: np.ndarray  # class index of each real crop
    feats: np.ndarray  # their features (the extractor's)
    sharp: np.ndarray  # their sharpness values
    probe: str  # the linear probe, described
    predict: Callable[[np.ndarray], np.ndarray]  # the probe's class for each feature row
    nuclei: dict[str, dict[str, float]]  # per measured class: threshold and the tissue's median area

    @classmethod
    def of(
        cls, index: DatasetIndex, extractor: Any, stride: int, per_class: int, measured: list[str]
    ) -> SelectionTissue:
        """Crops of the training areas of ``index`` (``CROP`` px on a ``stride`` grid, at most
        ``per_class`` a class), with the nucleus threshold of each ``measured`` class."""
        crops, labels, _ = training_crops(index, load_images(index), CROP, stride, MIN_TISSUE, per_class)
        feats = extract_features(extractor, crops, batch_size=16)
        probe, predict = linear_probe(feats, labels)
        nuclei = {}
        for c, name in enumerate(index.classes):
            if name in measured:
                own = [crop for crop, label in zip(crops, labels, strict=True) if label == c]
                threshold = haematoxylin_threshold(own, top=NUCLEUS_TOP)
                nuclei[name] = {
                    "threshold_h": threshold,
                    "median_area_px": Morphology.of(own, threshold).median_area,
                }
        classes = list(index.classes)
        return cls(classes, extractor, labels, feats, sharpness_values(crops), probe, predict, nuclei)

    def score(self, tiles: list[np.ndarray], name: str, fd_crops: int, draws: int) -> dict[str, float]:
        """Synthetic tiles of class ``name`` against its real crops: FD (NaN under ``fd_crops`` tiles
        with tissue), sharpness ratio, class fidelity and median nucleus area."""
        c = self.classes.index(name)
        tiles, _ = with_tissue(tiles, MIN_TISSUE)
        synthetic = extract_features(self.extractor, tiles, batch_size=16) if tiles else np.zeros((0, 1280))
        own = self.labels == c
        return {
            "tiles": len(tiles),
            "fd": matched_fd(self.feats[own], [synthetic], [fd_crops], draws, c)
            if len(tiles) >= fd_crops
            else math.nan,
            "sharpness_ratio": float(sharpness_values(tiles).mean() / self.sharp[own].mean())
            if tiles
            else math.nan,
            "fidelity": float(np.mean(self.predict(synthetic) == c)) if tiles else math.nan,
            "nucleus_area_px": Morphology.of(tiles, self.nuclei[name]["threshold_h"]).median_area,
        }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("models", type=Path, nargs="*", help="candidate PathUp model folders")
    p.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        metavar="JSON",
        help="rank the candidates of these selection.json reports together (measured on the same tissue, "
        "draw and settings, e.g. as two processes at a time) instead of measuring models",
    )
    p.add_argument("--data", type=Path, default=Path("data/demo"), help="training data with holdout.json")
    p.add_argument("--out", type=Path, help="folder for selection.json (none: print only)")
    p.add_argument("--images", type=int, default=2, help="syntheses per class and candidate")
    p.add_argument("--first-seed", type=int, default=100, help="seed of each class's first image")
    p.add_argument("--size", type=int, default=2048, help="output side in pixels")
    p.add_argument("--stride", type=int, default=128, help="grid stride of the real 256-px crops")
    p.add_argument("--train-crops", type=int, default=200, help="selection crops per class (at most)")
    p.add_argument("--fd-crops", type=int, default=64, help="synthetic tiles per Fréchet distance")
    p.add_argument("--draws", type=int, default=5, help="random subsets averaged per Fréchet distance")
    p.add_argument("--min-fidelity", type=float, default=0.9, help="eligibility: class fidelity, all classes")
    p.add_argument(
        "--sharp-classes", nargs="+", default=["normal", "tumour"], help="classes whose sharpness is ranked"
    )
    p.add_argument("--classes", nargs="+", help="measure these classes only (default: every class)")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--dtype", default="auto", choices=DTYPE_CHOICES, help="as `pathup synthesize --dtype`")
    args = p.parse_args(argv)
    for name in ("images", "size", "stride", "train_crops", "fd_crops", "draws"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be a positive number, got {getattr(args, name)}")
    if args.first_seed < 3:
        p.error(
            f"--first-seed must be 3 or more (seeds 0-2 are the quality benchmark's), got {args.first_seed}"
        )
    if len(set(args.models)) != len(args.models):
        p.error("a candidate is given twice")
    if bool(args.models) == bool(args.merge):
        p.error("give candidate model folders, or --merge with selection.json reports")
    return args


def choose(rows: dict[str, dict[str, float]], min_fidelity: float) -> tuple[str | None, dict[str, Any]]:
    """The rule of the module docstring: (chosen candidate or None, its ranks per eligible candidate)."""
    eligible = [k for k, r in rows.items() if r["fidelity"] >= min_fidelity and not math.isnan(r["fd"])]
    if not eligible:
        return None, {}
    by_fd = sorted(eligible, key=lambda k: rows[k]["fd"])
    unranked = {k for k in eligible if math.isnan(rows[k]["sharpness"])}  # no ranked class measured
    by_sharp = sorted(eligible, key=lambda k: 0.0 if k in unranked else -rows[k]["sharpness"])
    ranks = {
        k: {"fd": by_fd.index(k) + 1, "sharpness": 1 if k in unranked else by_sharp.index(k) + 1}
        for k in eligible
    }
    chosen = min(eligible, key=lambda k: (ranks[k]["fd"] + ranks[k]["sharpness"], rows[k]["fd"]))
    return chosen, ranks


def measure(args: argparse.Namespace, started: float) -> dict[str, Any]:
    """Every candidate on the selection tissue and draw: the ``candidates`` and settings of the report."""
    index = discover(args.data)
    classes = list(index.classes)
    measured = args.classes or classes
    for option, names in (("--classes", measured), ("--sharp-classes", args.sharp_classes)):
        missing = [c for c in names if c not in classes]
        if missing:
            raise SystemExit(f"{option} {missing}: not classes of {args.data} ({classes})")
    sharp_classes = [c for c in args.sharp_classes if c in measured]
    dtype = select_dtype(args.dtype, torch.device("cpu"))
    extractor = get_extractor("effnet-lite0", device="cpu")
    print(f"Model dtype: {str(dtype).removeprefix('torch.')}; feature network: {extractor.label}  ")
    tissue = SelectionTissue.of(index, extractor, args.stride, args.train_crops, measured)
    counts = ", ".join(f"{n} {int((tissue.labels == c).sum())}" for c, n in enumerate(classes))
    measured_in_order = [cls for cls in classes if cls in measured]
    print(
        f"Selection tissue: {len(tissue.labels)} real {CROP}-px crops of the training areas of {args.data} "
        f"({counts}; {args.stride}-px grid); probe: {tissue.probe}.  "
    )
    seeds = list(range(args.first_seed, args.first_seed + args.images))
    print(f"Selection draw: seeds {seeds[0]}-{seeds[-1]}, {args.size}x{args.size}, the models' defaults.\n")

    candidates: dict[str, dict[str, Any]] = {}
    for folder in args.models:
        model = load_model(folder).to("cpu", dtype)
        if list(model.classes) != classes:
            raise SystemExit(f"{folder}: classes {list(model.classes)} differ from the data's {classes}")
        shipped = model.metadata.get("references") or {}
        if not all(c in shipped for c in classes):
            raise SystemExit(f"{folder}: pathup.json 'references' must name a reference for {classes}")
        results: dict[str, dict[str, Any]] = {}
        for cls in measured_in_order:
            tiles: list[np.ndarray] = []
            seams = []
            for seed in seeds:
                reference = read_image(reference_for_class(model, cls, seed))
                settings = SynthesisSettings(cls, height=args.size, width=args.size, seed=seed)
                run = timed_run(model, reference, settings)
                tiles += grid_tiles(run.image, CROP)
                tiling = run.settings["patch_size"], run.settings["overlap"]
                seams.append(seam_measure(run.image, *tiling, model.vae_scale_factor))
            results[cls] = tissue.score(tiles, cls, args.fd_crops, args.draws) | {
                "seam_max": max(seams),
                "tiling": list(tiling),
            }
            print(f"  {folder} {cls}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
        tiles_all = sum(r["tiles"] for r in results.values())
        candidates[str(folder)] = {
            "fd": float(np.mean([r["fd"] for r in results.values()])),
            "sharpness": float(np.mean([results[c]["sharpness_ratio"] for c in sharp_classes]))
            if sharp_classes
            else math.nan,
            "fidelity": sum(r["fidelity"] * r["tiles"] for r in results.values() if r["tiles"])
            / max(tiles_all, 1),
            "per_class": results,
        }
    return {
        "feature_network": extractor.label,
        "probe": tissue.probe,
        "selection_crops": counts,
        "classes": measured,
        "selection_nuclei": tissue.nuclei,
        "seeds": seeds,
        "size": args.size,
        "fd_crops": args.fd_crops,
        "draws": args.draws,
        "dtype": str(dtype).removeprefix("torch."),
        "candidates": candidates,
    }


#: what two reports must share for their candidates to be ranked together (``--merge``)
SHARED_KEYS = (
    "feature_network",
    "probe",
    "selection_crops",
    "classes",
    "seeds",
    "size",
    "fd_crops",
    "draws",
    "dtype",
    "selection_nuclei",  # the training areas' nucleus figures, printed beside the candidates'
)


def merged(paths: list[Path]) -> dict[str, Any]:
    """The candidates of several reports of this script, measured on the same tissue, draw and settings."""
    reports = [json.loads(p.read_text()) for p in paths]
    first = reports[0]
    for path, report in zip(paths[1:], reports[1:], strict=True):
        differ = [k for k in SHARED_KEYS if report.get(k) != first.get(k)]
        if differ:
            raise SystemExit(f"--merge: {path} was measured with other {', '.join(differ)} than {paths[0]}")
        twice = set(report["candidates"]) & set(first["candidates"])
        if twice:
            raise SystemExit(f"--merge: {', '.join(sorted(twice))} measured in more than one report")
    candidates = {k: v for r in reports for k, v in r["candidates"].items()}
    return {
        **{k: first.get(k) for k in SHARED_KEYS},  # "classes": absent before the twenty-eighth session
        "merged_from": [str(p) for p in paths],
        "candidates": candidates,
    }


def decide(report: dict[str, Any], args: argparse.Namespace) -> None:
    """Apply the rule, print the table and the choice into ``report``."""
    candidates = report["candidates"]
    chosen, ranks = choose(candidates, args.min_fidelity)
    classes = list(next(iter(candidates.values()))["per_class"])
    table = []
    tissue = report.get("selection_nuclei", {})  # absent from reports of before the twenty-eighth session
    for name, r in candidates.items():
        c = r["per_class"]
        r["ranks"] = ranks.get(name)
        table.append(
            [
                f"**{name}**" if name == chosen else name,
                " / ".join(f"{c[n]['fd']:.1f}" for n in classes) + f" ({r['fd']:.1f})",
                " / ".join(f"{c[n]['sharpness_ratio']:.2f}" for n in classes),
                " / ".join(f"{c[n]['fidelity']:.2f}" for n in classes) + f" ({r['fidelity']:.2f})",
                " / ".join(f"{c[n].get('nucleus_area_px', math.nan):.0f}" for n in classes),
                " / ".join(f"{c[n].get('seam_max', math.nan):.3f}" for n in classes),
                f"{ranks[name]['fd']} + {ranks[name]['sharpness']}" if name in ranks else "not eligible",
            ]
        )
    names = " / ".join(classes)
    areas = " / ".join(f"{tissue[n]['median_area_px']:.0f}" if n in tissue else "-" for n in classes)
    headers = [
        "candidate",
        f"FD to the training areas, {names} (mean)",
        f"sharpness / training areas, {names}",
        f"class fidelity, {names} (all)",
        f"nucleus area px, {names} (training areas: {areas})",
        f"seam measure max, {names}",
        "rank FD + sharpness",
    ]
    print(markdown_table(headers, table))
    sharp_names = " and ".join(args.sharp_classes)
    print(
        f"\nRule: eligible at class fidelity >= {args.min_fidelity}; rank by mean FD (ascending) and by the "
        f"mean sharpness ratio of {sharp_names} (descending); lowest rank sum, ties to the lower FD.  "
    )
    print(f"Chosen: {chosen if chosen is not None else 'none (no candidate is eligible)'}  ")
    report["chosen"] = chosen
    report["rule"] = {"min_fidelity": args.min_fidelity, "sharp_classes": args.sharp_classes}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    started = time.perf_counter()
    print("# Model selection on the training areas\n")
    print(f"Command: `python {' '.join(sys.argv)}`  ")
    print(f"Machine: {machine_info()}  ")
    if args.merge:
        report = merged(args.merge)
        print(f"Candidates of {', '.join(report['merged_from'])}, drawn with seeds {report['seeds']}.\n")
    else:
        report = measure(args, started)
    decide(report, args)
    print(f"Selection time: {(time.perf_counter() - started) / 60:.1f} min")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        report = {"command": " ".join(sys.argv), "machine": machine_info(), **report}
        path = args.out / "selection.json"
        write_text_atomic(path, json.dumps(report, indent=1, default=float) + "\n")
        print(f"JSON: {path}")


if __name__ == "__main__":
    main()
