"""The robustness sweep against geometric_fragility and an independent scipy recomputation."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
from scipy.linalg import subspace_angles
from scipy.spatial.distance import mahalanobis as scipy_mahalanobis

from skindeep.activations import ActivationWriter
from skindeep.activations.spec import CollectionSpec
from skindeep.activations.store import ActivationStore
from skindeep.geometry import geometric_fragility
from skindeep.study import sweep
from skindeep.study.sweep import SweepOptions, store_arrays, sweep_pair


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A pair whose alignment moves harmful prompts along a few directions, with noise."""
    rng = np.random.default_rng(0)
    n, n_layers, d = 48, 4, 12
    harmful = np.arange(n) % 3 == 0
    base = rng.normal(size=(n, n_layers, d))
    shift = rng.normal(size=(n_layers, 3, d))
    coef = rng.normal(size=(n, 3)) + 2.0 * harmful[:, None]
    aligned = base + np.einsum("nk,lkd->nld", coef, shift) + 0.3 * rng.normal(size=base.shape)
    aligned[:, 0] = base[:, 0]  # an untouched layer: no energy, contributes 0
    return aligned, base, harmful


def _points(points, setting, predictor):
    return {p.value: p.gfs for p in points if p.setting == setting and p.predictor == predictor}


def _reference_gfs(aligned, base, harmful, k, weights):
    """GFS at rank k from numpy SVD + scipy Mahalanobis + scipy principal angles."""
    total = 0.0
    for i in range(aligned.shape[1]):
        diff = aligned[:, i] - base[:, i]
        centered = diff - diff.mean(0)
        if np.sum(centered**2) == 0:
            continue
        basis = np.linalg.svd(centered, full_matrices=False)[2][:k].T
        proj = diff @ basis
        p, q = proj[harmful], proj[~harmful]
        pooled = (np.cov(p.T, ddof=1) * (len(p) - 1) + np.cov(q.T, ddof=1) * (len(q) - 1)) / (
            len(p) + len(q) - 2
        )
        dist = scipy_mahalanobis(p.mean(0), q.mean(0), np.linalg.inv(np.atleast_2d(pooled)))
        a = aligned[harmful, i].mean(0) - aligned[~harmful, i].mean(0)
        c = np.cos(subspace_angles(a[:, None], basis).min())
        total += weights[i] * dist * (1 - c)
    return total


def test_doctests() -> None:
    result = doctest.testmod(sweep)
    assert result.attempted > 0 and result.failed == 0


def test_rank_one_is_geometric_fragility(pair) -> None:
    aligned, base, harmful = pair
    opts = SweepOptions(alpha=(10.0, 100.0), n_prompts=(), eps=())
    pts = sweep_pair(aligned, base, harmful, opts)
    for v in ("code", "paper"):
        ref = geometric_fragility(aligned, base, harmful, v, alpha=100.0)
        assert _points(pts, "default", f"gfs_{v}")["-"] == pytest.approx(ref.gfs, rel=1e-9)
        assert _points(pts, "k", f"gfs_{v}")["1"] == pytest.approx(ref.gfs, rel=1e-9)
        profile = ref.d * (1 - np.nan_to_num(ref.c))
        uniform = _points(pts, "weighting", f"gfs_{v}")["uniform"]
        assert uniform == pytest.approx(profile.mean(), rel=1e-9)
    ref10 = geometric_fragility(aligned, base, harmful, "paper", alpha=10.0)
    assert _points(pts, "alpha", "gfs_paper")["10"] == pytest.approx(ref10.gfs, rel=1e-9)
    code_w = geometric_fragility(aligned, base, harmful, "code")
    lin = _points(pts, "weighting", "gfs_code")["code"]
    assert lin == pytest.approx(code_w.gfs, rel=1e-9)


