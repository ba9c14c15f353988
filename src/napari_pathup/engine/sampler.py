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
    #: outpainting (``reference_fit="outpaint"``): the noise level at which the known region starts
    #: its own denoising (the img2img strength t_i); ``strength`` is then where the rest starts
    #: (``plan.OUTPAINT_FILL_STRENGTH``)
    known_strength: float | None = None
    #: the noise levels (t / T, T the training schedule's length) at which guidance applies, both ends
    #: included; at the other steps the class-conditional output alone is used, at half the work
    #: (Kynkäänniemi et al. 2024, "Applying guidance in a limited interval")
    guidance_interval: tuple[float, float] = (0.0, 1.0)

    def guidance_at(self, scheduler: SchedulerMixin, t: torch.Tensor | float) -> float:
        """The guidance scale of the step at timestep ``t``: ``guidance`` inside the interval, else 1."""
        low, high = self.guidance_interval
        level = float(t) / scheduler.config.num_train_timesteps
        return self.guidance if low <= level <= high else 1.0


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
    weak: DenoiserFn | None = None,
) -> torch.Tensor:
    """Guidance a + g (c - a): c the class-conditional output, a what guidance steers away from.

    Classifier-free guidance: a is the unconditional output (``uncond``), in one denoiser call on a
    doubled batch. Autoguidance (``weak``; Karras et al. 2024): a is the weak denoiser's output
    under the same class, one call of each denoiser. ``guidance`` 1, or neither ``uncond`` nor
    ``weak``: c alone, in one call.
    """
    n = patches.shape[0]

    def expand(c: torch.Tensor) -> torch.Tensor:
        return c.expand(n, *c.shape[1:])

    labels = expand(cond)
    if guidance == 1.0 or (uncond is None and weak is None):
        return denoiser(patches, t, labels)
    if weak is not None:
        a, c = weak(patches, t, labels), denoiser(patches, t, labels)
    else:
        assert uncond is not None  # no weak denoiser: classifier-free guidance
        out = denoiser(torch.cat([patches, patches]), t, torch.cat([expand(uncond), labels]))
        a, c = out.chunk(2)
    return a + guidance * (c - a)


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
    known: torch.Tensor | None = None,
    weak: DenoiserFn | None = None,
) -> Generator[Event, None, torch.Tensor]:
    """Noise ``clean`` (1, C, h, w) to ``sampling.strength`` and denoise it patch-wise; returns X_0.

    Yields a :class:`StepStarted` per timestep and a :class:`PatchPreview` per patch; closing the
    generator cancels between patch batches. Every random draw comes from ``generator`` (noise)
    or ``jitter_generator`` (grid shifts), so runs are deterministic per seed.

    ``known`` (1, 1, h, w) in [0, 1] marks where ``clean`` is known (outpainting): there the latent
    is held at ``clean`` noised to the current timestep until ``sampling.known_strength`` is reached
    (patches wholly inside it are not evaluated meanwhile), blended by the mask at its feathered
    edge; elsewhere ``clean`` (the caller's fill) is only the start, noised to ``sampling.strength``.
    ``weak``: guide away from this denoiser's output under ``cond`` (autoguidance) instead of the
    unconditional output (``uncond``), see :func:`guided_output`.
    """
    device = clean.device
    _, _, h, w = clean.shape
    grid = PatchGrid(h, w, sampling.patch_size, sampling.overlap)
    window = window_1d(sampling.weights, sampling.patch_size, sampling.overlap, sampling.sigma)
    own = 0  # steps of the known region's own schedule (outpainting)
    if known is not None:
        if sampling.known_strength is None:
            raise ValueError("a known region needs sampling.known_strength")
        known = known.to(device=device, dtype=torch.float32)
        own = len(img2img_timesteps(scheduler, sampling.steps, sampling.known_strength, device))
    # last: img2img_timesteps configures the scheduler for the schedule that runs
    timesteps = img2img_timesteps(scheduler, sampling.steps, sampling.strength, device)
    held_steps = len(timesteps) - own if known is not None else 0  # steps the known region is held
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
        held = step < held_steps
        if fixed_weights is not None:
            box_weights = fixed_weights
        else:  # every box's weights in one transfer; kept for a fixed grid, rebuilt when it jitters
            ys, xs = grid.starts(offset)
            weights = BlendWeights.for_grid(ys, xs, h, w, window)
            box_weights = torch.stack([weights(b, merge_dtype) for b in boxes]).to(device)
            fixed_weights = None if sampling.jitter else box_weights
        model_input = scheduler.scale_model_input(x, t)
        guidance = sampling.guidance_at(scheduler, t)
        merged = torch.zeros_like(model_input, dtype=merge_dtype)
        evaluated = [k for k, b in enumerate(boxes) if not (held and _wholly_known(known, b))]
        for first in range(0, len(evaluated), batch_size):
            indexes = evaluated[first : first + batch_size]
            batch: Sequence[Box] = [boxes[k] for k in indexes]
            patches = torch.cat([model_input[..., b.y0 : b.y1, b.x0 : b.x1] for b in batch])
            out = guided_output(denoiser, patches.to(model_dtype), t, cond, uncond, guidance, weak).float()
            for k, b, o in zip(indexes, batch, out, strict=True):
                merged[..., b.y0 : b.y1, b.x0 : b.x1] += box_weights[k] * o
            for k, b, p, o in zip(indexes, batch, patches, out, strict=True):
                render = _preview_renderer(previewer, scheduler, p, o, t)
                pixel_box = b.scaled(scale_factor)
                yield PatchPreview(stage, step, len(timesteps), b, pixel_box, k, len(boxes), render)
        x = scheduler.step(merged.float(), t, x, **step_kwargs).prev_sample
        if step + 1 <= held_steps:  # hold the known region at the reference noised to X_{t-1}'s level
            assert known is not None
            held_x = scheduler.add_noise(clean.float(), noise, timesteps[step + 1 : step + 2])
            x = known * held_x + (1 - known) * x
    return x


def _wholly_known(known: torch.Tensor | None, box: Box) -> bool:
    """True when every latent pixel of ``box`` is known (mask 1): its output would be overwritten."""
    return known is not None and bool((known[..., box.y0 : box.y1, box.x0 : box.x1] >= 1).all())


def _preview_renderer(previewer, scheduler, model_input, output, t):
    def make() -> np.ndarray:
        latent = x0_estimate(scheduler, model_input, output, t)
        if previewer is None:
            return np.zeros((*latent.shape[-2:], 3), np.uint8)
        return previewer(latent)

    return make
