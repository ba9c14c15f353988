"""The ``pathup`` command line: one sub-command per module, each thin over the core packages.

Every sub-command module exposes ``register(subparsers)``, which adds its parser and sets
``func`` to its ``execute(args)``, which takes the parsed namespace and returns an exit code. Heavy imports
(torch, diffusers) happen inside those callables so that ``pathup --help`` stays fast.

Errors: a :class:`~napari_pathup.errors.PathupError` (bad input, settings, output, model folder) is
printed as one line with exit status 2; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from napari_pathup import __version__
from napari_pathup.errors import PathupError

#: sub-command modules, in the order ``pathup --help`` lists them
COMMANDS: tuple[str, ...] = (
    "synthesize",
    "info",
    "slide",
    "metrics",
    "prepare",
    "train",
    "train-decoder",
    "augment",
    "evaluate",
    "rehearse",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pathup",
        description="Synthesise large H&E pathology images with latent diffusion (PathUp).",
    )
    parser.add_argument("--version", action="version", version=f"napari-pathup {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"napari_pathup.cli.{name.replace('-', '_')}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pathup`` console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("pathup: interrupted; no partial output was left under a final name", file=sys.stderr)
        return 130
    except PathupError as exc:  # an input error: one line; any other exception is a bug (traceback)
        print(f"pathup {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
