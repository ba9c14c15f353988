"""``pathup synthesize``: one synthetic H&E image of a class from a real reference, with progress bars."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from napari_pathup.cli._common import (
    add_model_arguments,
    add_sampling_arguments,
    load_for_run,
    parse_size,
    sampling_settings,
)

#: outputs up to this many pixels are assembled in memory; larger ones in a temporary zarr on disk
IN_MEMORY_PIXELS = 4096 * 4096


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "synthesize",
        help="synthesise a large H&E image of a class (PathUp, two stages)",
        description="Synthesise a large H&E image of CLASS from a real reference RoI with PathUp's two "
        "stages. "
        "The output format follows the extension: .ome.zarr, .tif/.tiff or .png.",
    )
    p.add_argument("--class", dest="class_name", required=True, help="tissue class (see `pathup info`)")
    add_model_arguments(p)
    p.add_argument(
        "--reference", metavar="IMAGE", help="real reference RoI (default: the model's own for CLASS)"
    )
    p.add_argument(
        "--region",
        metavar="X,Y,W,H",
        help="RoI of the reference in level-0 pixels (left, top, width, height); read from one pyramid "
        "level only, never the whole slide (SVS, pyramidal (OME-)TIFF, OME-Zarr)",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--level", type=int, metavar="N", help="pyramid level to read the RoI from (0: full resolution)"
    )
    where.add_argument(
        "--mpp",
        type=float,
        metavar="M",
        help="read the RoI from the level closest to M µm/px (default: the model's native pixel size "
        "when it records one, else level 0)",
    )
    p.add_argument("--out", required=True, metavar="PATH", help="output: .ome.zarr, .tif, .tiff or .png")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument(
        "--size", type=parse_size, default=(2048, 2048), metavar="N|WxH", help="output size (2048)"
    )
    add_sampling_arguments(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import zarr
    from tqdm import tqdm

    from napari_pathup.engine.events import Finished, PatchPreview, StageStarted, TileDecoded
    from napari_pathup.engine.pipeline import SynthesisSettings, synthesize
    from napari_pathup.io import check_output, output_format, write_image
    from napari_pathup.io.slide import read_reference_roi
    from napari_pathup.models.default import reference_for_class
    from napari_pathup.provenance import run_attributes

    out = Path(args.out)
    output_format(out)  # fail on a bad extension before any long work
    check_output(out, args.overwrite)
    model = load_for_run(args)
    reference_path = Path(args.reference) if args.reference else reference_for_class(model, args.class_name)
    roi = read_reference_roi(reference_path, args.region, args.level, args.mpp, model)
    reference = roi.image
    for line in roi.notes:
        print(line, file=sys.stderr)
    height, width = args.size
    settings = SynthesisSettings(
        class_name=args.class_name, seed=args.seed, **sampling_settings(args)
    ).resolve(model)

    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".pathup-work-") as work:
        if height * width <= IN_MEMORY_PIXELS:
            sink = np.zeros((height, width, 3), np.uint8)
        else:
            sink = zarr.create_array(
                store=str(Path(work) / "image.zarr"),
                shape=(height, width, 3),
                chunks=(512, 512, 3),
                dtype="uint8",
            )
        bar = None
        finished = None
        for event in synthesize(model, reference, settings, sink):
            if isinstance(event, StageStarted):
                if bar is not None:
                    bar.close()
                total = event.steps * event.patches_per_step
                bar = tqdm(
                    total=total,
                    desc=f"stage {event.stage}/2 denoise",
                    unit="patch",
                    disable=args.quiet,
                    file=sys.stderr,
                )
            elif isinstance(event, PatchPreview):
                bar.update(1)
            elif isinstance(event, TileDecoded):
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
        attrs = {**run_attributes(model, finished.settings, reference_path), **roi.attributes()}
        written = write_image(
            out, finished.image, attrs=attrs, overwrite=args.overwrite, pixel_size=roi.pixel_size
        )
    print(f"wrote {written} ({height}x{width} px, class {settings.class_name}, seed {settings.seed})")
    return 0
