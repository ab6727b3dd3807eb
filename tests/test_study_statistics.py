"""The study's cross-model statistics against scipy, textbook formulas and brute force."""

from __future__ import annotations

import doctest
import itertools
import json
import math

import numpy as np
import pytest
from scipy import stats
from scipy.special import ndtr, ndtri

from skindeep.study import correlation, fragility, statistics
from skindeep.study.correlation import (
    Interval,
    Undefined,
    bootstrap_ci,
    holm,
    leave_out_range,
    partial_spearman,
    permutation_p,
    spearman,
    spearman_along,
)
from skindeep.study.fragility import noise_ceiling, spearman_brown, summarise_curves
from skindeep.study.statistics import analyse, rank_error


@pytest.mark.parametrize("module", [correlation, fragility, statistics])
def test_doctests(module) -> None:
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_spearman_matches_scipy_with_ties_and_batches() -> None:
    rng = np.random.default_rng(1)
    x = rng.integers(0, 5, size=(7, 15)).astype(float)  # many ties
    y = rng.normal(size=(7, 15))
    got = spearman_along(x, y)
    want = [stats.spearmanr(a, b).statistic for a, b in zip(x, y, strict=True)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert spearman(x[0], y[0]) == pytest.approx(want[0], rel=1e-12)


def test_spearman_undefined_not_nan() -> None:
    assert spearman([1, 2, 3], [3, 2, 1]) == Undefined("3 models (need at least 4)")
    assert isinstance(spearman([1, 2, 3, 4], [5, 5, 5, 5]), Undefined)
    assert isinstance(bootstrap_ci([2, 2, 2, 2, 2], [1, 2, 3, 4, 5]), Undefined)
    assert isinstance(permutation_p([1, 2, 3, 4, 5], [0, 0, 0, 0, 0]), Undefined)


def _rho_stat(a, b, axis=-1):
    return spearman_along(np.moveaxis(a, axis, -1), np.moveaxis(b, axis, -1))


def test_bootstrap_ci_is_scipy_bca_without_degenerate_resamples() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=14)
    y = x + rng.normal(size=14)
    ref = stats.bootstrap(
        (x, y), _rho_stat, paired=True, method="BCa", n_resamples=2000, rng=7, vectorized=True
    )
    assert np.isfinite(ref.bootstrap_distribution).all()
    got = bootstrap_ci(x, y, n_resamples=2000, seed=7)
    assert isinstance(got, Interval)
    assert got.low == pytest.approx(ref.confidence_interval.low, abs=1e-12)
    assert got.high == pytest.approx(ref.confidence_interval.high, abs=1e-12)
    assert got.low < spearman(x, y) < got.high


def _textbook_bca(x, y, dist, confidence):
    """Efron & Tibshirani (1993) 14.3: BCa from a bootstrap distribution and the jackknife."""
    theta = stats.spearmanr(x, y).statistic
    z0 = ndtri((np.sum(dist < theta) + np.sum(dist <= theta)) / 2 / dist.size)
    n = x.size
    jack = np.array([stats.spearmanr(np.delete(x, i), np.delete(y, i)).statistic for i in range(n)])
    u = jack.mean() - jack
    a = np.sum(u**3) / (6 * np.sum(u**2) ** 1.5)
    za = ndtri((1 - confidence) / 2)
    lo = ndtr(z0 + (z0 + za) / (1 - a * (z0 + za)))
    hi = ndtr(z0 + (z0 - za) / (1 - a * (z0 - za)))
    return np.quantile(dist, [lo, hi])


def test_bootstrap_ci_drops_degenerate_resamples_then_bca() -> None:
    x = np.array([0.0, 0.0, 1.0, 1.0, 2.0, 3.0])  # ties: many resamples are constant
    y = np.array([0.1, 0.3, 0.2, 0.5, 0.4, 0.9])
    idx = np.random.default_rng(3).integers(0, 6, (4000, 6))  # scipy's paired resampling draw
    rx, ry = x[idx], y[idx]
    degenerate = (np.ptp(rx, axis=1) == 0) | (np.ptp(ry, axis=1) == 0)
    assert degenerate.any()
    with np.errstate(invalid="ignore"):
        rhos = spearman_along(rx[~degenerate], ry[~degenerate])
    want = _textbook_bca(x, y, rhos, 0.9)
    got = bootstrap_ci(x, y, n_resamples=4000, seed=3, confidence=0.9)
    assert isinstance(got, Interval)
    np.testing.assert_allclose(got.as_list(), want, rtol=1e-10)


