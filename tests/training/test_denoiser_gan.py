"""Phase 2b, the denoiser's adversarial leg: it continues the finished denoiser, resumes exactly, refuses
to continue another denoiser, and the exported model records it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from helpers import TINY_TRAINING
from napari_pathup.cli import main
from napari_pathup.errors import InputError
from napari_pathup.models.base import Autoencoder
from napari_pathup.training.denoiser import diffusion_target
from napari_pathup.training.denoiser_gan import (
    PIXEL_WINDOW,
    DenoiserGanPhase,
    LatentDiscriminator,
    PixelDiscriminator,
    predicted_clean,
)
from napari_pathup.training.settings import TrainConfig
from napari_pathup.training.train import load_autoencoder, train


def _config(data: Path, out: Path, **changes) -> TrainConfig:
    return TrainConfig(data=data, out=out, **{**TINY_TRAINING, "iters": 2, **changes})


def _adversarial(model: Path) -> dict:
    return json.loads((model / "pathup.json").read_text())["training"]["denoiser"]["adversarial"]


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "denoiser" / "diffusion_pytorch_model.safetensors")


def _checkpoint(folder: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(folder / f"checkpoints/denoiser_gan/step-{step:07d}/model.safetensors")


def _assert_resumes_bit_for_bit(data: Path, whole: Path, split: Path, **settings) -> Path:
    """A leg trained to 4 and resumed to 6 in ``split`` equals ``whole``'s leg trained to 6 in one go,
    the whole checkpoint (incl. the discriminators' spectral-norm vectors and the optimizer state)."""
    train(_config(data, split, denoiser_gan_iters=4, **settings), log=lambda _: None)
    train(_config(data, split, denoiser_gan_iters=6, resume=True, **settings), log=lambda _: None)
    a, b = _checkpoint(whole, 6), _checkpoint(split, 6)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    return split


@pytest.mark.parametrize("prediction_type", ["v_prediction", "epsilon"])
def test_the_clean_latent_of_the_true_target_is_the_clean_latent(prediction_type: str) -> None:
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(3, 4, 8, 8, generator=g), torch.randn(3, 4, 8, 8, generator=g)
    alpha_bar = torch.tensor([0.9, 0.5, 0.05]).view(-1, 1, 1, 1)
    noisy, target = diffusion_target(x0, noise, alpha_bar, prediction_type)
    assert torch.allclose(predicted_clean(noisy, target, alpha_bar, prediction_type), x0, atol=1e-5)


def test_the_adversarial_leg_continues_the_denoiser_and_is_recorded(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    plain = train(_config(tiny_dataset, tmp_path / "plain"), log=lambda _: None)
    tuned = train(_config(tiny_dataset, tmp_path / "tuned", denoiser_gan_iters=4), log=lambda _: None)
    record = json.loads((tuned / "pathup.json").read_text())["training"]["denoiser"]
    assert record["iterations"] == 4
    adversarial = record["adversarial"]
    assert (adversarial["from_iteration"], adversarial["iterations"]) == (2, 4)
    assert adversarial["weight"] == TrainConfig.denoiser_gan_weight
    assert {"val", "sharp", "sharp_blur"} <= set(adversarial)  # measured at its end
    # the same denoiser up to iteration 2 (same phase-2 checkpoint), then changed by the leg
    a = load_file(plain / "checkpoints/denoiser/step-0000002/model.safetensors")
    b = load_file(tuned / "checkpoints/denoiser/step-0000002/model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    before, after = _weights(plain), _weights(tuned)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert (tuned / "checkpoints/denoiser_gan/step-0000004").is_dir()
    # a warm start from the tuned model (plain training on) records the leg it continued, and the
    # weight average its denoiser is (as scripts/experiments/average_denoisers.py records it)
    meta = json.loads((tuned / "pathup.json").read_text())
    average = [
        {"model": "a", "hash": "sha256:00", "weight": 0.8},
        {"model": "b", "hash": "sha256:11", "weight": 0.2},
    ]
    meta["training"]["denoiser"]["weight_average"] = average
    (tuned / "pathup.json").write_text(json.dumps(meta))
    again = train(_config(tiny_dataset, tmp_path / "again", init=tuned, iters=5), log=lambda _: None)
    record = json.loads((again / "pathup.json").read_text())["training"]["denoiser"]
    assert record["init_adversarial"] == adversarial and "adversarial" not in record
    assert record["init_weight_average"] == average and "weight_average" not in record


def test_only_the_timesteps_below_the_limit_are_judged(tiny_dataset: Path, tmp_path: Path) -> None:
    """With no timestep below the limit the discriminator never sees a latent (not even its spectral-norm
    vectors move) and the denoiser trains on the v loss alone."""
    out = train(
        _config(tiny_dataset, tmp_path / "m", denoiser_gan_iters=4, denoiser_gan_max_timestep=1),
        log=lambda _: None,
    )
    after = load_file(out / "checkpoints/denoiser_gan/step-0000004/model.safetensors")
    torch.manual_seed(TrainConfig.seed + 5)  # as train_denoiser_gan builds it
    config = json.loads((out / "denoiser" / "config.json").read_text())
    fresh = LatentDiscriminator(config["in_channels"], config["num_class_embeds"]).state_dict()
    assert all(torch.equal(fresh[k], after[f"discriminator.{k}"]) for k in fresh)
    judged = train(_config(tiny_dataset, tmp_path / "j", denoiser_gan_iters=4), log=lambda _: None)
    moved = load_file(judged / "checkpoints/denoiser_gan/step-0000004/model.safetensors")
    assert any(not torch.equal(fresh[k], moved[f"discriminator.{k}"]) for k in fresh)


def test_the_adversarial_leg_resumes_bit_for_bit(tiny_dataset: Path, tmp_path: Path) -> None:
    whole = train(_config(tiny_dataset, tmp_path / "whole", denoiser_gan_iters=6), log=lambda _: None)
    out = _assert_resumes_bit_for_bit(tiny_dataset, whole, tmp_path / "split")
    w, s = _weights(whole), _weights(out)
    assert all(torch.equal(w[k], s[k]) for k in w)


def test_the_leg_refuses_to_continue_another_denoiser_or_to_count_backwards(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    out = tmp_path / "model"
    train(_config(tiny_dataset, out, denoiser_gan_iters=3), log=lambda _: None)
    with pytest.raises(InputError, match="continue a denoiser of 2 iterations, this one has 4"):
        train(_config(tiny_dataset, out, iters=4, denoiser_gan_iters=5, resume=True), log=lambda _: None)
    with pytest.raises(InputError, match=r"denoiser_gan_weight: 0\.1 → 0\.5"):
        train(
            _config(tiny_dataset, out, denoiser_gan_iters=5, denoiser_gan_weight=0.5, resume=True),
            log=lambda _: None,
        )
    with pytest.raises(InputError, match="below the denoiser's 2 iterations"):
        train(_config(tiny_dataset, tmp_path / "other", denoiser_gan_iters=1), log=lambda _: None)


def test_a_paired_judge_sees_the_noisy_latent_and_changes_the_leg(tiny_dataset: Path, tmp_path: Path) -> None:
    """``judge="pair"``: the discriminator takes (clean, noisy, noise level), 2C + 1 channels, and the
    leg trains the denoiser differently from the clean judge's leg, from the same draws."""
    clean = train(_config(tiny_dataset, tmp_path / "clean", denoiser_gan_iters=4), log=lambda _: None)
    out = train(
        _config(tiny_dataset, tmp_path / "pair", denoiser_gan_iters=4, denoiser_gan_judge="pair"),
        log=lambda _: None,
    )
    assert (
        json.loads((out / "pathup.json").read_text())["training"]["denoiser"]["adversarial"]["judge"]
        == "pair"
    )
    channels = json.loads((out / "denoiser" / "config.json").read_text())["in_channels"]
    state = load_file(out / "checkpoints/denoiser_gan/step-0000004/model.safetensors")
    first = state["discriminator.body.0.parametrizations.weight.original"]
    assert first.shape[1] == 2 * channels + 1
    a, b = _weights(clean), _weights(out)
    assert any(not torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(InputError, match="denoiser_gan_judge: 'pair' → 'clean'"):
        train(_config(tiny_dataset, tmp_path / "pair", denoiser_gan_iters=5, resume=True), log=lambda _: None)
    expected = "expected one of clean, pair, pixel, pair\\+pixel"
    with pytest.raises(InputError, match=f"denoiser_gan_judge 'noisy': {expected}"):
        train(
            _config(tiny_dataset, tmp_path / "bad", denoiser_gan_iters=4, denoiser_gan_judge="noisy"),
            log=lambda _: None,
        )


def test_a_pixel_judge_sees_the_decoders_painting_and_changes_the_leg(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    """``judge="pixel"``: the discriminator takes (RGB painting, noisy latent, noise level), 3 + C + 1
    channels, trains the denoiser differently from the pair judge from the same draws, is recorded, and
    its leg resumes bit for bit."""
    pair = train(
        _config(tiny_dataset, tmp_path / "pair", denoiser_gan_iters=4, denoiser_gan_judge="pair"),
        log=lambda _: None,
    )
    whole = train(
        _config(tiny_dataset, tmp_path / "pixel", denoiser_gan_iters=6, denoiser_gan_judge="pixel"),
        log=lambda _: None,
    )
    assert _adversarial(whole)["judge"] == "pixel"
    channels = json.loads((whole / "denoiser" / "config.json").read_text())["in_channels"]
    state = _checkpoint(whole, 4)
    assert state["discriminator.body.0.parametrizations.weight.original"].shape[1] == 3 + channels + 1
    before = _checkpoint(pair, 4)
    denoiser = [k for k in state if k.startswith("denoiser.")]
    assert denoiser and any(not torch.equal(before[k], state[k]) for k in denoiser)
    _assert_resumes_bit_for_bit(tiny_dataset, whole, tmp_path / "split", denoiser_gan_judge="pixel")


def test_both_judges_judge_every_step_and_the_leg_resumes_bit_for_bit(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    """``judge="pair+pixel"``: the pair judge keeps the ``discriminator`` key (2C + 1 channels), the pixel
    judge trains beside it under ``pixel_discriminator`` (3 + C + 1), the denoiser trains differently
    from either judge's leg alone, the pixel judge's factors are recorded, and the leg resumes exactly."""

    def leg(name: str, iters: int = 4, **changes) -> Path:
        config = _config(tiny_dataset, tmp_path / name, denoiser_gan_iters=iters, **changes)
        return train(config, log=lambda _: None)

    pixel_factors = {"stroma": 0.5}
    both = leg("both", 6, denoiser_gan_judge="pair+pixel", denoiser_gan_pixel_class_weights=pixel_factors)
    record = _adversarial(both)
    assert record["judge"] == "pair+pixel"
    assert record["pixel_class_weights"] == {"stroma": 0.5, "tumour": 1.0}
    assert record["class_weights"] == {"stroma": 1.0, "tumour": 1.0}
    channels = json.loads((both / "denoiser" / "config.json").read_text())["in_channels"]
    state = _checkpoint(both, 4)
    first = "body.0.parametrizations.weight.original"
    assert state[f"discriminator.{first}"].shape[1] == 2 * channels + 1
    assert state[f"pixel_discriminator.{first}"].shape[1] == 3 + channels + 1
    labels = json.loads((both / "denoiser" / "config.json").read_text())["num_class_embeds"]
    judges = (LatentDiscriminator(channels, labels, paired=True), PixelDiscriminator(channels, labels))
    assert record["discriminator_parameters"] == sum(p.numel() for d in judges for p in d.parameters())
    denoiser = [k for k in state if k.startswith("denoiser.")]
    for judge in ("pair", "pixel"):
        alone = _checkpoint(leg(judge, denoiser_gan_judge=judge), 4)
        assert any(not torch.equal(alone[k], state[k]) for k in denoiser), judge
    settings = {"denoiser_gan_judge": "pair+pixel", "denoiser_gan_pixel_class_weights": pixel_factors}
    _assert_resumes_bit_for_bit(tiny_dataset, both, tmp_path / "split", **settings)


def test_the_pixel_judges_own_factors_apply_and_are_refused_without_it(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    """Both judges' factors 0 for every class leave the denoiser to the v loss (as no timestep judged);
    the pair judge's factors 0 alone do not (the pixel judge still pulls); pixel factors are refused
    for a judge that has no second, pixel judge, and for names that are not classes."""

    def leg(name: str, **changes) -> Path:
        # a heavy weight: over a leg this short, the ramp leaves the default's pull below float noise
        config = _config(
            tiny_dataset,
            tmp_path / name,
            denoiser_gan_iters=4,
            denoiser_gan_judge="pair+pixel",
            denoiser_gan_weight=100.0,
        )
        return train(dataclasses.replace(config, **changes), log=lambda _: None)

    zeros = {"stroma": 0.0, "tumour": 0.0}
    silent = leg("silent", denoiser_gan_class_weights=zeros, denoiser_gan_pixel_class_weights=zeros)
    unjudged = leg("unjudged", denoiser_gan_max_timestep=1)  # the same draws, no timestep judged
    pixel_only = leg("pixel-only", denoiser_gan_class_weights=zeros)
    a, b, c = _weights(silent), _weights(unjudged), _weights(pixel_only)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert any(not torch.allclose(c[k], b[k], atol=1e-6) for k in c)
    with pytest.raises(InputError, match="only with judge 'pair\\+pixel'"):
        train(
            _config(
                tiny_dataset,
                tmp_path / "alone",
                denoiser_gan_iters=4,
                denoiser_gan_judge="pixel",
                denoiser_gan_pixel_class_weights={"stroma": 0.0},
            ),
            log=lambda _: None,
        )
    with pytest.raises(InputError, match="pixel class weight 'lymph': not a class"):
        leg("bad", denoiser_gan_pixel_class_weights={"lymph": 0.0})


def test_the_pixel_judges_decoder_paints_as_synthesis_does_and_passes_gradients(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    """The painting equals :meth:`Autoencoder.decode`'s (the engine's D), and the generator's gradient
    reaches the latent while the frozen decoder's weights get none."""
    model = train(_config(tiny_dataset, tmp_path / "m"), log=lambda _: None)
    autoencoder = Autoencoder(load_autoencoder(model).requires_grad_(False))
    latent = torch.randn(2, autoencoder.latent_channels, 8, 8, generator=torch.Generator().manual_seed(0))
    latent.requires_grad_(True)
    painted = autoencoder.decode_with_grad(latent).float()
    assert torch.allclose(painted, autoencoder.decode(latent.detach()).float(), atol=1e-5)
    painted.mean().backward()
    assert latent.grad is not None and latent.grad.abs().sum() > 0
    assert all(p.grad is None for p in autoencoder.vae.parameters())


def test_the_pixel_judge_sees_real_and_predicted_latents_at_one_place_per_step() -> None:
    """A window of PIXEL_WINDOW latent pixels, the same place in every latent of a step, drawn anew each step
    from the phase's generator (so a resumed leg draws the same); latent judges see the whole latent."""
    z = torch.arange(2 * 32 * 32, dtype=torch.float32).view(1, 2, 32, 32)
    phase: Any = SimpleNamespace(decode=lambda x: x, torch_rng=torch.Generator().manual_seed(0))
    places = set()
    for _ in range(8):
        real, fake = DenoiserGanPhase.window(phase, z, z + 0.5)
        assert real.shape[2:] == (PIXEL_WINDOW, PIXEL_WINDOW) and torch.equal(fake, real + 0.5)
        places.add(float(real[0, 0, 0, 0]))
    assert len(places) > 1
    no_decoder: Any = SimpleNamespace(decode=None)
    assert DenoiserGanPhase.window(no_decoder, z)[0] is z
    logits = PixelDiscriminator(2, 7)(torch.randn(3, 3 + 2 + 1, 128, 128), torch.tensor([0, 3, 6]))
    assert logits.shape == (3, 1, 16, 16)  # one per 8x8-pixel block: a latent pixel's


def test_a_class_factor_of_zero_leaves_the_class_to_the_v_loss(tiny_dataset: Path, tmp_path: Path) -> None:
    """Factors 0 for every class give the plain v loss's denoiser (the discriminator still trains);
    a factor of 1 for every class is the leg without factors; unknown classes are refused."""

    def leg(name: str, **changes) -> Path:
        config = _config(tiny_dataset, tmp_path / name, denoiser_gan_iters=4, **changes)
        return train(config, log=lambda _: None)

    zero = leg("zero", denoiser_gan_class_weights={"stroma": 0.0, "tumour": 0.0})
    unjudged = leg("unjudged", denoiser_gan_max_timestep=1)  # no timestep judged: v loss alone
    a, b = _weights(zero), _weights(unjudged)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert _adversarial(zero)["class_weights"] == {"stroma": 0.0, "tumour": 0.0}
    ones, plain = leg("ones", denoiser_gan_class_weights={"stroma": 1.0}), leg("plain")
    a, b, c = _weights(ones), _weights(plain), _weights(unjudged)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert any(not torch.allclose(b[k], c[k], atol=1e-6) for k in b)
    with pytest.raises(InputError, match="class weight 'lymph': not a class \\(classes: stroma, tumour\\)"):
        leg("bad", denoiser_gan_class_weights={"lymph": 0.0})


def test_crop_emphasis_changes_what_the_leg_sees_and_is_recorded(tiny_dataset: Path, tmp_path: Path) -> None:
    """Emphasis on a class's cellular crops changes the crops the leg draws (so its weights), is
    recorded with the leg, and refuses names that are not classes."""

    def leg(name: str, **changes) -> Path:
        return train(
            _config(tiny_dataset, tmp_path / name, denoiser_gan_iters=4, **changes), log=lambda _: None
        )

    plain, emphasised = leg("plain"), leg("emphasised", denoiser_gan_crop_emphasis={"tumour": 3.0})
    a, b = _weights(plain), _weights(emphasised)
    assert any(not torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert _adversarial(emphasised)["crop_emphasis"] == {"tumour": 3.0}
    assert "crop_emphasis" not in _adversarial(plain)
    with pytest.raises(InputError, match="crop emphasis 'lymph': not a class"):
        leg("bad", denoiser_gan_crop_emphasis={"lymph": 1.0})


def test_a_leg_saved_before_a_setting_existed_resumes_with_its_default(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    """Work folders written before ``denoiser_gan_judge`` was added hold no such key: they were made
    with its default and resume under it, and are refused under any other value."""
    out = tmp_path / "old"
    train(_config(tiny_dataset, out, denoiser_gan_iters=3), log=lambda _: None)
    saved = out / "checkpoints" / "config.json"
    config = json.loads(saved.read_text())
    del config["denoiser_gan_judge"]
    saved.write_text(json.dumps(config))
    with pytest.raises(InputError, match="denoiser_gan_judge: 'clean' → 'pair'"):
        train(
            _config(tiny_dataset, out, denoiser_gan_iters=4, denoiser_gan_judge="pair", resume=True),
            log=lambda _: None,
        )
    train(_config(tiny_dataset, out, denoiser_gan_iters=4, resume=True), log=lambda _: None)
    assert (out / "checkpoints/denoiser_gan/step-0000004").is_dir()


def test_the_cli_passes_the_adversarial_settings(tiny_dataset: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli"
    args = ["train", str(tiny_dataset), "--out", str(out), "--quiet", "--threads", "1"]
    args += ["--ae-preset", "tiny", "--ae-iters", "1", "--ae-batch-size", "1", "--ae-crop", "32"]
    args += ["--preset", "tiny", "--iters", "1", "--batch-size", "1", "--crop", "64"]
    args += ["--reference-size", "128"]
    assert main([*args, "--denoiser-gan-iters", "2", "--denoiser-gan-weight", "0.05"]) == 0
    adversarial = json.loads((out / "pathup.json").read_text())["training"]["denoiser"]["adversarial"]
    assert (adversarial["iterations"], adversarial["weight"], adversarial["lr"]) == (2, 0.05, 5e-5)
    assert (adversarial["max_timestep"], adversarial["judge"]) == (750, "clean")
    paired = tmp_path / "paired"
    assert (
        main([*args, "--denoiser-gan-iters", "2", "--denoiser-gan-judge", "pair", "--out", str(paired)]) == 0
    )
    assert (
        json.loads((paired / "pathup.json").read_text())["training"]["denoiser"]["adversarial"]["judge"]
        == "pair"
    )
    emphasised = tmp_path / "emphasised"
    emphasis = ["--denoiser-gan-crop-emphasis", "tumour=2", "--out", str(emphasised)]
    assert main([*args, "--denoiser-gan-iters", "2", *emphasis]) == 0
    assert _adversarial(emphasised)["crop_emphasis"] == {"tumour": 2.0}
    both = tmp_path / "both"
    judges = ["--denoiser-gan-judge", "pair+pixel", "--denoiser-gan-pixel-class-weight", "tumour=0"]
    assert main([*args, "--denoiser-gan-iters", "2", *judges, "--out", str(both)]) == 0
    assert _adversarial(both)["pixel_class_weights"] == {"stroma": 1.0, "tumour": 0.0}
    with pytest.raises(SystemExit) as stop:
        main([*args, "--denoiser-gan-weight", "-1", "--out", str(tmp_path / "bad")])
    assert stop.value.code == 2
    assert "--denoiser-gan-weight: '-1': expected a finite number >= 0" in capsys.readouterr().err
