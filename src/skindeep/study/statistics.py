"""Does a predictor rank models by fragility? Every cross-model statistic of the study, in one call.

`analyse` takes, over n models, each predictor's values, the target (a fragility summary, mean
over fine-tuning seeds), the baselines, group labels (recipe, architecture) and the per-seed
target matrix, and returns a typed result per predictor whose `to_json()` uses the names of
`study.json`: rho, ci [low, high], p_perm, loo [min, max], loo_recipe, loo_arch, partial
{baseline: rho}, p_holm, noise_ceiling, and `by_setting` (the same rho, CI and p over the means
of each setting's replicates, when models repeat one setting at other seeds: replicates are not
independent models, so this is the honest sample size). Pure numpy/scipy; undefined values
are `Undefined` (None plus a reason in JSON), never NaN.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from skindeep.study.correlation import (
    FloatArray,
    Interval,
    Undefined,
    as_vector,
    bootstrap_ci,
    holm,
    leave_out_range,
    partial_spearman,
    permutation_p,
    spearman,
)
from skindeep.study.fragility import NoiseCeiling, noise_ceiling


@dataclass(frozen=True)
class RankError:
    """Out-of-sample pairwise rank error, leaving one recipe out at a time."""

    error: float
    """Pooled over folds: discordant / comparable pairs (0 perfect, 0.5 chance, 1 reversed)."""
    per_recipe: dict[str, float | Undefined]
    """The same fraction for each held-out recipe."""
    signs: dict[str, int]
    """The direction (+1, -1, 0 if undefined) learned on the other recipes, per held-out recipe."""


def rank_error(x: ArrayLike, y: ArrayLike, recipes: ArrayLike) -> RankError | Undefined:
    """Leave-one-recipe-out ranking error of predictor x[n] for target y[n].

    For each recipe g: fit on the models of every other recipe, i.e. learn the direction
    s = sign(Spearman rho(x, y)) there (a rank predictor learns nothing but its direction;
    s = 0 when that rho is undefined), then rank the held-out models by s * x among all
    models. Scored over the pairs (i, j) with i in g and j any other model (each pair inside g
    once) whose targets differ: a pair is discordant (1) when s * (x_i - x_j) and (y_i - y_j)
    have opposite signs, half (0.5) when s * (x_i - x_j) = 0. The per-recipe error is the
    discordant share; `error` pools the counts over all folds.

    >>> e = rank_error([1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 6, 5], ["a", "a", "b", "b", "c", "c"])
    >>> e.error, e.per_recipe["c"], e.signs["c"]
    (0.037037037037037035, 0.1111111111111111, 1)
    """
    xv = as_vector(x, "x")
    yv = as_vector(y, "y", xv.shape[0])
    labels = np.asarray(recipes)
    if labels.shape != xv.shape:
        raise ValueError(f"recipes has shape {labels.shape}, expected one label per model")
    uniq = np.unique(labels)
    if uniq.size < 2:
        return Undefined("fewer than 2 recipes: nothing to hold out")
    per: dict[str, float | Undefined] = {}
    signs: dict[str, int] = {}
    total_bad = total_pairs = 0.0
    idx = np.arange(xv.shape[0])
    for g in uniq:
        held = labels == g
        fit = spearman(xv[~held], yv[~held])
        s = 0 if isinstance(fit, Undefined) else int(np.sign(fit))
        i, j = np.meshgrid(idx[held], idx, indexing="ij")
        keep = (i != j) & ~(held[j] & (j < i))  # pairs inside g once
        i, j = i[keep], j[keep]
        dy = yv[i] - yv[j]
        dx = s * (xv[i] - xv[j])
        comparable = dy != 0
        bad = np.where(dx == 0, 0.5, (dx * dy < 0).astype(np.float64))[comparable]
        signs[str(g)] = s
        if bad.size == 0:
            per[str(g)] = Undefined("every pair with this recipe ties in the target")
            continue
        per[str(g)] = float(bad.mean())
        total_bad += float(bad.sum())
        total_pairs += bad.size
    if total_pairs == 0:
        return Undefined("no pair of models differs in the target")
    return RankError(error=total_bad / total_pairs, per_recipe=per, signs=signs)


@dataclass(frozen=True)
class SettingLevel:
    """rho, its CI and permutation p over settings: each setting's replicates averaged first."""

    n_settings: int
    rho: float | Undefined
    ci: Interval | Undefined
    p_perm: float | Undefined


def setting_means(
    x: ArrayLike, y: ArrayLike, settings: ArrayLike
) -> tuple[FloatArray, FloatArray, np.ndarray]:
    """Mean x and y per setting label, in order of first appearance: ([g], [g], labels [g]).

    >>> setting_means([1.0, 3.0, 5.0], [2.0, 4.0, 6.0], ["a", "a", "b"])
    (array([2., 5.]), array([3., 6.]), array(['a', 'b'], dtype='<U1'))
    """
    xv, yv, lab = np.asarray(x, float), np.asarray(y, float), np.asarray(settings)
    _, first, inverse = np.unique(lab, return_index=True, return_inverse=True)
    order = np.argsort(first)  # unique labels sorted by first appearance
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    idx = rank[inverse.ravel()]
    counts = np.bincount(idx)
    xm = np.bincount(idx, weights=xv) / counts
    ym = np.bincount(idx, weights=yv) / counts
    return xm, ym, lab[first[order]]


