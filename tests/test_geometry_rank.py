"""Effective-rank audit: hand-computed ranks, four variants, direction recovery, spectral gap."""

from __future__ import annotations

import numpy as np
import pytest

from skindeep.geometry import (
    direction_recovery,
    effective_rank,
    effective_rank_by_layer,
    modification_variants,
    spectral_gap_bound,
)


def with_spectrum(d: int, n: int, s: list[float], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A d x n matrix with the given singular values, and its left singular vectors."""
    rng = np.random.default_rng(seed)
    u = np.linalg.qr(rng.normal(size=(d, len(s))))[0]
    v = np.linalg.qr(rng.normal(size=(n, len(s))))[0]
    return u @ np.diag(s) @ v.T, u


def test_effective_rank_hand_computed() -> None:
    # energies 100, 25, 1, 0.01 (total 126.01): 95% needs 119.71 -> 2; 99.9% needs 125.88 -> 3
    M, u = with_spectrum(40, 10, [10.0, 5.0, 1.0, 0.1], seed=40)
    res = effective_rank(M)
    assert res.rank_eps == 2
    assert res.rho == pytest.approx(2 / 40)
    assert res.rho_min == pytest.approx(2 / 10)
    assert (res.d, res.n, res.eps, res.centered) == (40, 10, 0.05, False)
    np.testing.assert_allclose(res.singular_values[:4], [10.0, 5.0, 1.0, 0.1], rtol=1e-10)
    assert abs(res.left_singular_vectors[:, 0] @ u[:, 0]) == pytest.approx(1.0, abs=1e-10)
    assert res.left_singular_vectors.shape == (40, 10)  # n_vectors=50 capped at min(d, n)
    assert effective_rank(M, eps=0.001).rank_eps == 3
    assert effective_rank(M, n_vectors=1).left_singular_vectors.shape == (40, 2)


def test_centered_rank_removes_the_mean_column() -> None:
    rng = np.random.default_rng(41)
    offset = rng.normal(size=(30, 1)) * 10.0
    M = offset + 0.01 * rng.normal(size=(30, 1)) @ rng.normal(size=(1, 12))
    assert effective_rank(M).rank_eps == 1
    centered = effective_rank(M, centered=True)
    np.testing.assert_allclose(
        centered.singular_values,
        np.linalg.svd(M - M.mean(axis=1, keepdims=True), compute_uv=False),
        rtol=1e-10,
        atol=1e-12,
    )
    assert centered.rank_eps == 1
    assert effective_rank(np.tile(offset, (1, 5)), centered=True).rank_eps == 0


def test_effective_rank_by_layer_and_validation() -> None:
    rng = np.random.default_rng(42)
    stack = rng.normal(size=(3, 20, 8))
    prof = effective_rank_by_layer(stack)
    assert prof.ranks.shape == (3,)
    assert prof.mean_rho == pytest.approx(np.mean([effective_rank(m).rho for m in stack]))
    assert prof.mean_rho_min == pytest.approx(prof.ranks.mean() / 8)
    with pytest.raises(ValueError, match="eps"):
        effective_rank(stack[0], eps=-0.1)
    with pytest.raises(ValueError, match="2-D"):
        effective_rank(stack)
    with pytest.raises(ValueError, match="NaN"):
        effective_rank(np.full((3, 3), np.nan))


def test_modification_variants_by_formula() -> None:
    rng = np.random.default_rng(43)
    n, n_layers, d = 7, 2, 4
    chat, base_raw, base_chat, aligned_raw = (rng.normal(size=(n, n_layers, d)) for _ in range(4))
    harmful = np.array([1, 1, 0, 1, 0, 0, 1], dtype=bool)
    var = modification_variants(chat, base_raw, base_chat, aligned_raw, harmful)
    for layer in range(n_layers):
        cols = np.flatnonzero(harmful)
        for j, i in enumerate(cols):
            np.testing.assert_allclose(var.naive[layer][:, j], chat[i, layer] - base_raw[i, layer])
            np.testing.assert_allclose(
                var.template[layer][:, j], chat[i, layer] - base_chat[i, layer]
            )
            np.testing.assert_allclose(
                var.aligned[layer][:, j], chat[i, layer] - aligned_raw[i, layer]
            )
            control = np.mean(
                [chat[k, layer] - base_chat[k, layer] for k in np.flatnonzero(~harmful)], axis=0
            )
            np.testing.assert_allclose(
                var.did[layer][:, j], chat[i, layer] - base_chat[i, layer] - control
            )
    assert var.template.shape == (n_layers, d, 4)
    everything = modification_variants(chat, None, base_chat, None, harmful, safety_only=False)
    assert everything.naive is None and everything.aligned is None
    assert everything.template.shape == (n_layers, d, n)
    np.testing.assert_allclose(everything.did, var.did)
    with pytest.raises(ValueError, match="same shape"):
        modification_variants(chat, base_raw[:, :1], base_chat, None, harmful)
    with pytest.raises(ValueError, match="per class"):
        modification_variants(chat, None, base_chat, None, np.ones(n, bool))


def test_direction_recovery() -> None:
    rng = np.random.default_rng(44)
    d, n = 50, 30
    a = rng.normal(size=d)
    a /= np.linalg.norm(a)
    M = np.outer(a, rng.uniform(1, 2, size=n)) + 0.05 * rng.normal(size=(d, n))
    u1 = np.linalg.svd(M)[0][:, 0]
    assert direction_recovery(M, a) == pytest.approx(abs(u1 @ a), rel=1e-12)
    assert direction_recovery(M, a) > 0.99
    assert direction_recovery(rng.normal(size=(d, n)), a) < 0.6
    with pytest.raises(ValueError, match="length d"):
        direction_recovery(M, a[:-1])


def test_spectral_gap_bound() -> None:
    rng = np.random.default_rng(45)
    eps = 0.05
    for seed in range(5):
        mh, mu = np.random.default_rng(seed).normal(size=(2, 30, 12))
        for r in (1, 3, 10):
            res = spectral_gap_bound(mh, mu, r=r, eps=eps)
            s_r = np.linalg.svd(mh - mu, compute_uv=False)[r - 1]
            expected = s_r**2 / (eps * (np.sum(mh**2) + np.sum(mu**2)))
            assert res.kappa_lb == pytest.approx(expected, rel=1e-12)
            assert res.kappa_lb <= res.ceiling == pytest.approx(2 / (eps * r))
    rank_one = np.outer(rng.normal(size=30), rng.normal(size=12))
    res = spectral_gap_bound(rank_one, np.zeros_like(rank_one), eps=eps)
    assert res.r == 1
    assert res.kappa_lb == pytest.approx(1 / eps)
    assert res.holds
    with pytest.raises(ValueError, match="r must be"):
        spectral_gap_bound(rank_one, rank_one, r=13)
