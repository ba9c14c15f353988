"""The training loop: checkpoints without pickle; a resumed run equals an uninterrupted one bit for bit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from napari_pathup.datasets import discover
from napari_pathup.training.autoencoder import (
    AutoencoderPhase,
    LossWeights,
    build_autoencoder,
    psnr,
    reconstruction_loss,
    stain_densities,
)
from napari_pathup.training.checkpoint import latest_checkpoint
from napari_pathup.training.data import CropSampler, build_sources, holdout_crops, load_images
from napari_pathup.training.loop import make_ema, run_phase


def _phase(tiny_dataset: Path, seed: int = 0) -> AutoencoderPhase:
    index = discover(tiny_dataset)
    arrays = load_images(index)
    data = build_sources(index, arrays, crop=32, reference_size=128)
    torch.manual_seed(seed)
    vae = build_autoencoder("tiny")
    return AutoencoderPhase(
        "autoencoder",
        vae,
        torch.optim.AdamW(vae.parameters(), lr=1e-3),
        make_ema(vae),
        np.random.default_rng(seed),
        torch.Generator().manual_seed(seed),
        lr=1e-3,
        warmup=2,
        sampler=CropSampler(data),
        batch_size=2,
        eval_crops=[c for c, _ in holdout_crops(index, arrays, 32, limit=4)],
    )


def test_resume_continues_bit_for_bit(tiny_dataset: Path, tmp_path: Path) -> None:
    whole = _phase(tiny_dataset)
    run_phase(whole, 6, tmp_path / "whole", checkpoint_every=3, eval_every=2, progress=False)

    first = _phase(tiny_dataset)
    run_phase(first, 3, tmp_path / "split", checkpoint_every=3, eval_every=2, progress=False)
    second = _phase(tiny_dataset, seed=0)  # fresh objects: everything must come from the checkpoint
    result = run_phase(
        second, 6, tmp_path / "split", checkpoint_every=3, eval_every=2, resume=True, progress=False
    )

    assert result.iteration == 6 and "psnr" in result.metrics
    for name, value in whole.model.state_dict().items():
        assert torch.equal(value, second.model.state_dict()[name]), name
    for a, b in zip(whole.ema.shadow_params, second.ema.shadow_params, strict=True):
        assert torch.equal(a, b)
    a = load_file(tmp_path / "whole" / "step-0000006" / "optimizer.safetensors")
    b = load_file(tmp_path / "split" / "step-0000006" / "optimizer.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    latest = latest_checkpoint(tmp_path / "split")
    assert latest is not None and latest.name == "step-0000006"
    log = [json.loads(line) for line in (tmp_path / "split" / "log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in log] == [3, 6]


def test_resume_past_the_end_does_nothing(tiny_dataset: Path, tmp_path: Path) -> None:
    phase = _phase(tiny_dataset)
    run_phase(phase, 2, tmp_path, checkpoint_every=1, eval_every=0, progress=False)
    again = _phase(tiny_dataset, seed=5)
    result = run_phase(again, 2, tmp_path, checkpoint_every=1, eval_every=0, resume=True, progress=False)
    assert result.iteration == 2
    assert all(torch.equal(v, again.model.state_dict()[k]) for k, v in phase.model.state_dict().items())
    assert sorted(p.name for p in tmp_path.glob("step-*")) == ["step-0000001", "step-0000002"]  # keeps two


def test_a_warm_start_warms_the_rate_up_again_and_keeps_the_ema_at_its_reached_decay(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    """Weights trained 20,000 steps continue with a fresh optimizer: the first steps run at a fraction
    of the rate, and one step moves the EMA (what is exported) by 1 - 0.999 of the way, not most of it."""
    phase = _phase(tiny_dataset)
    start = [p.detach().clone() for p in phase.model.parameters()]
    phase.warm_start(20_000)
    assert phase.learning_rate(20_001) == pytest.approx(1e-3 / 2)  # warmup=2, counted from the start
    assert phase.learning_rate(20_002) == pytest.approx(1e-3)
    run_phase(phase, 20_001, tmp_path, checkpoint_every=1, eval_every=0, progress=False, initial=20_000)
    moved = [(p.detach() - s).abs().sum() for p, s in zip(phase.model.parameters(), start, strict=True)]
    ema = [(e - s).abs().sum() for e, s in zip(phase.ema.shadow_params, start, strict=True)]
    assert float(sum(moved)) > 0
    assert float(sum(ema)) == pytest.approx(0.001 * float(sum(moved)), rel=0.01)  # fresh: all of it
    state = json.loads((tmp_path / "step-0020001" / "state.json").read_text())
    assert state["ema"]["optimization_step"] == 20_001  # a resume continues that count


def test_checkpoints_hold_no_pickle(tiny_dataset: Path, tmp_path: Path) -> None:
    run_phase(_phase(tiny_dataset), 1, tmp_path, checkpoint_every=1, eval_every=0, progress=False)
    files = sorted(p.name for p in (tmp_path / "step-0000001").iterdir())
    assert files == [
        "ema.safetensors",
        "model.safetensors",
        "optimizer.safetensors",
        "rng.safetensors",
        "state.json",
    ]


def test_colour_loss_sees_washed_out_eosin() -> None:
    pink = torch.tensor([235, 140, 200]).view(1, 3, 1, 1).expand(1, 3, 16, 16) / 127.5 - 1
    lilac = torch.tensor([215, 170, 225]).view(1, 3, 1, 1).expand(1, 3, 16, 16) / 127.5 - 1
    z = torch.zeros(1, 4, 2, 2)
    _, parts = reconstruction_loss(lilac, pink, z, LossWeights())
    assert parts["colour"] > 0.1
    eosin = stain_densities(pink)[0, 1].mean(), stain_densities(lilac)[0, 1].mean()
    assert eosin[0] > eosin[1]  # the lilac has less eosin
    assert psnr(pink, pink) > 90


def test_min_snr_weighting_caps_the_low_noise_steps_and_zero_turns_it_off() -> None:
    """min-SNR-γ: the x0-loss weight is min(SNR, γ), i.e. the v loss weighs min(SNR, γ) / (SNR + 1);
    γ = 0 is the plain loss (weight 1), which weighs a low-noise step (SNR 99) 20 times more."""
    from napari_pathup.training.denoiser import min_snr_weight

    alpha_bar = torch.tensor([0.01 / 1.01, 0.5, 0.99])  # SNR 0.01, 1, 99
    v = min_snr_weight(alpha_bar, "v_prediction", 5.0)
    assert torch.allclose(v, torch.tensor([0.01 / 1.01, 0.5, 5.0 / 100.0]), rtol=1e-4)
    eps = min_snr_weight(alpha_bar, "epsilon", 5.0)
    assert torch.allclose(eps, torch.tensor([1.0, 1.0, 5.0 / 99.0]), rtol=1e-4)
    assert torch.equal(min_snr_weight(alpha_bar, "v_prediction", 0.0), torch.ones(3))
    assert float(min_snr_weight(alpha_bar, "v_prediction", 0.0)[2] / v[2]) == pytest.approx(20.0, rel=1e-4)
