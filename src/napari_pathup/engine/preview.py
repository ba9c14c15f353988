"""Cheap latent → RGB previews: a per-model linear map fitted on an encoded reference image.

Decoding every patch at every step would cost more than denoising it; a 1x1 linear map of the
latent channels (with bias) reproduces the colours well enough to watch an image assemble. The map
is fitted by least squares against the reference that the run encodes anyway, so it adapts to any
autoencoder without a hard-coded matrix.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


class LatentPreviewer:
    """Maps a (C, h, w) latent to an (h, w, 3) uint8 image with a fitted linear map."""

    def __init__(self, matrix: torch.Tensor) -> None:
        self.matrix = matrix  # (C + 1, 3), float32

    @classmethod
    def fit(cls, latent: torch.Tensor, image: torch.Tensor) -> LatentPreviewer:
        """Fit on a latent (C, h, w) and the image it encodes (3, H, W) in [-1, 1]."""
        c, h, w = latent.shape
        target = F.adaptive_avg_pool2d(image[None].float(), (h, w))[0]
        x = torch.cat([latent.float().reshape(c, -1), torch.ones(1, h * w)], dim=0).T.double()
        y = target.reshape(3, -1).T.double()
        ridge = 1e-3 * torch.eye(c + 1, dtype=torch.float64)
        matrix = torch.linalg.solve(x.T @ x + ridge, x.T @ y)
        return cls(matrix.float())

    def __call__(self, latent: torch.Tensor) -> np.ndarray:
        c, h, w = latent.shape
        flat = torch.cat([latent.float().reshape(c, -1).cpu(), torch.ones(1, h * w)], dim=0)
        rgb = (flat.T @ self.matrix).reshape(h, w, 3)
        return to_uint8(rgb)


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """[-1, 1] floats (any layout) → uint8 with rounding, clipped."""
    return ((image.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()
