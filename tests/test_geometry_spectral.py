"""The paper-scale routes (Gram eigenproblem, matrix-free Lanczos) against the exact LAPACK ones.

The size threshold is lowered so that small matrices take the fast routes; every result must
match the exact decomposition of the same data.
"""

from __future__ import annotations

import numpy as np
import pytest

from skindeep.geometry import (
    _spectral,
    cpca_direction,
    cpca_subspace,
    geometric_fragility,
    pair_subspace,
    pca_direction,
    pca_subspace,
    safety_subspace,
)


def _low_rank(n: int, d: int, rank: int, seed: int) -> np.ndarray:
    """[n, d] rank-`rank` signal with a decaying spectrum plus small isotropic noise."""
    rng = np.random.default_rng(seed)
    scales = 1.0 / np.arange(1, rank + 1)
    signal = (rng.standard_normal((n, rank)) * scales) @ rng.standard_normal((rank, d))
    return signal + 0.01 * rng.standard_normal((n, d)) + rng.standard_normal(d)


@pytest.fixture
def fast_routes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Send every matrix with min(n, d) >= 8 through the fast routes."""
    monkeypatch.setattr(_spectral, "GRAM_MIN_SIZE", 8)


def _exact_svd(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Singular values and right vectors of the centered matrix, straight from numpy."""
    _, s, vt = np.linalg.svd(x - x.mean(axis=0), full_matrices=False)
    return s, vt


@pytest.mark.parametrize(("n", "d"), [(60, 90), (90, 40)])
def test_gram_route_matches_the_svd(fast_routes: None, n: int, d: int) -> None:
    x = _low_rank(n, d, 6, seed=n)
    s_ref, vt_ref = _exact_svd(x)
    pca = pca_subspace(x, 4)
    np.testing.assert_allclose(pca.singular_values, s_ref, rtol=0, atol=1e-6 * s_ref[0])
    np.testing.assert_allclose(np.abs(np.sum(pca.basis.T * vt_ref[:4], axis=1)), 1.0, atol=1e-9)
    mean_shift = x.mean(axis=0)
    assert np.all(pca.basis.T @ mean_shift > 0)  # the sign convention holds on this route too
    np.testing.assert_allclose(pca_direction(x), pca.basis[:, 0], atol=1e-9)


def test_gram_route_subspace_keeps_the_energy_rank(fast_routes: None) -> None:
    D = np.stack([_low_rank(70, 100, r, seed=r) for r in (3, 5, 8)], axis=1)
    fast = safety_subspace(D, eps=0.05)
    for layer in range(3):
        s_ref, vt_ref = _exact_svd(D[:, layer])
        energy = np.cumsum(s_ref**2) / np.sum(s_ref**2)
        k_ref = int(np.searchsorted(energy, 0.95 * (1 - 1e-12)) + 1)
        assert fast.ks[layer] == k_ref
        overlap = fast.layers[layer].basis.T @ vt_ref[:k_ref].T
        np.testing.assert_allclose(np.abs(np.diag(overlap)), 1.0, atol=1e-8)


def test_pair_subspace_equals_the_subspace_of_the_float64_difference() -> None:
    rng = np.random.default_rng(3)
    base = rng.standard_normal((40, 3, 24)).astype(np.float32)
    aligned = base + rng.standard_normal((40, 3, 24)).astype(np.float32) * [[0.0], [0.5], [1.0]]
    paired = pair_subspace(aligned, base, eps=0.1)
    direct = safety_subspace(aligned.astype(np.float64) - base, eps=0.1)
    assert paired.ks.tolist() == direct.ks.tolist() and paired.empty[0]
    for a, b in zip(paired.layers, direct.layers, strict=True):
        np.testing.assert_array_equal(a.basis, b.basis)
        np.testing.assert_array_equal(a.singular_values, b.singular_values)


@pytest.mark.parametrize("alpha", [0.5, 100.0])
def test_lanczos_cpca_direction_matches_the_exact_solver(fast_routes: None, alpha: float) -> None:
    rng = np.random.default_rng(int(alpha))
    b = _low_rank(50, 120, 10, seed=1)
    a = b + 0.3 * _low_rank(50, 120, 3, seed=2) + rng.standard_normal(120)
    exact = cpca_subspace(a, b, alpha, 1)  # the row-span solver, whatever the size
    fast = cpca_direction(a, b, alpha)
    assert exact.eigenvalues[0] > 0  # so the Lanczos route is the one that answered
    np.testing.assert_allclose(fast, exact.basis[:, 0], atol=1e-8)


def test_lanczos_falls_back_when_the_top_eigenvalue_is_not_positive(fast_routes: None) -> None:
    b = _low_rank(40, 30, 30, seed=4)  # n > d: no common null space, every direction varies
    a = 0.1 * b[::-1]  # the target varies less than alpha * background everywhere
    exact = cpca_subspace(a, b, 100.0, 1)
    assert exact.eigenvalues[0] < 0
    assert _spectral.contrast_top_vector(a, b, 100.0) is None
    np.testing.assert_allclose(cpca_direction(a, b, 100.0), exact.basis[:, 0], atol=1e-12)


@pytest.mark.parametrize("variant", ["code", "paper"])
def test_gfs_is_the_same_on_both_routes(monkeypatch: pytest.MonkeyPatch, variant: str) -> None:
    rng = np.random.default_rng(7)
    n, n_layers, d = 60, 3, 80
    base = rng.standard_normal((n, n_layers, d))
    harmful = np.arange(n) < n // 2
    aligned = base + 0.2 * rng.standard_normal((n, n_layers, d))
    aligned[harmful] += 2.0 * rng.standard_normal(d) / np.sqrt(d)
    exact = geometric_fragility(aligned, base, harmful, variant)
    monkeypatch.setattr(_spectral, "GRAM_MIN_SIZE", 8)
    fast = geometric_fragility(aligned, base, harmful, variant)
    np.testing.assert_allclose(fast.d, exact.d, rtol=1e-8)
    np.testing.assert_allclose(fast.c, exact.c, rtol=1e-8, atol=1e-10)
    assert fast.gfs == pytest.approx(exact.gfs, rel=1e-8)
