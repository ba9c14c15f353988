"""Metrics from feature arrays: closed forms, reference implementations, conventions, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_pathup.errors import InputError
from napari_pathup.metrics import (
    GaussianStats,
    MetricsWarning,
    compute_feature_metrics,
    frechet_distance,
    gaussian_stats,
    kid,
    prdc,
)


def exact_moments(rng: np.random.Generator, n: int, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """n samples whose sample mean is mu and sample covariance (ddof=1) is sigma, up to rounding."""
    z = rng.normal(size=(n, len(mu)))
    z -= z.mean(0)
    whiten = np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False)))
    return z @ whiten.T @ np.linalg.cholesky(sigma).T + mu


@pytest.fixture(scope="module")
def features() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    real = rng.normal(size=(600, 64))
    synth = rng.normal(loc=0.15, scale=1.1, size=(500, 64))
    return real, synth


# ----------------------------------------------------------------------------------------- closed forms


def test_fid_of_gaussians_with_commuting_covariances_matches_closed_form():
    rng = np.random.default_rng(1)
    d = 12
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    a, b = rng.uniform(0.5, 3.0, d), rng.uniform(0.5, 3.0, d)
    mu_r, mu_s = rng.normal(size=d), rng.normal(size=d)
    sigma_r, sigma_s = q @ np.diag(a) @ q.T, q @ np.diag(b) @ q.T
    expected = np.sum((mu_r - mu_s) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)

    from_stats = frechet_distance(GaussianStats(mu_r, sigma_r, 0), GaussianStats(mu_s, sigma_s, 0))
    from_samples = frechet_distance(
        exact_moments(rng, 400, mu_r, sigma_r), exact_moments(rng, 300, mu_s, sigma_s)
    )

    assert from_stats == pytest.approx(expected, rel=1e-10)
    assert from_samples == pytest.approx(expected, rel=1e-8)


def test_fid_with_non_commuting_covariances_matches_hand_computation():
    # Σr = I, Σg = [[2, 1], [1, 2]] (eigenvalues 1 and 3): Tr(Σg + Σr - 2 Σg^½) = 6 - 2(1 + √3)
    real = GaussianStats(np.zeros(2), np.eye(2), 0)
    synth = GaussianStats(np.array([3.0, 4.0]), np.array([[2.0, 1.0], [1.0, 2.0]]), 0)
    assert frechet_distance(real, synth) == pytest.approx(25 + 4 - 2 * np.sqrt(3), rel=1e-12)


def test_identical_sets_give_zero_fid_and_full_precision_recall(features):
    real, _ = features
    result = compute_feature_metrics(real, real.copy(), kid_subset_size_requested=200, kid_subsets_count=10)
    assert abs(result.frechet_distance) < 1e-9 * np.trace(np.cov(real, rowvar=False))
    assert result.prdc.precision == 1.0
    assert result.prdc.recall == 1.0
    assert result.prdc.coverage == 1.0


def test_kid_is_near_zero_for_samples_of_one_distribution_and_grows_with_a_shift():
    rng = np.random.default_rng(7)
    real, same, shifted = (rng.normal(loc, 1.0, size=(400, 32)) for loc in (0.0, 0.0, 0.3))
    settings_ = {"subsets": 20, "subset_size": 200}
    near = kid(real, same, **settings_)
    far = kid(real, shifted, **settings_)
    assert abs(near.mean) < 3 * near.std
    assert far.mean > 10 * abs(near.mean)


def test_disjoint_clusters_give_zero_precision_recall_density_coverage():
    rng = np.random.default_rng(2)
    real = rng.normal(size=(80, 16))
    synth = rng.normal(size=(70, 16)) + 100.0
    result = prdc(real, synth)
    assert (result.precision, result.recall, result.density, result.coverage) == (0.0, 0.0, 0.0, 0.0)


def test_kid_with_linear_kernel_on_full_sets_matches_closed_form():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(40, 5)), rng.normal(0.5, 1.0, size=(40, 5))
    m = 40
    sx, sy = x.sum(0), y.sum(0)
    expected = ((sx @ sx - (x * x).sum()) + (sy @ sy - (y * y).sum())) / (m * (m - 1)) - 2 * (sx @ sy) / m**2
    got = kid(x, y, subsets=3, subset_size=m, degree=1, gamma=1.0, coef0=0.0)
    assert got.mean == pytest.approx(expected, rel=1e-12)
    assert got.std == pytest.approx(0.0, abs=1e-12)


# ------------------------------------------------------------------------------ reference implementations


def test_fid_and_kid_agree_with_torch_fidelity(features):
    fid_mod = pytest.importorskip("torch_fidelity.metric_fid")
    kid_mod = pytest.importorskip("torch_fidelity.metric_kid")
    real, synth = features
    tr, ts = torch.from_numpy(real), torch.from_numpy(synth)  # float64: both sides compute in float64
    # torch-fidelity's input 1 is the generated set
    stats = fid_mod.fid_features_to_statistics
    ref_fid = fid_mod.fid_statistics_to_metric(stats(ts), stats(tr), False)["frechet_inception_distance"]
    ref_kid = kid_mod.kid_features_to_metric(
        ts, tr, kid_subsets=20, kid_subset_size=300, verbose=False, rng_seed=7
    )

    fused = compute_feature_metrics(real, synth, kid_subsets_count=20, kid_subset_size_requested=300, seed=7)
    alone = kid(real, synth, subsets=20, subset_size=300, seed=7)

    assert fused.frechet_distance == pytest.approx(ref_fid, rel=1e-6)
    for result in (fused.kid, alone):
        assert result.mean == pytest.approx(ref_kid["kernel_inception_distance_mean"], rel=1e-6)
        assert result.std == pytest.approx(ref_kid["kernel_inception_distance_std"], rel=1e-6)


def test_fid_agrees_with_torch_fidelity_when_samples_are_fewer_than_dimensions():
    fid_mod = pytest.importorskip("torch_fidelity.metric_fid")
    rng = np.random.default_rng(4)
    real, synth = rng.normal(size=(90, 128)), rng.normal(0.1, 1.2, size=(80, 128))
    stats = fid_mod.fid_features_to_statistics
    ref = fid_mod.fid_statistics_to_metric(
        stats(torch.from_numpy(synth)), stats(torch.from_numpy(real)), False
    )
    assert frechet_distance(real, synth) == pytest.approx(ref["frechet_inception_distance"], rel=1e-6)


def test_precision_recall_match_torch_fidelity_with_closed_balls(features):
    prc_mod = pytest.importorskip("torch_fidelity.metric_prc")
    real, synth = features
    ref = prc_mod.prc_features_to_metric(
        torch.from_numpy(synth),
        torch.from_numpy(real),
        prc_neighborhood=3,
        prc_batch_size=10000,
        save_cpu_ram=False,
        verbose=False,
    )
    ours = prdc(real, synth, k=3, ball="closed")
    # torch-fidelity averages in float32: compare the counts, which must be equal
    assert round(ours.precision * len(synth)) == round(ref["precision"] * len(synth))
    assert round(ours.recall * len(real)) == round(ref["recall"] * len(real))


@pytest.mark.parametrize("k", [3, 5])
def test_prdc_matches_the_prdc_package_with_open_balls(features, k):
    prdc_pkg = pytest.importorskip("prdc")
    real, synth = features
    ref = prdc_pkg.compute_prdc(real_features=real, fake_features=synth, nearest_k=k)
    ours = prdc(real, synth, k=k, ball="open")
    assert ours.precision == ref["precision"]
    assert ours.recall == ref["recall"]
    assert ours.coverage == ref["coverage"]
    assert ours.density == pytest.approx(ref["density"], rel=1e-12)  # same count, different division order


# ------------------------------------------------------------------------------------------ conventions


def test_block_size_does_not_change_any_result(features):
    real, synth = features
    kw = {"kid_subsets_count": 5, "kid_subset_size_requested": 100}
    big = compute_feature_metrics(real, synth, **kw)
    tiny = compute_feature_metrics(real, synth, block_entries=700, **kw)  # a single row per block
    assert tiny.prdc == big.prdc
    assert tiny.kid.mean == pytest.approx(big.kid.mean, rel=1e-9)


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1), n_real=st.integers(5, 40), n_synth=st.integers(5, 40), k=st.integers(1, 4)
)
def test_swapping_the_sets_swaps_precision_and_recall(seed, n_real, n_synth, k):
    rng = np.random.default_rng(seed)
    real, synth = rng.normal(size=(n_real, 6)), rng.normal(0.3, 1.0, size=(n_synth, 6))
    forward, backward = prdc(real, synth, k=k), prdc(synth, real, k=k)
    assert forward.precision == backward.recall
    assert forward.recall == backward.precision


def test_a_point_on_the_radius_is_inside_a_closed_ball_only():
    # real points 0, 1, 2, 3 on a line: with k=1 the radius of 0 is 1; synthetic point -1 is at distance 1
    real = np.array([[0.0], [1.0], [2.0], [3.0]])
    synth = np.array([[-1.0], [10.0], [11.0], [12.0]])
    assert prdc(real, synth, k=1, ball="closed").precision == 0.25
    assert prdc(real, synth, k=1, ball="open").precision == 0.0


def test_kid_subset_size_shrinks_with_a_warning():
    rng = np.random.default_rng(5)
    with pytest.warns(MetricsWarning, match="using 30"):
        result = kid(rng.normal(size=(30, 4)), rng.normal(size=(50, 4)), subsets=4, subset_size=1000)
    assert (result.subset_size, result.requested_subset_size, result.subsets) == (30, 1000, 4)


def test_gaussian_stats_use_the_unbiased_covariance():
    x = np.random.default_rng(6).normal(size=(10, 3))
    stats = gaussian_stats(x)
    np.testing.assert_allclose(stats.sigma, np.cov(x, rowvar=False, ddof=1))
    assert stats.n == 10


# ----------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("real", "synth", "message"),
    [
        (np.zeros((10, 4)), np.zeros((10, 5)), "dimensions differ"),
        (np.zeros(10), np.zeros((10, 4)), "2-D"),
        (np.full((10, 4), np.nan), np.zeros((10, 4)), "NaN"),
        (np.zeros((3, 4)), np.ones((10, 4)), "more than 3 samples"),
    ],
)
def test_bad_feature_arrays_raise_input_error(real, synth, message):
    with pytest.raises(InputError, match=message):
        compute_feature_metrics(real, synth)


@pytest.mark.parametrize(("n_real", "n_synth", "dim"), [(90, 80, 128), (30, 200, 64), (60, 70, 64)])
def test_low_rank_and_eigvals_fd_methods_agree(n_real, n_synth, dim):
    rng = np.random.default_rng(n_real)
    real = rng.normal(size=(n_real, dim)) * rng.uniform(0.2, 2.0, dim)
    synth = rng.normal(0.2, 1.0, size=(n_synth, dim))
    eig = frechet_distance(real, synth, method="eigvals")
    low = frechet_distance(real, synth, method="low-rank")
    assert low == pytest.approx(eig, rel=1e-7)


def test_low_rank_fd_of_identical_small_sets_is_zero_to_round_off():
    x = np.random.default_rng(8).normal(size=(8, 300))
    assert abs(frechet_distance(x, x.copy())) < 1e-12 * np.trace(np.cov(x, rowvar=False))


def test_report_keys_say_fid_only_for_the_fid_network():
    from napari_pathup.metrics import MetricsReport, SetSummary
    from napari_pathup.metrics.distances import KIDResult, PRDCResult

    kid_result = KIDResult(0.01, 0.001, 100, 1000, 1000, 3, 1 / 2048, 1.0, 2020)
    prdc_result = PRDCResult(0.7, 0.6, 0.9, 0.8, 3, "closed")
    common = {
        "frechet_distance": 12.0,
        "kid": kid_result,
        "prdc": prdc_result,
        "real": SetSummary("real", 10, 10),
        "synth": SetSummary("synth", 10, 10),
        "crops": None,
        "device": "cpu",
    }
    ext = {"label": "EfficientNet-Lite0", "name": "effnet-lite0", "input_size": [224, 224], "resize": "x"}
    fd = MetricsReport(extractor=ext, is_fid=False, **common).to_dict()
    fid = MetricsReport(extractor=ext | {"label": "Inception-v3 pool3"}, is_fid=True, **common).to_dict()
    assert set(fd["metrics"]) == {"fd", "kd_mean", "kd_std", "precision", "recall", "density", "coverage"}
    assert fd["labels"]["fd"] == "FD (EfficientNet-Lite0)"
    assert {"fid", "kid_mean", "kid_std"} <= set(fid["metrics"])
    assert fid["labels"]["fid"] == "FID"
