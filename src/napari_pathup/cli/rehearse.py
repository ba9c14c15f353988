"""``pathup rehearse``: the whole PathUp chain on data/demo with tiny models, on a CPU, in a few minutes."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``rehearse`` sub-command."""
    p = subparsers.add_parser(
        "rehearse",
        help="run prepare → train → augment 1:1 → evaluate --preset paper end to end with tiny models",
        description="Rehearse the reproduction of PathUp (docs/reproduce_pathup.md) with the same pathup "
        "commands, on DATA (default data/demo of the repository) with a random tiny Stable Diffusion "
        "pipeline and a random vit_tiny standing in for SD 1.5 and ViT-L: every step and file format of "
        "the chain runs, in a few minutes on a CPU; the scores mean nothing. Writes OUT/rehearsal.md "
        "(commands, timings, the evaluation table) and OUT/rehearsal.json beside every step's output.",
    )
    p.add_argument("data", type=Path, nargs="?", default=Path("data/demo"), metavar="DATA")
    p.add_argument("--out", type=Path, required=True, metavar="OUT", help="new (or empty) folder")
    p.add_argument("--progress", action="store_true", help="show every step's progress bars")
    p.set_defaults(func=execute)


def execute(args: argparse.Namespace) -> int:
    from napari_pathup.reproduce import rehearse

    rehearse(args.data, args.out, progress=args.progress, log=lambda s: print(s, file=sys.stderr))
    print((args.out / "rehearsal.md").read_text(encoding="utf-8"))
    return 0
