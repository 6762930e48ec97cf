"""Per-segment confidence scores: the GMM clean probability (training) and
entropy / margin / agreement scores (inference).

Public functions are thin Python wrappers that validate their input and call
``@njit(cache=True)`` kernels (the ``_``-prefixed functions). The vectors are small
(one value per segment), so nothing runs in parallel. Every result is float64.

Clean probability (SSSL step 2, as in DivideMix): the per-segment losses are
min-max normalised to [0, 1], a two-component 1-D Gaussian mixture is fitted by
EM, and each segment gets the posterior of the low-mean component. The EM
mirrors scikit-learn's ``GaussianMixture`` step for step (same M-step, same
``10 * eps`` guard on component mass, same stopping rule on the change of the
mean log-likelihood), so with the same start both give the same posteriors.
The start is deterministic where scikit-learn's k-means start is random: a 1-D
2-means (Lloyd) seeded at the minimum and maximum loss.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# DivideMix's published setting, GaussianMixture(n_components=2, max_iter=10,
# tol=1e-2, reg_covar=5e-4), kept exactly so that the method is reproduced; on
# bimodal losses it reaches tol in a few steps. Tighter settings cost little
# (one EM step over 100k losses is under a millisecond).
GMM_MAX_ITER = 10
GMM_TOL = 1e-2
GMM_REG_COVAR = 5e-4
# Posterior given when the losses do not separate (fewer than two distinct
# values): every segment counts as clean, so SSSL keeps every label unchanged
# (y' = w*y + (1-w)*p = y) rather than throwing them all to the unlabelled set.
DEGENERATE_CLEAN_PROBABILITY = 1.0

_LLOYD_MAX_ITER = 100
_EPS10 = 10.0 * np.finfo(np.float64).eps  # scikit-learn's guard on component mass
_LOG_2PI = math.log(2.0 * math.pi)


# --------------------------------------------------------------------------- GMM kernels


@njit(cache=True)
def _normalise(x: np.ndarray) -> np.ndarray:
    """Min-max normalise to [0, 1]; the caller guarantees max > min."""
    lo = x.min()
    span = x.max() - lo
    if not math.isfinite(span):  # finite extremes too far apart: halve first
        return (0.5 * x - 0.5 * lo) / (0.5 * x.max() - 0.5 * lo)
    return (x - lo) / span


@njit(cache=True)
def _upper_sum(x: np.ndarray, cut: float) -> tuple[float, int]:
    """Sum and count of the values above cut, branch-free (the split is
    unpredictable on shuffled losses)."""
    s = 0.0
    n = 0
    for v in x:
        above = v > cut
        s += v * above
        n += above
    return s, n


@njit(cache=True)
def _two_means_init(x: np.ndarray, reg_covar: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """1-D 2-means (Lloyd) from the extremes, then Gaussian parameters of the split.

    Returns (weights, means, variances), component 0 the low one, derived from
    the hard split as scikit-learn derives them from k-means labels (sums over
    the mass + 10 eps, variance + reg_covar). Both clusters stay non-empty: the
    minimum always sits below the midpoint of the two centres and the maximum
    above it.
    """
    total = x.sum()
    c0 = x.min()
    c1 = x.max()
    for _ in range(_LLOYD_MAX_ITER):
        s1, n1 = _upper_sum(x, 0.5 * (c0 + c1))
        n0 = x.size - n1
        if n0 == 0 or n1 == 0:  # unreachable barring rounding; keep the last centres
            break
        new0 = (total - s1) / n0
        new1 = s1 / n1
        if new0 == c0 and new1 == c1:
            break
        c0 = new0
        c1 = new1

    cut = 0.5 * (c0 + c1)
    s1, n1 = _upper_sum(x, cut)
    nk = np.array([x.size - n1 + _EPS10, n1 + _EPS10])
    means = np.array([total - s1, s1]) / nk
    sq0 = 0.0
    sq1 = 0.0
    for v in x:
        above = v > cut
        d = v - (means[1] if above else means[0])
        sq0 += d * d * (not above)
        sq1 += d * d * above
    variances = np.array([sq0, sq1]) / nk + reg_covar
    weights = nk / x.size
    return weights, means, variances


@njit(cache=True)
def _log_pdf_terms(weights: np.ndarray, variances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per component: log(w) - 0.5 log(2 pi var), and -0.5 / var."""
    const = np.log(weights) - 0.5 * (_LOG_2PI + np.log(variances))
    quad = -0.5 / variances
    return const, quad


