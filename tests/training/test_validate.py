"""An exported model's validation loss, recomputed from its folder (``training.validate``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from helpers import TINY_TRAINING
from napari_pathup.errors import InputError
from napari_pathup.training.settings import TrainConfig
from napari_pathup.training.train import train
from napari_pathup.training.validate import model_validation_loss


def test_the_folder_gives_the_loss_its_training_logged_and_only_on_its_own_data(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    torch.set_num_threads(1)
    model = train(
        TrainConfig(data=tiny_dataset, out=tmp_path / "m", iters=4, **TINY_TRAINING), log=lambda _: None
    )
    logged = json.loads((model / "pathup.json").read_text())["training"]["denoiser"]
    iterations, loss = model_validation_loss(model, tiny_dataset)
    assert iterations == logged["iterations"] == 4
    assert loss == pytest.approx(logged["val"], rel=1e-5)

    other = tmp_path / "other"
    shutil.copytree(tiny_dataset, other)
    (other / "holdout.json").unlink()  # the same images without their hold-out regions
    with pytest.raises(InputError, match="hold-out regions differ"):
        model_validation_loss(model, other)
