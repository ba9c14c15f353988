"""A model's weak denoiser (autoguidance): written from another model of the same architecture,
recorded, loaded from safetensors only, and refused when it does not fit."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from napari_pathup.errors import ModelLoadError
from napari_pathup.models.build import build_random_pathup_model
from napari_pathup.models.load import load_model, read_model_spec
from napari_pathup.models.spec import WEAK_DENOISER_DIR
from napari_pathup.models.weak import add_weak_denoiser


@pytest.fixture
def pair(tmp_path):
    model = build_random_pathup_model(tmp_path / "model", seed=0)
    weak = build_random_pathup_model(tmp_path / "weak", seed=1)
    return model, weak


def test_a_weak_denoiser_is_written_recorded_and_loaded(pair):
    model, weak = pair
    assert not read_model_spec(model).has_weak_denoiser and not load_model(model).has_weak_denoiser
    record = add_weak_denoiser(model, weak, note="seed 1", dtype=torch.float16)
    assert json.loads((model / "pathup.json").read_text())["weak_denoiser"] == record
    assert record["note"] == "seed 1" and record["dtype"] == "float16"
    stored = load_file(next((model / WEAK_DENOISER_DIR).glob("*.safetensors")))
    source = load_file(next((weak / "denoiser").glob("*.safetensors")))
    assert stored.keys() == source.keys()
    assert all(stored[k].dtype == torch.float16 for k in stored)
    assert all(torch.equal(stored[k], source[k].half()) for k in stored)
    assert read_model_spec(model).has_weak_denoiser
    loaded = load_model(model)
    assert loaded.has_weak_denoiser and "weak_denoiser" in loaded.modules
    x, t = torch.randn(1, loaded.latent_channels, 16, 16), torch.tensor(500)
    cond = loaded.conditioner("tumour", "native")
    own, other = loaded.denoiser(x, t, cond), loaded.weak_denoiser(x, t, cond)
    expected = load_model(weak).denoiser(x, t, cond)
    assert not torch.allclose(own, other)
    assert torch.allclose(other, expected, atol=5e-2)  # the source's network, at float16 weights


def test_a_smaller_weak_denoiser_guides_but_one_of_other_labels_or_patches_is_refused_unwritten(
    pair, tmp_path
):
    """A weak denoiser may be another network (autoguidance's usually is smaller), but it must take the
    model's latents, labels and patches: otherwise refused before anything is written."""
    model, _ = pair  # the tiny preset: two levels, patches in multiples of 2
    deeper = build_random_pathup_model(tmp_path / "deeper", preset="cpu")  # three levels: multiples of 4
    two_classes = build_random_pathup_model(tmp_path / "two", classes=("tumour", "stroma"))
    before = sorted(p.name for p in model.iterdir())
    for source, named in (
        (deeper, r"patch multiple \(4, which does not divide the denoiser's 2\)"),
        (two_classes, r"num_class_embeds \(6 against the denoiser's 8\)"),
    ):
        with pytest.raises(ModelLoadError, match=rf"cannot guide .* it differs in {named}"):
            add_weak_denoiser(model, source)
        assert sorted(p.name for p in model.iterdir()) == before
    wider = build_random_pathup_model(tmp_path / "wider", sample_size=32)  # another native size: fine
    add_weak_denoiser(model, wider)
    assert load_model(model).has_weak_denoiser


def test_a_model_folder_with_a_bad_weak_denoiser_fails_to_load_naming_it(pair, tmp_path):
    model, weak = pair
    shutil.copytree(weak / "denoiser", model / WEAK_DENOISER_DIR)
    config = json.loads((model / WEAK_DENOISER_DIR / "config.json").read_text())
    config["in_channels"] = config["out_channels"] = 8
    (model / WEAK_DENOISER_DIR / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match=r"weak_denoiser/config.json: .* differs in in_channels \(8 "):
        read_model_spec(model)
    for weights in (model / WEAK_DENOISER_DIR).glob("*.safetensors"):
        weights.rename(weights.with_suffix(".bin"))  # pickles are never loaded
    config["in_channels"] = config["out_channels"] = 4
    (model / WEAK_DENOISER_DIR / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match=r"no \.safetensors weights in .*weak_denoiser"):
        load_model(model)
