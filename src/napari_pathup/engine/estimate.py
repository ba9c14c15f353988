"""Work counts and a measured estimate of time and peak memory, before a run starts.

Counts (patch evaluations, tiles) follow from the settings alone. Time and memory come from a
short calibration on the chosen device: a denoiser call of each batch size the run makes (its full
batches and the remainder of a step's patches: a last batch of one patch costs far less than a full
one) and one tile through the autoencoder, scaled by the counts. It is the run's time, without the
process's start (imports, model load) or the output's writing, and labelled as an estimate wherever
it is shown.
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
    one, two = (
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
    return one, two


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def estimate(model: PathupModel, settings: SynthesisSettings | RunPlan, calibrate: bool = True) -> Estimate:
    """Counts, and when ``calibrate`` a measured time and peak-memory estimate on the model's device."""
    plan = settings if isinstance(settings, RunPlan) else settings.resolve(model)
    stages = count_work(model, plan)
    if not calibrate:
        return Estimate(stages, device=str(model.device))
    s = plan.settings
    guidance = s.guidance
    assert guidance is not None  # resolved
    device, dtype, f = model.device, model.dtype, model.vae_scale_factor
    two = stages[1]
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
        # each kind of call is timed only if the run makes it (guidance 1 makes no guided call), at
        # each (batch size, patch size) a stage makes
        def guided_call(x: torch.Tensor) -> None:
            guided_output(model.denoiser, x, t, cond, uncond, guidance, weak)

        def plain_call(x: torch.Tensor) -> None:
            guided_output(model.denoiser, x, t, cond, None, 1.0)

        t_guided: dict[tuple[int, int], float] = {}
        t_plain: dict[tuple[int, int], float] = {}
        for st in plan.stages:
            p = st.grid.patch_size
            for batch in st.step_batches:
                x = torch.zeros(batch, model.latent_channels, p, p, device=device, dtype=dtype)
                if st.guided_steps and (batch, p) not in t_guided:
                    t_guided[batch, p] = timed(lambda x=x: guided_call(x))
                if st.guided_steps < st.steps and (batch, p) not in t_plain:  # steps outside the interval
                    t_plain[batch, p] = timed(lambda x=x: plain_call(x))
        t_decode = timed(lambda: model.autoencoder.decode(z), repeat=2)
        t_encode = timed(
            lambda: model.autoencoder.encode(
                torch.zeros(1, 3, tile * f, tile * f, device=device, dtype=dtype)
            ),
            repeat=1,
        )
    seconds = sum(
        sum(
            count
            * (
                st.guided_steps * t_guided.get((batch, st.grid.patch_size), 0.0)
                + (st.steps - st.guided_steps) * t_plain.get((batch, st.grid.patch_size), 0.0)
            )
            for batch, count in st.step_batches.items()
        )
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