def by_setting(
    x: FloatArray, y: FloatArray, settings: np.ndarray, opts: Mapping[str, int | float]
) -> SettingLevel | Undefined:
    """The statistics over setting means, or Undefined when no setting has two replicates."""
    xm, ym, labels = setting_means(x, y, settings)
    if labels.size == x.shape[0]:
        return Undefined("every model is its own setting (no replicates to average)")
    seed = int(opts["seed"])
    return SettingLevel(
        n_settings=int(labels.size),
        rho=spearman(xm, ym),
        ci=bootstrap_ci(xm, ym, confidence=float(opts["confidence"]),
                        n_resamples=int(opts["n_resamples"]), seed=seed),
        p_perm=permutation_p(xm, ym, n_permutations=int(opts["n_permutations"]), seed=seed),
    )  # fmt: skip


@dataclass(frozen=True)
class PredictorResult:
    """Every statistic of one predictor against the target, over n_models models."""

    n_models: int
    rho: float | Undefined
    """Spearman rho (predictor, target)."""
    ci: Interval | Undefined
    """Paired BCa bootstrap CI of rho over models."""
    p_perm: float | Undefined
    """Two-sided permutation p-value of rho (pairings)."""
    loo: Interval | Undefined
    """[min, max] of rho leaving one model out."""
    loo_recipe: Interval | Undefined
    """[min, max] of rho leaving one recipe out."""
    loo_arch: Interval | Undefined
    """[min, max] of rho leaving one architecture out."""
    partial: dict[str, float | Undefined]
    """Partial Spearman rho controlling for each baseline in turn."""
    p_holm: float | Undefined
    """p_perm, Holm-adjusted across the predictors analysed together."""
    noise_ceiling: float | Undefined
    """sqrt(split-seed reliability of the target): the highest |rho| the target allows."""
    out_of_sample: RankError | Undefined
    """Leave-one-recipe-out pairwise rank error (see `rank_error`)."""
    rank_error_vs_baselines: dict[str, float | Undefined] = field(default_factory=dict)
    """This predictor's pooled rank error minus each baseline's (negative: predictor better)."""
    by_setting: SettingLevel | Undefined = field(default_factory=lambda: Undefined("no settings"))
    """rho, CI and p over setting means (groups['setting']): replicates counted once."""

    def to_json(self) -> dict[str, Any]:
        """The `study.json` record: Undefined becomes None, its reason goes to `undefined`."""
        reasons: dict[str, str] = {}

        def clean(key: str, value: Any) -> Any:
            if isinstance(value, Undefined):
                reasons[key] = value.reason
                return None
            if isinstance(value, Interval):
                return value.as_list()
            if isinstance(value, SettingLevel):
                return {"n_settings": value.n_settings,
                        **{k: clean(f"{key}.{k}", getattr(value, k))
                           for k in ("rho", "ci", "p_perm")}}  # fmt: skip
            if isinstance(value, RankError):
                per = {k: clean(f"{key}.{k}", v) for k, v in value.per_recipe.items()}
                return {"error": value.error, "per_recipe": per, "signs": value.signs}
            if isinstance(value, dict):
                return {k: clean(f"{key}.{k}", v) for k, v in value.items()}
            return value

        names = (
            "n_models",
            "rho",
            "ci",
            "p_perm",
            "loo",
            "loo_recipe",
            "loo_arch",
            "partial",
            "p_holm",
            "noise_ceiling",
            "out_of_sample",
            "rank_error_vs_baselines",
            "by_setting",
        )
        record = {k: clean(k, getattr(self, k)) for k in names}
        record["undefined"] = reasons
        return record


@dataclass(frozen=True)
class Analysis:
    """The study's statistics: one result per predictor and per baseline, and the noise ceiling."""

    predictors: dict[str, PredictorResult]
    """Holm-corrected across the predictors."""
    baselines: dict[str, PredictorResult]
    """The same statistics for each baseline (partial: against the other baselines; Holm
    across the baselines)."""
    noise_ceiling: NoiseCeiling | Undefined


def _one(
    x: FloatArray,
    y: FloatArray,
    controls: Mapping[str, FloatArray],
    groups: Mapping[str, np.ndarray],
    ceiling: float | Undefined,
    opts: dict[str, int | float],
) -> PredictorResult:
    seed = int(opts["seed"])

    def by(key: str) -> Interval | Undefined:
        if key not in groups:
            return Undefined(f"no '{key}' labels given")
        return leave_out_range(x, y, groups[key])

    oos = rank_error(x, y, groups["recipe"]) if "recipe" in groups else Undefined("no recipes")
    return PredictorResult(
        n_models=int(x.shape[0]),
        rho=spearman(x, y),
        ci=bootstrap_ci(
            x,
            y,
            confidence=float(opts["confidence"]),
            n_resamples=int(opts["n_resamples"]),
            seed=seed,
        ),
        p_perm=permutation_p(x, y, n_permutations=int(opts["n_permutations"]), seed=seed),
        loo=leave_out_range(x, y),
        loo_recipe=by("recipe"),
        loo_arch=by("architecture"),
        partial={name: partial_spearman(x, y, z) for name, z in controls.items()},
        p_holm=Undefined("not adjusted yet"),
        noise_ceiling=ceiling,
        out_of_sample=oos,
        by_setting=(by_setting(x, y, groups["setting"], opts) if "setting" in groups
                    else Undefined("no 'setting' labels given")),
    )  # fmt: skip


