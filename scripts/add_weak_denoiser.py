"""Give a PathUp model folder the weak denoiser that autoguidance steers away from.

Autoguidance (``guidance_mode`` "auto"; Karras et al. 2024) guides a class's output away from a weaker
denoiser of the same latent space and labels (the same line trained shorter, or a smaller network)
under the same class, instead of away from the
unconditional output. This copies SOURCE's denoiser into MODEL as ``weak_denoiser/`` (written under a
temporary name, then renamed) and records it in MODEL's ``pathup.json`` ("weak_denoiser": source,
note, both files' sha256, dtype). Which classes use it is a sampling default, set separately
(``pathup.json`` "class_defaults", e.g. ``{"stroma": {"guidance_mode": "auto"}}``).

    python scripts/add_weak_denoiser.py MODEL SOURCE --float16 --note "preset cpu, 14,000 iterations"

The default model's weak denoiser (version 4.9, ``normal`` autoguided at scale 1.5) is a ``cpu``-preset
denoiser (2.75 M parameters) trained from scratch for 14,000 iterations on the model's autoencoder,
stored in float16 (the command: scripts/train_default_model.sh, WEAK_DENOISER). The same line's own
denoiser at 14,250 iterations guided worse (docs/model_experiments.md, thirty-seventh session).
"""

from __future__ import annotations

import argparse
import json

import torch

from napari_pathup.models.weak import add_weak_denoiser


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="the PathUp model folder to give a weak denoiser")
    parser.add_argument("source", help="a PathUp model folder whose denoiser becomes MODEL's weak one")
    parser.add_argument("--note", default="", help="what the weak denoiser is, recorded in pathup.json")
    parser.add_argument("--float16", action="store_true", help="store the weights in float16")
    args = parser.parse_args()
    record = add_weak_denoiser(args.model, args.source, args.note, torch.float16 if args.float16 else None)
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
