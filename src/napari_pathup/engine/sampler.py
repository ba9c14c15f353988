"""Patch-wise timestep tracking (PathUp, Algorithm 1, step 3) for any diffusers scheduler.

At every timestep each overlapping latent patch goes through the denoiser (in batches, with
classifier-free guidance doubling the batch, not the calls), the patch outputs are merged with the
blend ``weights`` into one full-size model output, and **one global scheduler step** turns the
merged latent into X_{t-1}. All patches are therefore at the same timestep and the merged latent is
the sampler's only state.

Why merge model outputs rather than keep a scheduler per patch: a scheduler step is affine in the
model output for a fixed sample, so for deterministic samplers (DDIM, Euler, DPM-Solver++, UniPC)
merging outputs then stepping equals stepping every patch then merging; multistep schedulers keep
their history once for the whole latent instead of once per patch; and stochastic samplers (DDPM,
ancestral Euler) draw their fresh noise once for the whole latent, so its variance stays exactly
what the scheduler intends (averaging independent per-patch noise over an overlap would shrink it
by the sum of squared weights).
"""

from __future__ import annotations

import inspect
from collections.abc import Generator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from diffusers import SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor

from napari_pathup.engine.events import Event, PatchPreview, StepStarted
from napari_pathup.engine.grid import PatchGrid
from napari_pathup.engine.preview import LatentPreviewer
from napari_pathup.engine.weights import BlendWeights, window_1d
from napari_pathup.geometry import Box
from napari_pathup.models.base import DenoiserFn


@dataclass(frozen=True)
class PatchSampling:
    """How one stage samples: schedule, guidance and the patch grid (sizes in latent pixels)."""

    steps: int
    strength: float
    guidance: float
    patch_size: int
    overlap: int
    weights: str = "cosine"
    sigma: float = 0.3
    batch_size: int = 8
    jitter: bool = False


def img2img_timesteps(
    scheduler: SchedulerMixin, steps: int, strength: float, device: torch.device
) -> torch.Tensor:
    """The tail of a ``steps`` schedule that starts at noise level ``strength`` (as diffusers img2img)."""
    if not 0 < strength <= 1:
        raise ValueError(f"strength must be in (0, 1], got {strength}")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    scheduler.set_timesteps(steps, device=device)
    t_start = steps - min(int(steps * strength), steps)
    timesteps = scheduler.timesteps[t_start * scheduler.order :]
    if len(timesteps) == 0:
        raise ValueError(f"strength {strength} with {steps} steps leaves no denoising step; raise either")
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(t_start * scheduler.order)
    return timesteps


def _alpha_bar(scheduler: SchedulerMixin, t: torch.Tensor) -> float:
    alphas = scheduler.alphas_cumprod
    index = round(float(t))
    return float(alphas[min(max(index, 0), len(alphas) - 1)])


def x0_estimate(
    scheduler: SchedulerMixin, model_input: torch.Tensor, output: torch.Tensor, t: torch.Tensor
) -> torch.Tensor:
    """The denoised estimate implied by one model output (for previews only)."""
    kind = scheduler.config.get("prediction_type", "epsilon")
    if kind == "sample":
        return output
    a = _alpha_bar(scheduler, t)
    if kind == "v_prediction":
        return a**0.5 * model_input - (1 - a) ** 0.5 * output
    return (model_input - (1 - a) ** 0.5 * output) / a**0.5


def guided_output(
    denoiser: DenoiserFn,
    patches: torch.Tensor,
    t: torch.Tensor,
    cond: torch.Tensor,
    uncond: torch.Tensor | None,
    guidance: float,
) -> torch.Tensor:
    """Classifier-free guidance in one denoiser call: u + g (c - u) on a doubled batch."""
    n = patches.shape[0]

    def expand(c: torch.Tensor) -> torch.Tensor:
        return c.expand(n, *c.shape[1:])

    if uncond is None or guidance == 1.0:
        return denoiser(patches, t, expand(cond))
    out = denoiser(torch.cat([patches, patches]), t, torch.cat([expand(uncond), expand(cond)]))
    u, c = out.chunk(2)
    return u + guidance * (c - u)


