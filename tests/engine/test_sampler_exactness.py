"""Tiled sampling must equal whole-latent sampling when the denoiser acts per pixel.

This is the proof that the patch merge and the patch-wise timestep tracking are right: with a
1x1-convolution denoiser every patch sees exactly what the whole latent would, so any difference
comes from the merge weights, the scheduler state or the noise handling.
"""

from __future__ import annotations

import dataclasses
import inspect

import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    UniPCMultistepScheduler,
)
from diffusers.utils.torch_utils import randn_tensor

from helpers import PixelDenoiser, drain
from napari_pathup.engine.events import PatchPreview, StepStarted
from napari_pathup.engine.sampler import PatchSampling, denoise_patches
from napari_pathup.engine.weights import WEIGHT_MODES

SCHEDULERS = {
    "ddim": DDIMScheduler,
    "euler": EulerDiscreteScheduler,
    "dpm++": DPMSolverMultistepScheduler,
    "unipc": UniPCMultistepScheduler,
    "ddpm": DDPMScheduler,  # stochastic
    "euler-a": EulerAncestralDiscreteScheduler,  # stochastic
}


def scheduler(name: str):
    return SCHEDULERS[name](num_train_timesteps=1000, beta_schedule="scaled_linear")


def whole_latent_reference(
    denoiser, sched, clean, cond, uncond, steps, strength, guidance, seed, interval=(0.0, 1.0)
):
    """Plain diffusers-style img2img loop over the whole latent, written independently of the engine;
    guidance only at timesteps t with ``interval[0] <= t / 1000 <= interval[1]``."""
    g = torch.Generator().manual_seed(seed)
    sched.set_timesteps(steps)
    init = min(int(steps * strength), steps)
    t_start = steps - init
    timesteps = sched.timesteps[t_start * sched.order :]
    if hasattr(sched, "set_begin_index"):
        sched.set_begin_index(t_start * sched.order)
    x = sched.add_noise(clean, randn_tensor(clean.shape, generator=g, dtype=torch.float32), timesteps[:1])
    kwargs = {"generator": g} if "generator" in inspect.signature(sched.step).parameters else {}
    for t in timesteps:
        inp = sched.scale_model_input(x, t)
        if guidance == 1.0 or not interval[0] * 1000 <= float(t) <= interval[1] * 1000:
            out = denoiser(inp, t, cond)
        else:
            u = denoiser(inp, t, uncond)
            c = denoiser(inp, t, cond)
            out = u + guidance * (c - u)
        x = sched.step(out, t, x, **kwargs).prev_sample
    return x


def tiled(denoiser, sched, clean, cond, uncond, sampling, seed, jitter_seed=None):
    g = torch.Generator().manual_seed(seed)
    jg = torch.Generator().manual_seed(jitter_seed) if jitter_seed is not None else None
    return drain(denoise_patches(denoiser, sched, clean, cond, uncond, sampling, g, jg))


@pytest.mark.parametrize("weights", WEIGHT_MODES)
@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_tiled_equals_whole_latent(name, weights):
    torch.manual_seed(0)
    clean = torch.randn(1, 4, 20, 28)
    denoiser = PixelDenoiser()
    cond, uncond = torch.tensor([1]), torch.tensor([3])
    sampling = PatchSampling(
        steps=12, strength=0.7, guidance=2.5, patch_size=8, overlap=3, weights=weights, batch_size=5
    )
    expected = whole_latent_reference(denoiser, scheduler(name), clean, cond, uncond, 12, 0.7, 2.5, seed=7)
    got, events = tiled(denoiser, scheduler(name), clean, cond, uncond, sampling, seed=7)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    steps = [e for e in events if isinstance(e, StepStarted)]
    previews = [e for e in events if isinstance(e, PatchPreview)]
    assert len(steps) == len(scheduler(name).timesteps[:0]) + steps[0].steps
    assert len(previews) == steps[0].steps * previews[0].patches


@pytest.mark.parametrize("name", ["ddim", "dpm++", "euler-a"])
def test_jitter_keeps_exactness_and_noise_stream(name):
    """A shifted grid per step changes nothing for a per-pixel denoiser, and draws no sampler noise."""
    torch.manual_seed(0)
    clean = torch.randn(1, 4, 30, 22)
    denoiser = PixelDenoiser()
    cond = torch.tensor([0])
    sampling = PatchSampling(
        steps=10,
        strength=1.0,
        guidance=1.0,
        patch_size=10,
        overlap=4,
        weights="gaussian",
        jitter=True,
        batch_size=3,
    )
    expected = whole_latent_reference(denoiser, scheduler(name), clean, cond, None, 10, 1.0, 1.0, seed=3)
    got, events = tiled(denoiser, scheduler(name), clean, cond, None, sampling, seed=3, jitter_seed=11)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    starts = {(e.step, e.box.y0, e.box.x0) for e in events if isinstance(e, PatchPreview)}
    per_step = {}
    for step, y, x in starts:
        per_step.setdefault(step, set()).add((y, x))
    assert len({frozenset(v) for v in per_step.values()}) > 1, "the grid never moved"


