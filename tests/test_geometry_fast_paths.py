"""The paper-scale shortcuts of the audit geometry against the plain computations they replace.

Each fast path must give the numbers of the straightforward one (numpy/scipy references, or the
public single-purpose functions) on random data, to floating-point tolerance.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
from threadpoolctl import threadpool_limits

from skindeep.geometry import (
    _spectral,
    consecutive_angles,
    cpca_direction,
    cpca_subspace,
    geometric_fragility,
    labelled_layer_statistics,
    layer_statistics,
    map_layers,
    pair_subspace,
    principal_angles,
    safety_subspace,
)
from skindeep.scores import AuditConfig, pair_geometry


def test_labelled_statistics_equal_the_split_stack() -> None:
    rng = np.random.default_rng(0)
    h = rng.standard_normal((30, 3, 12)).astype(np.float32)
    harmful = rng.permutation(np.arange(30) < 13)  # interleaved classes
    h[harmful, 1] += 0.8
    ref = layer_statistics(h[harmful], h[~harmful], n_perm=99, seed=3)
    got = labelled_layer_statistics(
        lambda i: np.asarray(h[:, i], dtype=np.float64), 3, harmful, n_perm=99, seed=3
    )
    for name in ("pseudo_f", "permanova_p", "mmd2", "mmd_p", "gamma", "probe_accuracy"):
        np.testing.assert_allclose(getattr(got, name), getattr(ref, name), rtol=1e-12)
    assert got.permanova_reject.tolist() == ref.permanova_reject.tolist()


def test_pair_statistics_on_the_difference_equal_the_float64_stack() -> None:
    rng = np.random.default_rng(1)
    base = rng.standard_normal((24, 3, 10)).astype(np.float32)
    aligned = base.copy()
    aligned[:, 1:] += rng.standard_normal((24, 2, 10)).astype(np.float32)  # layer 0 untouched
    harmful = rng.permutation(np.arange(24) < 12)
    config = AuditConfig(n_perm=49, stats_on="difference")
    geo = pair_geometry(aligned, base, harmful, config)
    diff = aligned.astype(np.float64) - base
    ref = layer_statistics(diff[harmful][:, 1:], diff[~harmful][:, 1:], n_perm=49)
    assert np.isnan(geo.stats.pseudo_f[0]) and not geo.stats.permanova_reject[0]
    np.testing.assert_allclose(geo.stats.pseudo_f[1:], ref.pseudo_f, rtol=1e-12)
    np.testing.assert_allclose(geo.stats.mmd_p[1:], ref.mmd_p, rtol=1e-12)
    np.testing.assert_allclose(geo.stats.probe_accuracy[1:], ref.probe_accuracy)


def test_consecutive_angles_match_scipy() -> None:
    rng = np.random.default_rng(2)
    shared = rng.standard_normal((40, 1, 30))
    D = shared + 0.05 * rng.standard_normal((40, 4, 30))  # nearby subspaces: small angles
    D[:, 3] = rng.standard_normal((40, 30))  # and an unrelated one: large angles
    sub = safety_subspace(D, k=4)
    angles = consecutive_angles(sub)
    for layer, got in enumerate(angles):
        u, v = sub.bases[layer], sub.bases[layer + 1]
        ref = np.sort(scipy.linalg.subspace_angles(u, v))
        np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(got, principal_angles(u, v), rtol=1e-9, atol=1e-12)
    assert np.degrees(angles[0]).min() < 45 and np.degrees(angles[2]).min() > 45


def test_two_layer_workers_give_the_serial_results() -> None:
    rng = np.random.default_rng(4)
    base = rng.standard_normal((40, 4, 16)).astype(np.float32)
    aligned = base + 0.3 * rng.standard_normal((40, 4, 16)).astype(np.float32)
    harmful = np.arange(40) < 20
    aligned[harmful] += 0.5
    config = AuditConfig(n_perm=49)
    with threadpool_limits(limits=1):
        serial = pair_geometry(aligned, base, harmful, config)
    with threadpool_limits(limits=2):
        assert map_layers(lambda i: i * i, 5) == [0, 1, 4, 9, 16]
        parallel = pair_geometry(aligned, base, harmful, config)
    for variant in ("code", "paper"):
        np.testing.assert_array_equal(parallel.gfs[variant].d, serial.gfs[variant].d)
        np.testing.assert_array_equal(
            parallel.gfs[variant].directions, serial.gfs[variant].directions
        )
    np.testing.assert_array_equal(parallel.cka, serial.cka)
    np.testing.assert_array_equal(parallel.stats.mmd_p, serial.stats.mmd_p)
    assert parallel.subspace.ks.tolist() == serial.subspace.ks.tolist()


@pytest.mark.parametrize(("alpha", "seed"), [(0.0, 0), (1.0, 1), (100.0, 2), (1000.0, 3)])
def test_davidson_cpca_matches_the_exact_solver(
    monkeypatch: pytest.MonkeyPatch, alpha: float, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    n, d = 40, 150  # d > 2n: a common null space, so the top eigenvalue stays positive
    scales = 1.0 / np.arange(1, 21)
    b = (rng.standard_normal((n, 20)) * scales) @ rng.standard_normal((20, d))
    b += 0.01 * rng.standard_normal((n, d))
    a = b + 0.3 * rng.standard_normal((n, 3)) @ rng.standard_normal((3, d))
    exact = cpca_subspace(a, b, alpha, 1)
    found = _spectral.contrast_top_vector(a, b, alpha)
    assert found is not None and exact.eigenvalues[0] > 0
    assert found[0] == pytest.approx(exact.eigenvalues[0], rel=1e-10)
    np.testing.assert_allclose(np.abs(found[1] @ exact.basis[:, 0]), 1.0, atol=1e-12)
    monkeypatch.setattr(_spectral, "GRAM_MIN_SIZE", 8)
    np.testing.assert_allclose(cpca_direction(a, b, alpha), exact.basis[:, 0], atol=1e-9)


@pytest.mark.parametrize("gram_min", [1024, 8])  # the exact SVD, then the Gram route
def test_gfs_reusing_the_pair_subspace_equals_the_standalone_gfs(
    monkeypatch: pytest.MonkeyPatch, gram_min: int
) -> None:
    monkeypatch.setattr(_spectral, "GRAM_MIN_SIZE", gram_min)
    rng = np.random.default_rng(5)
    base = rng.standard_normal((50, 3, 30))
    aligned = base.copy()
    aligned[:, 1:] += 0.3 * rng.standard_normal((50, 2, 30))  # layer 0 untouched: empty
    harmful = np.arange(50) < 25
    aligned[harmful, 1:] += 0.4
    sub = pair_subspace(aligned, base, k=3)
    for variant in ("code", "paper"):
        ref = geometric_fragility(aligned, base, harmful, variant)
        got = geometric_fragility(aligned, base, harmful, variant, subspace=sub)
        assert got.empty.tolist() == ref.empty.tolist() == [True, False, False]
        np.testing.assert_allclose(got.d, ref.d, rtol=1e-10)
        np.testing.assert_allclose(got.c[1:], ref.c[1:], rtol=1e-10)
        np.testing.assert_allclose(got.directions[1:], ref.directions[1:], atol=1e-10)
        assert got.gfs == pytest.approx(ref.gfs, rel=1e-10)


@pytest.mark.parametrize("wide", [True, False])
def test_gram_route_picks_either_eigensolver_and_matches_the_svd(
    monkeypatch: pytest.MonkeyPatch, wide: bool
) -> None:
    monkeypatch.setattr(_spectral, "GRAM_MIN_SIZE", 8)
    rng = np.random.default_rng(6)
    n, d = 60, 90
    signal = rng.standard_normal((n, 2)) @ rng.standard_normal((2, d))
    D = rng.standard_normal((n, d)) + (0.0 if wide else 30.0) * signal  # noise: a wide spectrum
    xc = D - D.mean(axis=0)
    assert _spectral._many_vectors(xc @ xc.T, None, 0.05) is wide
    _, s_ref, vt_ref = np.linalg.svd(xc, full_matrices=False)
    sub = safety_subspace(D, eps=0.05).layers[0]
    k_ref = int(np.searchsorted(np.cumsum(s_ref**2) / np.sum(s_ref**2), 0.95 * (1 - 1e-12)) + 1)
    assert sub.k == k_ref and (k_ref > 6) is wide
    # the Gram route's accuracy: sqrt(machine eps) * s_max absolute (the centering null value)
    np.testing.assert_allclose(sub.singular_values, s_ref, rtol=0, atol=1e-6 * s_ref[0])
    overlap = np.abs(np.sum(sub.basis.T * vt_ref[:k_ref], axis=1))
    np.testing.assert_allclose(overlap[s_ref[:k_ref] > 1.01 * s_ref[1 : k_ref + 1]], 1.0, atol=1e-8)
    fixed = safety_subspace(D, k=20).layers[0]  # a fixed k beyond the Lanczos share
    np.testing.assert_allclose(np.abs(fixed.basis.T @ vt_ref[:20].T).diagonal()[:3], 1.0, atol=1e-8)


@pytest.mark.parametrize("distance", ["euclidean", "sqeuclidean"])
def test_two_group_pseudo_f_with_one_product_equals_the_per_group_sums(distance: str) -> None:
    from skindeep.geometry import stats

    rng = np.random.default_rng(7)
    x = rng.standard_normal((60, 9)) + 5.0  # off-centre: the shortcut's sums do not cancel to 0
    x[:25] += 0.7
    sq = stats._sq_distances(x)
    delta2 = sq if distance == "euclidean" else sq**2
    codes = rng.permuted(np.tile((np.arange(60) >= 25).astype(np.int64), (40, 1)), axis=1)
    got = stats._pseudo_f(delta2, codes, np.array([25, 35]))
    for row, f in zip(codes, got, strict=True):  # the definition, one group at a time
        within = sum(
            delta2[np.ix_(row == g, row == g)].sum() / (2 * (row == g).sum()) for g in (0, 1)
        )
        total = delta2.sum() / (2 * 60)
        assert f == pytest.approx((total - within) / (within / 58), rel=1e-10)
