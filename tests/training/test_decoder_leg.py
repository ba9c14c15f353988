"""napari_pathup.training.decoder_leg (``pathup train-decoder``): a decoder leg from a model. The encoder, and
so the latent space the denoiser was trained on, stays as it was; only the decoder (widened first, if asked)
learns; the new model folder is written whole, with the leg recorded in its ``pathup.json``, or not at all;
an interrupted leg resumes to the same bits, and a work folder of other settings is refused."""

from __future__ import annotations

import hashlib
import json
import runpy
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from helpers import tiny_patch_model
from napari_pathup.errors import InputError, OutputExistsError
from napari_pathup.io import read_image
from napari_pathup.models.load import load_model, model_hash
from napari_pathup.training.decoder_leg import DecoderLeg, train_decoder_leg
from napari_pathup.training.loop import run_phase

SCRIPT = Path(__file__).parents[2] / "scripts" / "experiments" / "decoder_leg.py"
WEIGHTS = "autoencoder/diffusion_pytorch_model.safetensors"
LEG = DecoderLeg(iterations=4, glass=0.25, decoder_width=16, batch_size=2, crop=64)


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
    return tiny_patch_model(tiny_dataset, tmp_path / "model")


def test_a_leg_trains_the_widened_decoder_alone_and_records_itself(
    patch_model: Path, tiny_dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "leg"
    kept = patch_model / "checkpoints" / "denoiser" / "state.json"  # MODEL's own `pathup train` checkpoints
    kept.parent.mkdir(parents=True)
    kept.write_text("{}")
    before = files(patch_model)
    assert train_decoder_leg(patch_model, out, tiny_dataset, LEG, progress=False, log=lambda _: None) == out
    after = files(out)
    changed = {name for name in after if after[name] != before.get(name)}
    assert set(after) == set(before) - {"checkpoints/denoiser/state.json"}  # nothing else added or lost
    assert changed == {"pathup.json", "autoencoder/config.json", WEIGHTS}
    assert files(patch_model) == before  # MODEL itself untouched
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no partial, no checkpoints

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


def test_an_interrupted_leg_resumes_to_the_same_bits(
    patch_model: Path, tiny_dataset: Path, tmp_path: Path
) -> None:
    """Killed after its first checkpoint, the same call finishes the leg as one uninterrupted run does."""
    quiet: dict[str, Any] = {"progress": False, "log": lambda _: None}
    whole = train_decoder_leg(patch_model, tmp_path / "whole", tiny_dataset, LEG, **quiet)

    out = tmp_path / "resumed"

    def interrupted(phase, iterations, folder, **kwargs):
        kwargs["checkpoint_every"] = 2
        run_phase(phase, 2, folder, **kwargs)  # two iterations, checkpointed, then "killed"
        raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("napari_pathup.training.loop.run_phase", interrupted)
        with pytest.raises(KeyboardInterrupt):
            train_decoder_leg(patch_model, out, tiny_dataset, LEG, **quiet)
    assert not out.exists() and (tmp_path / ".resumed.work").is_dir()  # nothing under the final name
    assert train_decoder_leg(patch_model, out, tiny_dataset, LEG, **quiet) == out
    assert files(out) == files(whole)


def test_refuses_what_a_leg_cannot_run_before_training(
    patch_model: Path, tiny_dataset: Path, tmp_path: Path
) -> None:
    quiet: dict[str, Any] = {"progress": False, "log": lambda _: None}
    out = tmp_path / "leg"
    with pytest.raises(InputError, match="--decoder-width 8: expected more than the decoder's current 8"):
        train_decoder_leg(patch_model, out, tiny_dataset, DecoderLeg(decoder_width=8), **quiet)
    with pytest.raises(InputError, match=r"glass -1\.0: expected a finite number >= 0"):
        train_decoder_leg(patch_model, out, tiny_dataset, DecoderLeg(glass=-1.0), **quiet)
    with pytest.raises(InputError, match="crop 60: expected a multiple of 8"):
        train_decoder_leg(patch_model, out, tiny_dataset, DecoderLeg(crop=60), **quiet)
    with pytest.raises(Exception, match="expected a PathUp model folder"):
        train_decoder_leg(tiny_dataset, out, tiny_dataset, LEG, **quiet)
    assert not out.exists()

    out.mkdir()
    (out / "keep.txt").write_text("a user's file")
    with pytest.raises(OutputExistsError, match="exists; a decoder leg writes a new folder") as refused:
        train_decoder_leg(patch_model, out, tiny_dataset, LEG, **quiet)
    assert "--overwrite" not in str(refused.value)  # the command has no such flag to offer
    with pytest.raises(OutputExistsError, match="is MODEL itself; choose a new folder"):
        train_decoder_leg(patch_model, patch_model, tiny_dataset, LEG, **quiet)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_a_work_folder_of_other_settings_is_refused_not_mixed_in(
    patch_model: Path, tiny_dataset: Path, tmp_path: Path
) -> None:
    quiet: dict[str, Any] = {"progress": False, "log": lambda _: None}
    out = tmp_path / "leg"

    def killed(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as patch:  # killed after training, before writing: checkpoints stay
        patch.setattr("napari_pathup.io.atomic.atomic_output", killed)
        with pytest.raises(KeyboardInterrupt):
            train_decoder_leg(patch_model, out, tiny_dataset, LEG, **quiet)
    assert (tmp_path / ".leg.work").is_dir() and not out.exists()
    other = DecoderLeg(iterations=4, glass=0.5, decoder_width=16, batch_size=2, crop=64)
    with pytest.raises(InputError, match=r"another leg \(weights differ\)"):
        train_decoder_leg(patch_model, out, tiny_dataset, other, **quiet)
    shorter = DecoderLeg(iterations=2, glass=0.25, decoder_width=16, batch_size=2, crop=64)
    with pytest.raises(InputError, match="already 4 iterations long"):
        train_decoder_leg(patch_model, out, tiny_dataset, shorter, **quiet)


def test_the_experiments_script_runs_the_same_leg(
    patch_model: Path, tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The recorded commands of docs/model_experiments.md call the script; it must build the library's leg."""
    library = train_decoder_leg(patch_model, tmp_path / "a", tiny_dataset, LEG, progress=False, log=print)
    argv = [SCRIPT, patch_model, tmp_path / "b", "--data", tiny_dataset, "--iters", 4, "--full", 0,
            "--glass", 0.25, "--decoder-width", 16, "--batch", 2, "--crop", 64]  # fmt: skip
    monkeypatch.setattr(sys, "argv", [str(a) for a in argv])
    threads = torch.get_num_threads()  # the script sets its own (--threads, default 1)
    try:
        runpy.run_path(str(SCRIPT), run_name="__main__")
        with pytest.raises(SystemExit, match="already exists"):  # a second run refuses, one line
            runpy.run_path(str(SCRIPT), run_name="__main__")
    finally:
        torch.set_num_threads(threads)
    assert files(tmp_path / "b") == files(library)
