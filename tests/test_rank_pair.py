"""Effective-rank audit glue: every variant, centering, neutral contrast and spectral-gap row
against direct numpy computations on random activations."""

from __future__ import annotations

import numpy as np
import pytest

from skindeep.scores.rank_pair import NeutralActivations, rank_geometry, rank_predictors

EPS = 0.05


def numpy_rank(m: np.ndarray, eps: float = EPS, centered: bool = False) -> int:
    """The energy rule written out: smallest k with sum_{i<=k} s_i^2 >= (1 - eps) sum s_i^2."""
    if centered:
        m = m - m.mean(axis=1, keepdims=True)
    s = np.linalg.svd(m, compute_uv=False)
    energy = np.cumsum(s**2) / np.sum(s**2)
    return int(np.argmax(energy >= 1 - eps - 1e-12) + 1)


def numpy_cos(m: np.ndarray, a: np.ndarray) -> float:
    """|cos(u_1, a)| from a fresh SVD."""
    u = np.linalg.svd(m, full_matrices=False)[0][:, 0]
    return float(abs(u @ a) / np.linalg.norm(a))


@pytest.fixture(scope="module")
def acts() -> dict[str, np.ndarray]:
    """Random paired activations [n, L, d] with a low-rank alignment shift on harmful prompts."""
    rng = np.random.default_rng(0)
    n, n_layers, d = 24, 3, 16
    harmful = np.arange(n) % 3 != 0  # 16 harmful, 8 harmless
    base_chat = rng.normal(size=(n, n_layers, d))
    shift = rng.normal(size=(n_layers, d, 2)) @ rng.normal(size=(2, n))  # rank 2 per layer
    chat = base_chat + 0.05 * rng.normal(size=base_chat.shape)
    chat[harmful] += 3.0 * shift.transpose(2, 0, 1)[harmful]
    return {
        "chat": chat,
        "base_chat": base_chat,
        "base_raw": base_chat + 10.0 * rng.normal(size=base_chat.shape),
        "aligned_raw": chat + rng.normal(size=base_chat.shape),
        "harmful": harmful,
    }


def test_every_variant_matches_numpy(acts) -> None:
    g = rank_geometry(
        acts["chat"], acts["base_chat"], acts["harmful"], acts["base_raw"], acts["aligned_raw"]
    )
    h = acts["harmful"]
    chat = acts["chat"]
    arditi = chat[h].mean(0) - chat[~h].mean(0)  # [L, d]
    direct = {
        "naive": (chat - acts["base_raw"])[h],
        "template": (chat - acts["base_chat"])[h],
        "aligned": (chat - acts["aligned_raw"])[h],
        "did": (chat - acts["base_chat"])[h] - (chat - acts["base_chat"])[~h].mean(0),
    }
    assert set(g.variants) == set(direct)
    for name, rows in direct.items():
        v = g.variants[name]
        assert v.n_columns == h.sum() and v.d == 16
        for layer in range(3):
            m = rows[:, layer].T  # [d, n]
            assert v.ranks[layer] == numpy_rank(m), name
            assert v.ranks_centered[layer] == numpy_rank(m, centered=True), name
            assert v.cos[layer] == pytest.approx(numpy_cos(m, arditi[layer]), abs=1e-10)
            np.testing.assert_allclose(v.spectra[layer], np.linalg.svd(m, compute_uv=False))
        np.testing.assert_allclose(v.rho, v.ranks / 16)
        np.testing.assert_allclose(v.rho_min, v.ranks / min(16, h.sum()))
        np.testing.assert_allclose(v.rho_centered, v.ranks_centered / 16)
        assert v.means()["rho"] == pytest.approx(np.mean(v.ranks) / 16)
    # the shift is rank 2: the template matrix needs 2 (not 1, not the noise floor)
    assert list(g.variants["template"].ranks) == [2, 2, 2]
    assert g.variants["naive"].ranks.min() > 2  # raw-format noise is full rank


