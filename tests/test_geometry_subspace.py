"""Energy rank by hand, safety subspaces, principal angles vs scipy, linear CKA vs kernel HSIC."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from skindeep.geometry import energy_rank, linear_cka, principal_angles, safety_subspace
from skindeep.geometry.subspace import (
    compare_subspaces,
    no_energy_layers,
    subspace_angle_matrix,
)


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


# ---- layers alignment left untouched --------------------------------------------------------


def test_no_energy_layers_is_relative_to_the_largest_layer() -> None:
    np.testing.assert_array_equal(no_energy_layers([0.0, 4.0, 1e-13, 1e-11]), [1, 0, 1, 0])
    np.testing.assert_array_equal(no_energy_layers([0.0, 0.0]), [True, True])
    np.testing.assert_array_equal(no_energy_layers([1e-30]), [False])  # only layer: its own max
    with pytest.raises(ValueError, match="non-negative"):
        no_energy_layers([1.0, -1.0])


@pytest.mark.parametrize("k", [None, 2])
def test_untouched_layers_get_an_empty_subspace(k: int | None) -> None:
    rng = np.random.default_rng(24)
    n, d = 30, 8
    D = np.zeros((n, 4, d))
    D[:, 1] = rng.normal(size=(n, d))
    D[:, 2] = rng.normal(size=d)  # every prompt moved by the same vector: centered D_2 = 0
    D[:, 3] = 1e-9 * rng.normal(size=(n, d))  # rounding-level noise, 1e-9 of layer 1 in norm
    sub = safety_subspace(D, k=k)
    np.testing.assert_array_equal(sub.empty, [True, False, True, True])
    for layer in (0, 2, 3):
        s = sub.layers[layer]
        assert s.k == 0 and s.is_empty and s.basis.shape == (d, 0) and s.energy == 0.0
        ref = np.linalg.svd(D[:, layer] - D[:, layer].mean(0), compute_uv=False)
        np.testing.assert_allclose(s.singular_values, ref, atol=1e-12)
    assert sub.ks[1] == (k or energy_rank(sub.layers[1].singular_values)) and sub.ks[1] > 0
    gram = sub.layers[1].basis.T @ sub.layers[1].basis
    np.testing.assert_allclose(gram, np.eye(sub.ks[1]), atol=1e-12)
    # alone, the noisy layer is its own largest one and keeps its (tiny) subspace
    assert safety_subspace(D[:, 3], k=k).ks[0] > 0
    assert safety_subspace(np.zeros((n, 2, d))).ks.tolist() == [0, 0]


def test_principal_angles_refuse_an_empty_subspace() -> None:
    with pytest.raises(ValueError, match=r"U is empty \(shape \(5, 0\)\)"):
        principal_angles(np.zeros((5, 0)), np.eye(5)[:, :2])


# ---- comparing subspaces across models and layers -------------------------------------------


def random_bases(rng: np.random.Generator, d: int, ks: list[int]) -> list[np.ndarray]:
    """One [d, k] basis per layer (not orthonormal on purpose), [d, 0] where k = 0."""
    return [rng.normal(size=(d, k)) for k in ks]


def test_compare_subspaces_matches_scipy_layer_by_layer() -> None:
    rng = np.random.default_rng(25)
    d = 20
    a = random_bases(rng, d, [3, 1, 4, 0, 2])
    b = random_bases(rng, d, [2, 1, 4, 3, 0])
    b[2] = a[2] @ rng.normal(size=(4, 4)) + 1e-3 * rng.normal(size=(d, 4))  # nearly the same span
    cmp = compare_subspaces(a, b)
    assert cmp.n_layers == 5
    np.testing.assert_array_equal(cmp.ks_a, [3, 1, 4, 0, 2])
    np.testing.assert_array_equal(cmp.ks_b, [2, 1, 4, 3, 0])
    np.testing.assert_array_equal(cmp.defined, [True, True, True, False, False])
    for layer in range(3):
        ref = np.sort(scipy.linalg.subspace_angles(a[layer], b[layer]))
        np.testing.assert_allclose(cmp.angles_deg[layer], np.degrees(ref), atol=1e-10)
        assert cmp.mean_cos[layer] == pytest.approx(np.mean(np.cos(ref)), abs=1e-12)
        assert cmp.min_angle_deg[layer] == pytest.approx(np.degrees(ref.min()), abs=1e-10)
        assert cmp.max_angle_deg[layer] == pytest.approx(np.degrees(ref.max()), abs=1e-10)
    assert cmp.max_angle_deg[2] < 1.0 and cmp.mean_cos[2] > 0.999
    for layer in (3, 4):  # an empty side: undefined, never 0
        assert cmp.angles_deg[layer] is None
        assert np.isnan(cmp.mean_cos[layer]) and np.isnan(cmp.min_angle_deg[layer])


def test_compare_subspaces_accepts_safety_subspaces() -> None:
    rng = np.random.default_rng(26)
    D1, D2 = rng.normal(size=(25, 3, 10)), rng.normal(size=(25, 3, 10))
    D2[:, 0] = 0.0
    s1, s2 = safety_subspace(D1, k=2), safety_subspace(D2, k=2)
    cmp = compare_subspaces(s1, s2)
    assert cmp.angles_deg[0] is None and np.isnan(cmp.mean_cos[0])
    for layer in (1, 2):
        ref = np.degrees(np.sort(scipy.linalg.subspace_angles(s1.bases[layer], s2.bases[layer])))
        np.testing.assert_allclose(cmp.angles_deg[layer], ref, atol=1e-10)


def test_subspace_angle_matrix_matches_scipy() -> None:
    rng = np.random.default_rng(27)
    d = 16
    a = random_bases(rng, d, [2, 0, 3, 1])
    b = random_bases(rng, d, [1, 4, 0])
    within = subspace_angle_matrix(a)
    cross = subspace_angle_matrix(a, b)
    assert within.mean_cos.shape == (4, 4) and cross.mean_cos.shape == (4, 3)
    for m, left, right in ((within, a, a), (cross, a, b)):
        for i, u in enumerate(left):
            for j, v in enumerate(right):
                if u.shape[1] == 0 or v.shape[1] == 0:
                    assert np.isnan(m.mean_cos[i, j]) and np.isnan(m.max_angle_deg[i, j])
                    continue
                ref = scipy.linalg.subspace_angles(u, v)
                assert m.mean_cos[i, j] == pytest.approx(np.mean(np.cos(ref)), abs=1e-12)
                assert m.min_angle_deg[i, j] == pytest.approx(np.degrees(ref.min()), abs=1e-10)
                assert m.max_angle_deg[i, j] == pytest.approx(np.degrees(ref.max()), abs=1e-10)
    np.testing.assert_allclose(within.mean_cos, within.mean_cos.T, atol=1e-15)
    defined = ~np.isnan(np.diag(within.mean_cos))
    np.testing.assert_allclose(np.diag(within.mean_cos)[defined], 1.0, atol=1e-12)
    np.testing.assert_allclose(np.diag(within.max_angle_deg)[defined], 0.0, atol=1e-6)


def test_subspace_comparison_validation() -> None:
    e = np.eye(6)
    with pytest.raises(ValueError, match="different layer counts: 2 vs 1"):
        compare_subspaces([e[:, :1], e[:, :2]], [e[:, :1]])
    with pytest.raises(ValueError, match="different spaces: d = 6 vs d = 5"):
        compare_subspaces([e[:, :1]], [np.eye(5)[:, :1]])
    with pytest.raises(ValueError, match="different spaces"):
        subspace_angle_matrix([e[:, :1]], [np.eye(5)[:, :1]])
    with pytest.raises(ValueError, match="mixes widths"):
        subspace_angle_matrix([e[:, :1], np.eye(5)[:, :1]])
    with pytest.raises(ValueError, match="independent"):
        compare_subspaces([np.ones((6, 2))], [e[:, :1]])
    with pytest.raises(ValueError, match="no layers"):
        compare_subspaces([], [])
