"""``pathup evaluate DATA [--synthetic STORE]``: cross-validated classification, with and without synthetic
images in the training folds."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from napari_pathup.cli._common import add_split_argument, number, positive_int, whole
from napari_pathup.training import MIXED_PRECISION

DESCRIPTION = """\
Downstream evaluation of PathUp augmentation, as in the paper: a frozen backbone gives features of
every real image (or RoI, with --roi-size); a single-instance head (logistic regression on the whole
image resized to --image-size) and a gated attention MIL head (over --tile-size tiles) are trained
per fold on the real training images, then on them plus the synthetic images of --synthetic STORE
(the --out folder of pathup augment: OME-Zarr images and a manifest). Synthetic images only ever
enter training folds, and a synthetic image whose reference is in the validation fold is left out
of that fold's training (it would leak the validation image).

Folds are stratified by class and grouped by source image (by slide for BRACS file names, or by
the groups of --groups FILE.csv), so the RoIs of one image never straddle training and validation.
Every class needs at least --folds groups. Prints accuracy and weighted F1, mean ± std over folds,
naming the feature extractor; --json and --plot write them too. Nothing is downloaded.

On the shipped demo data (stroma has one source image): --classes normal,tumour --folds 2 --roi-size 256
(see docs/evaluate.md).

--preset paper runs the paper's protocol instead: a ViT (timm vit_large_patch16_224, or the timm:NAME
of --backbone) created for --image-size input (512) with the weights of --backbone-weights
FILE.safetensors (required; never downloaded), fine-tuned end to end per fold (lr 0.001) and a gated
attention MIL head on its frozen tile features (lr 0.0001), --epochs each (100); CUDA with autocast when
available; --checkpoints DIR makes a killed run resume at the fold and epoch it reached. Several GPUs or
processes: accelerate launch -m napari_pathup evaluate ... (see docs/evaluate.md).
"""


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``evaluate`` sub-command."""
    p = subparsers.add_parser(
        "evaluate",
        help="cross-validated classification (single-instance and MIL) with and without synthetic images",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("data", type=Path, metavar="DATA", help="class folders, or the BRACS RoI layout")
    p.add_argument(
        "--synthetic", type=Path, metavar="STORE", help="pathup augment output (images + manifest)"
    )
    p.add_argument("--folds", type=whole(2), help="cross-validation folds (5, as the paper and its preset)")
    p.add_argument(
        "--backbone",
        metavar="NAME",
        help="frozen feature network: effnet-lite0 (default, bundled), or timm:MODEL with "
        "--backbone-weights; with --preset: the timm:MODEL to fine-tune instead of the preset's",
    )
    p.add_argument(
        "--backbone-weights",
        type=Path,
        metavar="FILE",
        help="local .safetensors weights of a timm:MODEL backbone",
    )
    p.add_argument(
        "--backbone-input-size",
        type=positive_int,
        metavar="PX",
        help="input size of a timm:MODEL backbone (default: its config, e.g. 224 for ViT-L/16)",
    )
    p.add_argument(
        "--image-size",
        type=positive_int,
        metavar="PX",
        help="single-instance: each image resized to PX x PX (512; with --preset: the ViT's input size)",
    )
    p.add_argument(
        "--tile-size",
        type=positive_int,
        default=512,
        metavar="PX",
        help="MIL: tiles of PX x PX (512); smaller images are padded with white",
    )
    p.add_argument(
        "--roi-size",
        type=positive_int,
        metavar="PX",
        help="cut every image into PX x PX RoIs (grouped with their source image)",
    )
    p.add_argument(
        "--min-tissue", type=number(0, 1), default=0.5, help="least tissue fraction of a RoI (0.5)"
    )
    add_split_argument(p, "to evaluate on")
    p.add_argument("--classes", metavar="A,B,...", help="evaluate these classes only")
    p.add_argument(
        "--groups",
        default="auto",
        metavar="MODE",
        help="auto (slide for BRACS_<slide>_ names, else source image), image, slide, or an image,group CSV",
    )
    p.add_argument("--seed", type=whole(0), default=0, help="folds and heads (0)")
    p.add_argument(
        "--mil-epochs", type=positive_int, help="MIL training epochs (40; with --preset: --epochs)"
    )
    preset = p.add_argument_group("end-to-end fine-tuning (--preset)")
    preset.add_argument(
        "--preset",
        metavar="NAME",
        help="a named downstream protocol: paper (ViT-L fine-tuned at 512 px, lr 1e-3; ADMIL, lr 1e-4; "
        "100 epochs; 5 folds)",
    )
    preset.add_argument("--epochs", type=positive_int, help="ViT fine-tuning epochs (preset: 100)")
    preset.add_argument("--lr", type=number(0, low_open=True), help="ViT learning rate (preset: 0.001)")
    preset.add_argument("--mil-lr", type=number(0, low_open=True), help="MIL learning rate (preset: 0.0001)")
    preset.add_argument(
        "--mixed-precision",
        choices=MIXED_PRECISION,
        default="auto",
        help="autocast on CUDA: auto (bf16 where supported, else fp16), no, fp16, bf16; CPUs run fp32",
    )
    preset.add_argument(
        "--checkpoints",
        type=Path,
        metavar="DIR",
        help="per-fold checkpoints; a killed run given the same DIR resumes where it stopped",
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=16,
        help="images per backbone batch (16; with --preset: the fine-tuning batch of all processes)",
    )
    p.add_argument("--device", metavar="DEV", help="torch device (default: cuda if available, else cpu)")
    p.add_argument(
        "--cache", type=Path, metavar="DIR", help="keep features here and reuse them in later runs"
    )
    p.add_argument("--json", type=Path, metavar="OUT", help="write the scores and provenance as JSON")
    p.add_argument("--plot", type=Path, metavar="OUT.png", help="write a bar plot (PNG)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=execute)
    return p


def _check_outputs(args: argparse.Namespace) -> None:
    from napari_pathup.errors import InputError
    from napari_pathup.io.atomic import check_output

    for flag, path in (("--json", args.json), ("--plot", args.plot)):
        if path is not None and not path.expanduser().parent.is_dir():
            raise InputError(f"{flag} {path}: the folder {path.parent} does not exist")
        if path is not None:
            check_output(path, overwrite=True, probe=True)  # writable, before any feature is computed
    if args.plot is not None and args.plot.suffix.lower() != ".png":
        raise InputError(f"--plot {args.plot}: expected a .png file")
    if not 0 <= args.min_tissue <= 1:
        raise InputError(f"--min-tissue must lie in [0, 1], got {args.min_tissue}")


PRESET_ONLY = ("epochs", "lr", "mil_lr", "checkpoints")


def _finetune_settings(args: argparse.Namespace):
    """The fine-tuning settings of ``--preset`` (None without it); names and files checked, nothing read."""
    from napari_pathup.errors import InputError

    if args.preset is None:
        given = [f"--{k.replace('_', '-')}" for k in PRESET_ONLY if getattr(args, k) is not None]
        if given or args.mixed_precision != "auto":
            flags = ", ".join(given or ["--mixed-precision"])
            raise InputError(f"{flags}: only for end-to-end fine-tuning, with --preset NAME (e.g. paper)")
        return None
    from napari_pathup.evaluation.finetune import (
        FineTuneSettings,
        check_architecture,
        check_weights_file,
        get_preset,
    )

    preset = get_preset(args.preset)
    if args.backbone is not None and not args.backbone.startswith("timm:"):
        raise InputError(f"--preset {preset.name} fine-tunes a timm model: --backbone must be timm:NAME")
    architecture = args.backbone.removeprefix("timm:") if args.backbone else preset.architecture
    if not architecture:
        raise InputError("--backbone timm:NAME needs a model name, e.g. timm:vit_large_patch16_224")
    check_architecture(architecture)
    if args.backbone_weights is None:
        raise InputError(
            f"--preset {preset.name} needs --backbone-weights FILE.safetensors: the weights of timm "
            f"{architecture}; nothing is downloaded"
        )
    check_weights_file(args.backbone_weights.expanduser())
    if args.checkpoints is not None and args.checkpoints.exists() and not args.checkpoints.is_dir():
        raise InputError(f"--checkpoints {args.checkpoints}: not a folder")
    return FineTuneSettings(
        architecture=architecture,
        weights=args.backbone_weights.expanduser(),
        image_size=args.image_size or preset.image_size,
        lr=args.lr or preset.lr,
        mil_lr=args.mil_lr or preset.mil_lr,
        epochs=args.epochs or preset.epochs,
        batch_size=args.batch_size,
        mixed_precision=args.mixed_precision,
        device=args.device or "auto",
        preset=preset.name,
    )


def execute(args: argparse.Namespace) -> int:
    """Check every input, compute, print the table; write JSON/plot last. Returns the exit code."""
    from napari_pathup.evaluation.data import add_synthetic, collect_real
    from napari_pathup.evaluation.folds import check_fold_count
    from napari_pathup.evaluation.mil import MILSettings
    from napari_pathup.evaluation.run import EvaluateSettings, check_backbone_weights, evaluate

    _check_outputs(args)
    finetune = _finetune_settings(args)
    if args.folds is None and finetune is not None:
        from napari_pathup.evaluation.finetune import PRESETS

        args.folds = PRESETS[finetune.preset].folds
    args.folds = args.folds or 5
    if finetune is None:
        args.backbone = args.backbone or "effnet-lite0"
        check_backbone_weights(args.backbone, args.backbone_weights)
    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    data = collect_real(
        args.data,
        splits=list(args.split),
        classes=classes,
        groups=args.groups,
        roi_size=args.roi_size,
        min_tissue=args.min_tissue,
    )
    check_fold_count(
        [it.class_index for it in data.real],
        [it.group for it in data.real],
        data.classes,
        args.folds,
        data.group_kind,
    )
    if args.synthetic is not None:
        add_synthetic(data, args.synthetic, roi_size=args.roi_size, min_tissue=args.min_tissue)
    if data.dropped:
        print(
            f"pathup evaluate: left out (no RoI with {args.min_tissue:.0%} tissue) {', '.join(data.dropped)}",
            file=sys.stderr,
        )

    if finetune is not None:
        return _execute_preset(args, data, finetune)

    from napari_pathup.metrics.features import get_extractor

    extractor = get_extractor(
        args.backbone, weights=args.backbone_weights, input_size=args.backbone_input_size, device=args.device
    )
    settings = EvaluateSettings(
        folds=args.folds,
        image_size=args.image_size or 512,
        tile_size=args.tile_size,
        seed=args.seed,
        batch_size=args.batch_size,
        mil=MILSettings(epochs=args.mil_epochs or 40),
    )
    print(f"pathup evaluate: feature extractor {extractor.label}", file=sys.stderr)
    if args.cache is not None:
        args.cache.mkdir(parents=True, exist_ok=True)
    report = evaluate(
        data, extractor, settings, cache_folder=args.cache, progress=None if args.quiet else _bar
    )
    _write_report(args, report)
    return 0


def _write_report(args: argparse.Namespace, report) -> None:
    """Print the table; write the JSON and the plot where asked."""
    print(report.format_table())
    if args.json is not None:
        report.write_json(args.json.expanduser())
    if args.plot is not None:
        report.write_plot(args.plot.expanduser())


def _execute_preset(args: argparse.Namespace, data, finetune) -> int:
    """``--preset``: fine-tune per fold, print the table and write JSON/plot (main process only)."""
    from napari_pathup.evaluation.finetune import evaluate_finetune, mil_settings
    from napari_pathup.evaluation.run import EvaluateSettings

    settings = EvaluateSettings(
        folds=args.folds,
        image_size=finetune.image_size,
        tile_size=args.tile_size,
        seed=args.seed,
        batch_size=args.batch_size,
        mil=mil_settings(finetune, args.mil_epochs),
    )
    report = evaluate_finetune(
        data,
        settings,
        finetune,
        checkpoints=args.checkpoints.expanduser() if args.checkpoints is not None else None,
        cache_folder=args.cache,
        progress=not args.quiet,
        log=lambda text: print(text, file=sys.stderr),
    )
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # another process of a multi-process run (accelerate launch, torchrun): the main one writes
    _write_report(args, report)
    return 0


def _bar(total: int):
    from tqdm import tqdm

    bar = tqdm(total=total, desc="features", unit="item", file=sys.stderr)

    def tick() -> None:
        bar.update(1)
        if bar.n >= total:
            bar.close()

    return tick
