"""H&E colour augmentation: haematoxylin/eosin (HED) jitter in optical-density space.

Tellez et al. (2018, "Whole-slide mitosis detection in H&E breast histology using PHH3 as a reference
to train distilled stain-invariant convolutional networks") perturb each stain channel of the colour
deconvolution as ``s' = alpha * s + beta``; we do the same with the Ruifrok & Johnston vectors that
the autoencoder's colour loss uses (:data:`napari_pathup.training.autoencoder.STAINS`), so that a
jittered crop stays a plausible H&E stain: more or less haematoxylin, pinker or paler eosin, never a
hue that no slide has. Zero jitter returns the input unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Ruifrok & Johnston optical-density vectors (rows: haematoxylin, eosin, residual), unit length
STAINS = np.array([[0.650, 0.704, 0.286], [0.072, 0.990, 0.105], [0.0, 0.0, 0.0]])
STAINS[2] = np.cross(STAINS[0], STAINS[1])
STAINS /= np.linalg.norm(STAINS, axis=1, keepdims=True)
UNMIX = np.linalg.inv(STAINS)  # optical density (rgb) @ UNMIX = stain densities


@dataclass(frozen=True)
class HedJitter:
    """Per-image stain scale ``alpha`` in [1 - scale, 1 + scale] and shift ``beta`` in [-shift, shift]
    (optical density units) for haematoxylin and eosin; the residual channel is left alone."""

    scale: float = 0.05
    shift: float = 0.02

    def draw(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        alpha = np.ones(3)
        beta = np.zeros(3)
        alpha[:2] = rng.uniform(1 - self.scale, 1 + self.scale, 2)
        beta[:2] = rng.uniform(-self.shift, self.shift, 2)
        return alpha, beta


def hed_perturb(rgb: np.ndarray, alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB with stain densities ``s`` replaced by ``alpha * s + beta``; uint8 RGB.

    Background (glass) has densities near zero and stays near white; ``beta`` is applied only in
    proportion to how much stain a pixel already has, so empty glass is not tinted.
    """
    intensity = (rgb.astype(np.float64) + 1.0) / 256.0
    od = -np.log(intensity)
    stains = od @ UNMIX
    total = np.clip(stains[..., :2].sum(-1, keepdims=True), 0, None)
    presence = np.clip((total - 0.1) / 0.2, 0, 1)  # 0 on glass (total OD < 0.1), 1 on stained tissue
    stains = stains * alpha + beta * presence
    out = np.exp(-(stains @ STAINS)) * 256.0 - 1.0
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def hed_jitter(rgb: np.ndarray, rng: np.random.Generator, jitter: HedJitter) -> np.ndarray:
    """``rgb`` with a random stain perturbation drawn from ``rng`` (unchanged when ``jitter`` is zero)."""
    if jitter.scale == 0 and jitter.shift == 0:
        return rgb
    alpha, beta = jitter.draw(rng)
    return hed_perturb(rgb, alpha, beta)
