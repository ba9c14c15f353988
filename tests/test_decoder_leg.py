"""scripts/experiments/decoder_leg.py: a decoder leg from a model. The encoder, and so the latent space the
denoiser was trained on, stays as it was; only the decoder (widened first, if asked) learns; the new model
folder is written whole, with the leg recorded in its ``pathup.json``, or not at all."""

from __future__ import annotations

import hashlib
import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import save_patch_model
from napari_pathup.io import read_image
from napari_pathup.models.load import load_model, model_hash
from napari_pathup.models.patch_autoencoder import PatchAutoencoder

SCRIPT = Path(__file__).parents[1] / "scripts" / "experiments" / "decoder_leg.py"


def run_script(monkeypatch: pytest.MonkeyPatch, *args: object) -> None:
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), *map(str, args)])
    threads = torch.get_num_threads()  # the script sets its own (--threads, default 1)
    try:
        runpy.run_path(str(SCRIPT), run_name="__main__")
    finally:
        torch.set_num_threads(threads)


def files(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def as_tensor(image: np.ndarray) -> torch.Tensor:
    """An RGB uint8 image as a [-1, 1] batch of one."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 127.5 - 1


@pytest.fixture
def patch_model(tiny_dataset: Path, tmp_path: Path) -> Path:
    """A PathUp model around a PatchAutoencoder started from the tiny data set's own 8x8 blocks."""
    image = read_image(tiny_dataset / "tumour" / "b.png")
    crops = as_tensor(image[:128, :128])
    torch.manual_seed(0)
    vae = PatchAutoencoder(latent_channels=4, width=8, num_blocks=1).eval()
    vae.initialise_from_blocks(crops)
    return save_patch_model(tmp_path / "model", vae, ["stroma", "tumour"])


def test_a_leg_trains_the_widened_decoder_alone_and_records_itself(
    patch_model: Path, tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "leg"
    before = files(patch_model)
    run_script(
        monkeypatch, patch_model, out, "--data", tiny_dataset, "--iters", 4, "--glass", 0.25,
        "--decoder-width", 16, "--batch", 2, "--crop", 64,
    )  # fmt: skip
    after = files(out)
    changed = {name for name in after if after[name] != before.get(name)}
    assert set(after) == set(before)  # no file added or lost
    weights = "autoencoder/diffusion_pytorch_model.safetensors"
    assert changed == {"pathup.json", "autoencoder/config.json", weights}
    assert files(patch_model) == before  # MODEL itself untouched
    assert not list(tmp_path.glob(".leg.*"))  # neither the partial folder nor the checkpoints are left

    old, new = (load_model(p).modules["autoencoder"] for p in (patch_model, out))
    assert new.config.decoder_width == 16
    old_state, new_state = old.state_dict(), new.state_dict()
    encoder = [name for name in old_state if name.startswith("encoder.")]
    assert encoder and all(torch.equal(old_state[n], new_state[n]) for n in encoder)
    image = read_image(tiny_dataset / "stroma" / "c.png")[:64, :64]
    x = as_tensor(image)
    with torch.no_grad():
        z = old.encode(x).latents
        assert torch.equal(new.encode(x).latents, z)
        # widened alone it would decode exactly as before (tests/models/test_patch_autoencoder.py): it learned
        assert not torch.equal(new.decode(z).sample, old.decode(z).sample)

    meta, base = (json.loads((p / "pathup.json").read_text()) for p in (out, patch_model))
    (leg,) = meta["training"]["decoder"]["legs"]
    assert leg["model"] == "model" and leg["hash"] == model_hash(patch_model, documentation=False)
    assert (leg["iterations"], leg["decoder_width"], leg["weights"]["glass"]) == (4, 16, 0.25)
    del meta["training"]
    base.pop("training", None)  # a model built for a test has no training record
    assert meta == base  # the rest of pathup.json is MODEL's


def test_refuses_an_existing_out_without_touching_it(
    patch_model: Path, tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "leg"
    out.mkdir()
    (out / "keep.txt").write_text("a user's file")
    with pytest.raises(SystemExit, match="exists; choose a new folder"):
        run_script(monkeypatch, patch_model, out, "--data", tiny_dataset, "--iters", 1)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