def test_stochastic_noise_variance_is_kept():
    """With DDPM and a zero denoiser, the injected noise keeps the scheduler's variance over overlaps."""
    clean = torch.zeros(1, 4, 64, 64)

    def zero(x, t, c):
        return torch.zeros_like(x)

    sampling = PatchSampling(
        steps=4, strength=1.0, guidance=1.0, patch_size=16, overlap=12, weights="uniform"
    )
    tiled_x, _ = tiled(zero, scheduler("ddpm"), clean, torch.tensor([0]), None, sampling, seed=5)
    whole = whole_latent_reference(
        zero, scheduler("ddpm"), clean, torch.tensor([0]), None, 4, 1.0, 1.0, seed=5
    )
    torch.testing.assert_close(tiled_x, whole)
    # and not shrunk: averaging independent noise over 4x4 overlapping patches would cut std by ~4
    assert abs(tiled_x.std().item() / whole.std().item() - 1) < 1e-6


def test_batched_calls_and_guidance_doubling():
    calls = []

    def counting(x, t, c):
        calls.append(x.shape[0])
        return torch.zeros_like(x)

    clean = torch.zeros(1, 4, 24, 24)
    sampling = PatchSampling(steps=2, strength=1.0, guidance=3.0, patch_size=8, overlap=0, batch_size=4)
    tiled(counting, scheduler("ddim"), clean, torch.tensor([0]), torch.tensor([1]), sampling, seed=0)
    # 9 patches per step in batches of 4, 4, 1, each doubled by classifier-free guidance: 3 calls a step
    assert calls == [8, 8, 2] * 2


@pytest.mark.parametrize("name", ["ddim", "dpm++", "euler-a"])
def test_guidance_in_an_interval_equals_whole_latent(name):
    """Guidance at the noise levels inside the interval only, as an independent loop applies it."""
    torch.manual_seed(0)
    clean = torch.randn(1, 4, 20, 28)
    denoiser = PixelDenoiser()
    cond, uncond = torch.tensor([1]), torch.tensor([3])
    interval = (0.3, 0.8)
    sampling = PatchSampling(
        steps=12,
        strength=0.9,
        guidance=2.5,
        patch_size=8,
        overlap=3,
        batch_size=5,
        guidance_interval=interval,
    )
    expected = whole_latent_reference(
        denoiser, scheduler(name), clean, cond, uncond, 12, 0.9, 2.5, seed=7, interval=interval
    )
    got, _ = tiled(denoiser, scheduler(name), clean, cond, uncond, sampling, seed=7)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    every_step = dataclasses.replace(sampling, guidance_interval=(0.0, 1.0))
    everywhere, _ = tiled(denoiser, scheduler(name), clean, cond, uncond, every_step, seed=7)
    assert not torch.allclose(got, everywhere, atol=1e-3)  # the interval changed the computation


def test_steps_outside_the_guidance_interval_run_the_conditional_batch_alone():
    calls = []

    def counting(x, t, c):
        calls.append((int(t), x.shape[0], sorted(set(c.tolist()))))
        return torch.zeros_like(x)

    clean = torch.zeros(1, 4, 24, 24)
    sampling = PatchSampling(
        steps=4,
        strength=1.0,
        guidance=3.0,
        patch_size=8,
        overlap=0,
        batch_size=4,
        guidance_interval=(0.3, 1.0),
    )
    tiled(counting, scheduler("ddim"), clean, torch.tensor([0]), torch.tensor([1]), sampling, seed=0)
    # DDIM's 4 steps are t = 750, 500, 250, 0: the first two are inside [300, 1000] and doubled
    guided = [(750, 8), (750, 8), (750, 2), (500, 8), (500, 8), (500, 2)]
    alone = [(250, 4), (250, 4), (250, 1), (0, 4), (0, 4), (0, 1)]
    assert [(t, n) for t, n, _ in calls] == guided + alone
    assert {tuple(c) for t, _, c in calls if t < 300} == {(0,)}  # the class label alone


def test_cancel_between_patch_batches():
    seen = []

    def counting(x, t, c):
        seen.append(x.shape[0])
        return torch.zeros_like(x)

    sampling = PatchSampling(steps=5, strength=1.0, guidance=1.0, patch_size=8, overlap=0, batch_size=2)
    g = torch.Generator().manual_seed(0)
    gen = denoise_patches(
        counting, scheduler("ddim"), torch.zeros(1, 4, 16, 16), torch.tensor([0]), None, sampling, g
    )
    for event in gen:
        if isinstance(event, PatchPreview):
            break
    gen.close()
    assert len(seen) == 1  # stopped after the first batch
