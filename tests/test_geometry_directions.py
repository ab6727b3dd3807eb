"""Directions: Arditi, PCA (vs scikit-learn), cPCA (vs a dense eigendecomposition), Cohen's d."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition import PCA

from skindeep.geometry import (
    CPCA_ALPHAS,
    abs_cosine,
    arditi_direction,
    cohens_d,
    cpca_subspace,
    pca_direction,
    pca_subspace,
    select_cpca_alpha,
)


def dense_cpca(a: np.ndarray, b: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Reference: eigh of the full d x d contrast matrix, eigenvalues descending."""
    c = np.cov(a, rowvar=False) - alpha * np.cov(b, rowvar=False)
    evals, evecs = np.linalg.eigh(c)
    return evals[::-1], evecs[:, ::-1]


def test_arditi_direction_is_unit_mean_difference_per_layer() -> None:
    rng = np.random.default_rng(0)
    pos, neg = rng.normal(size=(7, 3, 5)), rng.normal(size=(9, 3, 5))
    got = arditi_direction(pos, neg)
    assert got.shape == (3, 5)
    for layer in range(3):
        diff = pos[:, layer].mean(0) - neg[:, layer].mean(0)
        np.testing.assert_allclose(got[layer], diff / np.linalg.norm(diff), rtol=1e-12)
    np.testing.assert_allclose(arditi_direction(pos[:, 1], neg[:, 1]), got[1], rtol=1e-12)


def test_arditi_direction_rejects_bad_input() -> None:
    x = np.ones((4, 5))
    with pytest.raises(ValueError, match="zero norm"):
        arditi_direction(x, x)
    with pytest.raises(ValueError, match="agree"):
        arditi_direction(np.ones((4, 5)), np.ones((4, 6)))
    bad = np.zeros((4, 5))
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        arditi_direction(bad, x)


@pytest.mark.parametrize(("n", "d"), [(40, 12), (15, 50)])
def test_pca_subspace_matches_sklearn(n: int, d: int) -> None:
    rng = np.random.default_rng(1)
    D = rng.normal(size=(n, d)) @ np.diag(np.linspace(3, 0.5, d)) + 2.0
    ours = pca_subspace(D, 4)
    ref = PCA(n_components=4, svd_solver="full").fit(D)
    for j in range(4):
        assert abs_cosine(ours.basis[:, j], ref.components_[j]) == pytest.approx(1, abs=1e-10)
    np.testing.assert_allclose(ours.explained_variance, ref.explained_variance_, rtol=1e-10)
    np.testing.assert_allclose(ours.basis.T @ ours.basis, np.eye(4), atol=1e-12)
    np.testing.assert_allclose(ours.mean, D.mean(0), rtol=1e-12)
    # sign convention: the average shift projects positively on every direction
    assert np.all(D.mean(0) @ ours.basis > 0)


def test_pca_direction_is_deterministic_and_validated() -> None:
    rng = np.random.default_rng(2)
    D = rng.normal(size=(30, 8)) + np.array([5.0] + [0.0] * 7)
    v = pca_direction(D)
    np.testing.assert_array_equal(v, pca_direction(D.copy()))
    assert np.linalg.norm(v) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="at least 2"):
        pca_direction(D[:1])
    with pytest.raises(ValueError, match="k must be"):
        pca_subspace(D, 9)