def test_neutral_contrasts_and_gaps_match_numpy(acts) -> None:
    rng = np.random.default_rng(1)
    n = 20
    na, nb = rng.normal(size=(2, n, 3, 16))
    first = np.arange(n) < 12
    neutral = NeutralActivations("register", ("en", "fr"), na, nb, first)
    g = rank_geometry(acts["chat"], acts["base_chat"], acts["harmful"], neutral=[neutral])
    assert set(g.variants) == {"template", "did"}  # no raw activations: no naive/aligned
    nr = g.neutral[0]
    h = acts["harmful"]
    safety_a = acts["chat"][h].mean(0) - acts["chat"][~h].mean(0)
    own = na[first].mean(0) - na[~first].mean(0)
    for layer in range(3):
        m = (na - nb)[first][:, layer].T
        assert nr.template.ranks[layer] == numpy_rank(m)
        assert nr.template.cos[layer] == pytest.approx(numpy_cos(m, safety_a[layer]), abs=1e-10)
        did = ((na - nb)[first] - (na - nb)[~first].mean(0))[:, layer].T
        assert nr.did.ranks[layer] == numpy_rank(did)
        assert nr.did.cos[layer] == pytest.approx(numpy_cos(did, own[layer]), abs=1e-10)
    # limit (c): harmful M_template against each reference, paired on min(n_h, n_u) columns
    mh_all = (acts["chat"] - acts["base_chat"])[h]
    refs = {
        "harmless": (acts["chat"] - acts["base_chat"])[~h],
        "register:en": (na - nb)[first],
        "register:fr": (na - nb)[~first],
    }
    assert len(g.gaps) == 3 * len(refs)
    for row in g.gaps:
        mu_rows = refs[row.reference]
        k = min(len(mh_all), len(mu_rows))
        mh, mu = mh_all[:k, row.layer].T, mu_rows[:k, row.layer].T
        r = numpy_rank(mh)
        s_r = np.linalg.svd(mh - mu, compute_uv=False)[r - 1]
        kappa = s_r**2 / (EPS * (np.sum(mh**2) + np.sum(mu**2)))
        assert (row.r, row.n_columns) == (r, k)
        assert row.kappa_lb == pytest.approx(kappa, rel=1e-10)
        assert row.kappa_lb <= row.ceiling == pytest.approx(2 / (EPS * r))
        assert row.holds == (kappa >= 1)
    assert g.gap_share == pytest.approx(np.mean([row.holds for row in g.gaps]))
    preds = rank_predictors(g)
    assert preds["rho_template"] == g.variants["template"].means()["rho"]
    assert preds["cos_did_peak"] == g.variants["did"].cos[g.peak_index]
    assert preds["rho_neutral_register"] == nr.template.means()["rho"]


def test_untouched_layers_rank_zero_and_are_skipped_by_gaps(acts) -> None:
    """A layer alignment did not change (M_template = 0) has rank 0, no cos, no gap row."""
    chat = acts["chat"].copy()
    chat[:, 0] = acts["base_chat"][:, 0]
    g = rank_geometry(chat, acts["base_chat"], acts["harmful"])
    assert g.variants["template"].ranks[0] == 0
    assert np.isnan(g.variants["template"].cos[0])
    assert g.variants["template"].ranks[1] == 2
    assert {row.layer for row in g.gaps} == {1, 2}


@pytest.mark.parametrize("seed", range(6))
def test_kappa_lb_never_exceeds_its_ceiling_on_random_matrices(seed: int) -> None:
    """kappa_lb <= 2/(eps r) for random M_h, M_u of random shape, rank and scale."""
    from skindeep.geometry import spectral_gap_bound

    rng = np.random.default_rng(seed)
    for _ in range(20):
        d, n = rng.integers(2, 40, size=2)
        rank = int(rng.integers(1, min(d, n) + 1))
        mh = rng.normal(size=(d, rank)) @ rng.normal(size=(rank, n)) * rng.uniform(0.01, 100)
        mu = rng.normal(size=(d, n)) * rng.uniform(0, 10)
        eps = float(rng.uniform(0.01, 0.5))
        for r in {1, rank, int(min(d, n))}:
            res = spectral_gap_bound(mh, mu, r=r, eps=eps)
            assert res.kappa_lb <= 2 / (eps * r) * (1 + 1e-12)


def test_base_contrast_matches_numpy_and_bounds_did_cos(acts) -> None:
    g = rank_geometry(acts["chat"], acts["base_chat"], acts["harmful"])
    h, a, b = acts["harmful"], acts["chat"], acts["base_chat"]
    m_base = b[h].mean(0) - b[~h].mean(0)
    change = a[h].mean(0) - a[~h].mean(0) - m_base
    expected = np.linalg.norm(m_base, axis=1) / np.linalg.norm(change, axis=1)
    np.testing.assert_allclose(g.base_contrast, expected, rtol=1e-12)
    assert rank_predictors(g)["base_contrast_peak"] == pytest.approx(expected[g.peak_index])


@pytest.mark.parametrize("ratio", [0.25, 1.0, 3.0])
def test_inherited_contrast_caps_did_cos(ratio: float) -> None:
    """The base already separates harmful prompts along e_0 (by `ratio`), alignment adds e_1:
    u_1(M_DiD) is e_1 and |cos| with the aligned Arditi direction is 1/sqrt(1 + ratio^2)."""
    rng = np.random.default_rng(1)
    n, d = 20, 8
    harmful = np.arange(n) < 10
    base = 0.01 * rng.normal(size=(n, 2, d))
    base[harmful, :, 0] += ratio
    aligned = base.copy()
    aligned[harmful, :, 1] += 1.0
    g = rank_geometry(aligned, base, harmful)
    np.testing.assert_allclose(g.base_contrast, ratio, rtol=0.05)
    expected = 1.0 / np.sqrt(1.0 + ratio**2)
    np.testing.assert_allclose(g.variants["did"].cos, expected, atol=0.02)
