"""Energy rank by hand, safety subspaces, principal angles vs scipy, linear CKA vs kernel HSIC."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from skindeep.geometry import energy_rank, linear_cka, principal_angles, safety_subspace


def slow_cka(X: np.ndarray, Y: np.ndarray) -> float:
    """CKA from HSIC(K, L) = tr(K H L H) / (n - 1)^2 with linear kernels, written out."""
    n = X.shape[0]
    H = np.eye(n) - np.ones((n, n)) / n
    K, L = X @ X.T, Y @ Y.T

    def hsic(A: np.ndarray, B: np.ndarray) -> float:
        return float(np.trace(A @ H @ B @ H)) / (n - 1) ** 2

    return hsic(K, L) / np.sqrt(hsic(K, K) * hsic(L, L))


@pytest.mark.parametrize(
    ("s", "eps", "expected"),
    [
        ([3.0, 4.0], 0.05, 2),  # 16 + 9 = 25; 16 < 23.75
        ([3.0, 4.0], 0.36, 1),  # boundary: 16 >= 0.64 * 25 exactly
        ([1.0, 1.0, 1.0, 1.0], 0.25, 3),
        ([2.0, 1.0, 0.0], 0.0, 2),
        ([10.0, 5.0, 1.0, 0.1], 0.05, 2),
        ([10.0, 5.0, 1.0, 0.1], 0.001, 3),
        ([0.0, 0.0], 0.05, 0),
    ],
)
def test_energy_rank_hand_cases(s: list[float], eps: float, expected: int) -> None:
    assert energy_rank(s, eps) == expected


def test_energy_rank_validation() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        energy_rank([1.0, -1.0])
    with pytest.raises(ValueError, match="eps"):
        energy_rank([1.0], eps=1.0)
    with pytest.raises(ValueError, match="NaN"):
        energy_rank([1.0, np.nan])
    with pytest.raises(ValueError, match="1-D"):
        energy_rank(np.ones((2, 2)))


def test_safety_subspace_recovers_planted_rank() -> None:
    rng = np.random.default_rng(20)
    n, n_layers, d, r = 50, 3, 30, 3
    spans = [np.linalg.qr(rng.normal(size=(d, r)))[0] for _ in range(n_layers)]
    D = np.stack(
        [rng.normal(size=(n, r)) * [5.0, 4.0, 3.0] @ s.T for s in spans], axis=1
    ) + 1e-3 * rng.normal(size=(n, n_layers, d))
    sub = safety_subspace(D, eps=0.05)
    np.testing.assert_array_equal(sub.ks, [r] * n_layers)
    assert sub.fixed_k is None
    for layer, s in enumerate(spans):
        angles = principal_angles(sub.layers[layer].basis, s)
        assert angles.max() < 1e-3
        centered = D[:, layer] - D[:, layer].mean(0)
        np.testing.assert_allclose(
            sub.layers[layer].singular_values, np.linalg.svd(centered, compute_uv=False)
        )
        assert sub.layers[layer].energy > 0.999
    fixed = safety_subspace(D, k=5)
    assert fixed.fixed_k == 5
    assert all(b.shape == (d, 5) for b in fixed.bases)
    one = safety_subspace(D[:, 1])
    np.testing.assert_allclose(one.layers[0].basis, sub.layers[1].basis)
    with pytest.raises(ValueError, match="k must be"):
        safety_subspace(D, k=0)


@pytest.mark.parametrize(("p", "q"), [(3, 3), (5, 2), (2, 6)])
def test_principal_angles_match_scipy(p: int, q: int) -> None:
    rng = np.random.default_rng(21)
    U, V = rng.normal(size=(20, p)), rng.normal(size=(20, q))  # not orthonormal on purpose
    ours = principal_angles(U, V)
    ref = np.sort(scipy.linalg.subspace_angles(U, V))
    np.testing.assert_allclose(ours, ref, atol=1e-12)
    assert np.all(np.diff(ours) >= 0)


def test_principal_angles_small_and_exact_cases() -> None:
    rng = np.random.default_rng(22)
    U = rng.normal(size=(15, 3))
    V = U @ rng.normal(size=(3, 3)) + 1e-9 * rng.normal(size=(15, 3))  # same span, tilted
    ours = principal_angles(U, V)
    np.testing.assert_allclose(ours, np.sort(scipy.linalg.subspace_angles(U, V)), atol=1e-14)
    assert ours.max() < 1e-8
    e = np.eye(4)
    np.testing.assert_allclose(principal_angles(e[:, :2], e[:, 2:]), [np.pi / 2] * 2)
    tilt = np.array([[1.0], [1.0], [0.0], [0.0]])
    np.testing.assert_allclose(principal_angles(e[:, :1], tilt), [np.pi / 4])
    with pytest.raises(ValueError, match="independent"):
        principal_angles(np.ones((4, 2)), e[:, :1])
    with pytest.raises(ValueError, match="same number of rows"):
        principal_angles(e[:, :1], np.eye(3)[:, :1])


@pytest.mark.parametrize(("n", "p", "q"), [(40, 10, 6), (12, 50, 30)])
def test_linear_cka_matches_hsic_formula(n: int, p: int, q: int) -> None:
    rng = np.random.default_rng(23)
    X = rng.normal(size=(n, p)) + 3.0
    Y = X[:, :q] @ rng.normal(size=(q, q)) + 0.5 * rng.normal(size=(n, q))
    assert linear_cka(X, Y) == pytest.approx(slow_cka(X, Y), rel=1e-10)
    assert linear_cka(X, X) == pytest.approx(1.0, rel=1e-12)
    Q = np.linalg.qr(rng.normal(size=(p, p)))[0]
    assert linear_cka(X, 2.5 * X @ Q + 7.0) == pytest.approx(1.0, rel=1e-10)


def test_linear_cka_validation() -> None:
    with pytest.raises(ValueError, match="same number of rows"):
        linear_cka(np.ones((4, 2)), np.ones((5, 2)))
    with pytest.raises(ValueError, match="constant"):
        linear_cka(np.ones((4, 2)), np.arange(8.0).reshape(4, 2))
