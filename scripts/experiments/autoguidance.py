"""Run a benchmark with autoguidance in place of classifier-free guidance (an experiment, not the engine).

Autoguidance (Karras et al. 2024, "Guiding a diffusion model with a bad version of itself") guides the
class-conditional output ``c`` away from the output ``b`` of a weaker denoiser of the same line under the
same label, ``b + g (c - b)``, instead of away from the unconditional output ``u`` (``u + g (c - u)``).
This script loads models as usual, except that a PathUp model folder holding ``autoguide.json``
(``{"weak": "FOLDER"}``: a model folder whose denoiser has the same architecture and latent space) gets
a denoiser that, in classifier-free guidance's doubled batch, evaluates the weak denoiser under the
conditional labels for the unconditional half. Every setting (guidance scale, interval, stages) stays
the model's: the same number of denoiser calls as CFG.

    python scripts/experiments/autoguidance.py benchmarks/bench_select_model.py MODEL [ARGS ...]
"""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import torch

import napari_pathup.models.load as load
from napari_pathup.models.base import PathupModel
from napari_pathup.models.conditioning import class_label

MARKER = "autoguide.json"


def with_autoguidance(model: PathupModel, weak_folder: Path) -> PathupModel:
    """``model`` with CFG's unconditional half evaluated by ``weak_folder``'s denoiser, conditionally."""
    from diffusers import UNet2DModel

    weak = UNet2DModel.from_pretrained(weak_folder / load.DENOISER_DIR, local_files_only=True)
    weak.eval().requires_grad_(False)
    good = model.modules["denoiser"]

    def architecture(config) -> dict:
        return {k: v for k, v in dict(config).items() if not k.startswith("_")}

    if architecture(weak.config) != architecture(good.config):
        raise SystemExit(f"{weak_folder}: its denoiser's config differs from {model.path}'s")
    n_classes = len(model.classes)
    nulls = torch.tensor([class_label(None, s, n_classes) for s in range(len(model.scales))])

    def denoiser(x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        cond = cond.to(x.device)
        n = x.shape[0] // 2
        doubled = x.shape[0] % 2 == 0 and bool(torch.isin(cond[:n], nulls.to(cond.device)).all())
        if not doubled or bool(torch.isin(cond[n:], nulls.to(cond.device)).any()):
            return good(x, t, class_labels=cond).sample
        labels = cond[n:]
        b = weak(x[:n], t, class_labels=labels).sample
        c = good(x[n:], t, class_labels=labels).sample
        return torch.cat([b, c])

    model.denoiser = denoiser
    model.modules["weak_denoiser"] = weak
    return model


_load_pathup = load._load_pathup


def _load_with_marker(path: Path) -> PathupModel:
    model = _load_pathup(path)
    marker = Path(path) / MARKER
    if marker.is_file():
        weak = Path(json.loads(marker.read_text())["weak"])
        model = with_autoguidance(model, weak if weak.is_absolute() else Path(path) / weak)
        print(f"autoguidance: {path} guided away from {weak}'s denoiser", file=sys.stderr)
    return model


def main() -> None:
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    load._load_pathup = _load_with_marker
    script = sys.argv[1]
    sys.argv = sys.argv[1:]
    sys.path.insert(0, str(Path(script).resolve().parent))
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
