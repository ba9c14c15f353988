"""Distribution metrics from feature arrays: Fréchet distance, kernel distance (KID), PRDC.

Everything is computed in float64. Conventions follow the reference code so that numbers can be
compared with theirs (the tests check agreement on the same arrays):

- Fréchet distance: |μg − μr|² + Tr(Σg + Σr − 2(Σg Σr)^½), with Tr (Σg Σr)^½ taken as the sum of the
  square roots of the eigenvalues of Σg Σr cast to complex (torch-fidelity's method; no ``sqrtm``).
  When a set has fewer samples than dimensions that method sums square roots of round-off noise, so
  the same trace is then taken from a small symmetric eigenproblem (exact, and much faster).
- KID: unbiased MMD² with the kernel (γ x·y + c)^p, γ = 1/d, c = 1, p = 3, averaged over random
  subsets drawn without replacement; subsets are drawn from ``np.random.RandomState(seed)``,
  synthetic then real for each subset, which is torch-fidelity's order (its input 1 is generated).
- Improved precision/recall (Kynkäänniemi et al. 2019) and density/coverage (Naeem et al. 2020)
  with k-th nearest-neighbour radii (self excluded). ``ball="closed"`` counts a point at exactly the
  radius as inside (torch-fidelity, the original IP/IR code); ``ball="open"`` does not (``prdc``).

Pairwise distances are computed block by block (memory grows with N, not N²); one pass over the
three Gram matrices serves precision, recall, density, coverage and KID together.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import torch

from napari_pathup.errors import InputError

Ball = Literal["closed", "open"]

#: torch-fidelity's defaults, used by the paper-style evaluation
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
KID_DEGREE = 3
KID_COEF0 = 1.0
SEED = 2020
NEAREST_K = 3
#: entries of one (rows x columns) float64 block of the pairwise pass; 2**23 entries = 64 MiB
BLOCK_ENTRIES = 1 << 23


class MetricsWarning(UserWarning):
    """A metric setting was adjusted to the data (for example a KID subset larger than a feature set)."""


@dataclass(frozen=True)
class GaussianStats:
    """Mean and (unbiased, ddof=1) covariance of a feature set."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int


@dataclass(frozen=True)
class KIDResult:
    """Mean and standard deviation (ddof=0) of the unbiased MMD² over subsets, with the settings used."""

    mean: float
    std: float
    subsets: int
    subset_size: int
    requested_subset_size: int
    degree: int
    gamma: float
    coef0: float
    seed: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PRDCResult:
    """Improved precision/recall, density and coverage with the settings used."""

    precision: float
    recall: float
    density: float
    coverage: float
    k: int
    ball: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class FeatureMetrics:
    """All metrics of one real/synthetic comparison in a given feature space."""

    frechet_distance: float
    kid: KIDResult
    prdc: PRDCResult
    n_real: int
    n_synth: int
    feature_dim: int
    fd_method: str


