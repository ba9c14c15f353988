"""PathUp, Algorithm 1, read top to bottom: reference img2img at 512, then patch-wise upscaling.

Paper names → parameters here: p → ``patch_size``, o → ``overlap``, w → ``weights``,
t_i → ``strength`` (stage 1) and ``upscale_strength`` (stage 2), E → ``encode_tiled``,
D → ``decode_tiled``, c_s → ``class_name`` (plus the scale: ``overview`` for stage 1, ``native``
for stage 2).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from napari_pathup.engine.events import Event, Finished, StageStarted
from napari_pathup.engine.outpaint import outpaint_canvas
from napari_pathup.engine.plan import DEFAULTS, RunPlan, StagePlan, SynthesisSettings
from napari_pathup.engine.preview import LatentPreviewer
from napari_pathup.engine.sampler import denoise_patches
from napari_pathup.engine.vae import crop_source, decode_tiled, encode_tiled, resized_source
from napari_pathup.errors import InputError, SynthesisError
from napari_pathup.models.base import PathupModel
from napari_pathup.models.schedulers import run_scheduler

__all__ = ["DEFAULTS", "RunPlan", "SynthesisSettings", "plan_for", "reference_tensor", "run", "synthesize"]


def reference_tensor(reference: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 → (3, H, W) float32 in [-1, 1]."""
    if reference.ndim != 3 or reference.shape[2] != 3 or reference.dtype != np.uint8:
        raise InputError(
            f"reference must be an (H, W, 3) uint8 RGB image, got {reference.shape} {reference.dtype}"
        )
    return torch.from_numpy(np.array(reference, copy=True)).permute(2, 0, 1).float() / 127.5 - 1


def plan_for(model: PathupModel, settings: SynthesisSettings | RunPlan) -> RunPlan:
    """``settings`` resolved against ``model`` (a :class:`RunPlan` is used as it is)."""
    return settings if isinstance(settings, RunPlan) else settings.resolve(model)


def _check_finite(latent: torch.Tensor, stage: int) -> None:
    """No image is ever written from non-finite latents (they decode to a black image)."""
    if not bool(torch.isfinite(latent).all()):
        raise SynthesisError(
            f"stage {stage} produced non-finite latents (NaN or infinity): the model or the settings "
            "(e.g. a very large --guidance, or float16 on this device) are numerically unstable; "
            "nothing was written"
        )