def _family(
    xs: Mapping[str, FloatArray],
    y: FloatArray,
    controls: Mapping[str, FloatArray],
    groups: Mapping[str, np.ndarray],
    ceiling: float | Undefined,
    base_errors: Mapping[str, RankError | Undefined],
    opts: dict[str, int | float],
    *,
    skip_self: bool,
) -> dict[str, PredictorResult]:
    raw = {}
    for name, x in xs.items():
        ctl = {k: z for k, z in controls.items() if not (skip_self and k == name)}
        raw[name] = _one(x, y, ctl, groups, ceiling, opts)
    adjusted = holm([r.p_perm for r in raw.values()])
    out = {}
    for (name, r), p in zip(raw.items(), adjusted, strict=True):
        if isinstance(p, Undefined):
            p = Undefined(f"no p_perm: {p.reason}")
        vs: dict[str, float | Undefined] = {}
        for b, be in base_errors.items():
            if skip_self and b == name:
                continue
            if isinstance(r.out_of_sample, Undefined) or isinstance(be, Undefined):
                vs[b] = Undefined("rank error undefined for the predictor or the baseline")
            else:
                vs[b] = r.out_of_sample.error - be.error
        out[name] = PredictorResult(**{**r.__dict__, "p_holm": p, "rank_error_vs_baselines": vs})
    return out


def analyse(
    predictors: Mapping[str, ArrayLike],
    target: ArrayLike,
    baselines: Mapping[str, ArrayLike],
    groups: Mapping[str, ArrayLike],
    seeds_matrix: ArrayLike | None,
    *,
    confidence: float = 0.95,
    n_resamples: int = 9999,
    n_permutations: int = 9999,
    n_splits: int = 200,
    seed: int = 0,
) -> Analysis:
    """All statistics for each predictor[n] against target[n] over n models.

    baselines: name -> [n] (partial correlations and rank-error comparisons); groups: label
    arrays [n] under "recipe" and "architecture" (leave-one-group-out, out-of-sample) and
    optionally "setting" (replicates of one design, e.g. training seeds: `by_setting`);
    seeds_matrix: the target per model and fine-tuning seed [n, n_seeds] (noise ceiling), or
    None. Seeded: the same inputs and seed give identical results.

    >>> rng = np.random.default_rng(0)
    >>> gfs = rng.normal(size=12)
    >>> seeds = -gfs[:, None] + 0.3 * rng.normal(size=(12, 3))
    >>> groups = {"recipe": np.repeat(list("abcd"), 3), "architecture": np.tile(list("xy"), 6)}
    >>> res = analyse({"gfs": gfs}, seeds.mean(1), {"size": np.arange(12.0)}, groups, seeds,
    ...               n_resamples=999, n_permutations=999)
    >>> r = res.predictors["gfs"].to_json()
    >>> r["rho"] < -0.8, r["ci"][1] < 0, r["p_holm"] < 0.01, r["noise_ceiling"] > 0.9
    (True, True, True, True)
    """
    y = as_vector(target, "target")
    n = y.shape[0]
    xs = {k: as_vector(v, f"predictor {k!r}", n) for k, v in predictors.items()}
    zs = {k: as_vector(v, f"baseline {k!r}", n) for k, v in baselines.items()}
    labels = {}
    for k, v in groups.items():
        labels[k] = np.asarray(v)
        if labels[k].shape != (n,):
            raise ValueError(f"groups[{k!r}] has shape {labels[k].shape}, expected ({n},)")
    if seeds_matrix is None:
        nc: NoiseCeiling | Undefined = Undefined("no per-seed target matrix given")
    else:
        sm = np.asarray(seeds_matrix, dtype=np.float64)
        if sm.ndim != 2 or sm.shape[0] != n:
            raise ValueError(f"seeds_matrix has shape {sm.shape}, expected ({n}, n_seeds)")
        nc = noise_ceiling(sm, n_splits=n_splits, seed=seed)
    ceiling = nc if isinstance(nc, Undefined) else nc.ceiling
    opts: dict[str, int | float] = {
        "confidence": confidence,
        "n_resamples": n_resamples,
        "n_permutations": n_permutations,
        "seed": seed,
    }
    base_errors = {
        k: rank_error(z, y, labels["recipe"]) if "recipe" in labels else Undefined("no recipes")
        for k, z in zs.items()
    }
    return Analysis(
        predictors=_family(xs, y, zs, labels, ceiling, base_errors, opts, skip_self=False),
        baselines=_family(zs, y, zs, labels, ceiling, base_errors, opts, skip_self=True),
        noise_ceiling=nc,
    )