def test_bootstrap_ci_with_few_resamples_and_mostly_degenerate_ones() -> None:
    x, y = np.arange(10.0), np.arange(10.0) % 3
    assert isinstance(bootstrap_ci(x, y, n_resamples=99), Interval)  # the config's minimum
    one_x, one_y = np.eye(8)[0], np.eye(8)[1]  # each constant but for one model: most resamples
    few = bootstrap_ci(one_x, one_y, n_resamples=500)
    assert few == Undefined(few.reason) and "bootstrap resamples had a rho" in few.reason


def test_bootstrap_ci_of_a_perfect_ranking_is_a_point() -> None:
    assert bootstrap_ci(np.arange(8.0), np.arange(8.0) ** 2, n_resamples=500) == Interval(1.0, 1.0)


def _two_sided_exact(x, y):
    obs = stats.spearmanr(x, y).statistic
    null = np.array([stats.spearmanr(np.array(p), y).statistic for p in itertools.permutations(x)])
    tol = 1e-12
    less, greater = np.mean(null <= obs + tol), np.mean(null >= obs - tol)
    return min(1.0, 2 * min(less, greater))


@pytest.mark.parametrize(
    ("x", "y"),
    [
        ([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [2.0, 1.0, 4.0, 3.0, 6.0, 5.0]),
        ([1.0, 1.0, 2.0, 3.0, 5.0, 8.0], [0.3, 0.1, 0.2, 0.9, 0.4, 0.5]),  # ties in x
        ([6.0, 5.0, 4.0, 3.0, 2.0], [1.0, 3.0, 2.0, 4.0, 5.0]),
    ],
)
def test_permutation_p_is_exact_enumeration(x, y) -> None:
    assert permutation_p(x, y) == pytest.approx(_two_sided_exact(np.array(x), np.array(y)))


def test_permutation_p_monte_carlo_is_seeded_and_close_to_exact() -> None:
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=8), rng.normal(size=8)
    # all 8! pairings, rho by the no-ties formula 1 - 6 sum d^2 / (n (n^2 - 1))
    perms = np.array(list(itertools.permutations(range(1, 9))))
    ry = stats.rankdata(y)
    null = 1 - 6 * ((perms - ry) ** 2).sum(1) / (8 * 63)
    obs = stats.spearmanr(x, y).statistic
    exact = min(1.0, 2 * min(np.mean(null <= obs + 1e-12), np.mean(null >= obs - 1e-12)))
    p1 = permutation_p(x, y, n_permutations=5000, seed=1)
    assert p1 == permutation_p(x, y, n_permutations=5000, seed=1)
    assert p1 == pytest.approx(exact, abs=0.03)


def test_leave_out_ranges_by_brute_force() -> None:
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=10), rng.normal(size=10)
    rhos = [stats.spearmanr(np.delete(x, i), np.delete(y, i)).statistic for i in range(10)]
    got = leave_out_range(x, y)
    assert got.as_list() == pytest.approx([min(rhos), max(rhos)])
    groups = np.array(list("aabbbccddd"))
    by_group = [stats.spearmanr(x[groups != g], y[groups != g]).statistic for g in "abcd"]
    assert leave_out_range(x, y, groups).as_list() == pytest.approx([min(by_group), max(by_group)])
    assert isinstance(leave_out_range(x, y, ["a"] * 10), Undefined)


def test_partial_spearman_matches_the_formula_and_recursion() -> None:
    rng = np.random.default_rng(6)
    z, w = rng.normal(size=20), rng.normal(size=20)
    x = z + rng.normal(size=20)
    y = z + 0.5 * w + rng.normal(size=20)
    r = lambda a, b: stats.spearmanr(a, b).statistic  # noqa: E731

    def p1(a, b, c):
        return (r(a, b) - r(a, c) * r(b, c)) / math.sqrt((1 - r(a, c) ** 2) * (1 - r(b, c) ** 2))

    assert partial_spearman(x, y, z) == pytest.approx(p1(x, y, z), rel=1e-10)
    # two controls: partial of partials (rank-based)
    xy_z, xw_z, yw_z = p1(x, y, z), p1(x, w, z), p1(y, w, z)
    want = (xy_z - xw_z * yw_z) / math.sqrt((1 - xw_z**2) * (1 - yw_z**2))
    assert partial_spearman(x, y, np.column_stack([z, w])) == pytest.approx(want, rel=1e-10)
    assert isinstance(partial_spearman(x, y, x * 3 + 1), Undefined)  # control is the predictor


