"""The decoder GAN phase: only the decoder (and its discriminator) learn, resume is exact, export works."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from napari_pathup.datasets import discover
from napari_pathup.errors import InputError
from napari_pathup.training.autoencoder import build_autoencoder
from napari_pathup.training.data import CropSampler, build_sources, holdout_crops, load_images
from napari_pathup.training.decoder_gan import (
    DecoderGanPhase,
    GanWeights,
    PatchDiscriminator,
    gan_optimizer,
    laplacian_energy,
    reconstruction_loss,
)
from napari_pathup.training.loop import make_ema, run_phase
from napari_pathup.training.settings import AUTOENCODER_PHASE_KEYS, TrainConfig
from napari_pathup.training.train import train

#: the smallest whole run: tiny presets, 2 iterations a phase, no progress bars
TINY: dict[str, Any] = dict(
    ae_preset="tiny",
    ae_iters=2,
    ae_batch_size=2,
    ae_crop=32,
    gan_batch_size=2,
    gan_crop=32,
    preset="tiny",
    batch_size=2,
    crop=64,
    checkpoint_every=2,
    eval_every=0,
    reference_size=128,
    progress=False,
)


def _phase(tiny_dataset: Path, seed: int = 0) -> DecoderGanPhase:
    index = discover(tiny_dataset)
    arrays = load_images(index)
    data = build_sources(index, arrays, crop=32, reference_size=128)
    torch.manual_seed(seed)
    vae = build_autoencoder("tiny")
    disc = PatchDiscriminator(vae.config.latent_channels, width=8)
    model = torch.nn.ModuleDict({"decoder": vae.decoder, "discriminator": disc})
    return DecoderGanPhase(
        "decoder",
        model,
        gan_optimizer(vae.decoder, disc, lr=1e-3),
        make_ema(model),
        np.random.default_rng(seed),
        torch.Generator().manual_seed(seed),
        lr=1e-3,
        encoder=vae.encoder,
        sampler=CropSampler(data),
        batch_size=2,
        eval_crops=[c for c, _ in holdout_crops(index, arrays, 32, limit=4)],
    )


def test_only_the_decoder_and_discriminator_learn(tiny_dataset: Path, tmp_path: Path) -> None:
    phase = _phase(tiny_dataset)
    encoder = {k: v.clone() for k, v in phase.encoder.state_dict().items()}
    decoder = {k: v.clone() for k, v in phase.decoder.state_dict().items()}
    disc = [p.detach().clone() for p in phase.discriminator.parameters()]
    result = run_phase(phase, 3, tmp_path, checkpoint_every=3, eval_every=3, progress=False)
    assert all(torch.equal(v, phase.encoder.state_dict()[k]) for k, v in encoder.items())
    assert any(not torch.equal(v, phase.decoder.state_dict()[k]) for k, v in decoder.items())
    assert any(not torch.equal(a, b) for a, b in zip(disc, phase.discriminator.parameters(), strict=True))
    assert {"psnr", "sharpness"} <= set(result.metrics)
    assert phase.optimizer.param_groups[1]["lr"] == pytest.approx(2 * phase.optimizer.param_groups[0]["lr"])


def test_gan_resume_continues_bit_for_bit(tiny_dataset: Path, tmp_path: Path) -> None:
    whole = _phase(tiny_dataset)
    run_phase(whole, 4, tmp_path / "whole", checkpoint_every=2, eval_every=0, progress=False)
    first = _phase(tiny_dataset)
    run_phase(first, 2, tmp_path / "split", checkpoint_every=2, eval_every=0, progress=False)
    second = _phase(tiny_dataset)
    run_phase(second, 4, tmp_path / "split", checkpoint_every=2, eval_every=0, resume=True, progress=False)
    for name, value in whole.model.state_dict().items():  # incl. the spectral-norm power-iteration vectors
        assert torch.equal(value, second.model.state_dict()[name]), name


@pytest.mark.parametrize("shape", [(1, 32, 32), (3, 32, 32), (8, 16, 16)], ids=["grey", "rgb", "latent"])
def test_laplacian_energy_ranks_blur_below_sharp_per_sample(shape: tuple[int, int, int]) -> None:
    rng = np.random.default_rng(0)
    sharp = torch.from_numpy(rng.uniform(-1, 1, (1, *shape))).float()
    blurred = torch.nn.functional.avg_pool2d(sharp, 3, stride=1, padding=1)
    energy = laplacian_energy(torch.cat([sharp, blurred, sharp]))
    assert energy.shape == (3,)
    assert energy[1] < 0.5 * energy[0] and energy[2] == energy[0]  # each sample on its own


def test_train_with_gan_and_jitter_exports_the_gan_decoder(tiny_dataset: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    cfg = TrainConfig(
        data=tiny_dataset,
        out=tmp_path / "model",
        gan_iters=2,
        hed_scale=0.05,
        hed_shift=0.02,
        iters=2,
        **TINY,
    )
    out = train(cfg, log=lambda _: None)
    meta = json.loads((out / "pathup.json").read_text())
    assert meta["training"]["decoder"]["iterations"] == 2
    from safetensors.torch import load_file

    shipped = load_file(out / "autoencoder" / "diffusion_pytorch_model.safetensors")
    gan = load_file(out / "checkpoints" / "decoder" / "final" / "diffusion_pytorch_model.safetensors")
    phase1 = load_file(out / "checkpoints" / "autoencoder" / "final" / "diffusion_pytorch_model.safetensors")
    dec = [k for k in shipped if k.startswith("decoder.")]
    enc = [k for k in shipped if k.startswith("encoder.")]
    assert all(torch.equal(shipped[k], gan[k]) for k in dec)
    assert any(not torch.equal(shipped[k], phase1[k]) for k in dec)  # the GAN decoder, not phase 1's
    assert all(torch.equal(shipped[k], phase1[k]) for k in enc)  # same encoder: same latent space


def test_warm_start_continues_from_a_model_folder(tiny_dataset: Path, tmp_path: Path) -> None:
    """A machine without checkpoints continues from the shipped weights and their iteration count."""
    torch.set_num_threads(1)
    base = dict(data=tiny_dataset, **TINY)
    first = train(TrainConfig(out=tmp_path / "a", iters=2, **base), log=lambda _: None)
    second = train(
        TrainConfig(out=tmp_path / "b", iters=4, init=first, lr=1e-5, snr_gamma=0.0, **base),
        log=lambda _: None,
    )
    meta = json.loads((second / "pathup.json").read_text())
    assert meta["training"]["denoiser"]["iterations"] == 4
    # the schedules record the model it continued from as well as the new leg
    assert meta["training"]["denoiser"]["lr_from_iteration"] == {"0": TrainConfig.lr, "2": 1e-5}
    assert meta["training"]["denoiser"]["snr_gamma_from_iteration"] == {"0": TrainConfig.snr_gamma, "2": 0.0}
    log = [json.loads(x) for x in (second / "checkpoints/denoiser/log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in log] == [4]  # counted on from 2, not from 0
    from safetensors.torch import load_file

    a = load_file(first / "autoencoder" / "diffusion_pytorch_model.safetensors")
    b = load_file(second / "autoencoder" / "diffusion_pytorch_model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)  # the same autoencoder, not retrained
    first_meta = json.loads((first / "pathup.json").read_text())["training"]
    assert meta["training"]["autoencoder"] == first_meta["autoencoder"]  # its record travels with it
    assert meta["training"]["decoder"] == first_meta["decoder"]


def test_a_warm_start_warms_up_its_fresh_optimizer_from_the_iteration_it_continues(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    """Without the warm-up, the fresh optimizer's first full-rate steps raised the validation loss of a
    continued model (candidates/patch16, twenty-first session); the EMA carries on from the count."""
    torch.set_num_threads(1)
    base = dict(data=tiny_dataset, **{**TINY, "checkpoint_every": 1})
    first = train(TrainConfig(out=tmp_path / "a", iters=2, **base), log=lambda _: None)
    second = train(TrainConfig(out=tmp_path / "b", iters=42, init=first, **base), log=lambda _: None)
    steps = tmp_path / "b/checkpoints/denoiser"
    state = json.loads((steps / "step-0000042" / "state.json").read_text())
    assert state["ema"]["optimization_step"] == 42  # counted on from 2
    # warm-up: min(500, 42 // 10) = 4 iterations, counted from 2 (the step counted as 3 runs at 1/4)
    log = [json.loads(x) for x in (steps / "log.jsonl").read_text().splitlines()]
    rates = {r["iteration"]: r["lr"] for r in log}
    assert rates[3] == pytest.approx(TrainConfig.lr / 4) and rates[5] == pytest.approx(3 * TrainConfig.lr / 4)
    assert rates[6] == rates[42] == pytest.approx(TrainConfig.lr)
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(TrainConfig.lr)
    assert (second / "pathup.json").exists()


def test_a_warm_start_draws_new_batches_instead_of_replaying_the_continued_runs_first_ones(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    torch.set_num_threads(1)
    base = dict(data=tiny_dataset, **TINY)
    first = train(TrainConfig(out=tmp_path / "a", iters=2, **base), log=lambda _: None)
    train(TrainConfig(out=tmp_path / "b", iters=4, init=first, **base), log=lambda _: None)

    def rng_state(run: str, step: str) -> dict:
        path = tmp_path / run / "checkpoints/denoiser" / step / "state.json"
        return json.loads(path.read_text())["numpy_rng"]

    # two steps from the same stream would leave the same state: the warm start's crops would be the
    # crops the first run drew at its iterations 1 and 2
    assert rng_state("b", "step-0000004") != rng_state("a", "step-0000002")


def test_a_warm_start_records_its_model_by_hash_and_resumes_only_from_the_same_weights(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    """A work folder continues the model it started from wherever that folder now is and whatever its
    README now says, and refuses when the path of --init holds other weights (the package's default
    model after a new version ships)."""
    import shutil

    from napari_pathup.models.load import model_hash

    torch.set_num_threads(1)
    base = dict(data=tiny_dataset, **TINY)
    first = train(TrainConfig(out=tmp_path / "a", iters=2, **base), log=lambda _: None)
    shipped = tmp_path / "shipped"
    shutil.copytree(first, shipped, ignore=shutil.ignore_patterns("checkpoints"))
    started = model_hash(shipped, documentation=False)
    leg = dict(out=tmp_path / "b", init=shipped, latent_channels=8, **base)  # 8: unused, init has 4
    second = train(TrainConfig(iters=3, **leg), log=lambda _: None)
    record = json.loads((second / "pathup.json").read_text())["training"]["settings"]
    # the exported record names the model it started from by folder name and hash, not by a path of
    # this machine, and says the latent channels the model has
    assert record["init"] == "shipped" and record["init_hash"] == started
    assert str(tmp_path) not in json.dumps(record)
    assert record["latent_channels"] == 4
    # nor the autoencoder and decoder flags of a run that trained neither (its own preset, say, is not
    # the autoencoder the model has); the run that trained them records them
    assert not set(AUTOENCODER_PHASE_KEYS) & set(record)
    trained = json.loads((first / "pathup.json").read_text())["training"]["settings"]
    assert set(AUTOENCODER_PHASE_KEYS) <= set(trained) and trained["ae_preset"] == TINY["ae_preset"]
    moved = tmp_path / "moved"
    shipped.rename(moved)  # the same weights in another folder: resumes
    train(TrainConfig(iters=4, resume=True, **{**leg, "init": moved}), log=lambda _: None)
    (moved / "README.md").write_text("# What this candidate is\n")  # documentation, not the model
    train(TrainConfig(iters=5, resume=True, **{**leg, "init": moved}), log=lambda _: None)
    # a work folder from before documentation was left out recorded the whole folder's hash: resumes
    config = tmp_path / "b" / "checkpoints" / "config.json"
    assert model_hash(moved) != model_hash(moved, documentation=False)
    config.write_text(json.dumps({**json.loads(config.read_text()), "init_hash": model_hash(moved)}))
    train(TrainConfig(iters=6, resume=True, **{**leg, "init": moved}), log=lambda _: None)
    shutil.copytree(second, shipped, ignore=shutil.ignore_patterns("checkpoints"))  # a new version there
    with pytest.raises(InputError, match=r"init_hash: .*holds other weights now"):
        train(TrainConfig(iters=7, resume=True, **leg), log=lambda _: None)


def test_a_resumed_decoder_may_raise_the_adversarial_weight_and_records_it(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    torch.set_num_threads(1)
    base = dict(data=tiny_dataset, out=tmp_path / "model", phases=("autoencoder", "decoder"), **TINY)
    train(TrainConfig(gan_iters=2, gan_weight=0.5, **base), log=lambda _: None)
    train(TrainConfig(gan_iters=4, gan_weight=2.0, resume=True, **base), log=lambda _: None)
    info = json.loads((tmp_path / "model/checkpoints/decoder/final/trained.json").read_text())
    assert info["iterations"] == 4
    assert info["adversarial_weight_from_iteration"] == {"0": 0.5, "2": 2.0}
    # rerunning the first leg (scripts/train_default_model.sh reruns every leg) changes nothing
    marker = tmp_path / "model/checkpoints/decoder/final/trained.json"
    before = marker.read_bytes()
    train(TrainConfig(gan_iters=2, gan_weight=0.5, resume=True, **base), log=lambda _: None)
    assert marker.read_bytes() == before
    with pytest.raises(Exception, match="gan_crop"):  # other settings still may not change
        train(TrainConfig(gan_iters=6, **{**base, "gan_crop": 64}, resume=True), log=lambda _: None)


def test_a_warm_start_from_a_model_without_recorded_schedules_records_its_settings(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    """Models exported before the schedules were recorded (the shipped version 3) held their --lr and
    the default min-SNR weighting from iteration 0."""
    torch.set_num_threads(1)
    base = dict(data=tiny_dataset, **TINY)
    first = train(TrainConfig(out=tmp_path / "a", iters=2, lr=3e-4, **base), log=lambda _: None)
    meta_path = first / "pathup.json"
    meta = json.loads(meta_path.read_text())
    for key in ("lr_from_iteration", "snr_gamma_from_iteration"):
        del meta["training"]["denoiser"][key]
    meta_path.write_text(json.dumps(meta))
    second = train(
        TrainConfig(out=tmp_path / "b", iters=3, init=first, snr_gamma=0.0, **base), log=lambda _: None
    )
    record = json.loads((second / "pathup.json").read_text())["training"]["denoiser"]
    assert record["lr_from_iteration"] == {"0": 3e-4, "2": TrainConfig.lr}
    assert record["snr_gamma_from_iteration"] == {"0": 5.0, "2": 0.0}


def test_the_full_resolution_term_sees_a_two_pixel_dither_the_low_passed_term_cannot() -> None:
    # flat glass, and the same glass with a +-0.05 checkerboard of 2-px period (what a decoder drew on it)
    x = torch.full((1, 3, 16, 16), 0.9)
    checker = (torch.arange(16)[:, None] + torch.arange(16)[None, :]) % 2 * 0.1 - 0.05
    y = x + checker
    plain = reconstruction_loss(y, x, GanWeights())
    assert float(plain) == pytest.approx(0.0, abs=1e-6)  # the 2x average pool cancels the pattern
    full = reconstruction_loss(y, x, GanWeights(full=2.0))
    assert float(full) == pytest.approx(2.0 * 0.05, rel=1e-4)
    # on a blurred copy of real detail both terms see the difference, and the full one adds to it
    z = torch.rand(1, 3, 16, 16) * 2 - 1
    blurred = torch.nn.functional.avg_pool2d(z, 3, stride=1, padding=1)
    assert (
        float(reconstruction_loss(blurred, z, GanWeights(full=1.0)))
        > float(reconstruction_loss(blurred, z, GanWeights()))
        > 0
    )


def test_the_glass_term_weighs_only_the_pixels_that_are_glass_in_the_real_crop() -> None:
    x = torch.full((1, 3, 8, 8), 0.9)  # glass: every channel above 200 / 255
    x[..., :, :4] = -0.2  # tissue on the left half
    dither = torch.zeros_like(x)
    dither[..., :, 4:] = 0.05  # a uniform offset on the glass half only
    glass_only = reconstruction_loss(x + dither, x, GanWeights(l1=0, colour=0, glass=1.0))
    assert float(glass_only) == pytest.approx(0.05, rel=1e-4)  # the mean over glass pixels
    tissue = torch.zeros_like(x)
    tissue[..., :, :4] = 0.3  # an error on tissue only: not the glass term's
    assert float(reconstruction_loss(x + tissue, x, GanWeights(l1=0, colour=0, glass=1.0))) == 0.0
