"""The audit's fused per-layer pass against the computations it shares Gram matrices between.

`pair_geometry` computes each layer's aligned, base (and difference) Gram matrices once and feeds
them to linear CKA, the layer statistics and the cPCA preconditioner. Each sharing must give the
numbers of the plain computation (each function on its own, with its own products), to
floating-point tolerance; so must the whole geometry.
"""

from __future__ import annotations

import numpy as np
import pytest

from skindeep.geometry import (
    LabelledDesign,
    PairLayer,
    _spectral,
    abs_cosine,
    arditi_direction,
    cka_from_grams,
    cohens_d,
    cpca_subspace,
    layer_statistics,
    linear_cka,
    pair_subspace,
    stratified_split,
)
from skindeep.scores import AuditConfig, pair_geometry

RTOL = 1e-10


def _pair(n: int = 40, n_layers: int = 3, d: int = 100, seed: int = 0):
    """Paired float32 stacks (layer 0 untouched: empty), interleaved labels, n < d."""
    rng = np.random.default_rng(seed)
    scales = 1.0 / np.arange(1, 21)
    base = np.empty((n, n_layers, d), dtype=np.float32)
    for layer in range(n_layers):
        low = (rng.standard_normal((n, 20)) * scales) @ rng.standard_normal((20, d))
        base[:, layer] = low + 0.01 * rng.standard_normal((n, d))
    harmful = rng.permutation(np.arange(n) < n // 2)
    aligned = base.copy()
    shift = 0.3 * rng.standard_normal((n, n_layers - 1, 3)) @ rng.standard_normal((3, d))
    aligned[:, 1:] += shift.astype(np.float32)
    aligned[harmful, 1:] += 0.5 * rng.standard_normal(d).astype(np.float32)
    return aligned, base, harmful


def _close(got: np.ndarray, ref: np.ndarray) -> None:
    """Equal to RTOL relative to the reference's scale (NaN where the reference is NaN)."""
    got, ref = np.asarray(got, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    assert np.array_equal(np.isnan(got), np.isnan(ref))
    scale = max(1.0, float(np.nanmax(np.abs(ref))))
    assert float(np.nanmax(np.abs(got - ref))) <= RTOL * scale


@pytest.mark.parametrize("gram_min", [1024, 8])  # exact SVD / row-span cPCA, then Gram routes
@pytest.mark.parametrize("stats_on", ["aligned", "difference"])
def test_pair_geometry_equals_each_measure_on_its_own(
    monkeypatch: pytest.MonkeyPatch, gram_min: int, stats_on: str
) -> None:
    monkeypatch.setattr(_spectral, "GRAM_MIN_SIZE", gram_min)
    aligned, base, harmful = _pair()
    config = AuditConfig(n_perm=99, stats_on=stats_on, alpha=100.0)
    geo = pair_geometry(aligned, base, harmful, config)
    a64, b64 = aligned.astype(np.float64), base.astype(np.float64)
    diff = a64 - b64

    sub = pair_subspace(aligned, base, eps=config.eps)
    assert geo.subspace.ks.tolist() == sub.ks.tolist() and sub.ks[0] == 0
    for got, ref in zip(geo.subspace.layers[1:], sub.layers[1:], strict=True):
        _close(got.basis, ref.basis)
        _close(got.singular_values, ref.singular_values)

    for layer in (1, 2):
        a_l, b_l, d_l = a64[:, layer], b64[:, layer], diff[:, layer]
        arditi = arditi_direction(a_l[harmful], a_l[~harmful])
        paper = cpca_subspace(a_l, b_l, config.alpha, 1).basis[:, 0]  # the exact solver
        code = sub.layers[layer].basis[:, 0]
        for variant, v, rows in (("paper", paper, a_l), ("code", code, d_l)):
            gfs = geo.gfs[variant]
            assert abs(gfs.directions[layer] @ v) == pytest.approx(1.0, abs=1e-9)
            ref_d = abs(cohens_d(rows[harmful] @ v, rows[~harmful] @ v))
            assert gfs.d[layer] == pytest.approx(ref_d, rel=1e-8)
            assert gfs.c[layer] == pytest.approx(abs_cosine(v, arditi), abs=1e-9)
        _close(geo.arditi_d[layer], abs(cohens_d(a_l[harmful] @ arditi, a_l[~harmful] @ arditi)))
    assert geo.gfs["code"].d[0] == 0.0 and np.isnan(geo.gfs["paper"].c[0])

    _close(geo.cka, [linear_cka(a64[:, i], b64[:, i]) for i in range(3)])
    norms = [np.linalg.norm(diff[:, i]) / np.linalg.norm(b64[:, i]) for i in range(3)]
    _close(geo.relative_change, norms)
    train, test = stratified_split(harmful, config.test_size, config.seed)
    for i in (1, 2):
        tr, te = a64[train, i], a64[test, i]
        a_tr = arditi_direction(tr[harmful[train]], tr[~harmful[train]])
        proj = te @ a_tr
        ref = abs(cohens_d(proj[harmful[test]], proj[~harmful[test]]))
        _close(geo.arditi_d_heldout[i], ref)

    x = a64 if stats_on == "aligned" else diff
    varying = [0, 1, 2] if stats_on == "aligned" else [1, 2]
    ref_stats = layer_statistics(x[harmful][:, varying], x[~harmful][:, varying], n_perm=99)
    for name in ("pseudo_f", "permanova_p", "mmd2", "mmd_p", "gamma", "probe_accuracy"):
        _close(getattr(geo.stats, name)[varying], getattr(ref_stats, name))
    if stats_on == "difference":
        assert np.isnan(geo.stats.pseudo_f[0]) and not geo.stats.mmd_reject[0]


def test_labelled_tests_with_a_shared_gram_equal_their_own_product() -> None:
    aligned, _, harmful = _pair()
    layer = PairLayer(aligned[:, 1], aligned[:, 2], harmful)
    design = LabelledDesign.of(harmful, n_perm=199, seed=5)
    assert design.keep is not None  # interleaved classes: the shared Gram is reordered
    shared = design.layer_row(layer.aligned, layer.gram("aligned"))
    own = design.layer_row(layer.aligned)
    _close(np.array(shared), np.array(own))


def test_cka_from_shared_grams_equals_linear_cka() -> None:
    aligned, base, harmful = _pair()
    layer = PairLayer(aligned[:, 2], base[:, 2], harmful)
    got = cka_from_grams(layer.gram("aligned"), layer.gram("base"))
    assert got == pytest.approx(linear_cka(layer.aligned, layer.base), rel=RTOL)
    with pytest.raises(ValueError, match="constant"):
        cka_from_grams(layer.gram("aligned"), np.zeros((40, 40)))


@pytest.mark.parametrize("alpha", [0.0, 10.0, 1000.0])
def test_davidson_with_the_shared_base_gram_equals_its_own_product(alpha: float) -> None:
    aligned, base, harmful = _pair()
    layer = PairLayer(aligned[:, 1], base[:, 1], harmful)
    own = _spectral.contrast_top_vector(layer.aligned, layer.base, alpha)
    shared = _spectral.contrast_top_vector(
        layer.aligned, layer.base, alpha, lambda: layer.gram("base")
    )
    assert own is not None and shared is not None
    assert shared[0] == pytest.approx(own[0], rel=RTOL)
    assert abs(shared[1] @ own[1]) == pytest.approx(1.0, abs=1e-12)
    assert layer.has_gram("base") == (alpha > 0)  # alpha = 0 needs no preconditioner Gram


def test_spectrum_with_a_shared_row_gram_equals_its_own_product(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_spectral, "GRAM_MIN_SIZE", 8)
    aligned, base, harmful = _pair()
    layer = PairLayer(aligned[:, 1], base[:, 1], harmful)
    own = _spectral.centered_spectrum(layer.difference, eps=0.05)
    shared = _spectral.centered_spectrum(
        layer.difference, eps=0.05, row_gram=lambda: layer.gram("difference")
    )
    _close(shared.singular_values, own.singular_values)
    for k in (1, 5):
        _close(np.abs(np.sum(shared.right_vectors(k) * own.right_vectors(k), axis=1)), np.ones(k))


def test_pair_layer_computes_each_gram_once_and_forgets_on_request() -> None:
    aligned, base, harmful = _pair()
    layer = PairLayer(aligned[:, 1], base[:, 1], harmful)
    first = layer.gram("base")
    assert layer.gram("base") is first and layer.has_gram("base")
    xc = layer.base - layer.base.mean(axis=0)
    np.testing.assert_allclose(first, xc @ xc.T, rtol=1e-13)
    layer.forget("gram:base", "difference")
    assert not layer.has_gram("base")
    np.testing.assert_array_equal(layer.difference, aligned[:, 1].astype(np.float64) - base[:, 1])
    with pytest.raises(ValueError, match="kind"):
        layer.gram("other")  # type: ignore[arg-type]
