"""Stain deconvolution agrees with scikit-image; pixel sampling stays bounded on large and lazy images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from helpers import rgb
from napari_pathup.errors import InputError
from napari_pathup.metrics.stain import (
    rgb_to_hed,
    sample_pixels,
    shared_edges,
    stain_distribution,
    tissue_pixels,
)

skimage_color = pytest.importorskip("skimage.color")
DEMO = Path(__file__).resolve().parents[2] / "data" / "demo"


def he_field() -> np.ndarray:
    from napari_pathup.io import read_image

    return read_image(DEMO / "stroma" / "hgsc_stroma.jpg")[:256, :256]


def test_rgb_to_hed_equals_skimage_on_every_byte_value_and_on_real_he():
    every = np.stack(np.meshgrid(*[np.arange(0, 256, 5, dtype=np.uint8)] * 3, indexing="ij"), -1)
    np.testing.assert_allclose(rgb_to_hed(every), skimage_color.rgb2hed(every), rtol=1e-12, atol=1e-14)
    field = he_field()
    np.testing.assert_allclose(rgb_to_hed(field), skimage_color.rgb2hed(field), rtol=1e-12, atol=1e-14)


def test_distribution_statistics_match_skimage_and_histograms_are_densities():
    pixels = sample_pixels(he_field(), 10_000)
    hed = skimage_color.rgb2hed(pixels.reshape(-1, 1, 3)).reshape(-1, 3)
    edges = np.linspace(0, 2, 201)  # rgb2hed of uint8 pixels: H <= 1.88, E <= 1.14
    dist = stain_distribution(pixels, edges)
    assert dist.mean == pytest.approx((hed[:, 0].mean(), hed[:, 1].mean()))
    assert dist.std == pytest.approx((hed[:, 0].std(), hed[:, 1].std()))
    inside = (hed[:, 0] >= 0) & (hed[:, 0] <= 2)
    assert inside.all()  # the whole H range of this field: the curve is a probability density
    np.testing.assert_allclose(dist.haematoxylin, np.histogram(hed[:, 0], edges, density=True)[0])
    width = np.diff(edges)
    assert (dist.haematoxylin * width).sum() == pytest.approx(1.0)
    narrow = stain_distribution(pixels, np.linspace(0, 0.02, 11))  # pixels beyond are left out
    in_range = np.mean(hed[:, 1] <= 0.02)
    assert (narrow.eosin * np.diff(narrow.edges)).sum() == pytest.approx(in_range)
    assert narrow.mean == dist.mean
    assert dist.n_pixels == len(pixels) and len(dist.centres) == 200


def test_haematoxylin_rich_pixels_measure_more_haematoxylin_than_eosin_rich_ones():
    nuclei = np.full((100, 3), (70, 50, 140), np.uint8)  # purple-blue
    cytoplasm = np.full((100, 3), (230, 120, 180), np.uint8)  # pink
    edges = shared_edges([nuclei, cytoplasm])
    h_rich, e_rich = stain_distribution(nuclei, edges), stain_distribution(cytoplasm, edges)
    assert h_rich.mean[0] > e_rich.mean[0]
    assert e_rich.mean[1] > h_rich.mean[1]


def test_background_is_left_out_unless_there_is_nothing_else():
    image = np.full((10, 10, 3), 245, np.uint8)
    image[:2] = (150, 80, 160)
    assert len(tissue_pixels(image)) == 20
    assert len(tissue_pixels(np.full((4, 4, 3), 250, np.uint8))) == 16


def test_sampling_is_bounded_seeded_and_drops_alpha():
    image = rgb(300, 400)
    a, b = sample_pixels(image, 5000, seed=3), sample_pixels(image, 5000, seed=3)
    assert a.shape == (5000, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    rgba = np.concatenate([image, np.full((300, 400, 1), 255, np.uint8)], axis=-1)
    np.testing.assert_array_equal(sample_pixels(rgba, 5000, seed=3), a)


def test_multiscale_reads_the_smallest_level_that_holds_the_sample():
    class Unreadable:
        shape, dtype = (4096, 4096, 3), np.uint8

        def __getitem__(self, key):
            raise AssertionError("level 0 must not be read")

        def __array__(self, *args, **kwargs):
            raise AssertionError("level 0 must not be read")

    small = rgb(256, 256, seed=1)
    pixels = sample_pixels([Unreadable(), rgb(1024, 1024), small], n_pixels=256 * 256)
    assert len(pixels) == len(tissue_pixels(small))  # all of it: the sample fits
    np.testing.assert_array_equal(np.sort(pixels, axis=0), np.sort(tissue_pixels(small), axis=0))


def test_lazy_arrays_are_read_with_a_stride():
    da = pytest.importorskip("dask.array")
    big = da.from_array(rgb(2048, 2048), chunks=(512, 512, 3))
    pixels = sample_pixels(big, n_pixels=10_000)
    assert len(pixels) == 10_000
    strided = np.asarray(big[::11, ::11])  # ceil(sqrt(2048^2 / 40000)) = 11
    rows = {tuple(p) for p in tissue_pixels(strided)}
    assert all(tuple(p) in rows for p in pixels[:200])


def test_bad_input_names_what_was_expected():
    with pytest.raises(InputError, match="uint8"):
        sample_pixels(np.zeros((8, 8, 3), np.float32), name="layer x")
    with pytest.raises(InputError, match=r"layer x: expected an \(H, W, 3\)"):
        sample_pixels(np.zeros((8, 8), np.uint8), name="layer x")
    with pytest.raises(InputError, match="uint8 RGB"):
        rgb_to_hed(np.zeros((4, 4, 2), np.uint8))
