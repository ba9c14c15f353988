"""The model a run uses: a denoiser, an autoencoder, a scheduler and a conditioner, as swappable parts.

Both folder layouts (a text-conditioned Stable Diffusion pipeline and the class-conditioned PathUp
layout) load into :class:`PathupModel`, so the engine never needs to know which one it runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from diffusers import ModelMixin, SchedulerMixin

from napari_pathup.models.spec import check_known_class


def cast_floating(module: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """Cast ``module``'s floating-point parameters and buffers to ``dtype`` in place (integer buffers
    stay). Not ``ModelMixin.to(dtype=...)``: diffusers warns on every such cast of these models."""
    for tensor in (*module.parameters(), *module.buffers()):
        if tensor.is_floating_point() and tensor.dtype != dtype:
            tensor.data = tensor.data.to(dtype)
    return module


#: the ``PathupModel.modules`` that run once per patch and step: the denoiser and the weak one
DENOISER_MODULES = frozenset({"denoiser", "weak_denoiser"})


class Conditioner(Protocol):
    """Turns a class name and a scale (``overview`` or ``native``) into conditioning for one sample.

    ``class_name=None`` gives the unconditional input used by classifier-free guidance. The result
    has a leading batch dimension of one and is concatenated along it to make batches.
    """

    def __call__(self, class_name: str | None, scale: str) -> torch.Tensor: ...


DenoiserFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class Autoencoder:
    """E and D of Algorithm 1 in the diffusion model's latent scale, for images in [-1, 1].

    Wraps ``AutoencoderKL`` (latent = (mode - shift) * scaling_factor; the mode, not a sample, so
    that tiles encode consistently and runs stay deterministic) and ``AutoencoderTiny``.
    """

    def __init__(self, vae: ModelMixin) -> None:
        self.vae = vae
        config = vae.config
        self.scaling_factor = float(getattr(config, "scaling_factor", 1.0) or 1.0)
        self.shift_factor = float(getattr(config, "shift_factor", 0.0) or 0.0)
        self.latent_channels = int(config.latent_channels)
        self.is_kl = hasattr(vae, "quant_conv") or type(vae).__name__ == "AutoencoderKL"
        self.scale_factor = self._measure_scale_factor()

    def _measure_scale_factor(self) -> int:
        """The spatial down-sampling factor, measured rather than inferred from config names."""
        param = next(self.vae.parameters())
        with torch.inference_mode():
            z = self.encode(torch.zeros(1, 3, 64, 64, device=param.device, dtype=param.dtype))
        return 64 // z.shape[-1]

    @property
    def device(self) -> torch.device:
        return next(self.vae.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.vae.parameters()).dtype

    @torch.inference_mode()
    def encode(self, image: torch.Tensor) -> torch.Tensor:
        image = image.to(self.device, self.dtype)
        encoded = self.vae.encode(image)
        z = encoded.latent_dist.mode() if self.is_kl else encoded.latents
        return (z - self.shift_factor) * self.scaling_factor

    @torch.inference_mode()
    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        return self.decode_with_grad(latent)

    def decode_with_grad(self, latent: torch.Tensor) -> torch.Tensor:
        """D with autograd: gradients reach ``latent`` (training's pixel judge); ``decode`` is this in
        inference mode."""
        z = latent.to(self.device, self.dtype) / self.scaling_factor + self.shift_factor
        return self.vae.decode(z).sample


@dataclass
class PathupModel:
    """Everything a run needs from a model folder.

    ``denoiser(x, t, cond)`` returns the model output for a batch of latents ``x`` at timestep ``t``
    under a batch of conditioning ``cond`` (see :class:`Conditioner`); ``native_size`` is the
    denoiser's native latent sample size (the default patch).
    """

    kind: str
    path: str
    denoiser: DenoiserFn
    #: the networks by role ("denoiser", "autoencoder", "weak_denoiser", "text_encoder"): diffusers
    #: (or transformers) models, whose ``config`` the type checker cannot see
    modules: dict[str, ModelMixin]
    autoencoder: Autoencoder
    scheduler: SchedulerMixin
    conditioner: Conditioner
    classes: list[str]
    scales: list[str]
    native_size: int
    latent_channels: int
    metadata: dict[str, Any] = field(default_factory=dict)
    #: patch sides must be a multiple of this, and at least this (see ``models.spec``)
    patch_multiple: int = 1
    #: a weaker denoiser of the same inputs and outputs that autoguidance guides away from
    weak_denoiser: DenoiserFn | None = None
    _hash: str | None = None

    @property
    def has_weak_denoiser(self) -> bool:
        return self.weak_denoiser is not None

    @property
    def vae_scale_factor(self) -> int:
        return self.autoencoder.scale_factor

    @property
    def device(self) -> torch.device:
        return self.autoencoder.device

    @property
    def dtype(self) -> torch.dtype:
        return self.autoencoder.dtype

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> PathupModel:
        """Move every module to ``device`` (and cast it to ``dtype``), the denoisers' weights laid out
        as ``engine.device.denoiser_memory_format`` says is fastest there."""
        from napari_pathup.engine.device import denoiser_memory_format

        for name, module in self.modules.items():
            module.to(device=device)
            if dtype is not None:
                cast_floating(module, dtype)
            if name in DENOISER_MODULES:
                weights = next(module.parameters())
                module.to(memory_format=denoiser_memory_format(weights.device, weights.dtype))
        return self

    def parameter_count(self) -> dict[str, int]:
        return {name: sum(p.numel() for p in m.parameters()) for name, m in self.modules.items()}

    def check_class(self, class_name: str) -> None:
        """Raise a clear error for a class the model does not know (text models accept any)."""
        check_known_class(self, class_name)
