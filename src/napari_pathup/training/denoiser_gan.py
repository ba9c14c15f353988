"""Phase 2b: the denoiser fine-tuned with a latent adversarial term on its clean-latent predictions.

A denoiser trained on the MSE alone predicts, at every noise level, the *average* clean latent that
fits its input. Stage 2 samples in about 15 steps and commits to those averages, so the latents it
draws lack the fine texture of real latents, and the decoder (sharp on real latents) paints soft
tissue. As in denoising diffusion GANs (Xiao et al. 2022) and latent adversarial diffusion
distillation (Sauer et al. 2024), a discriminator judges the predicted clean latent
``x0_hat = sqrt(a) x_t - sqrt(1 - a) v`` against real latents of the same class and scale, and the
denoiser trains on its usual v loss plus a small hinge generator term, for the timesteps below
``max_timestep`` (at most the range stage 2 samples). The discriminator sees latents only and is trained
from scratch: no pretrained feature network (and not the evaluation's EfficientNet-Lite0).

It judges either the clean latent alone (``judge="clean"``: "is this a latent of the class?") or, as
the denoising diffusion GAN's discriminator does, the pair of the clean latent and the noisy latent it
was predicted from, with the noise level (``judge="pair"``: "is this a clean latent *that this noisy
input came from*?"). A pair's real side is the training latent and its own noised copy, so a
prediction is pushed towards sharp detail that stays consistent with its input, not towards any sharp
latent of the class. The pixel judge (``judge="pixel"``) sees the frozen decoder's painting of a window of
the clean latent instead, beside the same noisy latent; ``judge="pair+pixel"`` has both judge every step,
each with its own factors per class (the pair judge under the model's ``discriminator`` key, the pixel
judge under :data:`PIXEL_KEY`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from napari_pathup.models.conditioning import class_label
from napari_pathup.training.decoder_gan import laplacian_energy
from napari_pathup.training.denoiser import DenoiserPhase
from napari_pathup.training.loop import update

#: the adversarial term applies to timesteps below this by default (stage 2 starts near 750 at
#: upscale strength 0.75); the evaluation samples from it
MAX_TIMESTEP = 750
#: iterations over which the adversarial weight grows from 0
RAMP = 500
#: the discriminator's learning rate over the denoiser's
DISCRIMINATOR_LR_SCALE = 4.0
#: the pixel judge sees a window of this many latent pixels a side (128 px at 8x), one place per step
PIXEL_WINDOW = 16
#: the model key of the pixel judge's discriminator when it judges beside a latent one (alone, any judge's
#: discriminator is the model's ``discriminator``: the keys of single-judge checkpoints stay)
PIXEL_KEY = "pixel_discriminator"
#: how the sampling figures of :meth:`DenoiserGanPhase.evaluate` draw (the default model's defaults)
EVAL_STEPS, EVAL_GUIDANCE = 20, 2.5


class ProjectionDiscriminator(nn.Module):
    """Real/fake logits per patch of what it judges, given its (class, scale) label.

    Spectral-normalised convolutions without normalisation layers: ``in_channels`` -> ``width`` ->
    2 x -> 4 x -> 4 x ``width``, one (kernel, stride, padding) per level in ``levels``, a 3x3 read-out,
    and a projection of the label embedding onto the features (Miyato & Koyama 2018), so that it
    judges "plausible for *this* class", not only "plausible".
    """

    def __init__(
        self, in_channels: int, n_labels: int, width: int, levels: Sequence[tuple[int, int, int]]
    ) -> None:
        super().__init__()
        widths = (in_channels, width, 2 * width, 4 * width, 4 * width)
        layers: list[nn.Module] = []
        for (k, s, pad), cin, cout in zip(levels, widths[:-1], widths[1:], strict=True):
            layers += [spectral_norm(nn.Conv2d(cin, cout, k, s, padding=pad)), nn.LeakyReLU(0.2)]
        self.body = nn.Sequential(*layers)
        self.out = spectral_norm(nn.Conv2d(4 * width, 1, 3, 1, padding=1))
        self.embed = spectral_norm(nn.Embedding(n_labels, 4 * width))

    def forward(self, judged: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.body(judged)
        return self.out(h) + (self.embed(labels)[:, :, None, None] * h).sum(1, keepdim=True)


class LatentDiscriminator(ProjectionDiscriminator):
    """Logits per 4x4-latent-pixel patch of a clean latent (two stride-2 levels). With ``paired`` it
    takes the noisy latent and the noise level as well (:meth:`DenoiserGanPhase.judged_input`)."""

    def __init__(self, latent_channels: int, n_labels: int, width: int = 64, paired: bool = False) -> None:
        in_channels = 2 * latent_channels + 1 if paired else latent_channels
        levels = ((3, 1, 1), (4, 2, 2), (4, 2, 2), (3, 1, 1))
        super().__init__(in_channels, n_labels, width, levels)
        self.paired = paired


class PixelDiscriminator(ProjectionDiscriminator):
    """Logits per 8x8-pixel patch of a decoded clean latent, beside its noisy latent (nearest-upsampled
    to the pixels) and the noise level: three stride-2 levels, so that a logit's patch spans a latent
    pixel's 8x8 block."""

    paired = True

    def __init__(self, latent_channels: int, n_labels: int, width: int = 32) -> None:
        levels = ((3, 1, 1), (4, 2, 1), (4, 2, 1), (4, 2, 1))
        super().__init__(3 + latent_channels + 1, n_labels, width, levels)


