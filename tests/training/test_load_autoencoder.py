"""``load_autoencoder``: the autoencoder a training run starts from, given as its own folder or as a
PathUp model folder, and a clear refusal of any other class."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from helpers import save_patch_model
from napari_pathup.errors import ModelLoadError
from napari_pathup.models.patch_autoencoder import PatchAutoencoder
from napari_pathup.training.train import load_autoencoder


@pytest.fixture
def model_folder(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    vae = PatchAutoencoder(latent_channels=4, width=8, num_blocks=1)
    return save_patch_model(tmp_path / "model", vae, ["tumour"])


def test_loads_from_a_model_folder_or_its_autoencoder_folder(model_folder: Path) -> None:
    whole = load_autoencoder(model_folder)
    alone = load_autoencoder(model_folder / "autoencoder")
    assert type(whole) is type(alone) is PatchAutoencoder
    for name, tensor in whole.state_dict().items():
        torch.testing.assert_close(alone.state_dict()[name], tensor)


def test_another_class_is_refused_with_the_file_and_the_choices(model_folder: Path) -> None:
    config = model_folder / "autoencoder" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "_class_name": "UNet2DModel"}))
    with pytest.raises(ModelLoadError) as info:
        load_autoencoder(model_folder)
    message = str(info.value)
    assert str(config) in message and "'UNet2DModel'" in message
    assert "AutoencoderTiny" in message and "PatchAutoencoder" in message


def test_a_folder_without_a_config_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="expected an autoencoder folder"):
        load_autoencoder(tmp_path)


def test_an_unreadable_config_or_pickled_weights_are_refused(model_folder: Path) -> None:
    folder = model_folder / "autoencoder"
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="is not valid JSON"):
        load_autoencoder(folder)
    (folder / "config.json").write_text(json.dumps({"_class_name": "PatchAutoencoder"}))
    weights = folder / "diffusion_pytorch_model.safetensors"
    weights.rename(folder / "diffusion_pytorch_model.bin")
    with pytest.raises(ModelLoadError, match="pickle weights are never loaded"):
        load_autoencoder(folder)