@njit(cache=True)
def _em_step(
    x: np.ndarray, weights: np.ndarray, means: np.ndarray, variances: np.ndarray, reg_covar: float
) -> float:
    """One fused E+M step, updating the parameters in place.

    Returns the mean log-likelihood under the parameters it started from
    (scikit-learn's lower bound). Sums are taken about the old means, so the
    variance update does not cancel catastrophically.
    """
    const, quad = _log_pdf_terms(weights, variances)
    m0 = means[0]
    m1 = means[1]
    loglik = 0.0
    r_sum0 = 0.0
    r_sum1 = 0.0
    d_sum0 = 0.0
    d_sum1 = 0.0
    dd_sum0 = 0.0
    dd_sum1 = 0.0
    prod = 1.0
    for i in range(x.size):
        v = x[i]
        d0 = v - m0
        d1 = v - m1
        l0 = const[0] + quad[0] * d0 * d0
        l1 = const[1] + quad[1] * d1 * d1
        gap = l0 - l1
        e = math.exp(-abs(gap))
        # two-term log-sum-exp, log(exp(l0) + exp(l1)) = max + log(1 + e), and its
        # softmax (a logistic), without branches. The log(1 + e) terms are summed
        # as one log per 512 products (each factor is in [1, 2]: no overflow).
        loglik += max(l0, l1)
        prod *= 1.0 + e
        if (i & 511) == 511:
            loglik += math.log(prod)
            prod = 1.0
        r0 = (1.0 if gap >= 0.0 else e) / (1.0 + e)
        r1 = 1.0 - r0
        r_sum0 += r0
        r_sum1 += r1
        d_sum0 += r0 * d0
        d_sum1 += r1 * d1
        dd_sum0 += r0 * d0 * d0
        dd_sum1 += r1 * d1 * d1

    nk0 = r_sum0 + _EPS10
    nk1 = r_sum1 + _EPS10
    shift0 = d_sum0 / nk0
    shift1 = d_sum1 / nk1
    means[0] = m0 + shift0
    means[1] = m1 + shift1
    # sum r (x - new_mean)^2, expanded about the old mean
    variances[0] = (dd_sum0 - 2.0 * shift0 * d_sum0 + shift0 * shift0 * r_sum0) / nk0 + reg_covar
    variances[1] = (dd_sum1 - 2.0 * shift1 * d_sum1 + shift1 * shift1 * r_sum1) / nk1 + reg_covar
    loglik += math.log(prod)
    total = nk0 + nk1
    weights[0] = nk0 / total
    weights[1] = nk1 / total
    return loglik / x.size


@njit(cache=True)
def _low_mean_posterior(
    x: np.ndarray, weights: np.ndarray, means: np.ndarray, variances: np.ndarray
) -> np.ndarray:
    """Posterior of the component with the lower mean, per sample."""
    const, quad = _log_pdf_terms(weights, variances)
    lo = 0 if means[0] <= means[1] else 1
    hi = 1 - lo
    out = np.empty(x.size)
    for i in range(x.size):
        dl = x[i] - means[lo]
        dh = x[i] - means[hi]
        gap = (const[lo] + quad[lo] * dl * dl) - (const[hi] + quad[hi] * dh * dh)
        e = math.exp(-abs(gap))
        out[i] = (1.0 if gap >= 0.0 else e) / (1.0 + e)
    return out


@njit(cache=True)
def _gmm_em(
    x: np.ndarray,
    weights: np.ndarray,
    means: np.ndarray,
    variances: np.ndarray,
    max_iter: int,
    tol: float,
    reg_covar: float,
) -> int:
    """Run EM in place until |change of mean log-likelihood| < tol; return the
    number of iterations, negated when max_iter ran out first."""
    lower = -np.inf
    for it in range(1, max_iter + 1):
        prev = lower
        lower = _em_step(x, weights, means, variances, reg_covar)
        if abs(lower - prev) < tol:
            return it
    return -max_iter


@njit(cache=True)
def _gmm_clean_probability(
    losses: np.ndarray, max_iter: int, tol: float, reg_covar: float
) -> np.ndarray:
    """Kernel behind gmm_clean_probability; input already checked finite."""
    if losses.size == 0:
        return np.empty(0)
    if losses.max() == losses.min():
        return np.full(losses.size, DEGENERATE_CLEAN_PROBABILITY)
    x = _normalise(losses)
    weights, means, variances = _two_means_init(x, reg_covar)
    _gmm_em(x, weights, means, variances, max_iter, tol, reg_covar)
    return _low_mean_posterior(x, weights, means, variances)


# --------------------------------------------------------------------------- GMM wrapper