def test_holm_by_hand() -> None:
    p = [0.01, 0.04, 0.03, 0.005, Undefined("x"), 0.5]
    # sorted 0.005, 0.01, 0.03, 0.04, 0.5 with m = 5: 0.025, 0.04, 0.09, 0.09 (max), 0.5
    got = holm(p)
    assert got[4] == Undefined("x")
    want = [0.04, 0.09, 0.09, 0.025, 0.5]
    assert [got[i] for i in (0, 1, 2, 3, 5)] == pytest.approx(want)
    assert holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])


def test_noise_ceiling_enumerates_splits_and_applies_spearman_brown() -> None:
    rng = np.random.default_rng(7)
    true = rng.normal(size=15)
    m = true[:, None] + rng.normal(size=(15, 4))
    want = []
    for half in itertools.combinations(range(4), 2):
        rest = [s for s in range(4) if s not in half]
        rho = stats.spearmanr(m[:, list(half)].mean(1), m[:, rest].mean(1)).statistic
        want.append(2 * rho / (1 + rho))
    got = noise_ceiling(m, n_splits=10)
    assert got.reliability == pytest.approx(np.mean(want), rel=1e-12)
    assert got.ceiling == pytest.approx(math.sqrt(got.reliability))
    assert got.split_rho == pytest.approx(np.mean([(2 / w - 1) ** -1 for w in want]))
    assert (got.n_models, got.n_seeds) == (15, 4)
    assert spearman_brown(0.6) == pytest.approx(2 * 0.6 / 1.6)
    assert spearman_brown(0.5, factor=3) == pytest.approx(1.5 / 2)


def test_noise_ceiling_random_splits_are_seeded_and_noise_lowers_it() -> None:
    rng = np.random.default_rng(8)
    true = rng.normal(size=20)
    quiet = true[:, None] + 0.1 * rng.normal(size=(20, 10))
    loud = true[:, None] + 3.0 * rng.normal(size=(20, 10))
    a = noise_ceiling(quiet, n_splits=50, seed=1)
    assert np.array_equal(a.split_rhos, noise_ceiling(quiet, n_splits=50, seed=1).split_rhos)
    assert a.split_rhos.shape == (50,)
    assert a.reliability > 0.95 > noise_ceiling(loud, n_splits=50, seed=1).reliability
    assert isinstance(noise_ceiling(quiet[:, :1]), Undefined)


def test_summarise_curves_by_hand() -> None:
    steps = [0, 10, 30, 60]
    curves = np.array([[0.8, 0.6, 0.3, 0.2], [0.5, 0.5, 0.45, 0.4]])
    s = summarise_curves(steps, curves)
    np.testing.assert_allclose(s.retention, [0.25, 0.8])
    # trapezoids of curve / start over 60 steps
    r0 = curves[0] / 0.8
    auc0 = (10 * (r0[0] + r0[1]) + 20 * (r0[1] + r0[2]) + 30 * (r0[2] + r0[3])) / 2 / 60
    assert s.auc[0] == pytest.approx(auc0)
    assert s.steps_to_half.tolist() == [30.0, 90.0]  # second never halves: 60 + 30
    assert s.censored.tolist() == [False, True]
    assert s.mean()["retention"] == pytest.approx(0.525)
    with pytest.raises(ValueError, match="refusal 0"):
        summarise_curves(steps, [[0.0, 0.0, 0.0, 0.0]])


def _rank_error_brute(x, y, recipes):
    bad = pairs = 0.0
    n = len(x)
    for g in sorted(set(recipes)):
        tr = [i for i in range(n) if recipes[i] != g]
        rho = stats.spearmanr(x[tr], y[tr]).statistic
        s = 0 if np.isnan(rho) else np.sign(rho)
        seen = set()
        for i in range(n):
            for j in range(n):
                if recipes[i] != g or i == j or frozenset((i, j)) in seen or y[i] == y[j]:
                    continue
                seen.add(frozenset((i, j)))
                d = s * (x[i] - x[j]) * np.sign(y[i] - y[j])
                bad += 0.5 if s * (x[i] - x[j]) == 0 else float(d < 0)
                pairs += 1
    return bad / pairs


def test_rank_error_by_brute_force() -> None:
    rng = np.random.default_rng(9)
    x = rng.integers(0, 6, 12).astype(float)
    y = -x + rng.normal(size=12)
    recipes = list("aaabbbccccdd")
    got = rank_error(x, y, recipes)
    assert got.error == pytest.approx(_rank_error_brute(x, y, recipes))
    assert set(got.signs.values()) == {-1}
    assert rank_error(x, -x, recipes).error == pytest.approx(0.0, abs=0.1)  # ties in x count 0.5


