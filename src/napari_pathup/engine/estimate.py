"""Work counts and a measured estimate of time and peak memory, before a run starts.

Counts (patch evaluations, tiles) follow from the settings alone. Time and memory come from a
short calibration on the chosen device: one batched denoiser call and one tile through the
autoencoder, scaled by the counts. It is an estimate, labelled as one wherever it is shown.
"""

from __future__ import annotations

import resource
import time
from dataclasses import asdict, dataclass

import torch

from napari_pathup.engine.plan import RunPlan, SynthesisSettings
from napari_pathup.engine.sampler import guided_output
from napari_pathup.models.base import PathupModel
from napari_pathup.models.spec import ModelInfo


@dataclass(frozen=True)
class StageWork:
    latent_shape: tuple[int, int]
    patch_size: int
    overlap: int
    patches_per_step: int
    steps: int
    guided_steps: int
    denoiser_calls: int
    patch_evaluations: int
    encode_tiles: int
    decode_tiles: int


@dataclass(frozen=True)
class Estimate:
    stages: tuple[StageWork, StageWork]
    seconds: float | None = None
    peak_memory_bytes: int | None = None
    device: str = "cpu"

    def to_dict(self) -> dict:
        return asdict(self)


def count_work(model: ModelInfo, settings: SynthesisSettings | RunPlan) -> tuple[StageWork, StageWork]:
    """Denoiser calls, patch evaluations (doubled by guidance where it applies) and autoencoder tiles
    of both stages.

    ``model`` may be a :class:`~napari_pathup.models.spec.ModelSpec`: counting needs no weights.
    """
    plan = settings if isinstance(settings, RunPlan) else settings.resolve(model)
    return tuple(
        StageWork(
            st.latent_shape,
            st.grid.patch_size,
            st.grid.overlap,
            st.patches_per_step,
            st.steps,
            st.guided_steps,
            st.denoiser_calls,
            st.patch_evaluations,
            st.tiles,
            st.tiles,
        )
        for st in plan.stages
    )


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def estimate(model: PathupModel, settings: SynthesisSettings | RunPlan, calibrate: bool = True) -> Estimate:
    """Counts, and when ``calibrate`` a measured time and peak-memory estimate on the model's device."""
    plan = settings if isinstance(settings, RunPlan) else settings.resolve(model)
    stages = count_work(model, plan)
    if not calibrate:
        return Estimate(stages, device=str(model.device))
    s = plan.settings
    device, dtype, f = model.device, model.dtype, model.vae_scale_factor
    two = stages[1]
    p = two.patch_size
    batch = min(s.batch_size, two.patches_per_step)
    x = torch.zeros(batch, model.latent_channels, p, p, device=device, dtype=dtype)
    t = torch.tensor(500, device=device)
    cond = model.conditioner(s.class_name, "native")
    weak = model.weak_denoiser if s.guidance_mode == "auto" else None  # autoguidance
    uncond = model.conditioner(None, "native") if weak is None else None
    tile = min(s.decode_tile, *two.latent_shape)
    z = torch.zeros(1, model.latent_channels, tile, tile, device=device, dtype=dtype)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rss_before = _peak_rss()

    def timed(fn, repeat: int = 3) -> float:
        """The fastest of ``repeat`` timed calls after a warm-up: robust to a busy machine."""
        fn()  # warm-up (first-call allocations and kernel selection)
        best = float("inf")
        for _ in range(repeat):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            best = min(best, time.perf_counter() - start)
        return best

    with torch.inference_mode():
        # each kind of call is timed only if the run makes it (guidance 1 makes no guided call)
        guided = any(st.guided_steps for st in plan.stages)
        plain = any(st.guided_steps < st.steps for st in plan.stages)  # steps outside the interval

        def guided_call() -> None:
            guided_output(model.denoiser, x, t, cond, uncond, s.guidance, weak)

        t_guided = timed(guided_call) if guided else 0.0
        t_plain = timed(lambda: guided_output(model.denoiser, x, t, cond, None, 1.0)) if plain else 0.0
        t_decode = timed(lambda: model.autoencoder.decode(z), repeat=2)
        t_encode = timed(
            lambda: model.autoencoder.encode(
                torch.zeros(1, 3, tile * f, tile * f, device=device, dtype=dtype)
            ),
            repeat=1,
        )
    seconds = sum(
        st.guided_calls * t_guided
        + (st.batch_steps - st.guided_calls) * t_plain
        + st.tiles * (t_decode + t_encode)
        for st in plan.stages
    )
    params = sum(p.numel() * p.element_size() for m in model.modules.values() for p in m.parameters())
    # the plan's buffers (latents, a decoded tile row, the in-memory result) on top of the measured peak
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) + plan.memory_bytes
    else:
        peak = max(_peak_rss(), rss_before) + plan.memory_bytes
    return Estimate(stages, seconds, int(peak + (0 if device.type == "cpu" else params)), str(device))
