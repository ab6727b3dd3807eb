"""PERMANOVA and MMD vs brute-force double loops, BH vs scipy, probe and per-layer statistics."""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy.stats import false_discovery_control

from skindeep.geometry import (
    benjamini_hochberg,
    layer_statistics,
    mmd2_unbiased,
    mmd_test,
    permanova,
    probe_accuracy,
)


def brute_pseudo_f(X: np.ndarray, labels: np.ndarray, power: int = 1) -> float:
    """Anderson (2001) pseudo-F by double loops; dissimilarity = ||xi - xj||^(2 * power) ** 0.5."""
    n = len(X)
    groups = np.unique(labels)
    ss_t = ss_w = 0.0
    for i in range(n):
        for j in range(i + 1, n):
            d2 = float(np.sum((X[i] - X[j]) ** 2)) ** power
            ss_t += d2 / n
            if labels[i] == labels[j]:
                ss_w += d2 / np.sum(labels == labels[i])
    a = len(groups)
    return ((ss_t - ss_w) / (a - 1)) / (ss_w / (n - a))


def brute_mmd2(X: np.ndarray, Y: np.ndarray, gamma: float | None = None) -> float:
    """Unbiased RBF MMD^2 by double loops, with the cross-set median heuristic."""
    if gamma is None:
        cross = [np.linalg.norm(x - y) for x in X for y in Y]
        gamma = 1.0 / (2.0 * np.median(cross) ** 2)

    def k(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.exp(-gamma * np.sum((a - b) ** 2)))

    m, n = len(X), len(Y)
    xx = sum(k(X[i], X[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(Y[i], Y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x, y) for x in X for y in Y) / (m * n)
    return xx + yy - 2.0 * xy


@pytest.mark.parametrize("n_groups", [2, 3])
def test_permanova_pseudo_f_matches_brute_force(n_groups: int) -> None:
    rng = np.random.default_rng(30)
    X = rng.normal(size=(25, 6)) + 10.0
    labels = np.arange(25) % n_groups
    X[labels == 1] += 0.5
    res = permanova(X, labels, n_perm=99, seed=0)
    assert res.pseudo_f == pytest.approx(brute_pseudo_f(X, labels), rel=1e-10)
    sq = permanova(X, labels, n_perm=99, seed=0, distance="sqeuclidean")
    assert sq.pseudo_f == pytest.approx(brute_pseudo_f(X, labels, power=2), rel=1e-10)
    assert 0 < res.p_value <= 1
    assert (res.p_value * (res.n_perm + 1)) == pytest.approx(round(res.p_value * 100))


def test_permanova_planted_and_null() -> None:
    rng = np.random.default_rng(31)
    labels = np.arange(60) % 2
    X = rng.normal(size=(60, 10))
    assert permanova(X, labels, n_perm=199, seed=1).p_value > 0.05
    X[labels == 1, 0] += 1.5
    planted = permanova(X, labels, n_perm=199, seed=1)
    assert planted.p_value == pytest.approx(1 / 200)
    again = permanova(X, labels, n_perm=199, seed=1)
    assert again == planted


def test_permanova_is_fast_for_500_samples() -> None:
    rng = np.random.default_rng(32)
    X = rng.normal(size=(500, 64))
    start = time.perf_counter()
    permanova(X, np.arange(500) % 2, n_perm=1000, seed=0)
    assert time.perf_counter() - start < 5.0


def test_permanova_validation() -> None:
    X = np.ones((6, 2))
    with pytest.raises(ValueError, match="at least 2 samples"):
        permanova(X, [0, 0, 0, 0, 0, 1])
    with pytest.raises(ValueError, match="at least 2 groups"):
        permanova(X, [0] * 6)
    with pytest.raises(ValueError, match="length 6"):
        permanova(X, [0, 1])
    with pytest.raises(ValueError, match="n_perm"):
        permanova(X, [0, 0, 0, 1, 1, 1], n_perm=0)


def test_mmd2_matches_brute_force() -> None:
    rng = np.random.default_rng(33)
    X, Y = rng.normal(size=(12, 5)), rng.normal(0.4, 1.2, size=(9, 5))
    assert mmd2_unbiased(X, Y) == pytest.approx(brute_mmd2(X, Y), rel=1e-10)
    assert mmd2_unbiased(X, Y, gamma=0.3) == pytest.approx(brute_mmd2(X, Y, 0.3), rel=1e-10)
    res = mmd_test(X, Y, n_perm=50, seed=0)
    assert res.mmd2 == pytest.approx(brute_mmd2(X, Y), rel=1e-10)
    cross = [np.linalg.norm(x - y) for x in X for y in Y]
    assert res.gamma == pytest.approx(1 / (2 * np.median(cross) ** 2), rel=1e-12)


def test_mmd_test_planted_and_null() -> None:
    rng = np.random.default_rng(34)
    X, Y = rng.normal(size=(40, 8)), rng.normal(size=(50, 8))
    null = mmd_test(X, Y, n_perm=199, seed=2)
    assert 0 < null.p_value <= 1
    assert null.p_value > 0.05
    planted = mmd_test(X + 0.8, Y, n_perm=199, seed=2)
    assert planted.p_value == pytest.approx(1 / 200)
    assert planted.mmd2 > null.mmd2


def test_mmd_validation() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        mmd2_unbiased(np.ones((1, 3)), np.ones((4, 3)))
    with pytest.raises(ValueError, match="median"):
        mmd2_unbiased(np.ones((3, 3)), np.ones((4, 3)))
    with pytest.raises(ValueError, match="gamma"):
        mmd2_unbiased(np.eye(3), np.eye(3), gamma=-1.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_benjamini_hochberg_matches_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = np.concatenate([rng.uniform(size=20), rng.uniform(0, 0.01, size=5), [0.01, 0.01, 1.0]])
    rng.shuffle(p)
    res = benjamini_hochberg(p, q=0.05)
    np.testing.assert_allclose(res.adjusted, false_discovery_control(p, method="bh"), rtol=1e-12)
    np.testing.assert_array_equal(res.reject, res.adjusted <= 0.05)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        benjamini_hochberg([0.5, 1.2])
    with pytest.raises(ValueError, match="NaN"):
        benjamini_hochberg([0.5, np.nan])


def test_probe_accuracy() -> None:
    rng = np.random.default_rng(35)
    y = np.arange(100) % 2 == 0
    X = rng.normal(size=(100, 20))
    X[y, 3] += 6.0
    assert probe_accuracy(X, y, seed=0) >= 0.95
    chance = probe_accuracy(rng.normal(size=(100, 20)), y, seed=0)
    assert 0.2 <= chance <= 0.8
    assert probe_accuracy(X, y, seed=3) == probe_accuracy(X, y, seed=3)
    with pytest.raises(ValueError, match="at least 2 samples per class"):
        probe_accuracy(X, np.arange(100) == 0)
    with pytest.raises(ValueError, match="test_size"):
        probe_accuracy(X, y, test_size=1.5)


def test_layer_statistics_flags_only_the_planted_layer() -> None:
    rng = np.random.default_rng(37)
    pos, neg = rng.normal(size=(40, 3, 12)), rng.normal(size=(44, 3, 12))
    pos[:, 1, :2] += 2.5
    st = layer_statistics(pos, neg, n_perm=199, seed=4)
    assert st.pseudo_f.shape == st.mmd2.shape == st.probe_accuracy.shape == (3,)
    np.testing.assert_array_equal(st.permanova_reject, [False, True, False])
    np.testing.assert_array_equal(st.mmd_reject, [False, True, False])
    assert st.probe_accuracy[1] >= 0.9
    for arr in (st.permanova_p, st.mmd_p, st.permanova_p_adjusted, st.mmd_p_adjusted):
        assert np.all((arr > 0) & (arr <= 1))
    # each layer equals the single-layer calls with the same seed
    z = np.vstack([pos[:, 0], neg[:, 0]])
    labels = np.r_[np.ones(40, bool), np.zeros(44, bool)]
    perma = permanova(z, labels, n_perm=199, seed=4)
    mmd = mmd_test(pos[:, 0], neg[:, 0], n_perm=199, seed=4)
    assert st.pseudo_f[0] == pytest.approx(perma.pseudo_f, rel=1e-12)
    assert st.mmd2[0] == pytest.approx(mmd.mmd2, rel=1e-12)
    assert st.mmd_p[0] == mmd.p_value
    assert st.probe_accuracy[0] == probe_accuracy(z, labels, seed=4)
    np.testing.assert_allclose(st.mmd_p_adjusted, benjamini_hochberg(st.mmd_p).adjusted, rtol=1e-12)
    with pytest.raises(ValueError, match="agree"):
        layer_statistics(pos, neg[:, :2])
