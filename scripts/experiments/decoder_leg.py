"""A decoder leg from a trained model's decoder: its GAN phase's losses, optionally a full-resolution L1 term.

Run: ``python scripts/experiments/decoder_leg.py MODEL OUT [--iters 1500] [--full 1.0] [--glass 0]``

The experiments' form of ``pathup train-decoder MODEL data/demo --out OUT`` (the library's
``napari_pathup.training.decoder_leg``, which documents the leg): the same leg, with this script's own
defaults (``--full 1.0``: the thirty-ninth session's first leg; ``--data data/demo``; one thread), so that
the commands recorded in docs/model_experiments.md rebuild their models bit for bit.
``--full`` adds an L1 term at full resolution, which the 2x-pooled term lacks, ``--glass`` the same
on glass pixels only: the thirty-ninth session found version 4.9's decoder dithering glass at the
2-px scale that term cannot see (``scripts/experiments/glass_noise.py``; ``/work/notes/rule78.md``
to ``rule80.md``). ``--decoder-width`` first widens the decoder (rule 85).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from napari_pathup.cli.train_decoder import leg_from_args
from napari_pathup.errors import PathupError
from napari_pathup.training.decoder_leg import train_decoder_leg


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="PathUp model folder whose decoder is trained on")
    parser.add_argument("out", type=Path, help="new model folder (a copy of MODEL with the new decoder)")
    parser.add_argument("--data", type=Path, default=Path("data/demo"), help="training data with hold-outs")
    parser.add_argument("--iters", type=int, default=1500)
    parser.add_argument("--full", type=float, default=1.0, help="weight of the full-resolution L1 term")
    parser.add_argument("--glass", type=float, default=0.0, help="weight of that term on glass pixels only")
    parser.add_argument("--adversarial", type=float, default=2.0, help="the shipped decoder's last weight")
    parser.add_argument(
        "--decoder-width", type=int, default=0, help="widen the decoder's residual stack first (0: as is)"
    )
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--batch", dest="batch_size", type=int, default=4)
    parser.add_argument("--crop", type=int, default=96)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        train_decoder_leg(args.model, args.out, args.data, leg_from_args(args))
    except PathupError as exc:
        sys.exit(f"decoder_leg: {exc}")


if __name__ == "__main__":
    main()
