"""A decoder leg from a trained model's decoder: its GAN phase's losses, optionally a full-resolution L1 term.

Run: ``python scripts/experiments/decoder_leg.py MODEL OUT [--iters 1500] [--full 1.0] [--glass 0]``

Copies the PathUp model folder MODEL to OUT, then trains OUT's decoder on against a fresh patch
discriminator with the encoder frozen (so the latent space, and the denoiser trained on it, stay
valid), built and stepped as ``pathup train``'s decoder phase (``decoder_gan.decoder_gan_phase``,
``loop.run_phase``: 2x-pooled L1, stain L1, hinge loss ramped over 500 iterations, Adam betas
(0.9, 0.9), the discriminator at 2x the rate), on crops of the training areas of ``--data`` only,
checkpointing into ``.OUT.work`` beside OUT (the same command resumes), and writes the EMA decoder
into OUT/autoencoder (the whole folder under a temporary name, then renamed). OUT's ``pathup.json``
"training" record gains ``decoder.legs``: MODEL's folder name and model hash, and the leg's settings.
``--full`` adds an L1 term at full resolution, which the 2x-pooled term lacks, ``--glass`` the same
on glass pixels only: the thirty-ninth session found version 4.9's decoder dithering glass at the
2-px scale that term cannot see (``scripts/experiments/glass_noise.py``; ``/work/notes/rule78.md``
to ``rule80.md``).
``--decoder-width`` first widens the decoder (``PatchAutoencoder.widen_decoder``: it decodes exactly
as before until the leg trains its new channels; rule 85).
The pipeline's decoder phase trains only a decoder it trained itself; this leg starts from a model.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time
from pathlib import Path

import torch

from napari_pathup.datasets import discover
from napari_pathup.models.load import model_hash
from napari_pathup.training.data import CropSampler, build_sources, load_images
from napari_pathup.training.decoder_gan import GanWeights, decoder_gan_phase
from napari_pathup.training.loop import run_phase
from napari_pathup.training.settings import TrainConfig
from napari_pathup.training.train import AE_OVERVIEW_FRACTION, load_autoencoder


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
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--crop", type=int, default=96)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if args.out.exists():
        sys.exit(f"{args.out} exists; choose a new folder")
    torch.set_num_threads(args.threads)
    defaults = TrainConfig(data=args.data, out=args.out)

    index = discover(args.data)
    arrays = load_images(index)
    sources = build_sources(index, arrays, args.crop, defaults.min_tissue, defaults.reference_size)
    sampler = CropSampler(sources, overview_fraction=AE_OVERVIEW_FRACTION)  # as the decoder phase samples
    vae = load_autoencoder(args.model)
    if args.decoder_width:  # decoding exactly as before until the leg trains the new channels
        vae = vae.widen_decoder(args.decoder_width, seed=args.seed)
    weights = GanWeights(adversarial=args.adversarial, full=args.full, glass=args.glass)
    phase = decoder_gan_phase(
        vae,
        sampler,
        lr=args.lr,
        batch_size=args.batch,
        seed=args.seed,
        device=torch.device("cpu"),
        eval_crops=[],
        weights=weights,
    )
    start = time.perf_counter()
    work = args.out.with_name(f".{args.out.name}.work")  # its checkpoints: rerun the same command to resume
    run_phase(phase, args.iters, work, checkpoint_every=500, eval_every=0, resume=True)
    phase.ema.copy_to(phase.model.parameters())
    vae.eval()

    partial = args.out.with_name(f".{args.out.name}.partial")
    if partial.exists():
        shutil.rmtree(partial)
    shutil.copytree(args.model, partial)
    shutil.rmtree(partial / "autoencoder")
    vae.save_pretrained(partial / "autoencoder", safe_serialization=True)
    record = {
        "model": args.model.resolve().name,
        "hash": model_hash(args.model, documentation=False),
        "iterations": args.iters,
        "weights": dataclasses.asdict(weights),
        "lr": args.lr,
        "batch": [args.batch, args.crop],
        "seed": args.seed,
        "decoder_width": args.decoder_width or None,
    }
    meta = json.loads((partial / "pathup.json").read_text())
    training = meta.setdefault("training", {})
    decoder = training["decoder"] = dict(training.get("decoder", {}))
    decoder["legs"] = [*decoder.get("legs", []), record]
    (partial / "pathup.json").write_text(json.dumps(meta, indent=2) + "\n")
    os.replace(partial, args.out)
    shutil.rmtree(work)
    print(f"wrote {args.out} in {time.perf_counter() - start:.0f} s: {record}")


if __name__ == "__main__":
    main()