@pytest.mark.parametrize(("n_a", "n_b", "d", "alpha"), [(18, 14, 60, 2.0), (60, 50, 9, 10.0)])
def test_cpca_matches_dense_eigh(n_a: int, n_b: int, d: int, alpha: float) -> None:
    rng = np.random.default_rng(3)
    a = rng.normal(size=(n_a, d)) @ np.diag(np.linspace(4, 1, d))
    b = rng.normal(size=(n_b, d)) * 0.3
    k = 3
    ours = cpca_subspace(a, b, alpha, k)
    evals, evecs = dense_cpca(a, b, alpha)
    np.testing.assert_allclose(ours.eigenvalues, evals[:k], rtol=1e-9)
    for j in range(k):
        assert abs_cosine(ours.basis[:, j], evecs[:, j]) == pytest.approx(1, abs=1e-9)
    np.testing.assert_allclose(ours.basis.T @ ours.basis, np.eye(k), atol=1e-12)
    # the whole in-span spectrum equals the dense non-null spectrum
    nonzero = evals[np.abs(evals) > 1e-9 * np.abs(evals).max()]
    rank = min(d, n_a + n_b - 2)
    assert ours.spectrum.size == rank == nonzero.size
    np.testing.assert_allclose(ours.spectrum, nonzero, rtol=1e-8, atol=1e-10)


def test_cpca_excludes_the_common_null_space() -> None:
    rng = np.random.default_rng(4)
    span = np.linalg.qr(rng.normal(size=(40, 10)))[0]  # background spans 10 dims of 40
    a = rng.normal(size=(6, 3)) @ span[:, :3].T  # target varies only inside that span
    b = rng.normal(size=(12, 10)) @ span.T
    res = cpca_subspace(a, b, alpha=1000.0)
    assert res.eigenvalues[0] < 0  # every data direction is dominated by the background
    stacked = np.vstack([a - a.mean(0), b - b.mean(0)])
    coef, *_ = np.linalg.lstsq(stacked.T, res.basis[:, 0], rcond=None)
    np.testing.assert_allclose(stacked.T @ coef, res.basis[:, 0], atol=1e-10)


def test_cpca_validation() -> None:
    a = np.ones((5, 4))
    with pytest.raises(ValueError, match="alpha"):
        cpca_subspace(a, a, -1.0)
    with pytest.raises(ValueError, match="at least 2"):
        cpca_subspace(a[:1], a, 1.0)
    with pytest.raises(ValueError, match="agree"):
        cpca_subspace(a, np.ones((5, 3)), 1.0)


def test_select_cpca_alpha_finds_planted_direction() -> None:
    rng = np.random.default_rng(5)
    n, d = 80, 30
    labels = np.arange(n) % 2 == 0
    base = rng.normal(size=(n, d)) @ np.diag(np.linspace(3, 0.5, d))
    u = np.zeros(d)
    u[-1] = 1.0  # the lowest-variance axis of the base: only contrast finds it
    target = base + 0.05 * rng.normal(size=(n, d)) + 4.0 * np.outer(labels, u)
    sel = select_cpca_alpha(target, base, labels, seed=0)
    assert sel.alpha in CPCA_ALPHAS
    assert sel.accuracies.shape == (len(CPCA_ALPHAS),)
    assert np.all((sel.accuracies >= 0) & (sel.accuracies <= 1))
    assert sel.accuracies.max() >= 0.95
    assert sel.accuracies[list(sel.alphas).index(sel.alpha)] == sel.accuracies.max()
    again = select_cpca_alpha(target, base, labels, seed=0)
    np.testing.assert_array_equal(sel.accuracies, again.accuracies)
    with pytest.raises(ValueError, match="at least 2 samples per class"):
        select_cpca_alpha(target, base, np.arange(n) == 0)


def test_cohens_d_against_formula() -> None:
    assert cohens_d([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]) == pytest.approx(-3.0, rel=1e-12)
    rng = np.random.default_rng(6)
    x, y = rng.normal(1, 2, size=13), rng.normal(0, 1, size=21)
    pooled = np.sqrt((12 * np.var(x, ddof=1) + 20 * np.var(y, ddof=1)) / 32)
    assert cohens_d(x, y) == pytest.approx((x.mean() - y.mean()) / pooled, rel=1e-12)
    assert cohens_d([1.0, 1.0], [1.0, 1.0]) == 0.0
    assert cohens_d([2.0, 2.0], [1.0, 1.0]) == np.inf
    with pytest.raises(ValueError, match="at least 2"):
        cohens_d([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="NaN"):
        cohens_d([1.0, np.nan], [1.0, 2.0])
