"""``pathup prepare DATA --out DIR --size PX``: cut a data set into fixed-size images, with their groups."""

from __future__ import annotations

import argparse
from pathlib import Path

from napari_pathup.cli._common import add_split_argument, number, positive_int, whole


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``prepare`` sub-command."""
    p = subparsers.add_parser(
        "prepare",
        help="cut every image of DATA into PX x PX images (class folders + groups.csv)",
        description="The first step of the PathUp chain (docs/reproduce_pathup.md): the paper cuts BRACS "
        "RoIs into 2048x2048 images. Every image of DATA (class folders or the BRACS layout) is cut into "
        "non-overlapping PX x PX tiles from its top-left corner (partial edge rows/columns left out, tiles "
        "with less than --min-tissue tissue dropped; an image smaller than PX on a side stays whole), "
        "written as OUT/<class>/<name>_y<Y>_x<X>.png, with OUT/groups.csv naming the source image (the "
        "slide, for BRACS_<slide>_ names) of every tile: give it to pathup evaluate --groups so that the "
        "tiles of one source never straddle training and validation. OUT is written under a temporary "
        "name and appears only when complete.",
    )
    p.add_argument("data", type=Path, metavar="DATA", help="class folders, or the BRACS RoI layout")
    p.add_argument("--out", type=Path, required=True, metavar="OUT", help="new folder")
    p.add_argument(
        "--size", type=whole(16), default=2048, metavar="PX", help="tile size (2048, as the paper)"
    )
    p.add_argument(
        "--per-image", type=positive_int, metavar="N", help="keep N tiles per image, evenly spread"
    )
    p.add_argument(
        "--min-tissue", type=number(0, 1), default=0.5, help="least tissue fraction of a tile (0.5)"
    )
    p.add_argument("--classes", metavar="A,B,...", help="these classes only")
    add_split_argument(p, "to cut into tiles")
    p.set_defaults(func=execute)


def execute(args: argparse.Namespace) -> int:
    from napari_pathup.reproduce import prepare_tiles

    summary = prepare_tiles(
        args.data,
        args.out,
        size=args.size,
        classes=[c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None,
        per_image=args.per_image,
        min_tissue=args.min_tissue,
        splits=list(args.split),
    )
    for line in summary.lines():
        print(line)
    return 0
