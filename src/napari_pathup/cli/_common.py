"""Arguments and helpers shared by the sub-commands."""

from __future__ import annotations

import argparse
import re

SIZE = re.compile(r"^(\d+)(?:x(\d+))?$")


def parse_size(text: str) -> tuple[int, int]:
    """``2048`` → (2048, 2048); ``3072x2048`` → height 2048, width 3072.

    WIDTHxHEIGHT, as image tools write sizes; the result is (height, width), as arrays are shaped.
    """
    match = SIZE.match(text.strip().lower())
    if not match:
        raise argparse.ArgumentTypeError(f"size {text!r}: expected N or WIDTHxHEIGHT, e.g. 2048 or 3072x2048")
    width = int(match.group(1))
    height = int(match.group(2) or match.group(1))
    return height, width


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", metavar="DIR", help="model folder (default: the embedded default model)")
    parser.add_argument(
        "--allow-download",
        action="store_true",
        help="allow --model to name a hub id and download it (safetensors only); off by default",
    )
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"))


def load_for_run(args: argparse.Namespace):
    """Load the model named by ``--model`` onto ``--device`` in ``--dtype``."""
    from napari_pathup.engine.device import select_device, select_dtype
    from napari_pathup.models.default import resolve_model_spec
    from napari_pathup.models.load import load_model

    device = select_device(args.device)
    dtype = select_dtype(args.dtype)
    model = load_model(resolve_model_spec(args.model), allow_download=args.allow_download)
    return model.to(device, dtype)
