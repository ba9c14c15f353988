"""The committed continuation points of unshipped candidate lines (``candidates/``): each loads as a
PathUp model, says in its README how far it was trained, and synthesises, so that a machine without
the work folders can continue it (``INIT=candidates/NAME scripts/train_default_model.sh``)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

CANDIDATES = Path(__file__).resolve().parents[1] / "candidates"
FOLDERS = sorted(p.parent for p in CANDIDATES.glob("*/pathup.json"))


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_a_candidate_is_the_model_its_readme_describes_and_synthesises(folder: Path) -> None:
    from napari_pathup.checksum import sha256_of
    from napari_pathup.engine.pipeline import SynthesisSettings, run
    from napari_pathup.io import read_image
    from napari_pathup.models.default import reference_for_class
    from napari_pathup.models.load import load_model
    from napari_pathup.training.train import load_denoiser

    torch.set_num_threads(1)
    readme = (folder / "README.md").read_text(encoding="utf-8")
    said = re.search(r"denoiser iterations: \*\*([\d,]+)\*\*", readme)
    assert said, f"{folder}/README.md names no 'denoiser iterations: **N**'"
    unet, iterations = load_denoiser(folder)  # what a warm start (--init) continues from
    assert iterations == int(said.group(1).replace(",", ""))
    training = json.loads((folder / "pathup.json").read_text())["training"]
    if training.get("denoiser_storage") != "float16":  # half the bytes in the repository per update
        # unless it awaits shipping: then it is kept exactly as measured, and its README says which bytes
        measured = re.search(r"denoiser weights exactly as measured: sha256 \*\*([0-9a-f]{64})\*\*", readme)
        assert measured, f"{folder}: not half precision, and its README gives no measured denoiser sha256"
        assert sha256_of(folder / "denoiser" / "diffusion_pytorch_model.safetensors") == measured.group(1)
    model = load_model(folder)
    assert unet.config.in_channels == unet.config.out_channels == model.autoencoder.latent_channels
    # its training record says what the model is, and no path of the machine that trained it
    assert training["settings"]["latent_channels"] == unet.config.in_channels
    assert "/work/" not in json.dumps(training) and "/home/" not in json.dumps(training)
    reference = read_image(reference_for_class(model, "tumour"))
    settings = SynthesisSettings("tumour", height=64, width=64, reference_size=64, steps=3)
    image = run(model, reference, settings).image
    assert image.shape == (64, 64, 3) and image.std() > 0


def test_every_candidate_folder_is_a_model() -> None:
    """A folder left half-copied (no pathup.json) would silently drop out of the test above."""
    if CANDIDATES.is_dir():
        strays = [p.name for p in CANDIDATES.iterdir() if p.is_dir() and not (p / "pathup.json").is_file()]
        assert not strays, f"candidates/ folders without pathup.json: {strays}"