def test_analyse_names_holm_and_no_nan() -> None:
    rng = np.random.default_rng(10)
    n = 12
    seeds = rng.normal(size=(n, 4))
    y = seeds.mean(1)
    preds = {"good": -y + 0.1 * rng.normal(size=n), "noise": rng.normal(size=n), "flat": np.ones(n)}
    base = {"size": rng.normal(size=n), "refusal": y + rng.normal(size=n)}
    groups = {"recipe": np.repeat(list("abcd"), 3), "architecture": np.tile(list("xyz"), 4)}
    res = analyse(preds, y, base, groups, seeds, n_resamples=500, n_permutations=500, seed=3)
    rec = {k: v.to_json() for k, v in res.predictors.items()}
    text = json.dumps(rec, allow_nan=False)  # NaN-free
    for k in (
        "rho",
        "ci",
        "p_perm",
        "loo",
        "loo_recipe",
        "loo_arch",
        "partial",
        "p_holm",
        "noise_ceiling",
    ):
        assert k in rec["good"]
    assert rec["flat"]["rho"] is None and "constant" in rec["flat"]["undefined"]["rho"]
    assert rec["flat"]["p_holm"] is None
    p = [rec["good"]["p_perm"], rec["noise"]["p_perm"]]
    assert [rec["good"]["p_holm"], rec["noise"]["p_holm"]] == pytest.approx(holm(p))
    assert rec["good"]["partial"]["size"] == pytest.approx(
        partial_spearman(preds["good"], y, base["size"])
    )
    assert rec["good"]["rho"] == pytest.approx(stats.spearmanr(preds["good"], y).statistic)
    assert rec["good"]["noise_ceiling"] == res.noise_ceiling.ceiling
    assert set(res.baselines["size"].partial) == {"refusal"}
    again = analyse(preds, y, base, groups, seeds, n_resamples=500, n_permutations=500, seed=3)
    assert (
        json.dumps({k: v.to_json() for k, v in again.predictors.items()}, allow_nan=False) == text
    )
    with pytest.raises(ValueError, match="predictor 'good'"):
        analyse({"good": y[:-1]}, y, {}, {}, None)


def test_by_setting_averages_replicates_then_matches_scipy() -> None:
    # 8 settings x 2 replicates (training seeds): the setting-level rho, BCa CI and permutation
    # p are those of the 8 setting means, computed here with scipy directly.
    rng = np.random.default_rng(21)
    truth = rng.normal(size=8)
    x = np.repeat(truth, 2) + 0.3 * rng.normal(size=16)
    y = -np.repeat(truth, 2) + 0.5 * rng.normal(size=16)
    settings = np.repeat([f"s{i}" for i in range(8)], 2)
    order = rng.permutation(16)  # replicates need not be adjacent
    x, y, settings = x[order], y[order], settings[order]
    groups = {"recipe": np.tile(list("ab"), 8), "setting": settings}
    res = analyse({"p": x}, y, {}, groups, None, n_resamples=999, n_permutations=999, seed=4)
    level = res.predictors["p"].by_setting
    xm = np.array([x[settings == s].mean() for s in dict.fromkeys(settings)])
    ym = np.array([y[settings == s].mean() for s in dict.fromkeys(settings)])
    assert level.n_settings == 8
    assert level.rho == pytest.approx(stats.spearmanr(xm, ym).statistic)
    got = bootstrap_ci(xm, ym, n_resamples=999, seed=4)  # scipy's BCa (tested above)
    assert level.ci.as_list() == pytest.approx(got.as_list())
    assert level.p_perm == permutation_p(xm, ym, n_permutations=999, seed=4)
    # fewer independent points than models: the setting-level interval is the wider one
    full = res.predictors["p"].ci.as_list()
    assert level.ci.high - level.ci.low > full[1] - full[0]
    rec = res.predictors["p"].to_json()["by_setting"]
    assert rec["n_settings"] == 8 and rec["rho"] == pytest.approx(level.rho)


def test_by_setting_is_undefined_without_replicates() -> None:
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=6), rng.normal(size=6)
    groups = {"setting": np.array(list("abcdef"))}
    res = analyse({"p": x}, y, {}, groups, None, n_resamples=99, n_permutations=99)
    rec = res.predictors["p"].to_json()
    assert rec["by_setting"] is None
    assert "own setting" in rec["undefined"]["by_setting"]
    assert analyse({"p": x}, y, {}, {}, None, n_resamples=99,
                   n_permutations=99).predictors["p"].to_json()["by_setting"] is None  # fmt: skip
