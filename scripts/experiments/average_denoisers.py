"""Average the denoiser weights of several models trained from one start ("model soup").

Run: ``python scripts/experiments/average_denoisers.py OUT BASE MODEL [MODEL ...] [--weights W ...]``

OUT becomes a copy of the model folder BASE whose denoiser weights are the element-wise mean of the
MODELs' denoisers (computed in float32, stored in BASE's dtype). The MODELs must share one denoiser
config (same architecture): averaging is only meaningful for fine-tunes of one start, such as the
adversarial legs of one plain denoiser with different seeds (thirty-second session). ``--weights``
gives one weight per MODEL instead of the mean (they must sum to 1): ``LEG PLAIN --weights 1.5 -0.5``
is the plain denoiser moved 1.5x the leg's way ("task arithmetic"); ``LEG LEG PLAIN --weights 0.65
0.35`` (BASE = LEG) keeps 0.65 of the leg (the thirty-third session's interpolation). BASE's
``pathup.json`` is kept, its "training" record gaining ``denoiser.weight_average``: each MODEL's
folder name, model hash (``model_hash`` of the folder, Markdown left out) and weight, so that the record says
which denoisers made the one in the folder.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import load_file, save_file

from napari_pathup.models.load import model_hash

WEIGHTS = "denoiser/diffusion_pytorch_model.safetensors"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("base", type=Path, help="the model folder copied (its denoiser weights replaced)")
    p.add_argument("models", type=Path, nargs="+", help="models whose denoisers are averaged")
    p.add_argument("--weights", type=float, nargs="+", help="one per model, summing to 1 (default: equal)")
    args = p.parse_args(argv)
    if args.out.exists():
        sys.exit(f"error: {args.out} exists")
    weights = args.weights or [1 / len(args.models)] * len(args.models)
    if len(weights) != len(args.models) or abs(sum(weights) - 1) > 1e-6:
        sys.exit(f"error: --weights needs one weight per model ({len(args.models)}), summing to 1")
    configs = {
        json.dumps(json.loads((m / "denoiser/config.json").read_text()), sort_keys=True) for m in args.models
    }
    if len(configs) != 1:
        sys.exit("error: the models' denoisers differ in config; only one architecture can be averaged")
    states = [load_file(m / WEIGHTS) for m in args.models]
    with safe_open(args.base / WEIGHTS, framework="pt") as base:  # one tensor for the dtype, not the file
        dtype = base.get_tensor(next(iter(base.keys()))).dtype
    mean = {
        k: sum(w * s[k].float() for w, s in zip(weights, states, strict=True)).to(dtype).contiguous()
        for k in states[0]
    }
    partial = args.out.with_name(args.out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(args.base, partial)
    shutil.copy(args.models[0] / "denoiser/config.json", partial / "denoiser/config.json")
    save_file(mean, partial / WEIGHTS)
    meta = json.loads((args.base / "pathup.json").read_text())
    record = meta.setdefault("training", {}).setdefault("denoiser", {})
    record["weight_average"] = [
        {"model": m.resolve().name, "hash": model_hash(m, documentation=False), "weight": w}
        for m, w in zip(args.models, weights, strict=True)
    ]
    (partial / "pathup.json").write_text(json.dumps(meta, indent=2))
    partial.rename(args.out)
    print(f"{args.out}: the denoisers weighted {', '.join(f'{w:g}' for w in weights)}, {dtype}")


if __name__ == "__main__":
    main()
