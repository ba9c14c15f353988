"""``pathup synthesize``: one synthetic H&E image of a class from a real reference, with progress bars.

Everything that can be refused is refused before the model loads (no weights read): the output
name, format and folder (writable), the settings against the model's configs (the run plan), the
run's work, memory and disk estimate, and the reference's size from its header.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from napari_pathup.cli._common import (
    add_model_arguments,
    add_sampling_arguments,
    add_size_argument,
    check_model_folder,
    load_for_run,
    max_image_pixels,
    number,
    read_spec,
    sampling_settings,
    whole,
)
from napari_pathup.engine.plan import SynthesisSettings


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "synthesize",
        help="synthesise a large H&E image of a class (PathUp, two stages)",
        description="Synthesise a large H&E image of CLASS from a real reference RoI with PathUp's two "
        "stages. The output format follows the extension: .ome.zarr, .ome.tif, .tif/.tiff or .png. "
        "Settings, the output folder, the reference's size and the run's estimated work, memory and disk "
        "are checked before the model loads; runs above the budget need --allow-large-run.",
    )
    p.add_argument("--class", dest="class_name", required=True, help="tissue class (see `pathup info`)")
    add_model_arguments(p)
    p.add_argument(
        "--reference",
        metavar="IMAGE",
        help="real reference RoI (default: the model's own for CLASS; of several, the SEED mod n-th)",
    )
    p.add_argument(
        "--region",
        metavar="X,Y,W,H",
        help="RoI of the reference in level-0 pixels (left, top, width, height); read from one pyramid "
        "level only, never the whole slide (SVS, SCN, NDPI, pyramidal (OME-)TIFF, OME-Zarr)",
    )
    p.add_argument(
        "--scan-region",
        type=whole(1),
        metavar="N",
        help="for a slide scanned in several regions (Leica SCN): the one --region lies in, 1, 2, ... "
        "in the file's order, as napari's reader names them '[region N]' (default: the largest)",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--level", type=whole(0), metavar="N", help="pyramid level to read the RoI from (0: full resolution)"
    )
    where.add_argument(
        "--mpp",
        type=number(0, low_open=True),
        metavar="M",
        help="read the RoI from the level closest to M µm/px (default: the model's native pixel size "
        "when it records one, else level 0)",
    )
    p.add_argument("--out", required=True, metavar="PATH", help="output: .ome.zarr, .ome.tif, .tif or .png")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    add_size_argument(p)
    add_sampling_arguments(p)
    p.add_argument("--seed", type=int, help=f"random seed (default: {SynthesisSettings('x').seed})")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=execute)


def execute(args: argparse.Namespace) -> int:
    # 1. everything that needs no weights: the settings' own rules (no torch yet), the output, the
    #    settings against the model's configs, the budget, the reference's header
    seed = {} if args.seed is None else {"seed": args.seed}
    settings = SynthesisSettings(class_name=args.class_name, **seed, **sampling_settings(args)).check()
    # no torch yet: a wrong --out, --model or --class fails at once, not after seconds of imports
    from napari_pathup.io import check_output, output_format

    out = Path(args.out)
    output_format(out)
    out = check_output(out, args.overwrite, probe=True)
    check_model_folder(args.model, args.allow_download, settings.class_name)  # the full check follows

    from tqdm import tqdm

    from napari_pathup.engine.events import Finished, PatchPreview, StageStarted, TileDecoded
    from napari_pathup.engine.pipeline import synthesize
    from napari_pathup.engine.plan import available_memory
    from napari_pathup.io import image_shape, write_image
    from napari_pathup.io.atomic import free_bytes
    from napari_pathup.io.images import check_pixels
    from napari_pathup.io.sink import output_sink
    from napari_pathup.io.slide import load_roi, read_reference_roi
    from napari_pathup.models.default import reference_for_class
    from napari_pathup.provenance import run_attributes

    spec = read_spec(args)
    plan = settings.resolve(spec)
    plan.check_budget(args.allow_large_run, available_memory(), free_bytes(out.parent))
    reference_path = (
        Path(args.reference) if args.reference else reference_for_class(spec, args.class_name, settings.seed)
    )
    limit = max_image_pixels(args)
    whole_image = args.region is None and args.level is None and args.mpp is None
    if whole_image and args.scan_region is None:  # the whole image: its header
        check_pixels(reference_path, *image_shape(reference_path), limit)
    roi = read_reference_roi(
        reference_path,
        args.region,
        args.level,
        args.mpp,
        spec,
        lazy=True,
        max_pixels=limit,
        scan_region=args.scan_region,
    )
    if whole_image and args.scan_region is not None and roi.region is not None:  # its level 0's size
        check_pixels(reference_path, roi.region.height, roi.region.width, limit)
    plan.check_reference(roi.image.shape, f"reference {reference_path}")
    fit_note = plan.reference_note(roi.image.shape, f"the reference {reference_path.name}")
    for line in [*roi.notes, *([fit_note] if fit_note else [])]:
        print(line, file=sys.stderr)

    # 2. the model, the reference's pixels, the run
    model = load_for_run(args)
    reference = load_roi(roi.image, f"reference {reference_path}")
    with output_sink(out, plan.height, plan.width, plan.in_memory) as sink:
        bar = None
        finished = None
        for event in synthesize(model, reference, plan, sink):
            if isinstance(event, StageStarted):
                if bar is not None:
                    bar.close()
                bar = tqdm(
                    total=event.steps * event.patches_per_step,
                    desc=f"stage {event.stage}/2 denoise",
                    unit="patch",
                    disable=args.quiet,
                    file=sys.stderr,
                )
            elif isinstance(event, PatchPreview):
                assert bar is not None  # a stage starts before its patches
                bar.update(1)
            elif isinstance(event, TileDecoded):
                assert bar is not None
                if event.tile_index == 0:
                    bar.close()
                    bar = tqdm(
                        total=event.tiles,
                        desc=f"stage {event.stage}/2 decode",
                        unit="tile",
                        disable=args.quiet,
                        file=sys.stderr,
                    )
                bar.update(1)
            elif isinstance(event, Finished):
                finished = event
        if bar is not None:
            bar.close()
        assert finished is not None  # synthesize() ends with Finished
        attrs = {**run_attributes(model, finished.settings, reference_path), **roi.attributes()}
        written = write_image(
            out, finished.image, attrs=attrs, overwrite=args.overwrite, pixel_size=roi.pixel_size
        )
    print(f"wrote {written} ({plan.height}x{plan.width} px, class {plan.class_name}, seed {plan.seed})")
    return 0
