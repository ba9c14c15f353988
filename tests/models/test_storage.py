"""A model's denoiser re-stored in another dtype: the bfloat16 file computes the same bits where the
engine runs in bfloat16, loads exactly elsewhere, is recorded, and a bad dtype changes nothing."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from napari_pathup.engine.pipeline import SynthesisSettings, run
from napari_pathup.errors import InputError
from napari_pathup.models.base import cast_floating
from napari_pathup.models.load import load_model, model_hash
from napari_pathup.models.spec import DENOISER_DIR
from napari_pathup.models.storage import store_denoiser


def weights(folder):
    return load_file(next((folder / DENOISER_DIR).glob("*.safetensors")))


def test_a_bfloat16_denoiser_computes_in_bfloat16_exactly_as_the_float32_one(
    pathup_model_dir, tmp_path, reference
):
    folder = shutil.copytree(pathup_model_dir, tmp_path / "bf16")
    before = weights(folder)
    record = store_denoiser(folder, "bfloat16")
    after = weights(folder)
    assert after.keys() == before.keys()
    assert all(after[k].dtype == torch.bfloat16 for k in after if before[k].is_floating_point())
    assert all(torch.equal(after[k], before[k].to(torch.bfloat16)) for k in after)
    meta = json.loads((folder / "pathup.json").read_text())
    assert meta["training"]["denoiser_storage"] == record["denoiser_storage"] == "bfloat16"
    loaded = load_model(folder).modules["denoiser"]
    assert next(loaded.parameters()).dtype == torch.float32  # upcast on loading, exactly
    settings = SynthesisSettings("tumour", seed=3, height=128, width=128, reference_size=64, steps=3)
    images = [
        run(load_model(path).to("cpu", torch.bfloat16), reference, settings).image
        for path in (pathup_model_dir, folder)
    ]
    np.testing.assert_array_equal(*images)


def test_float16_storage_rounds_the_weights_and_an_unknown_dtype_changes_nothing(pathup_model_dir, tmp_path):
    folder = shutil.copytree(pathup_model_dir, tmp_path / "half")
    before, stamp = weights(folder), model_hash(folder)
    with pytest.raises(
        InputError, match=r"denoiser storage: expected one of float32, float16, bfloat16, got 'int8'"
    ):
        store_denoiser(folder, "int8")
    assert model_hash(folder) == stamp and not list(folder.glob(".*"))  # untouched, no temporary left
    store_denoiser(folder, "float16")
    half = load_model(folder).modules["denoiser"]
    original = load_model(pathup_model_dir).modules["denoiser"]
    assert any(not torch.equal(a, b) for a, b in zip(half.parameters(), original.parameters(), strict=True))
    cast_floating(original, torch.float16)
    assert all(
        torch.equal(a.half(), b) for a, b in zip(half.parameters(), original.parameters(), strict=True)
    )
    assert weights(folder).keys() == before.keys()
