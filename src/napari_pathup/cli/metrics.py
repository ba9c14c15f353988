"""``pathup metrics REAL SYNTH``: FID/FD, KID/KD, improved precision/recall, density and coverage."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from napari_pathup.cli._common import positive_int, whole

DESCRIPTION = """\
Compare a folder of real images with a folder of synthetic ones (images or OME-Zarr stores).
Prints a table and, with --json, writes the values with their provenance (feature network and
weights checksum, resize, crops, sample counts, KID settings, k, library versions).

Only --extractor inception with the published FID weights
(torch-fidelity's weights-inception-2015-12-05-6726825d.pth, given by --inception-weights or
$PATHUP_INCEPTION_WEIGHTS) reports FID and KID. Without those weights the default is EfficientNet-Lite0,
whose distances are reported as FD/KD (EfficientNet-Lite0): useful to compare runs with each other,
not comparable with published FID. Nothing is downloaded.
"""


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``metrics`` sub-command."""
    parser = subparsers.add_parser(
        "metrics",
        help="FID/FD, KID/KD, improved precision/recall, density and coverage between two image sets",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("real", type=Path, metavar="REAL", help="folder of real images (or one image)")
    parser.add_argument("synth", type=Path, metavar="SYNTH", help="folder of synthetic images (or one image)")
    parser.add_argument(
        "--extractor",
        default="auto",
        metavar="NAME",
        help="feature network: auto (inception when its weights are given, else effnet-lite0), inception, "
        "effnet-lite0, or timm:MODEL with --weights (default: auto)",
    )
    parser.add_argument(
        "--inception-weights",
        type=Path,
        metavar="PATH",
        help="local FID Inception weights (weights-inception-2015-12-05-6726825d.pth); "
        "default: $PATHUP_INCEPTION_WEIGHTS",
    )
    parser.add_argument(
        "--weights", type=Path, metavar="PATH", help="weights file for a timm:MODEL extractor"
    )
    parser.add_argument(
        "--input-size",
        type=positive_int,
        metavar="PX",
        help="input size of a timm:MODEL extractor (default: its config)",
    )
    parser.add_argument(
        "--crops",
        type=positive_int,
        metavar="PX",
        help="cut every image into non-overlapping PXxPX tiles before resizing "
        "(e.g. 512 for 2048x2048 images)",
    )
    parser.add_argument(
        "--resize",
        choices=("tf1-bilinear", "bilinear-antialias"),
        help="resize to the network input (default: tf1-bilinear for inception, the FID reference; "
        "bilinear-antialias otherwise)",
    )
    parser.add_argument(
        "-k", "--nearest-k", type=positive_int, default=3, metavar="K", help="k of the k-NN balls (3)"
    )
    parser.add_argument(
        "--ball",
        choices=("closed", "open"),
        default="closed",
        help="closed: a point at exactly the k-NN radius is inside (torch-fidelity); open: not (prdc)",
    )
    parser.add_argument(
        "--kid-subsets", type=positive_int, default=100, metavar="N", help="KID subsets (100)"
    )
    parser.add_argument(
        "--kid-subset-size",
        type=positive_int,
        default=1000,
        metavar="N",
        help="samples per KID subset (1000; shrunk with a warning for smaller sets)",
    )
    parser.add_argument("--seed", type=whole(0), default=2020, help="seed of the KID subsets (2020)")
    parser.add_argument(
        "--fd-method",
        choices=("auto", "eigvals", "low-rank"),
        default="auto",
        help="trace of (Sigma_g Sigma_r)^1/2: eigvals (torch-fidelity), low-rank (exact when a set has fewer "
        "samples than feature dimensions); auto picks low-rank only then",
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=32, metavar="N", help="images per network batch (32)"
    )
    parser.add_argument("--device", metavar="DEV", help="torch device (default: cuda if available, else cpu)")
    parser.add_argument(
        "--json", type=Path, metavar="OUT", help="write values and provenance to this JSON file"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=execute)
    return parser


def execute(args: argparse.Namespace) -> int:
    """Compute the metrics, print the table, write the JSON; returns the exit code."""
    from napari_pathup.errors import OutputError
    from napari_pathup.io.atomic import atomic_output, check_output, os_error_message
    from napari_pathup.metrics import MetricsWarning, compute_metrics, get_extractor
    from napari_pathup.metrics.images import check_crop_size, image_set

    if args.json is not None:
        try:
            args.json.expanduser().parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(os_error_message(args.json, exc)) from exc
        check_output(args.json, overwrite=True, probe=True)  # writable, before any feature is computed

    # check both sets (and crop sizes, from the headers) before loading a network, so mistakes fail fast
    check_crop_size(image_set(args.real, "real"), args.crops)
    check_crop_size(image_set(args.synth, "synthetic"), args.crops)
    extractor = get_extractor(
        args.extractor,
        inception_weights=args.inception_weights,
        weights=args.weights,
        resize_method=args.resize,
        input_size=args.input_size,
        device=args.device,
    )
    if not extractor.is_fid:
        print(
            f"pathup metrics: feature space {extractor.label}: distances are reported as FD/KD, "
            "not comparable with published FID",
            file=sys.stderr,
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MetricsWarning)
        report = compute_metrics(
            args.real,
            args.synth,
            extractor=extractor,
            crops=args.crops,
            batch_size=args.batch_size,
            k=args.nearest_k,
            ball=args.ball,
            kid_subsets=args.kid_subsets,
            kid_subset_size=args.kid_subset_size,
            seed=args.seed,
            fd_method=args.fd_method,
            progress=not args.quiet,
        )
    for warning in caught:
        if issubclass(warning.category, MetricsWarning):
            print(f"pathup metrics: warning: {warning.message}", file=sys.stderr)
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    print(report.format_table())
    if args.json is not None:
        with atomic_output(args.json, overwrite=True) as temp:
            temp.write_text(
                json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
            )
    return 0
