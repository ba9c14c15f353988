"""Print the denoiser validation loss of exported PathUp model folders, as their training measured it.

Run: ``python scripts/validation_loss.py MODEL [MODEL ...] [--data data/demo] [--threads 1]``; prints
``MODEL  ITERATIONS  LOSS`` per model (``napari_pathup.training.validate``). A folder's loss equals the
``val`` its training logged at that iteration for a float32 export; a float16 export (the candidates)
differs by the rounding of its weights. The loss is in the autoencoder's latent units: it compares
denoisers on the same autoencoder (a line's checkpoints, its candidates), not models with different ones.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from napari_pathup.errors import PathupError
from napari_pathup.training.validate import model_validation_loss

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path, help="PathUp model folders trained by `pathup train`")
    parser.add_argument(
        "--data", type=Path, default=ROOT / "data" / "demo", help="the data they were trained on"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    for model in args.models:
        try:
            iterations, loss = model_validation_loss(model, args.data)
        except PathupError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"{model}  {iterations}  {loss:.4f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