def synthesize(
    model: PathupModel, reference: np.ndarray, settings: SynthesisSettings | RunPlan, sink: Any = None
) -> Generator[Event, None, None]:
    """Run Algorithm 1 and stream its events; the last one is :class:`Finished`.

    ``settings`` may be a :class:`RunPlan` already resolved against ``model`` (nothing is resolved
    twice) or :class:`SynthesisSettings`. ``sink`` receives the (H, W, 3) uint8 output (a numpy
    array by default; pass a zarr array for outputs larger than memory). Closing the generator
    cancels the run between patch batches. Raises :class:`~napari_pathup.errors.SettingsError`
    before any work for bad settings or a reference smaller than one native patch, and
    :class:`~napari_pathup.errors.SynthesisError` if the latents become non-finite.
    """
    plan = plan_for(model, settings)
    s = plan.settings
    source = reference_tensor(reference)  # checks the layout first
    plan.check_reference(reference.shape)
    if sink is not None and tuple(sink.shape) != (s.height, s.width, 3):
        raise InputError(f"sink has shape {tuple(sink.shape)}; this run writes {(s.height, s.width, 3)}")
    device, dtype, f = model.device, model.dtype, model.vae_scale_factor
    scheduler = run_scheduler(s.scheduler, model.scheduler)
    noise_generator = torch.Generator("cpu").manual_seed(s.seed)
    jitter_generator = torch.Generator("cpu").manual_seed(s.seed + 1_000_003)
    weak = model.weak_denoiser if s.guidance_mode == "auto" else None  # autoguidance

    def stage(
        st: StagePlan, clean: torch.Tensor, previewer: LatentPreviewer, known: torch.Tensor | None = None
    ):
        latent_hw = tuple(clean.shape[-2:])
        assert latent_hw == st.latent_shape, (latent_hw, st.latent_shape)
        uncond = model.conditioner(None, st.scale) if st.guided_steps and weak is None else None
        yield StageStarted(st.number, st.steps, len(st.grid), st.pixel_shape, st.latent_shape)
        z = yield from denoise_patches(
            model.denoiser,
            scheduler,
            clean.to(device),
            model.conditioner(s.class_name, st.scale),
            uncond,
            st.sampling,
            noise_generator,
            jitter_generator,
            previewer,
            stage=st.number,
            scale_factor=f,
            model_dtype=dtype,
            known=known,
            weak=weak,
        )
        _check_finite(z, st.number)
        return z

    # Stage 1: shrink the real reference, encode it (x'_0 = E(I'_ref)), noise it to t_i and denoise
    # it under class guidance at the overview scale: I_ref keeps the reference's spatial context.
    # "outpaint" shrinks the output's field instead, with the reference 1:1 in its centre and the rest
    # drawn around it from the mirrored reference under heavy noise (engine.outpaint).
    h1, w1 = s.stage_one_shape()
    known = None
    if s.reference_fit == "outpaint":
        small, known, _ = outpaint_canvas(source, (s.height, s.width), (h1, w1), f)
    else:
        small = F.interpolate(source[None], size=(h1, w1), mode="bilinear", antialias=True)[0]
        small = small.clamp(-1, 1)
    x_ref = encode_tiled(model.autoencoder, crop_source(small), h1, w1, s.decode_tile, s.decode_overlap)
    previewer = LatentPreviewer.fit(x_ref[0], small)
    z_ref = yield from stage(plan.stages[0], x_ref, previewer, known)
    stage_one = np.zeros((h1, w1, 3), np.uint8)
    yield from decode_tiled(model.autoencoder, z_ref, stage_one, s.decode_tile, s.decode_overlap, stage=1)

    # Stage 2: resize I_ref to the output size (tile by tile, never whole), encode X_0 = E(I_ref),
    # noise it and denoise with patch-wise timestep tracking at the native scale.
    big = resized_source(reference_tensor(stage_one), s.height, s.width)
    x_big = encode_tiled(model.autoencoder, big, s.height, s.width, s.decode_tile, s.decode_overlap)
    z = yield from stage(plan.stages[1], x_big, previewer)

    # Decode I_h = D(X_0) tile by tile into the sink, blended so that no seam appears.
    if sink is None:
        sink = np.zeros((s.height, s.width, 3), np.uint8)
    yield from decode_tiled(model.autoencoder, z, sink, s.decode_tile, s.decode_overlap, stage=2)
    yield Finished(image=sink, reference=stage_one, settings=plan.to_dict())


def run(
    model: PathupModel, reference: np.ndarray, settings: SynthesisSettings | RunPlan, sink: Any = None
) -> Finished:
    """Run :func:`synthesize` to the end without watching it; returns the :class:`Finished` event.

    Args:
        model: a loaded model (:func:`~napari_pathup.models.load.load_model`).
        reference: the real reference RoI, (H, W, 3) uint8.
        settings: :class:`SynthesisSettings`, or a :class:`RunPlan` resolved against ``model``.
        sink: where the output goes (default: a new numpy array).

    Returns:
        The :class:`~napari_pathup.engine.events.Finished` event: ``image``, ``reference`` (stage 1)
        and the resolved ``settings``.

    Raises:
        SettingsError: bad settings or a too-small reference, before any work.
        SynthesisError: the latents became non-finite; nothing is returned.
    """
    finished = None
    for event in synthesize(model, reference, settings, sink):
        if isinstance(event, Finished):
            finished = event
    assert finished is not None
    return finished
