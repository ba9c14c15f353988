"""``pathup train`` end to end on tiny presets: the model loads, synthesises, and a resumed run is exact."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from helpers import TINY_TRAINING
from napari_pathup.cli import main
from napari_pathup.engine.pipeline import SynthesisSettings, run
from napari_pathup.engine.plan import model_defaults
from napari_pathup.errors import InputError
from napari_pathup.io import read_image
from napari_pathup.models.default import reference_for_class
from napari_pathup.models.load import load_model, read_model_spec
from napari_pathup.training.settings import TrainConfig
from napari_pathup.training.train import train

TINY = {**TINY_TRAINING, "iters": 4}


def _config(data: Path, out: Path, **changes) -> TrainConfig:
    return TrainConfig(data=data, out=out, **{**TINY, **changes})


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "denoiser" / "diffusion_pytorch_model.safetensors")


@pytest.fixture(scope="module")
def trained(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    return train(_config(tiny_dataset, tmp_path_factory.mktemp("train") / "model"), log=lambda _: None)


def test_the_exported_model_loads_and_synthesises(trained: Path) -> None:
    meta = json.loads((trained / "pathup.json").read_text())
    assert meta["classes"] == ["stroma", "tumour"]
    assert meta["defaults"]["steps"] == 20 and set(meta["references"]) == {"stroma", "tumour"}
    assert meta["holdout"]["tumour/a.png"] == {"x": 112, "y": 0, "width": 48, "height": 160}
    assert meta["training"]["denoiser"]["iterations"] == 4 and "val" in meta["training"]["denoiser"]
    assert "psnr" in meta["training"]["autoencoder"]
    model = load_model(trained)
    assert model.native_size == 8 and model.vae_scale_factor == 8
    assert model.scheduler.config.prediction_type == "v_prediction"
    reference = read_image(reference_for_class(model, "tumour"))
    assert reference.shape[2] == 3 and min(reference.shape[:2]) >= 64
    settings = SynthesisSettings("tumour", height=96, width=128, reference_size=64, steps=4, batch_size=4)
    finished = run(model, reference, settings)
    assert finished.image.shape == (96, 128, 3) and finished.image.dtype == np.uint8
    assert finished.image.std() > 0


def test_references_never_show_holdout_pixels(trained: Path, tiny_dataset: Path) -> None:
    reference = read_image(trained / "references" / "tumour.png")
    source = read_image(tiny_dataset / "tumour" / "a.png")
    hold = source[:, 112:]
    rows = {bytes(r) for r in hold.reshape(-1, hold.shape[1] * 3)}
    assert all(bytes(r[: hold.shape[1] * 3]) not in rows for r in reference.reshape(reference.shape[0], -1))


def test_resume_gives_the_same_model_as_an_uninterrupted_run(
    trained: Path, tiny_dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "model"
    log: list[str] = []
    train(_config(tiny_dataset, out, iters=2), log=log.append)
    assert (out / "checkpoints" / "denoiser" / "step-0000002").is_dir()
    train(_config(tiny_dataset, out, iters=4, resume=True), log=log.append)
    assert any("autoencoder: finished earlier" in line for line in log)
    assert json.loads((out / "checkpoints" / "denoiser" / "latest.json").read_text())["iteration"] == 4
    whole, resumed = _weights(trained), _weights(out)
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)


def test_a_resumed_denoiser_may_change_its_learning_rate_and_loss_weighting_and_records_both(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    """A cool-down, or a leg with another loss weighting: both change on resume (other settings still
    may not), and the model records from which iteration each value held."""
    torch.set_num_threads(1)
    out = tmp_path / "model"
    train(_config(tiny_dataset, out, iters=2), log=lambda _: None)
    before = _weights(out)
    train(_config(tiny_dataset, out, iters=4, lr=1e-5, snr_gamma=0.0, resume=True), log=lambda _: None)
    recorded = json.loads((out / "pathup.json").read_text())["training"]["denoiser"]
    assert recorded["iterations"] == 4
    assert recorded["lr_from_iteration"] == {"0": TrainConfig.lr, "2": 1e-5}
    assert recorded["snr_gamma_from_iteration"] == {"0": TrainConfig.snr_gamma, "2": 0.0}
    after = _weights(out)
    assert any(not torch.equal(before[k], after[k]) for k in before)  # it trained on at the new rate
    # an export-only rerun at yet other values trains nothing and records no change
    train(_config(tiny_dataset, out, iters=4, lr=3e-3, snr_gamma=2.0, resume=True), log=lambda _: None)
    again = json.loads((out / "pathup.json").read_text())["training"]["denoiser"]
    assert again["lr_from_iteration"] == {"0": TrainConfig.lr, "2": 1e-5}
    assert again["snr_gamma_from_iteration"] == {"0": TrainConfig.snr_gamma, "2": 0.0}


def test_output_folder_rules(trained: Path, tiny_dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not empty; pass --resume"):
        train(_config(tiny_dataset, trained), log=lambda _: None)
    with pytest.raises(InputError, match=r"other settings \(crop"):
        train(_config(tiny_dataset, trained, crop=128, resume=True), log=lambda _: None)
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.txt").write_text("x")
    with pytest.raises(InputError, match="choose an empty folder"):
        train(_config(tiny_dataset, other), log=lambda _: None)
    # a misspelt synthesis default is refused before the run starts, and nothing is written
    fresh = tmp_path / "fresh"
    with pytest.raises(InputError, match=r"--set-default must be .*guidence"):
        train(_config(tiny_dataset, fresh, defaults={"guidence": 4.0}), log=lambda _: None)
    assert not fresh.exists()
    # so is a class default for a class the data lacks (a typo of "tumour" would change nothing)
    with pytest.raises(InputError, match=r"--set-class-default must be keyed by .*stroma, tumour.*'tumor'"):
        train(_config(tiny_dataset, fresh, class_defaults={"tumor": {"steps": 5}}), log=lambda _: None)
    assert not fresh.exists()


def test_a_given_autoencoder_is_reused(trained: Path, tiny_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "reuse"
    cfg = dataclasses.replace(_config(tiny_dataset, out, iters=1), autoencoder=trained, ae_iters=0)
    train(cfg, log=lambda _: None)
    assert not (out / "checkpoints" / "autoencoder").exists()
    a = load_file(trained / "autoencoder" / "diffusion_pytorch_model.safetensors")
    b = load_file(out / "autoencoder" / "diffusion_pytorch_model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_cli_trains_and_reports_errors(tiny_dataset: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli"
    args = [
        "train",
        str(tiny_dataset),
        "--out",
        str(out),
        "--ae-preset",
        "tiny",
        "--ae-iters",
        "1",
        "--ae-batch-size",
        "1",
        "--ae-crop",
        "32",
        "--preset",
        "tiny",
        "--iters",
        "1",
        "--batch-size",
        "1",
        "--crop",
        "64",
        "--reference-size",
        "128",
        "--threads",
        "1",
        "--quiet",
        "--set-default",
        "steps=12",
        "--set-class-default",
        "tumour:upscale_strength=0.9",
        "--set-class-default",
        "tumour:steps=14",
    ]
    assert main(args) == 0
    meta = json.loads((out / "pathup.json").read_text())
    assert meta["defaults"]["steps"] == 12
    assert meta["class_defaults"] == {"tumour": {"upscale_strength": 0.9, "steps": 14}}
    # a run of tumour starts from its class's defaults, stroma from the model's
    model = read_model_spec(out)
    tumour = model_defaults(model, "tumour")
    assert tumour["steps"] == 14 and tumour["upscale_strength"] == 0.9
    assert model_defaults(model, "stroma")["steps"] == 12
    assert main(args) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "missing"), "--out", str(tmp_path / "m2")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main(["train", str(tiny_dataset), "--out", str(tmp_path / "m3"), "--preset", "huge"]) == 2
    assert "expected one of tiny, cpu" in capsys.readouterr().err


def test_the_patch_autoencoder_trains_from_principal_components(tiny_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "patch"
    cfg = _config(tiny_dataset, out, iters=2, ae_preset="patch", latent_channels=16, gan_iters=2)
    cfg = dataclasses.replace(cfg, gan_batch_size=2, gan_crop=32)
    log: list[str] = []
    train(cfg, log=log.append)
    meta = json.loads((out / "pathup.json").read_text())
    autoencoder = meta["training"]["autoencoder"]
    assert 0.5 < autoencoder["variance_kept"] <= 1.0 and autoencoder["psnr"] > 15
    assert meta["training"]["decoder"]["iterations"] == 2
    model = load_model(out)
    assert type(model.modules["autoencoder"]).__name__ == "PatchAutoencoder"
    assert model.latent_channels == 16 and model.vae_scale_factor == 8
    again: list[str] = []  # a rerun finds both autoencoder phases finished and loads their class
    train(dataclasses.replace(cfg, resume=True), log=again.append)
    assert any("autoencoder: finished earlier" in line for line in again)
    assert any("decoder: finished earlier" in line for line in again)