def test_rank_k_matches_an_independent_recomputation(pair) -> None:
    aligned, base, harmful = pair
    pts = sweep_pair(aligned, base, harmful, SweepOptions(alpha=(), n_prompts=(), eps=()))
    w = np.linspace(0.5, 1.5, 4) / np.linspace(0.5, 1.5, 4).sum()
    got = _points(pts, "k", "gfs_code")
    for k in (1, 2, 4, 8):
        assert got[str(k)] == pytest.approx(_reference_gfs(aligned, base, harmful, k, w), rel=1e-8)
    assert got["2"] != pytest.approx(got["1"])


def test_eps_rule_caps_and_limits(pair) -> None:
    aligned, base, harmful = pair
    pts = sweep_pair(aligned, base, harmful, SweepOptions(eps=(0.0, 0.999), k_cap=4))
    eps = _points(pts, "eps", "gfs_code")
    k = _points(pts, "k", "gfs_code")
    assert eps["0"] == pytest.approx(k["4"])  # eps 0 keeps every direction, capped at 4
    assert eps["0.999"] == pytest.approx(k["1"])  # eps near 1 keeps one


def test_prompt_subsamples_are_per_class_and_seeded(pair) -> None:
    aligned, base, harmful = pair  # 16 harmful, 32 harmless
    opts = SweepOptions(n_prompts=(6, 16, 17), alpha=(), eps=())
    pts = sweep_pair(aligned, base, harmful, opts)
    counts = _points(pts, "n_prompts", "gfs_code")
    assert set(counts) == {"6", "16"}  # 17 > 16 harmful prompts: skipped
    for per_class in (6, 16):
        idx = sweep._subsample(harmful, per_class, 0)
        assert (harmful[idx].sum(), (~harmful[idx]).sum()) == (per_class, per_class)
        assert len(set(idx.tolist())) == 2 * per_class
        for v in ("code", "paper"):
            ref = geometric_fragility(aligned[idx], base[idx], harmful[idx], v, alpha=100.0)
            got = _points(pts, "n_prompts", f"gfs_{v}")[str(per_class)]
            assert got == pytest.approx(ref.gfs, rel=1e-9)
    again = sweep_pair(aligned, base, harmful, opts)
    assert _points(again, "n_prompts", "gfs_code") == counts


def test_convention_points_and_bad_options(pair) -> None:
    aligned, base, harmful = pair
    pts = sweep.convention_points("fmt", "chat", aligned, base, harmful, SweepOptions())
    assert {(p.setting, p.value, p.predictor) for p in pts} == {
        ("fmt", "chat", "gfs_code"),
        ("fmt", "chat", "gfs_paper"),
    }
    with pytest.raises(ValueError, match="eps"):
        SweepOptions(eps=(1.5,))
    with pytest.raises(ValueError, match="extra"):
        SweepOptions(bogus=1)
    with pytest.raises(ValueError, match="paired"):
        sweep_pair(aligned, base[:, :2], harmful)


def _store(path, acts, labels, fmt="raw"):
    n, n_layers, d = acts.shape
    spec = CollectionSpec(
        layers=tuple(range(n_layers)), site="block_out", positions="last", offsets=(-1,),
        fmt=fmt, hidden_size=d, num_layers=n_layers, n_prompts=n, n_tokens=n, model="toy",
        dtype="float32",
    )  # fmt: skip
    writer = ActivationWriter(path)
    prompts = [f"p{i}" for i in range(n)]
    writer.begin(spec, prompts, labels)
    writer.add(list(range(n)), labels, acts)
    writer.end()
    return ActivationStore(path)


def test_store_arrays_reads_a_pair(tmp_path, pair) -> None:
    aligned, base, harmful = pair
    labels = ["harmful" if h else "harmless" for h in harmful]
    a = _store(tmp_path / "a", aligned.astype(np.float32), labels)
    b = _store(tmp_path / "b", base.astype(np.float32), labels)
    ha, hb, mask = store_arrays(a, b)
    np.testing.assert_array_equal(ha, aligned.astype(np.float32))
    np.testing.assert_array_equal(hb, base.astype(np.float32))
    np.testing.assert_array_equal(mask, harmful)
    chat = _store(tmp_path / "c", base.astype(np.float32), labels, fmt="chat")
    with pytest.raises(ValueError, match="fmt"):
        store_arrays(a, chat)
