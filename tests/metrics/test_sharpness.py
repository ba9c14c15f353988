"""Sharpness ranks blurred below original, reads white noise at its known share and ignores contrast."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from helpers import rgb
from napari_pathup.errors import InputError
from napari_pathup.metrics.sharpness import edge_contrast, high_frequency_share, luminance, sharpness_ratio

DEMO = Path(__file__).resolve().parents[2] / "data" / "demo"


def he_crop() -> np.ndarray:
    from napari_pathup.io import read_image

    return read_image(DEMO / "tumour" / "hgsc_tumour_nest.jpg")[:256, :256]


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    out = ndimage.gaussian_filter(image.astype(np.float64), (sigma, sigma, 0))
    return np.clip(out.round(), 0, 255).astype(np.uint8)


def test_blurring_real_he_lowers_the_share_and_more_blur_lowers_it_further():
    crop = he_crop()
    sharp, soft, softer = (high_frequency_share(x) for x in (crop, blur(crop, 1.0), blur(crop, 2.0)))
    assert sharp > soft > softer > 0
    assert sharpness_ratio([blur(crop, 1.5)], [crop]) < 0.8  # a blurry decoder fails the 0.8 bar


def test_white_noise_scores_the_area_outside_the_cutoff_circle():
    share = high_frequency_share(rgb(256, 256, seed=1))
    assert share == pytest.approx(1 - np.pi * 0.125**2, abs=0.01)
    wide = high_frequency_share(rgb(128, 200, seed=2), cutoff=0.5)  # odd spectra of non-square images too
    assert wide == pytest.approx(1 - np.pi * 0.25**2, abs=0.015)


def test_contrast_does_not_change_the_share_and_flat_images_score_zero():
    crop = he_crop()
    low = (128 + (crop.astype(np.int16) - 128) // 2).astype(np.uint8)  # half the contrast
    assert high_frequency_share(low) == pytest.approx(high_frequency_share(crop), rel=0.03)
    assert high_frequency_share(np.full((64, 64, 3), 200, np.uint8)) == 0.0


def test_ratio_is_one_for_the_same_set_and_above_one_with_added_noise():
    crop = he_crop()
    assert sharpness_ratio([crop], [crop]) == pytest.approx(1.0)
    noise = np.random.default_rng(0).normal(0, 20, crop.shape)
    noisy = np.clip(crop + noise, 0, 255).astype(np.uint8)
    assert sharpness_ratio([noisy], [crop]) > 1.25


@pytest.mark.parametrize("fraction", [1.0, 0.1, 1e-9])
def test_edge_contrast_is_the_mean_of_the_strongest_gradients(fraction):
    """The top share of the pixels by gradient, as a full sort would pick them (ties included)."""
    from napari_pathup.metrics.sharpness import luma_gradient

    rgb = np.random.default_rng(3).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    rgb[:10] = 128  # flat rows: many equal (zero) gradients
    inner = np.sort(luma_gradient(rgb)[1:-1, 1:-1].ravel())
    expected = inner[-max(1, round(fraction * inner.size)) :].mean()
    assert edge_contrast(rgb, fraction) == pytest.approx(expected, rel=1e-12)


def test_edge_contrast_falls_with_blur_but_hardly_moves_with_grain_that_the_share_counts_as_detail():
    """A decoder's fine dither raises the spectral share as if it were detail; the steepness of the
    strongest edges, which blur lowers, barely changes under it."""
    crop = he_crop()
    grain = np.random.default_rng(0).normal(0, 6, crop.shape[:2])[..., None]  # grey, std 6 of 255
    grainy = np.clip(crop + grain, 0, 255).astype(np.uint8)
    share_up = high_frequency_share(grainy) / high_frequency_share(crop)
    edges_up = edge_contrast(grainy) / edge_contrast(crop)
    assert share_up > 1.2 and abs(edges_up - 1) < 0.04
    assert edge_contrast(blur(crop, 1.5)) < 0.7 * edge_contrast(crop)
    assert edge_contrast(np.full((16, 16, 3), 90, np.uint8)) == 0.0
    with pytest.raises(InputError, match="fraction"):
        edge_contrast(crop, fraction=0)


def test_bad_input_is_named():
    with pytest.raises(InputError, match="uint8 RGB"):
        high_frequency_share(np.zeros((32, 32), np.float32))
    with pytest.raises(InputError, match="at least 8x8"):
        high_frequency_share(np.zeros((4, 32, 3), np.uint8))
    with pytest.raises(InputError, match="cutoff"):
        high_frequency_share(rgb(32, 32), cutoff=1.5)
    with pytest.raises(InputError, match="uniform"):
        sharpness_ratio([rgb(32, 32)], [np.full((32, 32, 3), 9, np.uint8)])
    with pytest.raises(InputError, match="at least one"):
        sharpness_ratio([], [rgb(32, 32)])
    assert luminance(np.full((2, 2, 4), 255, np.uint8)) == pytest.approx(np.ones((2, 2)))