def _as_losses(losses: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(losses, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"losses must be a 1-D vector, got shape {x.shape}")
    if not np.isfinite(x).all():
        bad = int(np.count_nonzero(~np.isfinite(x)))
        raise ValueError(f"losses must be finite: {bad} of {x.size} values are NaN or inf")
    return x


def gmm_clean_probability(
    losses: np.ndarray,
    max_iter: int = GMM_MAX_ITER,
    tol: float = GMM_TOL,
    reg_covar: float = GMM_REG_COVAR,
) -> np.ndarray:
    """Clean probability of each segment from its training loss (SSSL/DivideMix).

    Min-max normalises ``losses``, fits a 2-component 1-D Gaussian mixture by EM
    (deterministic 2-means start; stops once the mean log-likelihood changes by
    less than ``tol`` or after ``max_iter`` steps) and returns each segment's
    posterior of the low-mean component, float64, same length as ``losses``.

    Defaults are DivideMix's (max_iter 10, tol 1e-2, reg_covar 5e-4).
    Degenerate input: an empty vector gives an empty result; one element, or
    losses all equal, give ``DEGENERATE_CLEAN_PROBABILITY`` (1.0, all clean).
    Raises ValueError for NaN/inf, a non-1-D input, max_iter < 1, tol < 0 or
    reg_covar <= 0 (a zero floor lets a cluster of equal losses collapse).
    """
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    if not tol >= 0.0:
        raise ValueError(f"tol must be >= 0, got {tol}")
    if not reg_covar > 0.0:
        raise ValueError(f"reg_covar must be > 0, got {reg_covar}")
    x = _as_losses(losses)
    return _gmm_clean_probability(x, int(max_iter), float(tol), float(reg_covar))


# --------------------------------------------------------------------------- score kernels


@njit(cache=True)
def _entropy(p: np.ndarray) -> np.ndarray:
    """Shannon entropy per row over log(n_classes), 0 log 0 = 0, clipped to [0, 1]."""
    n, k = p.shape
    out = np.zeros(n)
    if k < 2:
        return out
    scale = 1.0 / math.log(k)
    for i in range(n):
        h = 0.0
        for j in range(k):
            v = p[i, j]
            if v > 0.0:
                h -= v * math.log(v)
        out[i] = min(max(h * scale, 0.0), 1.0)
    return out


@njit(cache=True)
def _margin(p: np.ndarray) -> np.ndarray:
    """Top-1 minus top-2 probability per row; 1.0 for a single class."""
    n, k = p.shape
    out = np.ones(n)
    if k < 2:
        return out
    for i in range(n):
        first = -np.inf
        second = -np.inf
        for j in range(k):
            v = p[i, j]
            if v > first:
                second = first
                first = v
            elif v > second:
                second = v
        out[i] = first - second
    return out


@njit(cache=True)
def _soft_agreement(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """1 - total variation distance per row, clipped to [0, 1]."""
    n, k = a.shape
    out = np.empty(n)
    for i in range(n):
        tv = 0.0
        for j in range(k):
            tv += abs(a[i, j] - b[i, j])
        out[i] = min(max(1.0 - 0.5 * tv, 0.0), 1.0)
    return out


@njit(cache=True)
def _hard_agreement(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """1.0 where the two rows share their argmax (first index on ties), else 0.0."""
    n = a.shape[0]
    out = np.empty(n)
    for i in range(n):
        out[i] = 1.0 if np.argmax(a[i]) == np.argmax(b[i]) else 0.0
    return out


# --------------------------------------------------------------------------- score wrappers


def _as_probs(probs: np.ndarray, name: str = "probs") -> np.ndarray:
    p = np.ascontiguousarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 1:
        raise ValueError(f"{name} must be (n_segments, n_classes), got shape {p.shape}")
    if not np.isfinite(p).all():
        raise ValueError(f"{name} must be finite")
    if (p < 0.0).any():
        raise ValueError(f"{name} must be non-negative")
    return p


def entropy(probs: np.ndarray) -> np.ndarray:
    """Normalised entropy per row, in [0, 1]: 0 for one-hot, 1 for uniform.

    Divided by log(n_classes) so that scores compare across models with
    different class counts; a single class gives 0. Rows are expected to be
    probability distributions (softmax outputs); rounding is clipped away.
    """
    return _entropy(_as_probs(probs))


def margin(probs: np.ndarray) -> np.ndarray:
    """Top-1 minus top-2 probability per row, in [0, 1]; 0 on a tie for first."""
    return _margin(_as_probs(probs))


def confidence(probs: np.ndarray) -> np.ndarray:
    """Inference confidence per row: 1 - normalised entropy, in [0, 1]."""
    return 1.0 - entropy(probs)


def agreement(probs_a: np.ndarray, probs_b: np.ndarray, soft: bool = True) -> np.ndarray:
    """Agreement per row between two augmented views of the same segments.

    ``soft`` (default): 1 - total variation distance, i.e. the overlap
    sum_j min(a_j, b_j) for distributions, in [0, 1]. Otherwise 1.0 where the
    argmax agrees and 0.0 where it does not (ties go to the first class).
    """
    a = _as_probs(probs_a, "probs_a")
    b = _as_probs(probs_b, "probs_b")
    if a.shape != b.shape:
        raise ValueError(f"probs_a and probs_b differ in shape: {a.shape} vs {b.shape}")
    return _soft_agreement(a, b) if soft else _hard_agreement(a, b)
