"""Loading both model layouts; every broken folder gives one clear error naming the file."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import BROKEN_MODELS, broken_model
from napari_pathup.engine.pipeline import SynthesisSettings, run
from napari_pathup.errors import ModelLoadError
from napari_pathup.models.load import load_model, model_hash

SMALL = {"height": 128, "width": 128, "reference_size": 64, "steps": 4, "decode_tile": 8, "decode_overlap": 2}


def test_pathup_layout_loads_with_its_classes(pathup_model):
    assert pathup_model.kind == "pathup"
    assert pathup_model.classes == ["tumour", "stroma", "normal"]
    assert pathup_model.scales == ["overview", "native"]
    assert pathup_model.vae_scale_factor == 8
    assert pathup_model.native_size == 16


def test_stable_diffusion_layout_runs_end_to_end(sd_model_dir, reference):
    model = load_model(sd_model_dir)
    assert model.kind == "stable-diffusion" and "text_encoder" in model.modules
    prompt = model.conditioner.prompt("ductal_carcinoma", "native")
    assert "ductal carcinoma" in prompt and "high" in prompt
    a = run(model, reference, SynthesisSettings("tumour", **SMALL)).image
    b = run(model, reference, SynthesisSettings("tumour", **SMALL)).image
    c = run(model, reference, SynthesisSettings("stroma", **SMALL)).image
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)  # the prompt carries the class


def test_autoencoder_tiny_is_supported(tmp_path, reference):
    from napari_pathup.models.build import build_random_pathup_model

    folder = build_random_pathup_model(tmp_path / "m", autoencoder="tiny")
    model = load_model(folder)
    assert model.vae_scale_factor == 8
    assert run(model, reference, SynthesisSettings("normal", **SMALL)).image.shape == (128, 128, 3)
    # diffusers registers block_out_channels itself; saved, it would make every load warn
    saved = json.loads((folder / "autoencoder" / "config.json").read_text())
    assert "block_out_channels" not in saved
    assert list(model.autoencoder.vae.config.block_out_channels) == saved["decoder_block_out_channels"]


def test_model_hash_identifies_the_weights(pathup_model_dir, tmp_path):
    copy = shutil.copytree(pathup_model_dir, tmp_path / "copy")
    assert model_hash(copy) == model_hash(pathup_model_dir)
    weights = copy / "denoiser" / "diffusion_pytorch_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    assert model_hash(copy) != model_hash(pathup_model_dir)


def test_model_hash_without_documentation_ignores_markdown_only(pathup_model_dir, tmp_path):
    copy = shutil.copytree(pathup_model_dir, tmp_path / "copy")
    (copy / "README.md").write_text("# notes\n")
    assert model_hash(copy) != model_hash(pathup_model_dir)  # the whole folder, as recorded in stores
    assert model_hash(copy, documentation=False) == model_hash(pathup_model_dir, documentation=False)
    (copy / "scheduler" / "scheduler_config.json").write_text("{}")
    assert model_hash(copy, documentation=False) != model_hash(pathup_model_dir, documentation=False)


@pytest.mark.parametrize(("how", "message"), BROKEN_MODELS.items())
def test_broken_folders_fail_with_one_clear_error(pathup_model_dir, tmp_path, how, message):
    with pytest.raises(ModelLoadError, match=message):
        load_model(broken_model(pathup_model_dir, tmp_path, how))


def test_missing_folder_and_hub_id_without_permission(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(tmp_path / "nowhere")
    with pytest.raises(ModelLoadError, match="allow it explicitly"):
        load_model("some-org/some-model")


def test_stable_diffusion_missing_tokenizer(sd_model_dir, tmp_path):
    folder = Path(shutil.copytree(sd_model_dir, tmp_path / "sd"))
    for name in ("vocab.json", "tokenizer.json"):
        (folder / "tokenizer" / name).unlink(missing_ok=True)
    with pytest.raises(ModelLoadError, match="missing CLIP tokenizer files"):
        load_model(folder)


def test_moving_a_model_to_its_device_and_dtype_logs_no_diffusers_warning(tmp_path):
    """diffusers warns about float32 modules whenever ``to`` gets a dtype argument, even None: every
    ``pathup synthesize`` printed two such lines, and a bfloat16 run (the CPU default where the CPU
    computes it) one more. ``PathupModel.to`` casts the tensors itself and logs nothing."""
    import logging

    import torch
    from diffusers.utils import logging as diffusers_logging

    from napari_pathup.models.build import build_random_pathup_model

    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Collect(level=logging.WARNING)
    root = diffusers_logging.get_logger("diffusers")
    root.addHandler(handler)
    try:
        model = load_model(build_random_pathup_model(tmp_path / "m", autoencoder="tiny"))
        model.to("cpu", None)
        model.to("cpu", torch.float32)
        model.to("cpu", torch.bfloat16)
    finally:
        root.removeHandler(handler)
    assert not [r for r in records if "kept in float32" in r.getMessage()]
    for module in model.modules.values():
        assert {p.dtype for p in module.parameters()} == {torch.bfloat16}
        assert all(b.dtype in (torch.bfloat16, torch.long, torch.int64) for b in module.buffers())
    assert model.dtype == torch.bfloat16


def test_a_scheduler_whose_package_is_missing_fails_as_a_load_error(pathup_model_dir, monkeypatch):
    """A model whose scheduler needs an optional package that is absent: a ModelLoadError naming it."""
    from napari_pathup.models import load

    class NeedsTorchsde:
        @classmethod
        def from_pretrained(cls, folder, **kwargs):
            raise ImportError("\nDPMSolverSDEScheduler requires the torchsde library but it was not found.\n")

    monkeypatch.setattr(load, "scheduler_class", lambda class_name: NeedsTorchsde)
    message = r"cannot load .*scheduler: DDIMScheduler cannot be used here: .*torchsde"
    with pytest.raises(ModelLoadError, match=message):
        load_model(pathup_model_dir)


def test_a_model_whose_scheduler_ignores_the_seed_is_refused(pathup_model_dir, tmp_path):
    """A scheduler config naming DPMSolverSDEScheduler: refused at load, since no run could be repeated."""
    folder = Path(shutil.copytree(pathup_model_dir, tmp_path / "model"))
    config = folder / "scheduler" / "scheduler_config.json"
    data = json.loads(config.read_text())
    data["_class_name"] = "DPMSolverSDEScheduler"
    config.write_text(json.dumps(data))
    message = r"DPMSolverSDEScheduler is not supported: .*repeated from its seed"
    with pytest.raises(ModelLoadError, match=message):
        load_model(folder)


def test_to_lays_the_denoisers_out_channels_last_on_the_cpu_in_float32(pathup_model_dir, reference):
    """The denoisers' convolution weights are NHWC where oneDNN runs them faster (CPU, float32), NCHW
    elsewhere; the pictures are the same to float rounding, and each layout is deterministic per seed."""

    def layouts(model) -> dict[str, set[bool]]:
        return {
            name: {  # of the kernels whose two layouts differ (1x1 kernels are both)
                p.is_contiguous(memory_format=torch.channels_last)
                for p in m.parameters()
                if p.dim() == 4 and p.shape[1] > 1 and p.shape[2] * p.shape[3] > 1
            }
            for name, m in model.modules.items()
        }

    settings = SynthesisSettings("tumour", height=128, width=192, reference_size=64, steps=4)
    plain = load_model(pathup_model_dir)
    plain.modules["denoiser"].to(memory_format=torch.contiguous_format)
    assert layouts(plain)["denoiser"] == {False}
    before = run(plain, reference, settings).image

    model = load_model(pathup_model_dir)  # loaded as it runs on the CPU in float32, and moved there alike
    assert layouts(model)["denoiser"] == {True}
    assert layouts(model)["autoencoder"] == {False}  # encode gained nothing, and lost on a 2-core AVX2 CPU
    image = run(model, reference, settings).image
    assert np.array_equal(image, run(model, reference, settings).image)  # deterministic per seed
    moved_there = load_model(pathup_model_dir).to("cpu", torch.float32)
    assert np.array_equal(image, run(moved_there, reference, settings).image)  # the CLI's and widget's path

    def moved(a: np.ndarray, b: np.ndarray) -> tuple[int, float]:
        levels = np.abs(a.astype(np.int16) - b.astype(np.int16))
        return int(levels.max()), float((levels > 0).mean())

    levels, share = moved(image, before)
    assert levels <= 1 and share < 0.1, (levels, share)  # float rounding (measured: 1 level, 3.7 %) ...
    other = run(model, reference, dataclasses.replace(settings, seed=1)).image
    assert moved(other, before)[0] > 1  # ... not another picture, which moves far more

    assert layouts(model.to("cpu", torch.bfloat16))["denoiser"] == {False}  # not measured in bfloat16
