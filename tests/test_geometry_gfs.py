"""GFS vs an independent numpy/scikit-learn re-computation, both variants, plus planted shifts."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition import PCA

from skindeep.geometry import geometric_fragility, layer_weights

RTOL = 1e-6


def ref_cohens_d(x: np.ndarray, y: np.ndarray) -> float:
    """|Cohen's d| with pooled ddof=1 SD, written out."""
    n1, n2 = len(x), len(y)
    s1 = np.sum((x - x.mean()) ** 2) / (n1 - 1)
    s2 = np.sum((y - y.mean()) ** 2) / (n2 - 1)
    pooled = np.sqrt(((n1 - 1) * s1 + (n2 - 1) * s2) / (n1 + n2 - 2))
    return abs(x.mean() - y.mean()) / pooled


def ref_gfs(
    aligned: np.ndarray, base: np.ndarray, harmful: np.ndarray, variant: str, alpha: float = 100.0
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """Independent GFS: sklearn PCA (code) or dense eigh of the contrast (paper)."""
    n_layers = aligned.shape[1]
    d_l, c_l = np.empty(n_layers), np.empty(n_layers)
    for layer in range(n_layers):
        a_l, b_l = aligned[:, layer], base[:, layer]
        if variant == "code":
            diff = a_l - b_l
            v = PCA(n_components=1, svd_solver="full").fit(diff).components_[0]
            proj = diff @ v
        else:
            contrast = np.cov(a_l.T) - alpha * np.cov(b_l.T)
            v = np.linalg.eigh(contrast)[1][:, -1]
            proj = a_l @ v
        refusal = a_l[harmful].mean(0) - a_l[~harmful].mean(0)
        d_l[layer] = ref_cohens_d(proj[harmful], proj[~harmful])
        c_l[layer] = abs(v @ refusal) / (np.linalg.norm(v) * np.linalg.norm(refusal))
    if variant == "code":
        w = np.linspace(0.5, 1.5, n_layers)
    else:
        w = np.arange(1, n_layers + 1) / n_layers
    w = w / w.sum()
    return float(np.sum(w * d_l * (1 - c_l))), d_l, c_l, w


def make_pair(
    n: int, n_layers: int, d: int, seed: int, low_rank_base: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Base activations, and an aligned model = base + harmful-only shift + per-prompt drift."""
    rng = np.random.default_rng(seed)
    harmful = np.arange(n) % 3 == 0
    if low_rank_base is None:
        base = rng.normal(size=(n, n_layers, d)) * np.linspace(2, 0.5, d)
    else:
        span = rng.normal(size=(low_rank_base, d))
        span[:, -1] = 0.0  # the last axis is outside the base's span
        base = rng.normal(size=(n, n_layers, low_rank_base)) @ span
    shift = np.zeros((n, n_layers, d))
    shift[harmful, :, -1] = np.linspace(1.0, 3.0, n_layers)
    aligned = base + shift + 0.3 * rng.normal(size=(n, n_layers, d))
    return aligned, base, harmful


def test_layer_weights() -> None:
    np.testing.assert_allclose(layer_weights(5, "code"), np.linspace(0.5, 1.5, 5) / 5.0)
    np.testing.assert_allclose(layer_weights(4, "paper"), np.array([1, 2, 3, 4]) / 10.0)
    np.testing.assert_allclose(layer_weights(1, "paper"), [1.0])
    for variant in ("code", "paper"):
        assert layer_weights(7, variant).sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="variant"):
        layer_weights(3, "other")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positive integer"):
        layer_weights(0)


@pytest.mark.parametrize(
    ("variant", "n", "d", "low_rank"),
    [("code", 60, 16, None), ("code", 24, 50, None), ("paper", 90, 12, None), ("paper", 30, 60, 8)],
)
def test_gfs_matches_independent_reference(
    variant: str, n: int, d: int, low_rank: int | None
) -> None:
    aligned, base, harmful = make_pair(n, 4, d, seed=11, low_rank_base=low_rank)
    res = geometric_fragility(aligned, base, harmful, variant=variant)  # type: ignore[arg-type]
    gfs, d_ref, c_ref, w_ref = ref_gfs(aligned, base, harmful, variant)
    assert res.gfs == pytest.approx(gfs, rel=RTOL)
    np.testing.assert_allclose(res.d, d_ref, rtol=RTOL)
    np.testing.assert_allclose(res.c, c_ref, rtol=RTOL, atol=1e-12)
    np.testing.assert_allclose(res.w, w_ref, rtol=1e-12)
    np.testing.assert_allclose(res.contribution, w_ref * d_ref * (1 - c_ref), rtol=RTOL)
    assert res.peak_layer == int(np.argmax(d_ref))
    assert res.directions.shape == res.arditi.shape == (4, d)
    np.testing.assert_allclose(np.linalg.norm(res.directions, axis=1), 1.0, rtol=1e-12)
    assert res.variant == variant
    assert res.alpha == (100.0 if variant == "paper" else None)


def test_planted_harmful_shift_gives_large_effect_at_its_layer() -> None:
    rng = np.random.default_rng(12)
    n, n_layers, d = 80, 5, 20
    harmful = np.arange(n) % 2 == 0
    base = rng.normal(size=(n, n_layers, d))
    aligned = base + 0.1 * rng.normal(size=(n, n_layers, d))
    aligned[harmful, 3, 0] += 4.0  # harmful-only shift at layer 3, along axis 0
    res = geometric_fragility(aligned, base, harmful)
    assert res.peak_layer == 3
    assert res.d[3] > 5.0
    assert np.all(np.delete(res.d, 3) < 1.0)
    assert abs(res.directions[3, 0]) > 0.99
    # a shift along the refusal direction itself is read as aligned with refusal: c ~ 1
    assert res.c[3] > 0.9


def test_identical_models_give_zero_gfs() -> None:
    rng = np.random.default_rng(13)
    h = rng.normal(size=(10, 3, 6))
    res = geometric_fragility(h, h.copy(), np.arange(10) < 5)
    assert res.gfs == 0.0
    np.testing.assert_array_equal(res.d, 0.0)


def test_gfs_validation() -> None:
    h = np.zeros((6, 2, 3))
    labels = np.array([1, 1, 1, 0, 0, 0], dtype=bool)
    with pytest.raises(ValueError, match="same shape"):
        geometric_fragility(h, np.zeros((6, 2, 4)), labels)
    with pytest.raises(ValueError, match="3-D"):
        geometric_fragility(h[:, 0], h[:, 0], labels)
    with pytest.raises(ValueError, match="at least 2 samples per class"):
        geometric_fragility(h, h, np.array([1, 0, 0, 0, 0, 0]))
    with pytest.raises(ValueError, match="length 6"):
        geometric_fragility(h, h, labels[:5])
    bad = h.copy()
    bad[2, 1, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        geometric_fragility(bad, h, labels)
    with pytest.raises(ValueError, match="variant"):
        geometric_fragility(h, h, labels, variant="both")  # type: ignore[arg-type]


def test_float32_input_is_converted_per_layer_without_loss() -> None:
    aligned, base, harmful = make_pair(30, 3, 10, seed=14)
    a32, b32 = aligned.astype(np.float32), base.astype(np.float32)
    for variant in ("code", "paper"):
        r32 = geometric_fragility(a32, b32, harmful, variant=variant)  # type: ignore[arg-type]
        r64 = geometric_fragility(
            a32.astype(np.float64),
            b32.astype(np.float64),
            harmful,
            variant=variant,  # type: ignore[arg-type]
        )
        assert r32.gfs == r64.gfs
        np.testing.assert_array_equal(r32.directions, r64.directions)


@pytest.mark.parametrize("variant", ["code", "paper"])
def test_untouched_layers_contribute_nothing(variant: str) -> None:
    """D_l = 0 (untouched) or a common shift (centered D_l = 0): no v_l, c NaN, d and share 0."""
    aligned, base, harmful = make_pair(60, 4, 10, seed=15)
    aligned[:, 0] = base[:, 0]
    aligned[:, 2] = base[:, 2] + np.linspace(-1.0, 1.0, 10)  # every prompt moved alike
    res = geometric_fragility(aligned, base, harmful, variant=variant)  # type: ignore[arg-type]
    empty = np.array([True, False, True, False])
    np.testing.assert_array_equal(res.empty, empty)
    assert np.all(np.isnan(res.c[empty])) and np.all(np.isnan(res.directions[empty]))
    np.testing.assert_array_equal(res.d[empty], 0.0)
    np.testing.assert_array_equal(res.contribution[empty], 0.0)
    # the other layers, and the sum, are exactly the independent recomputation on them alone
    _, d_ref, c_ref, _ = ref_gfs(aligned[:, ~empty], base[:, ~empty], harmful, variant)
    w = np.linspace(0.5, 1.5, 4) if variant == "code" else np.arange(1, 5) / 4
    w = w / w.sum()
    np.testing.assert_allclose(res.d[~empty], d_ref, rtol=RTOL)
    np.testing.assert_allclose(res.c[~empty], c_ref, rtol=RTOL, atol=1e-12)
    assert res.gfs == pytest.approx(float(np.sum(w[~empty] * d_ref * (1 - c_ref))), rel=RTOL)
    assert np.isfinite(res.gfs) and res.gfs == res.contribution.sum()
    np.testing.assert_allclose(np.linalg.norm(res.arditi, axis=1), 1.0, rtol=1e-12)  # still there
    assert not res.empty[res.peak_layer]


def test_identical_models_have_no_direction_anywhere() -> None:
    rng = np.random.default_rng(16)
    h = rng.normal(size=(12, 3, 5))
    for variant in ("code", "paper"):
        res = geometric_fragility(h, h.copy(), np.arange(12) < 6, variant=variant)  # type: ignore[arg-type]
        assert res.gfs == 0.0 and res.empty.all() and np.isnan(res.c).all()