def predicted_clean(
    noisy: torch.Tensor, prediction: torch.Tensor, alpha_bar: torch.Tensor, prediction_type: str
) -> torch.Tensor:
    """The clean latent x0 that a v or epsilon ``prediction`` at ``noisy`` = x_t implies."""
    a, s = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
    if prediction_type == "v_prediction":
        return a * noisy - s * prediction
    return (noisy - s * prediction) / a


class DenoiserGanPhase(DenoiserPhase):
    """Train ``model`` = ``{"denoiser", "discriminator"}`` (and :data:`PIXEL_KEY` for a second, pixel
    judge): the denoiser on its v loss (as :class:`DenoiserPhase`) plus ``weight`` x the hinge generator
    loss of its ``x0_hat``, summed over the judges.

    One optimizer holds every network (param groups); each step first updates each discriminator on
    real vs predicted latents, then the denoiser, with the other networks' gradients dropped. The
    adversarial weight ramps up over :data:`RAMP` iterations from ``start`` (the leg's first); it
    applies to the timesteps below ``max_timestep``, scaled per class by ``class_weights`` (the
    ``discriminator``'s term) and ``pixel_class_weights`` (:data:`PIXEL_KEY`'s), one factor per class
    index (None: 1 for every class). What a discriminator sees follows its ``paired`` flag, or, for a
    :class:`PixelDiscriminator`, ``decode``'s painting (module docstring).
    """

    model: nn.ModuleDict

    def __init__(
        self,
        *args: Any,
        weight: float,
        start: int,
        max_timestep: int = MAX_TIMESTEP,
        class_weights: Sequence[float] | None = None,
        pixel_class_weights: Sequence[float] | None = None,
        decode: Callable[[torch.Tensor], torch.Tensor] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.judges = [key for key in ("discriminator", PIXEL_KEY) if key in self.model]
        if any(isinstance(self.model[k], PixelDiscriminator) for k in self.judges) and decode is None:
            raise ValueError("a pixel discriminator needs the decoder (decode=...)")
        if pixel_class_weights is not None and PIXEL_KEY not in self.model:
            raise ValueError(f"pixel_class_weights need a second, pixel judge ({PIXEL_KEY!r})")
        self.decode = decode
        self.weight = weight
        self.start = start
        self.max_timestep = max_timestep
        factors = {"discriminator": class_weights, PIXEL_KEY: pixel_class_weights}
        self.class_weights = {k: None if f is None else torch.tensor(f).float() for k, f in factors.items()}
        self.sampling = DDIMScheduler.from_config(kwargs["scheduler"].config)  # for evaluate's draws

    @property
    def discriminators(self) -> list[nn.Module]:
        return [self.model[key] for key in self.judges]

    def adversarial_weight(self) -> float:
        return self.weight * min(1.0, max(0, self.iteration - self.start) / RAMP)

    @property
    def denoiser(self) -> nn.Module:
        return self.model["denoiser"]

    def judged_input(
        self, disc: nn.Module, clean: torch.Tensor, noisy: torch.Tensor, alpha_bar: torch.Tensor
    ) -> torch.Tensor:
        """What ``disc`` sees of a clean latent: itself, or (paired) itself beside the noisy latent and a
        channel holding the noise level sqrt(alpha_bar); a pixel judge sees the decoder's painting of it
        beside the noisy latent upsampled to the painting's pixels."""
        if not disc.paired:
            return clean
        if isinstance(disc, PixelDiscriminator):
            assert self.decode is not None  # checked in __init__
            clean = self.decode(clean).float()
            noisy = F.interpolate(noisy, size=clean.shape[2:], mode="nearest")
        level = alpha_bar.sqrt().to(clean.dtype).expand(-1, 1, *clean.shape[2:])
        return torch.cat([clean, noisy.to(clean.dtype), level], dim=1)

    def window(self, *latents: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The pixel judge's :data:`PIXEL_WINDOW` window of each latent, one place per step (drawn from
        the phase's torch generator, so a resumed leg draws the same); the latent judges see all."""
        if self.decode is None:
            return latents
        h, w = latents[0].shape[2:]
        side = min(PIXEL_WINDOW, h, w)
        y, x = (int(torch.randint(0, n - side + 1, (1,), generator=self.torch_rng)) for n in (h, w))
        return tuple(z[:, :, y : y + side, x : x + side] for z in latents)

    def train_step(self) -> float:
        batch = self.predict()  # the same draws, in the same order, as DenoiserPhase's loss
        d = self.device
        true = torch.tensor([class_label(c.class_index, c.scale_index, self.n_classes) for c in batch.crops])
        true = true.to(d)
        x0_hat = predicted_clean(batch.noisy, batch.prediction, batch.alpha_bar, self.prediction_type)
        judged = (batch.t < self.max_timestep).to(d)
        whole = batch.x0[judged], x0_hat[judged], batch.noisy[judged]
        windowed = self.window(*whole)  # drawn once per step whenever a pixel judge takes part
        alpha_bar, y = batch.alpha_bar[judged], true[judged]
        classes = [c.class_index for c in batch.crops]

        def seen(disc: nn.Module) -> tuple[torch.Tensor, ...]:
            return windowed if isinstance(disc, PixelDiscriminator) else whole

        opt, discs = self.optimizer, self.discriminators
        d_loss = g_adv = torch.zeros((), device=d)
        if judged.any():
            # each discriminator: hinge loss on real vs predicted clean latents
            for disc in discs:
                x0, fake, noisy = seen(disc)
                with torch.no_grad():
                    real = self.judged_input(disc, x0, noisy, alpha_bar)
                    fake = self.judged_input(disc, fake.detach(), noisy, alpha_bar)
                loss = F.relu(1 - disc(real, y)).mean() + F.relu(1 + disc(fake, y)).mean()
                update(opt, loss, frozen=[self.denoiser])
                d_loss = d_loss + loss
            # generator: each judge's hinge term, per sample scaled by its class's factor; without
            # factors the plain mean, as legs trained before factors existed computed it (exact resumes)
            for key, disc in zip(self.judges, discs, strict=True):
                _, fake, noisy = seen(disc)
                logits = disc(self.judged_input(disc, fake, noisy, alpha_bar), y)
                factors = self.class_weights[key]
                if factors is None:
                    g_adv = g_adv - logits.mean()
                else:
                    factor = factors[classes].to(d)[judged]
                    g_adv = g_adv - (factor * logits.mean(dim=(1, 2, 3))).mean()
        g_loss = batch.loss + self.adversarial_weight() * g_adv
        if not (torch.isfinite(g_loss) and torch.isfinite(d_loss)):
            raise FloatingPointError(f"{self.name}: loss became {float(g_loss)} / {float(d_loss)}")
        update(opt, g_loss, frozen=discs, clipped=self.denoiser, grad_clip=self.grad_clip)
        self.ema.step(self.model.parameters())
        return float(batch.loss.detach())

    def evaluate(self) -> dict[str, float]:
        """With the EMA weights, on the hold-out latents: ``val`` as :class:`DenoiserPhase` measures it,
        and how sharp the latents are that stage-2-like sampling draws, over the real ones' (mean
        absolute Laplacian): ``sharp`` from the real latents noised to :data:`MAX_TIMESTEP`,
        ``sharp_blur`` from the same 4x low-passed (as a stage-1 result enlarged 4x)."""
        if self.eval_set is None:
            return {}
        out = super().evaluate()
        x0, labels = self.eval_set
        g = torch.Generator().manual_seed(1234)
        torch.randn(x0.shape, generator=g)  # the validation's noise: the runs measured so far drew it first
        scheduler = self.sampling
        scheduler.set_timesteps(EVAL_STEPS)
        steps = scheduler.timesteps[scheduler.timesteps < MAX_TIMESTEP]
        start_noise = torch.randn(x0.shape, generator=g)
        scales = [int(k) // (self.n_classes + 1) for k in labels]  # label layout scale-major-with-null
        null = torch.tensor([class_label(None, s, self.n_classes) for s in scales])
        d = self.device

        def run() -> dict[str, float]:
            blurred = F.interpolate(F.avg_pool2d(x0, 4), scale_factor=4, mode="bilinear")
            for name, start in (("sharp", x0), ("sharp_blur", blurred)):
                z = scheduler.add_noise(start, start_noise, steps[:1].repeat(len(x0))).to(d)
                for s in steps:
                    ts = s.repeat(len(x0)).to(d)
                    cond = self.denoiser(z, ts, class_labels=labels.to(d)).sample
                    uncond = self.denoiser(z, ts, class_labels=null.to(d)).sample
                    z = scheduler.step(uncond + EVAL_GUIDANCE * (cond - uncond), s, z).prev_sample
                out[name] = float(laplacian_energy(z.float().cpu()).mean() / laplacian_energy(x0).mean())
            return out

        return self.with_ema_weights(run)


def denoiser_gan_optimizer(
    denoiser: nn.Module, *discriminators: nn.Module, lr: float
) -> torch.optim.Optimizer:
    """AdamW for the denoiser (as its phase 2, weight decay 1e-2) and Adam betas (0, 0.9) for each
    discriminator (one param group each) at :data:`DISCRIMINATOR_LR_SCALE` x the rate (``lr_scale``,
    read by the loop)."""
    return torch.optim.AdamW(
        [
            {
                "params": list(denoiser.parameters()),
                "lr_scale": 1.0,
                "betas": (0.9, 0.999),
                "weight_decay": 1e-2,
            },
            *(
                {
                    "params": list(discriminator.parameters()),
                    "lr_scale": DISCRIMINATOR_LR_SCALE,
                    "betas": (0.0, 0.9),
                    "weight_decay": 0.0,
                }
                for discriminator in discriminators
            ),
        ],
        lr=lr,
    )