def _step_kwargs(scheduler: SchedulerMixin, generator: torch.Generator) -> dict[str, object]:
    params = inspect.signature(scheduler.step).parameters
    return {"generator": generator} if "generator" in params else {}


def denoise_patches(
    denoiser: DenoiserFn,
    scheduler: SchedulerMixin,
    clean: torch.Tensor,
    cond: torch.Tensor,
    uncond: torch.Tensor | None,
    sampling: PatchSampling,
    generator: torch.Generator,
    jitter_generator: torch.Generator | None = None,
    previewer: LatentPreviewer | None = None,
    stage: int = 2,
    scale_factor: int = 8,
    model_dtype: torch.dtype = torch.float32,
) -> Generator[Event, None, torch.Tensor]:
    """Noise ``clean`` (1, C, h, w) to ``sampling.strength`` and denoise it patch-wise; returns X_0.

    Yields a :class:`StepStarted` per timestep and a :class:`PatchPreview` per patch; closing the
    generator cancels between patch batches. Every random draw comes from ``generator`` (noise)
    or ``jitter_generator`` (grid shifts), so runs are deterministic per seed.
    """
    device = clean.device
    _, _, h, w = clean.shape
    grid = PatchGrid(h, w, sampling.patch_size, sampling.overlap)
    window = window_1d(sampling.weights, sampling.patch_size, sampling.overlap, sampling.sigma)
    timesteps = img2img_timesteps(scheduler, sampling.steps, sampling.strength, device)
    noise = randn_tensor(clean.shape, generator=generator, device=device, dtype=torch.float32)
    x = scheduler.add_noise(clean.float(), noise, timesteps[:1])
    step_kwargs = _step_kwargs(scheduler, generator)
    fixed_weights: torch.Tensor | None = None
    merge_dtype = torch.float32 if device.type == "mps" else torch.float64  # float64: no merge rounding
    batch_size = max(1, sampling.batch_size)

    for step, t in enumerate(timesteps):
        yield StepStarted(stage, step, len(timesteps), float(t))
        offset = grid.random_offset(jitter_generator) if sampling.jitter and jitter_generator else (0, 0)
        boxes = grid.boxes(offset)
        if fixed_weights is not None:
            box_weights = fixed_weights
        else:  # every box's weights in one transfer; kept for a fixed grid, rebuilt when it jitters
            ys, xs = grid.starts(offset)
            weights = BlendWeights.for_grid(ys, xs, h, w, window)
            box_weights = torch.stack([weights(b, merge_dtype) for b in boxes]).to(device)
            fixed_weights = None if sampling.jitter else box_weights
        model_input = scheduler.scale_model_input(x, t)
        merged = torch.zeros_like(model_input, dtype=merge_dtype)
        for first in range(0, len(boxes), batch_size):
            batch: Sequence[Box] = boxes[first : first + batch_size]
            patches = torch.cat([model_input[..., b.y0 : b.y1, b.x0 : b.x1] for b in batch])
            out = guided_output(denoiser, patches.to(model_dtype), t, cond, uncond, sampling.guidance).float()
            for k, (b, o) in enumerate(zip(batch, out, strict=True)):
                merged[..., b.y0 : b.y1, b.x0 : b.x1] += box_weights[first + k] * o
            for k, (b, p, o) in enumerate(zip(batch, patches, out, strict=True)):
                render = _preview_renderer(previewer, scheduler, p, o, t)
                pixel_box = b.scaled(scale_factor)
                yield PatchPreview(stage, step, len(timesteps), b, pixel_box, first + k, len(boxes), render)
        x = scheduler.step(merged.float(), t, x, **step_kwargs).prev_sample
    return x


def _preview_renderer(previewer, scheduler, model_input, output, t):
    def make() -> np.ndarray:
        latent = x0_estimate(scheduler, model_input, output, t)
        if previewer is None:
            return np.zeros((*latent.shape[-2:], 3), np.uint8)
        return previewer(latent)

    return make
