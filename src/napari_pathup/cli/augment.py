"""``pathup augment``: synthetic images of every real image of DATA, on Dask, exactly once and resumable."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from napari_pathup.cli._common import (
    _Deprecated,
    add_model_arguments,
    add_sampling_arguments,
    add_size_argument,
    add_split_argument,
    check_model_folder,
    max_image_pixels,
    number,
    positive_int,
    sampling_settings,
    whole,
)

if TYPE_CHECKING:
    from napari_pathup.augmentation.run import Summary


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "augment",
        help="synthesise RATIO images per real image of DATA into an OME-Zarr store, on Dask",
        description="For every real image of DATA (one sub-folder of images per class, or the BRACS RoI "
        "layout DATA/<split>/<k>_<CLASS>/*.png), synthesise RATIO images of the same class with that image "
        "as the reference, and write each as STORE/<class>/<name>_syn<k>.ome.zarr, with STORE/manifest.csv "
        "(output, class, reference, seed, settings, model checksum, status). Runs on a local Dask cluster "
        "sized to this machine, or on the cluster at --dask-address. Exactly once and resumable: rerun the "
        "same "
        "command after a crash or Ctrl-C to make exactly the missing images; seeds follow from each item, so "
        "a rerun gives the same images.",
    )
    p.add_argument("data", metavar="DATA", type=Path, help="folder of class folders (or BRACS layout)")
    p.add_argument("--out", required=True, metavar="STORE", type=Path, help="store folder (new or earlier)")
    p.add_argument(
        "--ratio",
        type=number(0, low_open=True),
        default=1.0,
        help="synthetic images per real image (1.0); a fraction picks a fixed, hash-ordered subset of "
        "each class for the extra copy (0.5: half of each class)",
    )
    add_split_argument(p, "whose RoIs are augmented")
    add_model_arguments(p)
    add_size_argument(p, "output size (the paper's synthetic RoIs are 2048)")
    add_sampling_arguments(p, old_scheduler_flag=False)
    p.add_argument("--seed", type=whole(0), default=0, help="base seed mixed into every item's seed (0)")
    dask = p.add_argument_group("Dask")
    dask.add_argument(
        "--dask-address",
        metavar="ADDRESS",
        help="address of a running Dask scheduler, e.g. tcp://10.0.0.5:8786 (default: a local cluster)",
    )
    dask.add_argument(
        "--scheduler", dest="dask_address", action=_Deprecated, new="--dask-address", help=argparse.SUPPRESS
    )
    dask.add_argument(
        "--workers",
        type=positive_int,
        help="local worker processes (default: one per core, fewer if memory is short)",
    )
    dask.add_argument(
        "--threads",
        type=positive_int,
        metavar="N",
        help="torch threads per worker (local default 1, so that images do not depend on --workers; "
        "with --dask-address the workers' own setting unless given)",
    )
    dask.add_argument(
        "--connect-timeout",
        type=number(0, low_open=True),
        default=10.0,
        help="seconds to reach --dask-address (10)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=execute)


def execute(args: argparse.Namespace) -> int:
    from napari_pathup.augmentation.cluster import ClusterWarning
    from napari_pathup.errors import InputError

    if args.dask_address and args.workers is not None:
        raise InputError(
            "--workers sizes a local cluster; with --dask-address the cluster's workers are used"
        )
    # no torch yet: the settings' own rules, the store's path, --model and DATA's classes fail at once
    from napari_pathup.augmentation.run import check_store_path
    from napari_pathup.engine.plan import SynthesisSettings

    SynthesisSettings(**{**sampling_settings(args), "class_name": "any"}).check()
    check_store_path(args.out.expanduser().resolve())
    if (files := check_model_folder(args.model, args.allow_download)) is not None:
        from napari_pathup.datasets import discover
        from napari_pathup.models.spec import check_data_classes

        data_classes = discover(args.data, splits=list(args.split), holdout="none").classes
        check_data_classes(files.classes, data_classes, files.path.resolve())
    default = warnings.showwarning

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        if issubclass(category, ClusterWarning):  # at once, before the run, in the command's own words
            print(f"pathup augment: warning: {message}", file=sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)

    with warnings.catch_warnings():
        warnings.simplefilter("always", ClusterWarning)
        warnings.showwarning = show
        summary = _augment(args)
    for line in summary.lines():
        print(line, file=sys.stdout if line.startswith(str(summary.planned)) else sys.stderr)
    return 0 if summary.ok else 1


def _augment(args: argparse.Namespace) -> Summary:
    from napari_pathup.augmentation.run import augment

    return augment(
        args.data,
        args.out,
        settings=sampling_settings(args),
        ratio=args.ratio,
        model=args.model,
        allow_download=args.allow_download,
        base_seed=args.seed,
        splits=list(args.split),
        dask_address=args.dask_address,
        workers=args.workers,
        device=args.device,
        dtype=args.dtype,
        torch_threads=args.threads,
        connect_timeout=args.connect_timeout,
        progress=not args.quiet,
        max_pixels=max_image_pixels(args),
        allow_large=args.allow_large_run,
    )
