"""Haematoxylin-dense components: known area and solidity of drawn shapes; border, noise and holes handled."""

from __future__ import annotations

import numpy as np
import pytest

from napari_pathup.errors import InputError
from napari_pathup.metrics.nuclei import (
    haematoxylin_components,
    haematoxylin_threshold,
    otsu_threshold,
)

PINK = (235, 170, 210)  # eosin-stained background
PURPLE = (70, 50, 140)  # haematoxylin-stained nucleus


def canvas(size: int = 128) -> np.ndarray:
    return np.tile(np.array(PINK, np.uint8), (size, size, 1))


def disc_mask(size: int, cy: float, cx: float, r: float) -> np.ndarray:
    y, x = np.mgrid[:size, :size]
    return (y - cy) ** 2 + (x - cx) ** 2 <= r**2


def test_a_square_and_a_disc_give_their_pixel_areas_and_known_solidities():
    image = canvas()
    image[20:40, 30:50] = PURPLE  # 20x20 square
    disc = disc_mask(128, 85, 80, 12)
    image[disc] = PURPLE
    threshold = haematoxylin_threshold([image])
    stats = haematoxylin_components(image, threshold, smooth=0)
    assert stats.count == 2
    assert sorted(stats.areas) == [400, disc.sum()]
    solidity = dict(zip(stats.areas, stats.solidities, strict=True))
    assert solidity[400] == pytest.approx(1.0)  # a square is its own convex hull
    assert 0.9 < solidity[disc.sum()] < 1.0  # a digitised disc: nearly convex
    smoothed = haematoxylin_components(image, threshold)  # default smoothing moves edges by < 1 px
    assert sorted(smoothed.areas) == pytest.approx(sorted(stats.areas), rel=0.1)


def test_a_crescent_is_less_solid_and_a_ring_counts_with_its_hole_filled():
    image = canvas()
    crescent = disc_mask(128, 40, 40, 20) & ~disc_mask(128, 40, 52, 18)
    ring = disc_mask(128, 90, 90, 15) & ~disc_mask(128, 90, 90, 8)
    image[crescent | ring] = PURPLE
    stats = haematoxylin_components(image, haematoxylin_threshold([image]), smooth=0)
    by_area = dict(zip(stats.areas, stats.solidities, strict=True))
    assert set(by_area) == {crescent.sum(), disc_mask(128, 90, 90, 15).sum()}
    assert by_area[crescent.sum()] < 0.6
    assert by_area[disc_mask(128, 90, 90, 15).sum()] > 0.9
    assert stats.median_area == pytest.approx(np.median(list(by_area)))


def test_border_cut_and_speck_components_are_left_out_and_empty_images_give_nan():
    image = canvas()
    image[0:20, 50:70] = PURPLE  # touches the top border: size unknown
    image[60:63, 60:63] = PURPLE  # 9 px: below the minimum area
    stats = haematoxylin_components(image, 0.07, smooth=0)
    assert stats.count == 0 and np.isnan(stats.median_area) and np.isnan(stats.median_solidity)
    assert haematoxylin_components(image, 0.07, smooth=0, min_area=4).areas.tolist() == [9]


def test_otsu_splits_two_modes_and_the_threshold_separates_stains():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(0.1, 0.02, 5000), rng.normal(0.6, 0.05, 2000)])
    assert 0.2 < otsu_threshold(values) < 0.5
    image = canvas(32)
    image[8:24, 8:24] = PURPLE
    from napari_pathup.metrics.stain import rgb_to_hed

    h = rgb_to_hed(image)[..., 0]
    threshold = haematoxylin_threshold([image])
    assert h[0, 0] < threshold < h[16, 16]


def test_bad_input_is_named():
    with pytest.raises(InputError, match="uint8 RGB"):
        haematoxylin_components(np.zeros((8, 8)), 0.1)
    with pytest.raises(InputError, match="threshold"):
        haematoxylin_components(canvas(8), float("nan"))
    with pytest.raises(InputError, match="distinct"):
        otsu_threshold(np.ones(10))
    with pytest.raises(InputError, match="at least one image"):
        haematoxylin_threshold([])


def test_without_a_threshold_each_image_uses_its_own_otsu_level():
    strong, faint = canvas(), canvas()
    strong[30:50, 30:50] = PURPLE
    faint[30:50, 30:50] = (170, 140, 200)  # weakly stained nucleus: below a strong image's level
    level = haematoxylin_threshold([strong])
    assert haematoxylin_components(faint, level, smooth=0).count == 0
    assert haematoxylin_components(faint, smooth=0).areas.tolist() == [400]
    assert haematoxylin_components(canvas(), smooth=0).count == 0  # one density only: nothing to split


def test_otsu_ignores_a_few_extreme_values():
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.normal(0.02, 0.01, 5000), rng.normal(0.12, 0.02, 2000), [1.8] * 3])
    assert 0.04 < otsu_threshold(values) < 0.1


def test_a_lower_top_keeps_a_little_ink_from_moving_the_threshold() -> None:
    """0.4 % near-black pixels (ink, pigment) move the threshold over the 99.9 % range, not over the
    99 % range, which must still split the nuclei from the rest of the tissue."""
    rng = np.random.default_rng(0)
    pink, purple = np.array([220, 140, 195]), np.array([70, 45, 130])
    clean = []
    for _ in range(4):  # tissue from eosin pink to haematoxylin purple, with a long purple tail
        t = np.clip(rng.gamma(1.2, 0.25, (128, 128)), 0, 1)
        clean.append((pink + (purple - pink) * t[..., None]).astype(np.uint8))
    inked = [c.copy() for c in clean]
    for c in inked:
        c[rng.random(c.shape[:2]) < 0.004] = (8, 8, 20)
    assert haematoxylin_threshold(inked, top=0.99) == pytest.approx(
        haematoxylin_threshold(clean, top=0.99), rel=0.02
    )
    assert haematoxylin_threshold(inked) > 1.1 * haematoxylin_threshold(clean)
