"""Deepening a trained denoiser keeps its function, and a warm start may deepen it (``--preset``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from helpers import TINY_TRAINING
from napari_pathup.errors import InputError
from napari_pathup.models.build import DENOISER_PRESETS, build_denoiser
from napari_pathup.training.grow import grow_depth
from napari_pathup.training.settings import TrainConfig
from napari_pathup.training.train import train

TINY = TINY_TRAINING


def trained_like(seed: int = 0) -> torch.nn.Module:
    """A tiny denoiser (attention at its lower level) with random, non-zero weights everywhere."""
    torch.manual_seed(seed)
    unet = build_denoiser(["a", "b"], preset="tiny", sample_size=8, latent_channels=4)
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(torch.randn_like(p) * 0.05)  # diffusers zero-initialises some layers
    return unet.eval()


@pytest.mark.parametrize("depth", [2, 3])
def test_a_deepened_denoiser_computes_what_it_did(depth: int) -> None:
    old = trained_like()
    new = grow_depth(old, depth).eval()
    assert new.config.layers_per_block == depth
    assert sum(p.numel() for p in new.parameters()) > sum(p.numel() for p in old.parameters())
    x = torch.randn(3, 4, 16, 16)
    t = torch.tensor([5, 400, 990])
    labels = torch.tensor([0, 2, 4])
    with torch.no_grad():
        torch.testing.assert_close(
            new(x, t, class_labels=labels).sample, old(x, t, class_labels=labels).sample
        )


def test_the_new_layers_learn() -> None:
    new = grow_depth(trained_like(), 2)
    out = new(torch.randn(2, 4, 16, 16), torch.tensor([100, 700]), class_labels=torch.tensor([1, 3])).sample
    out.square().mean().backward()
    for block in (*new.down_blocks, *new.up_blocks):
        assert block.resnets[1].conv2.weight.grad.abs().sum() > 0  # the zero convolution gets a gradient


def test_a_denoiser_is_never_made_shallower() -> None:
    with pytest.raises(ValueError, match="cannot grow a denoiser of 2 layers per block to 1"):
        grow_depth(grow_depth(trained_like(), 2), 1)


def test_a_warm_start_deepens_the_model_to_a_deeper_preset(
    tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.set_num_threads(1)
    monkeypatch.setitem(DENOISER_PRESETS, "tiny-deep", {**DENOISER_PRESETS["tiny"], "layers_per_block": 2})
    first = train(TrainConfig(data=tiny_dataset, out=tmp_path / "a", iters=2, **TINY), log=lambda _: None)
    log: list[str] = []
    deep = {**TINY, "preset": "tiny-deep"}
    second = train(
        TrainConfig(data=tiny_dataset, out=tmp_path / "b", iters=4, init=first, **deep), log=log.append
    )
    config = json.loads((second / "denoiser" / "config.json").read_text())
    assert config["layers_per_block"] == 2
    assert any("deepened from 1 to 2 layers per block" in line for line in log)
    assert json.loads((second / "pathup.json").read_text())["training"]["denoiser"]["iterations"] == 4
    # another width, or fewer layers, is refused before any training, naming both flags
    monkeypatch.setitem(
        DENOISER_PRESETS, "tiny-wide", {**DENOISER_PRESETS["tiny"], "block_out_channels": (32, 64)}
    )
    with pytest.raises(InputError, match=r"--preset tiny-wide .* does not fit the denoiser of --init"):
        train(
            TrainConfig(
                data=tiny_dataset, out=tmp_path / "c", iters=4, init=first, **{**TINY, "preset": "tiny-wide"}
            ),
            log=lambda _: None,
        )
    with pytest.raises(InputError, match="may only add layers"):
        train(
            TrainConfig(data=tiny_dataset, out=tmp_path / "d", iters=6, init=second, **TINY),
            log=lambda _: None,
        )


def test_a_float16_stored_denoiser_halves_the_file_and_loads_as_float32(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    from safetensors.torch import load_file

    from napari_pathup.engine.pipeline import SynthesisSettings, run
    from napari_pathup.io import read_image
    from napari_pathup.models.default import reference_for_class
    from napari_pathup.models.load import load_model

    torch.set_num_threads(1)
    full = train(TrainConfig(data=tiny_dataset, out=tmp_path / "a", iters=2, **TINY), log=lambda _: None)
    half = train(
        TrainConfig(
            data=tiny_dataset, out=tmp_path / "b", iters=2, init=full, denoiser_storage="float16", **TINY
        ),
        log=lambda _: None,
    )
    weights = "denoiser/diffusion_pytorch_model.safetensors"
    a, b = load_file(full / weights), load_file(half / weights)
    assert all(v.dtype == torch.float16 for v in b.values())
    assert all(torch.equal(a[k].half(), b[k]) for k in a)  # no training past 2: the same weights, rounded
    assert (half / weights).stat().st_size < 0.6 * (full / weights).stat().st_size
    meta = json.loads((half / "pathup.json").read_text())
    assert meta["training"]["denoiser_storage"] == "float16"
    model = load_model(half)
    assert (
        next(model.denoiser.parameters()).dtype == torch.float32
        if hasattr(model.denoiser, "parameters")
        else True
    )
    reference = read_image(reference_for_class(model, "tumour"))
    image = run(
        model, reference, SynthesisSettings("tumour", height=64, width=64, reference_size=64, steps=3)
    ).image
    assert image.shape == (64, 64, 3) and image.std() > 0
