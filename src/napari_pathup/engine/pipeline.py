"""PathUp, Algorithm 1, read top to bottom: reference img2img at 512, then patch-wise upscaling.

Paper names → parameters here: p → ``patch_size``, o → ``overlap``, w → ``weights``,
t_i → ``strength`` (stage 1) and ``upscale_strength`` (stage 2), E → ``encode_tiled``,
D → ``decode_tiled``, c_s → ``class_name`` (plus the scale: ``overview`` for stage 1, ``native``
for stage 2).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from napari_pathup.engine.events import Event, Finished, StageStarted
from napari_pathup.engine.grid import PatchGrid, default_overlap, default_patch_size
from napari_pathup.engine.preview import LatentPreviewer
from napari_pathup.engine.sampler import PatchSampling, denoise_patches, img2img_timesteps
from napari_pathup.engine.vae import crop_source, decode_tiled, encode_tiled, resized_source
from napari_pathup.engine.weights import WEIGHT_MODES
from napari_pathup.models.base import PathupModel
from napari_pathup.models.schedulers import make_scheduler

#: library defaults; a model's ``pathup.json`` may override them under "defaults"
DEFAULTS: dict[str, Any] = {
    "steps": 30,
    "strength": 0.6,
    "upscale_strength": 0.45,
    "guidance": 3.0,
    "weights": "cosine",
    "scheduler": None,
}


@dataclass(frozen=True)
class SynthesisSettings:
    """Everything that determines a run's output (with the model and the reference image).

    ``None`` means: the model's default (``pathup.json`` "defaults"), else the library default.
    Sizes of patches and tiles are in latent pixels; ``height``/``width`` in output pixels.
    """

    class_name: str
    height: int = 2048
    width: int = 2048
    reference_size: int = 512
    steps: int | None = None
    strength: float | None = None
    upscale_strength: float | None = None
    guidance: float | None = None
    patch_size: int | None = None
    overlap: int | None = None
    weights: str | None = None
    sigma: float = 0.3
    jitter: bool = False
    batch_size: int = 8
    seed: int = 0
    scheduler: str | None = None
    decode_tile: int = 64
    decode_overlap: int = 16

    def resolve(self, model: PathupModel) -> SynthesisSettings:
        """Fill every ``None`` from the model and the library, and check the result."""
        defaults = {**DEFAULTS, **model.metadata.get("defaults", {})}
        filled = {
            k: (defaults[k] if getattr(self, k) is None and k in defaults else getattr(self, k))
            for k in (f.name for f in dataclasses.fields(self))
        }
        f = model.vae_scale_factor
        for name in ("height", "width", "reference_size"):
            if filled[name] <= 0 or filled[name] % f:
                raise ValueError(
                    f"{name} must be a positive multiple of {f} (the autoencoder factor), got {filled[name]}"
                )
        latent_h, latent_w = filled["height"] // f, filled["width"] // f
        if filled["patch_size"] is None:
            filled["patch_size"] = default_patch_size(model.native_size, latent_h, latent_w)
        if filled["overlap"] is None:
            filled["overlap"] = default_overlap(filled["patch_size"])
        if filled["weights"] not in WEIGHT_MODES:
            raise ValueError(
                f"unknown blend weights {filled['weights']!r}; expected one of {', '.join(WEIGHT_MODES)}"
            )
        if filled["batch_size"] < 1:
            raise ValueError(f"batch_size must be at least 1, got {filled['batch_size']}")
        PatchGrid(latent_h, latent_w, filled["patch_size"], filled["overlap"])  # raises for impossible grids
        model.check_class(filled["class_name"])
        return SynthesisSettings(**filled)

    def stage_one_shape(self) -> tuple[int, int]:
        """Stage 1 works at ``reference_size`` on the shorter side, with the output's aspect ratio."""
        h, w = self.height, self.width
        r = min(self.reference_size, h, w)  # never larger than the output: stage 2 only upscales
        if h == w:
            return r, r
        if h < w:
            return r, max(8, round(r * w / h / 8) * 8)
        return max(8, round(r * h / w / 8) * 8), r

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def reference_tensor(reference: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 → (3, H, W) float32 in [-1, 1]."""
    if reference.ndim != 3 or reference.shape[2] != 3 or reference.dtype != np.uint8:
        raise ValueError(
            f"reference must be an (H, W, 3) uint8 RGB image, got {reference.shape} {reference.dtype}"
        )
    return torch.from_numpy(np.array(reference, copy=True)).permute(2, 0, 1).float() / 127.5 - 1


def _stage_sampling(
    s: SynthesisSettings, model: PathupModel, latent: tuple[int, int], strength: float
) -> PatchSampling:
    """Stage 1 patches default to the model's native size clamped to its (smaller) latent."""
    patch = (
        min(s.patch_size, *latent)
        if s.patch_size is not None
        else default_patch_size(model.native_size, *latent)
    )
    overlap = min(s.overlap, patch - 1) if patch > 1 else 0
    return PatchSampling(
        steps=s.steps,
        strength=strength,
        guidance=s.guidance,
        patch_size=patch,
        overlap=overlap,
        weights=s.weights,
        sigma=s.sigma,
        batch_size=s.batch_size,
        jitter=s.jitter,
    )


def synthesize(
    model: PathupModel, reference: np.ndarray, settings: SynthesisSettings, sink: Any = None
) -> Generator[Event, None, None]:
    """Run Algorithm 1 and stream its events; the last one is :class:`Finished`.

    ``sink`` receives the (H, W, 3) uint8 output (a numpy array by default; pass a zarr array for
    outputs larger than memory). Closing the generator cancels the run between patch batches.
    """
    s = settings.resolve(model)
    device, dtype, f = model.device, model.dtype, model.vae_scale_factor
    scheduler = (
        make_scheduler(s.scheduler, model.scheduler)
        if s.scheduler
        else model.scheduler.from_config(model.scheduler.config)
    )
    noise_generator = torch.Generator("cpu").manual_seed(s.seed)
    jitter_generator = torch.Generator("cpu").manual_seed(s.seed + 1_000_003)

    def stage(number: int, clean: torch.Tensor, scale: str, strength: float, previewer: LatentPreviewer):
        latent_hw = tuple(clean.shape[-2:])
        sampling = _stage_sampling(s, model, latent_hw, strength)
        grid = PatchGrid(*latent_hw, sampling.patch_size, sampling.overlap)
        uncond = model.conditioner(None, scale) if sampling.guidance != 1.0 else None
        steps = len(img2img_timesteps(scheduler, sampling.steps, strength, device))
        yield StageStarted(number, steps, len(grid), (latent_hw[0] * f, latent_hw[1] * f), latent_hw)
        return (
            yield from denoise_patches(
                model.denoiser,
                scheduler,
                clean.to(device),
                model.conditioner(s.class_name, scale),
                uncond,
                sampling,
                noise_generator,
                jitter_generator,
                previewer,
                stage=number,
                scale_factor=f,
                model_dtype=dtype,
            )
        )

    # Stage 1: shrink the real reference, encode it (x'_0 = E(I'_ref)), noise it to t_i and denoise
    # it under class guidance at the overview scale: I_ref keeps the reference's spatial context.
    h1, w1 = s.stage_one_shape()
    small = F.interpolate(reference_tensor(reference)[None], size=(h1, w1), mode="bilinear", antialias=True)[
        0
    ]
    small = small.clamp(-1, 1)
    x_ref = encode_tiled(model.autoencoder, crop_source(small), h1, w1, s.decode_tile, s.decode_overlap)
    previewer = LatentPreviewer.fit(x_ref[0], small)
    z_ref = yield from stage(1, x_ref, "overview", s.strength, previewer)
    stage_one = np.zeros((h1, w1, 3), np.uint8)
    yield from decode_tiled(model.autoencoder, z_ref, stage_one, s.decode_tile, s.decode_overlap, stage=1)

    # Stage 2: resize I_ref to the output size (tile by tile, never whole), encode X_0 = E(I_ref),
    # noise it and denoise with patch-wise timestep tracking at the native scale.
    big = resized_source(reference_tensor(stage_one), s.height, s.width)
    x_big = encode_tiled(model.autoencoder, big, s.height, s.width, s.decode_tile, s.decode_overlap)
    z = yield from stage(2, x_big, "native", s.upscale_strength, previewer)

    # Decode I_h = D(X_0) tile by tile into the sink, blended so that no seam appears.
    if sink is None:
        sink = np.zeros((s.height, s.width, 3), np.uint8)
    yield from decode_tiled(model.autoencoder, z, sink, s.decode_tile, s.decode_overlap, stage=2)
    yield Finished(image=sink, reference=stage_one, settings=s.to_dict())


def run(model: PathupModel, reference: np.ndarray, settings: SynthesisSettings, sink: Any = None) -> Finished:
    """Run :func:`synthesize` to the end without watching it; returns the :class:`Finished` event."""
    finished = None
    for event in synthesize(model, reference, settings, sink):
        if isinstance(event, Finished):
            finished = event
    assert finished is not None
    return finished
