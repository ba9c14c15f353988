"""H&E stain jitter: identity at zero, stain-faithful changes, glass left white."""

from __future__ import annotations

import numpy as np

from napari_pathup.training.augmentation import UNMIX, HedJitter, hed_jitter, hed_perturb


def _densities(rgb: np.ndarray) -> np.ndarray:
    return -np.log((rgb.astype(np.float64) + 1) / 256) @ UNMIX


def _tissue(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = np.empty((32, 32, 3), np.float64)
    image[:] = (225, 150, 200)  # eosin-pink
    image[8:16, 8:16] = (90, 60, 150)  # a haematoxylin-dark nucleus
    image[24:, 24:] = (243, 243, 243)  # glass
    return np.clip(image + rng.normal(0, 3, image.shape), 0, 255).astype(np.uint8)


def test_zero_jitter_returns_the_image_and_unit_perturbation_round_trips() -> None:
    image = _tissue()
    assert hed_jitter(image, np.random.default_rng(0), HedJitter(0, 0)) is image
    same = hed_perturb(image, np.ones(3), np.zeros(3))
    assert np.abs(same.astype(int) - image.astype(int)).max() <= 1


def test_more_haematoxylin_darkens_nuclei_and_leaves_eosin() -> None:
    image = _tissue()
    more_h = hed_perturb(image, np.array([1.3, 1.0, 1.0]), np.zeros(3))
    before, after = _densities(image), _densities(more_h)
    nucleus = (slice(8, 16), slice(8, 16))
    assert after[nucleus][..., 0].mean() > 1.25 * before[nucleus][..., 0].mean()
    assert np.allclose(after[nucleus][..., 1].mean(), before[nucleus][..., 1].mean(), rtol=0.05, atol=0.01)


def test_a_stain_shift_does_not_tint_glass() -> None:
    image = _tissue()
    shifted = hed_perturb(image, np.ones(3), np.array([0.05, 0.05, 0.0]))
    glass = (slice(24, 32), slice(24, 32))
    assert np.abs(shifted[glass].astype(int) - image[glass].astype(int)).max() <= 3
    pink = (slice(0, 6), slice(0, 32))
    assert (shifted[pink].astype(int) - image[pink].astype(int)).mean() < -3  # stained tissue got darker


def test_jitter_is_seeded() -> None:
    image = _tissue()
    jitter = HedJitter(0.1, 0.03)
    a = hed_jitter(image, np.random.default_rng(7), jitter)
    b = hed_jitter(image, np.random.default_rng(7), jitter)
    c = hed_jitter(image, np.random.default_rng(8), jitter)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