def as_features(x: np.ndarray | torch.Tensor, what: str = "features") -> np.ndarray:
    """Validate a (N, D) feature array and return it as C-contiguous float64."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise InputError(f"{what}: expected a 2-D (samples, features) array, got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError(f"{what}: empty feature array of shape {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise InputError(f"{what}: features contain NaN or infinity")
    return arr


def _pair(real, synth) -> tuple[np.ndarray, np.ndarray]:
    real = as_features(real, "real features")
    synth = as_features(synth, "synthetic features")
    if real.shape[1] != synth.shape[1]:
        raise InputError(f"feature dimensions differ: real {real.shape[1]}, synthetic {synth.shape[1]}")
    return real, synth


def gaussian_stats(features: np.ndarray | torch.Tensor) -> GaussianStats:
    """Mean and covariance (float64, ddof=1, as ``np.cov``) of a feature set with at least two samples."""
    x = as_features(features)
    if x.shape[0] < 2:
        raise InputError(f"a covariance needs at least 2 samples, got {x.shape[0]}")
    return GaussianStats(mu=x.mean(axis=0), sigma=np.cov(x, rowvar=False), n=x.shape[0])


def trace_sqrt_product(sigma_g: np.ndarray, sigma_r: np.ndarray) -> float:
    """Tr((Σg Σr)^½) as the real part of the sum of complex square roots of the eigenvalues of Σg Σr.

    Σg Σr is similar to a symmetric positive semi-definite matrix, so its eigenvalues are real and
    non-negative in exact arithmetic; rounding can make tiny ones negative or complex, which the
    complex square root absorbs (torch-fidelity's method). No matrix square root is formed.
    """
    eig = np.linalg.eigvals(sigma_g @ sigma_r).astype(np.complex128)
    return float(np.sqrt(eig).real.sum())


def _drop_mean(x: np.ndarray) -> np.ndarray:
    """Qᵀ x, Q an orthonormal basis of the vectors orthogonal to (1, ..., 1): n-1 rows, mean removed exactly.

    Qᵀ is the Householder reflection that maps (1, ..., 1) to √n e1, less its first row; unlike
    subtracting the mean it leaves no (numerically) zero direction behind.
    """
    n = len(x)
    v = np.ones(n)
    v[0] -= np.sqrt(n)
    return (x - np.outer(v, (v @ x) * (2.0 / (v @ v))))[1:]


def trace_sqrt_product_low_rank(small: np.ndarray, sigma_other: np.ndarray) -> float:
    """Tr((Σs Σo)^½) from the n samples of the smaller set; exact and stable when n <= d.

    With Y the n-1 mean-free rows of :func:`_drop_mean`, Σs = Yᵀ Y / (n - 1), and the non-zero
    eigenvalues of Σs Σo are those of the symmetric positive semi-definite (n-1) x (n-1) matrix
    Y Σo Yᵀ / (n - 1). A symmetric eigen-solver on that small matrix replaces the d x d
    non-symmetric one, whose d - n + 1 zero eigenvalues come out as round-off noise whose square
    roots bias the trace.
    """
    rows = _drop_mean(small)
    inner = rows @ sigma_other @ rows.T / (len(small) - 1)
    eig = np.linalg.eigvalsh((inner + inner.T) / 2.0)
    return float(np.sqrt(np.clip(eig, 0.0, None)).sum())


FDMethod = Literal["auto", "eigvals", "low-rank"]
FD_METHODS = {
    "eigvals": "sum of complex square roots of the eigenvalues of Sigma_synth @ Sigma_real (torch-fidelity)",
    "low-rank": "symmetric eigenvalues of Y Sigma_other Y^T / (n - 1), Y = mean-free rows of the smaller set",
}


def frechet_distance_from_stats(
    real: GaussianStats, synth: GaussianStats, tr_covmean: float | None = None
) -> float:
    """Fréchet distance between two Gaussians; ``synth`` plays Σg and ``real`` Σr."""
    if real.mu.shape != synth.mu.shape:
        raise InputError(f"feature dimensions differ: real {real.mu.shape}, synthetic {synth.mu.shape}")
    diff = synth.mu - real.mu
    if tr_covmean is None:
        tr_covmean = trace_sqrt_product(synth.sigma, real.sigma)
    return float(diff @ diff + np.trace(synth.sigma) + np.trace(real.sigma) - 2.0 * tr_covmean)


def fd_method_for(n_real: int, n_synth: int, dim: int, method: FDMethod = "auto") -> FDMethod:
    """``eigvals`` (torch-fidelity's method) unless the smaller set has fewer samples than dimensions."""
    if method not in ("auto", *FD_METHODS):
        raise InputError(f"unknown Fréchet distance method {method!r}; choose auto, {', '.join(FD_METHODS)}")
    if method != "auto":
        return method
    return "low-rank" if min(n_real, n_synth) < dim else "eigvals"


def frechet_distance(real, synth, *, method: FDMethod = "auto") -> float:
    """Fréchet distance between the Gaussian fits of two feature sets (arrays or ``GaussianStats``).

    ``method="auto"`` uses torch-fidelity's eigenvalue method, except when a set has fewer samples
    than feature dimensions (singular covariance), where the exact low-rank form is used; both give
    the same value up to round-off (the tests check it). ``GaussianStats`` inputs always use
    ``eigvals``; forcing ``low-rank`` when both sets have more samples than dimensions brings the
    round-off problem back (the small matrix is then the singular one). The value is called FID only
    for the FID Inception-v3 pool features.
    """
    if isinstance(real, GaussianStats) or isinstance(synth, GaussianStats):
        real_stats = real if isinstance(real, GaussianStats) else gaussian_stats(real)
        synth_stats = synth if isinstance(synth, GaussianStats) else gaussian_stats(synth)
        return frechet_distance_from_stats(real_stats, synth_stats)
    real, synth = _pair(real, synth)
    real_stats, synth_stats = gaussian_stats(real), gaussian_stats(synth)
    if fd_method_for(len(real), len(synth), real.shape[1], method) == "eigvals":
        return frechet_distance_from_stats(real_stats, synth_stats)
    small, other = (synth, real_stats) if len(synth) <= len(real) else (real, synth_stats)
    tr_covmean = trace_sqrt_product_low_rank(small, other.sigma)
    return frechet_distance_from_stats(real_stats, synth_stats, tr_covmean)


def kid_subset_size(n_real: int, n_synth: int, subset_size: int) -> int:
    """The subset size actually used: ``subset_size`` shrunk (with a warning) to the smaller set."""
    if subset_size < 2:
        raise InputError(f"KID subset size must be at least 2, got {subset_size}")
    size = min(subset_size, n_real, n_synth)
    if size < 2:
        raise InputError(f"KID needs at least 2 samples per set, got {n_real} real and {n_synth} synthetic")
    if size < subset_size:
        warnings.warn(
            f"KID subset size {subset_size} is larger than the feature sets ({n_real} real, {n_synth} "
            f"synthetic); using {size}. KID from small subsets is noisier and not comparable with "
            f"values computed at {subset_size}.",
            MetricsWarning,
            stacklevel=3,
        )
    return size


def kid_subsets(
    n_real: int, n_synth: int, subsets: int, size: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(synthetic indices, real indices) of each subset, drawn as torch-fidelity draws them."""
    if subsets < 1:
        raise InputError(f"KID needs at least one subset, got {subsets}")
    rng = np.random.RandomState(seed)
    out: list[tuple[np.ndarray, np.ndarray]] = []
    for _ in range(subsets):
        idx_synth = rng.choice(n_synth, size, replace=False)
        idx_real = rng.choice(n_real, size, replace=False)
        out.append((idx_synth, idx_real))
    return out


def _mmd2_unbiased(
    sum_xx_off: np.ndarray | np.float64,
    sum_yy_off: np.ndarray | np.float64,
    sum_xy: np.ndarray | np.float64,
    m: int,
) -> np.ndarray | np.floating:
    """The unbiased MMD² of subsets of size ``m`` from their kernel sums (one subset, or an array of them)."""
    return (sum_xx_off + sum_yy_off) / (m * (m - 1)) - 2.0 * sum_xy / (m * m)


def _kid_result(
    mmds: np.ndarray, size: int, requested: int, gamma: float, coef0: float, degree: int, seed: int
) -> KIDResult:
    return KIDResult(
        mean=float(np.mean(mmds)),
        std=float(np.std(mmds)),
        subsets=len(mmds),
        subset_size=size,
        requested_subset_size=requested,
        degree=degree,
        gamma=gamma,
        coef0=coef0,
        seed=seed,
    )


def kid(
    real,
    synth,
    *,
    subsets: int = KID_SUBSETS,
    subset_size: int = KID_SUBSET_SIZE,
    degree: int = KID_DEGREE,
    gamma: float | None = None,
    coef0: float = KID_COEF0,
    seed: int = SEED,
) -> KIDResult:
    """Kernel (Inception) distance: unbiased MMD² with a polynomial kernel, averaged over subsets.

    ``subset_size`` is shrunk to the smaller set with a ``MetricsWarning``. Computed one subset at a
    time; :func:`compute_feature_metrics` gets the same numbers from its single pairwise pass.
    """
    real, synth = _pair(real, synth)
    d = real.shape[1]
    gamma = 1.0 / d if gamma is None else float(gamma)
    size = kid_subset_size(len(real), len(synth), subset_size)
    mmds = np.empty(subsets)
    for i, (idx_s, idx_r) in enumerate(kid_subsets(len(real), len(synth), subsets, size, seed)):
        x, y = real[idx_r], synth[idx_s]
        k_xx = (x @ x.T * gamma + coef0) ** degree
        k_yy = (y @ y.T * gamma + coef0) ** degree
        k_xy = (x @ y.T * gamma + coef0) ** degree
        off_xx = k_xx.sum() - np.trace(k_xx)
        off_yy = k_yy.sum() - np.trace(k_yy)
        mmds[i] = _mmd2_unbiased(np.float64(off_xx), np.float64(off_yy), np.float64(k_xy.sum()), size)
    return _kid_result(mmds, size, subset_size, gamma, coef0, degree, seed)


def _inside(dist: torch.Tensor, radius: torch.Tensor, ball: Ball) -> torch.Tensor:
    return dist <= radius if ball == "closed" else dist < radius


def _distances(gram: torch.Tensor, sq_rows: torch.Tensor, sq_cols: torch.Tensor) -> torch.Tensor:
    """Euclidean distances from a Gram block and the squared norms (clamped at 0 before the root)."""
    d2 = sq_rows[:, None] + sq_cols[None, :] - 2.0 * gram
    return d2.clamp_(min=0.0).sqrt_()


def _kernel_(gram: torch.Tensor, gamma: float, coef0: float, degree: int) -> torch.Tensor:
    """Polynomial kernel (γ x·y + c)^p computed in place over a Gram block."""
    return gram.mul_(gamma).add_(coef0).pow_(degree)


def _smallest(current: torch.Tensor, candidates: torch.Tensor, count: int) -> torch.Tensor:
    """The ``count`` smallest values per row of ``current`` and ``candidates`` together, ascending."""
    both = torch.cat([current, candidates], dim=1)
    return both.topk(count, dim=1, largest=False).values


def _within_set(
    x: torch.Tensor,
    sq: torch.Tensor,
    k: int,
    indicators: torch.Tensor | None,
    kernel: tuple[float, float, int],
    block_entries: int,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """k-NN radii of one set (self excluded) and, with subset indicators, the KID off-diagonal sums.

    The Gram matrix is symmetric, so only blocks on and above the diagonal are computed; each one
    updates the running k+1 smallest distances of its rows and (transposed) of its columns.
    """
    n, dev = len(x), x.device
    side = max(1, math.isqrt(block_entries))
    best = torch.full((n, k + 1), math.inf, dtype=torch.float64, device=dev)
    sums = None if indicators is None else torch.zeros(indicators.shape[1], dtype=torch.float64, device=dev)
    for i in range(0, n, side):
        rows = slice(i, min(i + side, n))
        for j in range(i, n, side):
            cols = slice(j, min(j + side, n))
            gram = x[rows] @ x[cols].T
            dist = _distances(gram, sq[rows], sq[cols])
            if i == j:
                dist.fill_diagonal_(0.0)  # a point is at distance 0 from itself, whatever the rounding
            take = min(k + 1, dist.shape[1])
            best[rows] = _smallest(best[rows], dist.topk(take, dim=1, largest=False).values, k + 1)
            if i != j:
                take = min(k + 1, dist.shape[0])
                best[cols] = _smallest(best[cols], dist.topk(take, dim=0, largest=False).values.T, k + 1)
            del dist
            if sums is not None and indicators is not None:  # both or neither
                kern = _kernel_(gram, *kernel)
                part = (indicators[rows] * (kern @ indicators[cols])).sum(0)
                if i == j:  # the unbiased estimator leaves out k(x, x)
                    sums += part - (indicators[rows] * kern.diagonal()[:, None]).sum(0)
                else:  # the block below the diagonal is the transpose: same sum
                    sums += 2.0 * part
    return best[:, k], sums


def _check_prdc_settings(n_r: int, n_s: int, k: int, ball: str) -> None:
    if ball not in ("closed", "open"):
        raise InputError(f"ball must be 'closed' or 'open', got {ball!r}")
    if k < 1:
        raise InputError(f"k must be at least 1, got {k}")
    if min(n_r, n_s) <= k:
        raise InputError(
            f"precision/recall with k={k} need more than {k} samples per set, "
            f"got {n_r} real and {n_s} synthetic"
        )


def _pairwise_metrics(
    real: np.ndarray,
    synth: np.ndarray,
    *,
    k: int,
    ball: Ball,
    kid_plan: list[tuple[np.ndarray, np.ndarray]] | None,
    kid_kernel: tuple[float, float, int],
    device: str | torch.device,
    block_entries: int,
) -> tuple[PRDCResult, np.ndarray | None]:
    """PRDC and (when ``kid_plan`` is given) the MMD² of every KID subset, from one block-wise pass."""
    dev = torch.device(device)
    xr, xs = torch.from_numpy(real).to(dev), torch.from_numpy(synth).to(dev)
    sq_r, sq_s = (xr * xr).sum(1), (xs * xs).sum(1)
    n_r, n_s = len(xr), len(xs)
    m_r = m_s = None
    if kid_plan is not None:
        # subset sums as indicator products: the sum of K_ij over i, j in subset s is m_sᵀ K m_s
        m_r = torch.zeros(n_r, len(kid_plan), dtype=torch.float64, device=dev)
        m_s = torch.zeros(n_s, len(kid_plan), dtype=torch.float64, device=dev)
        for j, (idx_s, idx_r) in enumerate(kid_plan):
            m_r[torch.from_numpy(idx_r).to(dev), j] = 1.0
            m_s[torch.from_numpy(idx_s).to(dev), j] = 1.0

    r_real, sum_rr = _within_set(xr, sq_r, k, m_r, kid_kernel, block_entries)
    r_synth, sum_ss = _within_set(xs, sq_s, k, m_s, kid_kernel, block_entries)

    synth_in_real_ball = torch.zeros(n_s, dtype=torch.bool, device=dev)
    synth_ball_count = torch.zeros(n_s, dtype=torch.float64, device=dev)
    real_in_synth_ball = torch.zeros(n_r, dtype=torch.bool, device=dev)
    real_covered = torch.zeros(n_r, dtype=torch.bool, device=dev)
    sum_rs = torch.zeros(0 if m_r is None else m_r.shape[1], dtype=torch.float64, device=dev)
    rows_per_block = max(1, block_entries // n_s)
    for start in range(0, n_r, rows_per_block):
        rows = slice(start, min(start + rows_per_block, n_r))
        gram = xr[rows] @ xs.T
        dist = _distances(gram, sq_r[rows], sq_s)
        in_real = _inside(dist, r_real[rows, None], ball)  # [i, j]: synthetic j inside real i's ball
        synth_in_real_ball |= in_real.any(0)
        synth_ball_count += in_real.sum(0)
        real_covered[rows] = in_real.any(1)
        del in_real
        real_in_synth_ball[rows] = _inside(dist, r_synth[None, :], ball).any(1)
        del dist
        if m_r is not None and m_s is not None:  # both or neither
            sum_rs += (m_r[rows] * (_kernel_(gram, *kid_kernel) @ m_s)).sum(0)

    result = PRDCResult(
        precision=float(synth_in_real_ball.double().mean()),
        recall=float(real_in_synth_ball.double().mean()),
        density=float(synth_ball_count.mean() / k),
        coverage=float(real_covered.double().mean()),
        k=k,
        ball=ball,
    )
    if kid_plan is None:
        return result, None
    assert sum_rr is not None and sum_ss is not None  # computed for the kid_plan
    size = len(kid_plan[0][0])
    mmds = _mmd2_unbiased(sum_rr.cpu().numpy(), sum_ss.cpu().numpy(), sum_rs.cpu().numpy(), size)
    return result, np.asarray(mmds)


def prdc(
    real,
    synth,
    *,
    k: int = NEAREST_K,
    ball: Ball = "closed",
    device: str | torch.device = "cpu",
    block_entries: int = BLOCK_ENTRIES,
) -> PRDCResult:
    """Improved precision and recall (k-NN manifolds) plus density and coverage, block-wise in float64.

    Precision: share of synthetic samples inside the k-NN ball of some real sample; recall: share of
    real samples inside the ball of some synthetic sample; density: mean number of real balls holding
    a synthetic sample, over k; coverage: share of real samples whose ball holds a synthetic sample.
    """
    real, synth = _pair(real, synth)
    _check_prdc_settings(len(real), len(synth), k, ball)
    result, _ = _pairwise_metrics(
        real,
        synth,
        k=k,
        ball=ball,
        kid_plan=None,
        kid_kernel=(0.0, 0.0, 0),
        device=device,
        block_entries=block_entries,
    )
    return result


def compute_feature_metrics(
    real,
    synth,
    *,
    k: int = NEAREST_K,
    ball: Ball = "closed",
    kid_subsets_count: int = KID_SUBSETS,
    kid_subset_size_requested: int = KID_SUBSET_SIZE,
    kid_degree: int = KID_DEGREE,
    kid_gamma: float | None = None,
    kid_coef0: float = KID_COEF0,
    seed: int = SEED,
    fd_method: FDMethod = "auto",
    device: str | torch.device = "cpu",
    block_entries: int = BLOCK_ENTRIES,
) -> FeatureMetrics:
    """Fréchet distance, KID and PRDC of two feature arrays (rows are samples), all in float64.

    One block-wise pass computes each of the three Gram matrices once: k-NN radii come from the
    real-real and synthetic-synthetic blocks, precision/recall/density/coverage from the
    real-synthetic block, and every KID subset sum at the same time. Peak memory is the two feature
    arrays plus a few blocks of ``block_entries`` float64 values; the result equals :func:`kid` and
    :func:`prdc` called separately.
    """
    real, synth = _pair(real, synth)
    n_r, n_s, d = len(real), len(synth), real.shape[1]
    _check_prdc_settings(n_r, n_s, k, ball)
    gamma = 1.0 / d if kid_gamma is None else float(kid_gamma)
    size = kid_subset_size(n_r, n_s, kid_subset_size_requested)
    plan = kid_subsets(n_r, n_s, kid_subsets_count, size, seed)
    method = fd_method_for(n_r, n_s, d, fd_method)
    fd = frechet_distance(real, synth, method=method)
    prdc_result, mmds = _pairwise_metrics(
        real,
        synth,
        k=k,
        ball=ball,
        kid_plan=plan,
        kid_kernel=(gamma, kid_coef0, kid_degree),
        device=device,
        block_entries=block_entries,
    )
    assert mmds is not None  # a kid_plan was given
    kid_result = _kid_result(mmds, size, kid_subset_size_requested, gamma, kid_coef0, kid_degree, seed)
    return FeatureMetrics(
        frechet_distance=fd,
        kid=kid_result,
        prdc=prdc_result,
        n_real=n_r,
        n_synth=n_s,
        feature_dim=d,
        fd_method=method,
    )


__all__ = [
    "FD_METHODS",
    "KID_SUBSETS",
    "KID_SUBSET_SIZE",
    "NEAREST_K",
    "SEED",
    "FeatureMetrics",
    "GaussianStats",
    "KIDResult",
    "MetricsWarning",
    "PRDCResult",
    "compute_feature_metrics",
    "fd_method_for",
    "frechet_distance",
    "gaussian_stats",
    "kid",
    "prdc",
    "trace_sqrt_product",
]
