"""Confidence kernels: GMM clean probability against scikit-learn, and the
entropy / margin / confidence / agreement scores on hand-checked rows.

Tolerance against scikit-learn: 1e-10 absolute on every posterior. Both sides
run the same EM in float64; measured differences stay below 1e-12.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

from mer_plugin.kernels.confidence import (
    DEGENERATE_CLEAN_PROBABILITY,
    GMM_MAX_ITER,
    GMM_REG_COVAR,
    GMM_TOL,
    _two_means_init,
    agreement,
    confidence,
    entropy,
    gmm_clean_probability,
    margin,
)

ATOL_SKLEARN = 1e-10
SEEDS = [0, 1, 2, 3, 4]


def bimodal_losses(
    seed: int, n: int = 2000, noisy_share: float = 0.3, spread: float = 1.0
) -> tuple[np.ndarray, int]:
    """Clean segments with small losses, then noisy ones with large losses.

    At spread 1 the two modes overlap a little (a clean tail near 1.0 meets
    the noisy mode at 2.5 +- 0.5); at spread 0.5 there is a clear gap.
    """
    rng = np.random.default_rng(seed)
    n_noisy = int(n * noisy_share)
    clean = rng.gamma(2.0, 0.1 * spread, size=n - n_noisy)
    noisy = np.abs(rng.normal(2.5, 0.5 * spread, size=n_noisy))
    return np.concatenate([clean, noisy]), n - n_noisy


def normalised(losses: np.ndarray) -> np.ndarray:
    return (losses - losses.min()) / (losses.max() - losses.min())


def sklearn_low_posterior(gm: GaussianMixture, x: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm.fit(x[:, None])
    return gm.predict_proba(x[:, None])[:, int(np.argmin(gm.means_[:, 0]))]


# --------------------------------------------------------------------------- GMM vs sklearn


@pytest.mark.parametrize("seed", SEEDS)
def test_gmm_matches_sklearn_converged(seed: int) -> None:
    """Each side from its own start (ours 2-means, sklearn k-means), tol 1e-12."""
    losses, _ = bimodal_losses(seed)
    ours = gmm_clean_probability(losses, max_iter=5000, tol=1e-12)
    gm = GaussianMixture(2, max_iter=5000, tol=1e-12, reg_covar=GMM_REG_COVAR, random_state=seed)
    ref = sklearn_low_posterior(gm, normalised(losses))
    np.testing.assert_allclose(ours, ref, rtol=0, atol=ATOL_SKLEARN)


@pytest.mark.parametrize("seed", SEEDS)
def test_gmm_matches_sklearn_dividemix_settings_same_start(seed: int) -> None:
    """With our start handed to sklearn, the default (early-stopped) run matches too."""
    losses, _ = bimodal_losses(seed, noisy_share=0.1 + 0.1 * seed)
    x = normalised(losses)
    w, m, v = _two_means_init(x, GMM_REG_COVAR)
    gm = GaussianMixture(
        2,
        max_iter=GMM_MAX_ITER,
        tol=GMM_TOL,
        reg_covar=GMM_REG_COVAR,
        weights_init=w,
        means_init=m[:, None],
        precisions_init=(1.0 / v)[:, None, None],
    )
    ref = sklearn_low_posterior(gm, x)
    np.testing.assert_allclose(gmm_clean_probability(losses), ref, rtol=0, atol=ATOL_SKLEARN)


# --------------------------------------------------------------------------- GMM behaviour


@pytest.mark.parametrize("seed", SEEDS)
def test_gmm_separates_noisy_from_clean(seed: int) -> None:
    losses, n_clean = bimodal_losses(seed, spread=0.5)
    w = gmm_clean_probability(losses)
    assert (w[:n_clean] > 0.5).all()
    assert (w[n_clean:] < 0.5).all()


def test_gmm_planted_outliers_below_half() -> None:
    rng = np.random.default_rng(7)
    losses = rng.uniform(0.0, 0.2, size=500)
    noisy = rng.choice(500, size=50, replace=False)
    losses[noisy] = rng.uniform(3.0, 4.0, size=50)
    w = gmm_clean_probability(losses)
    assert (w[noisy] < 0.5).all()
    assert (np.delete(w, noisy) > 0.5).all()


def test_gmm_invariant_to_scale_shift_and_order() -> None:
    losses, _ = bimodal_losses(11, n=300)
    w = gmm_clean_probability(losses)
    np.testing.assert_allclose(gmm_clean_probability(3.0 * losses + 5.0), w, atol=1e-9)
    perm = np.random.default_rng(0).permutation(losses.size)
    np.testing.assert_allclose(gmm_clean_probability(losses[perm]), w[perm], atol=1e-12)


def test_gmm_accepts_float32_and_lists() -> None:
    losses, _ = bimodal_losses(3, n=200)
    w = gmm_clean_probability(losses.astype(np.float32))
    assert w.dtype == np.float64 and w.shape == losses.shape
    assert gmm_clean_probability([0.1, 0.1, 0.2, 5.0]).shape == (4,)


def test_gmm_output_in_unit_interval() -> None:
    losses, _ = bimodal_losses(5, n=1000)
    w = gmm_clean_probability(losses)
    assert ((w >= 0.0) & (w <= 1.0)).all()


# --------------------------------------------------------------------------- GMM degenerate input


def test_gmm_empty() -> None:
    w = gmm_clean_probability(np.array([]))
    assert w.shape == (0,) and w.dtype == np.float64


@pytest.mark.parametrize("losses", [[0.7], [2.0, 2.0, 2.0], [0.0] * 100])
def test_gmm_no_separation_is_all_clean(losses: list[float]) -> None:
    assert DEGENERATE_CLEAN_PROBABILITY == 1.0
    np.testing.assert_array_equal(gmm_clean_probability(losses), 1.0)


def test_gmm_two_distinct_values() -> None:
    w = gmm_clean_probability([0.1, 0.1, 0.1, 0.1, 2.0])
    assert (w[:4] > 0.99).all() and w[4] < 0.01


def test_gmm_extreme_range() -> None:
    w = gmm_clean_probability([-1e308, -1e308, 1e308])
    assert np.isfinite(w).all() and w[0] > 0.5 > w[2]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_gmm_rejects_non_finite(bad: float) -> None:
    with pytest.raises(ValueError, match="finite: 1 of 3"):
        gmm_clean_probability([0.1, bad, 0.3])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"losses": np.zeros((2, 2))}, "1-D"),
        ({"losses": [0.0, 1.0], "max_iter": 0}, "max_iter"),
        ({"losses": [0.0, 1.0], "tol": -1.0}, "tol"),
        ({"losses": [0.0, 1.0], "reg_covar": 0.0}, "reg_covar"),
    ],
)
def test_gmm_rejects_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        gmm_clean_probability(**kwargs)


# --------------------------------------------------------------------------- scores

UNIFORM4 = [0.25, 0.25, 0.25, 0.25]
ONEHOT4 = [0.0, 1.0, 0.0, 0.0]
HALF_HALF4 = [0.5, 0.5, 0.0, 0.0]
PEAKED4 = [0.7, 0.2, 0.1, 0.0]


def test_entropy_hand_checked() -> None:
    h = entropy(np.array([UNIFORM4, ONEHOT4, HALF_HALF4, PEAKED4]))
    peaked = -(0.7 * np.log(0.7) + 0.2 * np.log(0.2) + 0.1 * np.log(0.1)) / np.log(4)
    np.testing.assert_allclose(h, [1.0, 0.0, 0.5, peaked], atol=1e-12)


def test_entropy_float32_single_class_and_empty() -> None:
    h = entropy(np.array([UNIFORM4], dtype=np.float32))
    assert h.dtype == np.float64 and abs(h[0] - 1.0) < 1e-6
    np.testing.assert_array_equal(entropy(np.ones((3, 1))), 0.0)
    assert entropy(np.empty((0, 4))).shape == (0,)


def test_margin_hand_checked() -> None:
    rows = np.array([UNIFORM4, ONEHOT4, HALF_HALF4, PEAKED4, [0.4, 0.2, 0.4, 0.0]])
    np.testing.assert_allclose(margin(rows), [0.0, 1.0, 0.0, 0.5, 0.0], atol=1e-12)
    np.testing.assert_array_equal(margin(np.ones((2, 1))), 1.0)


def test_confidence_is_one_minus_entropy() -> None:
    rows = np.array([UNIFORM4, ONEHOT4, HALF_HALF4])
    np.testing.assert_allclose(confidence(rows), [0.0, 1.0, 0.5], atol=1e-12)
    rng = np.random.default_rng(0)
    c = confidence(rng.dirichlet(np.ones(4), size=100))
    assert ((c >= 0.0) & (c <= 1.0)).all()


def test_agreement_soft_hand_checked() -> None:
    a = np.array([ONEHOT4, ONEHOT4, UNIFORM4, [0.5, 0.5, 0.0, 0.0]])
    b = np.array([ONEHOT4, [1.0, 0.0, 0.0, 0.0], UNIFORM4, [1.0, 0.0, 0.0, 0.0]])
    np.testing.assert_allclose(agreement(a, b), [1.0, 0.0, 1.0, 0.5], atol=1e-12)


def test_agreement_hard_ties_go_to_first_class() -> None:
    a = np.array([HALF_HALF4, HALF_HALF4, PEAKED4])
    b = np.array([[0.6, 0.4, 0.0, 0.0], [0.4, 0.6, 0.0, 0.0], [0.1, 0.8, 0.1, 0.0]])
    np.testing.assert_array_equal(agreement(a, b, soft=False), [1.0, 0.0, 0.0])


@pytest.mark.parametrize(
    ("a", "b", "match"),
    [
        (np.ones((2, 3)), np.ones((2, 4)), "differ in shape"),
        (np.ones(3), np.ones(3), r"\(n_segments, n_classes\)"),
        (np.full((1, 2), np.nan), np.ones((1, 2)), "finite"),
        (np.array([[-0.1, 1.1]]), np.ones((1, 2)), "non-negative"),
    ],
)
def test_scores_reject_bad_input(a: np.ndarray, b: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        agreement(a, b)
