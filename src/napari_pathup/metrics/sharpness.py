"""Sharpness of an image as the share of its spectral power at high spatial frequencies.

A decoder trained on pixel losses alone blurs: its outputs lose power at high spatial frequencies
while their colour and PSNR stay close to the original. ``high_frequency_share`` reads that loss
directly, and a ratio of it (synthetic or decoded over real crops) near 1 says the detail is there
in the right amount: a blurry output scores below 1, an output with added noise or ringing above.
``edge_contrast`` reads the steepness of the strongest edges instead, which fine grain hardly moves.
No Qt or napari here.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from napari_pathup.errors import InputError

#: ITU-R BT.601 luma weights (R, G, B)
LUMA = np.array([0.299, 0.587, 0.114])
#: default cutoff, as a fraction of the Nyquist frequency (0.5 cycles per pixel)
DEFAULT_CUTOFF = 0.25


def luminance(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3|4) uint8 RGB → (H, W) float64 luma in [0, 1]."""
    arr = np.asarray(rgb)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise InputError(f"image: expected an (H, W, 3) uint8 RGB image, got {arr.dtype} {arr.shape}")
    return arr[..., :3].astype(np.float64) @ LUMA / 255.0


def high_frequency_share(rgb: np.ndarray, cutoff: float = DEFAULT_CUTOFF) -> float:
    """The share of the luma's spectral power (the mean, i.e. DC, left out) at radial frequencies above
    ``cutoff`` x Nyquist.

    The luma, minus its mean, is multiplied by a 2-D Hann window before the FFT so that the jump
    between opposite borders (the FFT's periodic wrap) adds no false high frequencies. White noise
    scores about 1 - pi (cutoff / 2)^2 (0.95 at the default cutoff); a uniform image has no detail
    and scores 0. The share does not change when the contrast is scaled.
    """
    if not 0 < cutoff < 1:
        raise InputError(f"cutoff: expected a fraction of the Nyquist frequency in (0, 1), got {cutoff}")
    luma = luminance(rgb)
    h, w = luma.shape
    if h < 8 or w < 8:
        raise InputError(f"image: expected at least 8x8 pixels to measure sharpness, got {h}x{w}")
    window = np.outer(np.hanning(h), np.hanning(w))
    power = np.abs(np.fft.rfft2((luma - luma.mean()) * window)) ** 2
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    radius = np.hypot(fy, fx)  # cycles per pixel; Nyquist is 0.5
    # rfft2 keeps one of each conjugate pair except the columns fx = 0 (and fx = Nyquist for even
    # widths), which hold both: weight the others twice so the sums equal those of the full spectrum
    weight = np.full(power.shape, 2.0)
    weight[:, 0] = 1.0
    if w % 2 == 0:
        weight[:, -1] = 1.0
    power = power * weight
    power[0, 0] = 0.0
    total = power.sum()
    if total <= 1e-20 * h * w:
        return 0.0
    return float(power[radius > cutoff * 0.5].sum() / total)


#: ``edge_contrast`` reads an image's strongest edges: this top fraction of its pixels by luma gradient
EDGE_FRACTION = 0.05


def luma_gradient(rgb: np.ndarray) -> np.ndarray:
    """Luma gradient magnitude (central differences, luma in [0, 1]), zero on the one-pixel border."""
    y = luminance(rgb)
    g = np.zeros_like(y)
    g[1:-1, 1:-1] = np.hypot(y[1:-1, 2:] - y[1:-1, :-2], y[2:, 1:-1] - y[:-2, 1:-1]) / 2
    return g


def edge_contrast(rgb: np.ndarray, fraction: float = EDGE_FRACTION) -> float:
    """Mean luma gradient over the image's strongest ``fraction`` of pixels by gradient: how steep its
    edges are (nuclear borders, fibres).

    A complement to ``high_frequency_share``, which counts fine grain (e.g. a decoder's dither on
    glass) as detail: grain adds to a strong edge's gradient in quadrature, so it barely moves this
    figure, while blur flattens the edges and lowers it. Unlike the share it scales with contrast,
    so compare crops of the same stain and scanner only.
    """
    if not 0 < fraction <= 1:
        raise InputError(f"fraction: expected a share of the pixels in (0, 1], got {fraction}")
    g = luma_gradient(rgb)
    if min(g.shape) < 8:
        raise InputError(
            f"image: expected at least 8x8 pixels to measure edges, got {g.shape[0]}x{g.shape[1]}"
        )
    inner = g[1:-1, 1:-1].ravel()
    first = inner.size - max(1, round(fraction * inner.size))
    return float(np.partition(inner, first)[first:].mean())  # the strongest, unordered: no full sort


def sharpness_ratio(
    images: Iterable[np.ndarray], reference: Iterable[np.ndarray], cutoff: float = DEFAULT_CUTOFF
) -> float:
    """Mean ``high_frequency_share`` of ``images`` over that of ``reference`` (1: as sharp; below 1:
    blurrier; above 1: more high-frequency power, e.g. noise)."""
    ours = [high_frequency_share(x, cutoff) for x in images]
    theirs = [high_frequency_share(x, cutoff) for x in reference]
    if not ours or not theirs:
        raise InputError("sharpness_ratio: both image sets need at least one image")
    base = float(np.mean(theirs))
    if base == 0.0:
        raise InputError("sharpness_ratio: the reference images are uniform (no detail to compare with)")
    return float(np.mean(ours)) / base
