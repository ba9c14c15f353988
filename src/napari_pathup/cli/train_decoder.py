"""``pathup train-decoder``: a trained model's decoder trained on (a decoder leg), the denoiser kept."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from napari_pathup.cli._common import number, whole

if TYPE_CHECKING:
    from napari_pathup.training.decoder_leg import DecoderLeg


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train-decoder",
        help="train a PathUp model's decoder on (sharper, or without dither), keeping its denoiser",
        description="Copy the PathUp model MODEL to --out with its decoder trained on as a conditional GAN "
        "against a fresh patch discriminator, on the training areas of DATA (a data set as `pathup train` "
        "reads it; its hold-out regions are never trained on). The encoder is frozen, so the latent space "
        "and the denoiser trained on it stay valid. Checkpoints go to .OUT.work beside --out; rerun the "
        "same command to resume. The new pathup.json records the leg.",
    )
    p.add_argument("model", metavar="MODEL", type=Path, help="PathUp model folder whose decoder is trained")
    p.add_argument("data", metavar="DATA", type=Path, help="folder of class folders (hold-outs kept out)")
    p.add_argument("--out", required=True, metavar="MODEL_DIR", type=Path, help="new model folder to write")
    p.add_argument("--iters", type=whole(1), default=1500, help="iterations (1500)")
    p.add_argument(
        "--adversarial",
        type=number(0),
        default=2.0,
        help="hinge term's weight, the 2x-pooled L1's is 1 (2.0)",
    )
    p.add_argument("--full", type=number(0), default=0.0, help="weight of an L1 term at full resolution (0)")
    p.add_argument(
        "--glass", type=number(0), default=0.0, help="weight of that term on glass pixels only (0; e.g. 0.25)"
    )
    p.add_argument(
        "--decoder-width",
        type=whole(0),
        default=0,
        metavar="N",
        help="widen a PatchAutoencoder's decoder to N channels first; it decodes as before until trained "
        "(0: as is)",
    )
    p.add_argument("--lr", type=number(0, low_open=True), default=1e-4, help="learning rate (1e-4)")
    p.add_argument("--batch-size", type=whole(1), default=4, help="crops per iteration (4)")
    p.add_argument("--crop", type=whole(8), default=96, help="crop side in pixels, a multiple of 8 (96)")
    p.add_argument("--seed", type=whole(0), default=0)
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    p.add_argument("--threads", type=whole(1), help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=execute)


def leg_from_args(args: argparse.Namespace) -> DecoderLeg:
    """The :class:`~napari_pathup.training.decoder_leg.DecoderLeg` the flags describe (the experiments'
    ``scripts/experiments/decoder_leg.py`` names its flags alike, with its own defaults)."""
    from napari_pathup.training.decoder_leg import DecoderLeg

    return DecoderLeg(
        iterations=args.iters,
        adversarial=args.adversarial,
        full=args.full,
        glass=args.glass,
        decoder_width=args.decoder_width,
        lr=args.lr,
        batch_size=args.batch_size,
        crop=args.crop,
        seed=args.seed,
    )


def execute(args: argparse.Namespace) -> int:
    import torch

    from napari_pathup.engine.device import select_device
    from napari_pathup.training.decoder_leg import train_decoder_leg

    leg = leg_from_args(args)
    leg.check()  # before the device and the data load
    if args.threads:
        torch.set_num_threads(args.threads)
    out = train_decoder_leg(
        args.model, args.out, args.data, leg, device=select_device(args.device), progress=not args.quiet
    )
    print(f"pathup train-decoder: wrote {out}; synthesise with: pathup synthesize --model {out} --class C")
    return 0
