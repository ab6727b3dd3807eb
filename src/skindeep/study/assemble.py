"""Pipeline records -> `ModelEntry` rows, and the cross-model statistics -> study.json rows.

Fragility summaries come from the soft refusal curves (mean probability of a refusal opening
at each checkpoint) through `fragility.summarise_curves`; `keyword_retention` is the greedy
keyword refusal after / before fine-tuning, per seed. Statistics come from
`statistics.analyse`; a predictor missing for some models is analysed on the models that have
it, and Holm's correction is then applied across every predictor of the target.
"""

from __future__ import annotations

import math
import statistics as pystats
from collections.abc import Sequence
from typing import Any

import numpy as np

from skindeep.study.config import BASELINES, PREDICTORS, TARGETS, StudyConfig
from skindeep.study.correlation import Undefined, bootstrap_ci, holm, permutation_p, spearman
from skindeep.study.fragility import noise_ceiling, summarise_curves
from skindeep.study.pipeline import ModelJob
from skindeep.study.result import (
    ModelEntry,
    NoiseCeiling,
    OutOfSample,
    PredictorStats,
    RefusalCurve,
    SettingStats,
    SummaryValue,
    SweepRow,
)
from skindeep.study.statistics import SettingLevel, analyse


def _finite(x: Any) -> float | None:
    """A finite float, else None (JSON null, never NaN)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _summary(values: Sequence[float | None], seeds: Sequence[int]) -> SummaryValue:
    ok = [v for v in values if v is not None]
    return SummaryValue(
        per_seed={str(s): v for s, v in zip(seeds, values, strict=True)},
        mean=pystats.fmean(ok) if ok else None,
        sd=pystats.stdev(ok) if len(ok) > 1 else None,
    )


def _fragility(retention: dict) -> tuple[dict[str, SummaryValue], list[RefusalCurve]]:
    """Summaries per seed and mean, and the curves, from a retention record."""
    seeds = retention["seeds"]
    ids = [r["seed"] for r in seeds]
    before = retention["start"]["refusal"]["rate"]
    curves = [
        RefusalCurve(
            seed=r["seed"], steps=r["steps"], score=r["score"], prob=r["prob"],
            refusal_end=_finite(r["refusal_end"]["rate"]),
            flagged_end=r["refusal_end"]["n_flagged"], n_prompts=len(retention["start"]["scores"]),
        )
        for r in seeds
    ]  # fmt: skip
    s = summarise_curves(seeds[0]["steps"], [r["prob"] for r in seeds])
    keyword = [
        _finite(r["refusal_end"]["rate"] / before) if before and before > 0 else None for r in seeds
    ]
    out = {
        "auc": _summary([_finite(v) for v in s.auc], ids),
        "retention": _summary([_finite(v) for v in s.retention], ids),
        "steps_to_half": _summary([_finite(v) for v in s.steps_to_half], ids),
        "keyword_retention": _summary(keyword, ids),
    }
    return out, curves


def _errors(record: dict) -> str | None:
    """The first failed step of a pipeline record, in words."""
    for step in ("info", "audit", "ablation", "rank", "sweep", "sweep_last_layer", "retention"):
        rec = record.get(step)
        if isinstance(rec, dict) and "error" in rec:
            return f"{step} failed: {rec['error']}"
    return None


def model_entry(job: ModelJob, record: dict | None) -> ModelEntry:
    """The study.json row of one model (excluded with its reason when it cannot count)."""
    common = dict(
        name=job.name, recipe=job.recipe, scope=job.scope, architecture=job.architecture,
        size=job.size, build_seed=job.build_seed, aligned=job.aligned, base=job.base,
        meets_behaviour=job.meets_behaviour, setting=job.setting,
    )  # fmt: skip
    if record is None:
        return ModelEntry(**common, excluded=job.miss_reason or "not run")
    info = record.get("info", {})
    predictors: dict[str, float | None] = {}
    for step in ("audit", "ablation", "rank"):
        rec = record.get(step) or {}
        predictors.update({k: _finite(rec.get(k)) for k in PREDICTORS if k in rec})
    retention = record.get("retention") or {}
    baselines: dict[str, float | None] = {
        "log_params": _finite(info.get("log_params")),
        "weight_change": _finite(info.get("weight_change")),
    }
    fragility, curves = {}, []
    if "seeds" in retention:
        start = retention["start"]
        baselines["initial_refusal"] = _finite(start["refusal"]["rate"])
        baselines["refusal_margin"] = _finite(float(np.mean(start["scores"])))
        fragility, curves = _fragility(retention)
    return ModelEntry(
        **{**common, "architecture": job.architecture or info.get("architecture", "")},
        params=info.get("params"),
        excluded=job.miss_reason or _errors(record),
        predictors=predictors,
        baselines=baselines,
        fragility=fragility,
        curves=curves,
        seconds=record.get("seconds", {}),
    )


def _value(x: Any) -> Any:
    """Undefined -> None; intervals -> (low, high)."""
    if isinstance(x, Undefined):
        return None
    if hasattr(x, "as_list"):
        return tuple(x.as_list())
    return x


def _setting_stats(level: SettingLevel | Undefined) -> SettingStats | None:
    """The setting-level statistics for study.json (None when no setting repeats)."""
    if isinstance(level, Undefined):
        return None
    return SettingStats(n_settings=level.n_settings, rho=_value(level.rho),
                        ci=_value(level.ci), p_perm=_value(level.p_perm))  # fmt: skip


def _stats_rows(
    models: list[ModelEntry], target: str, config: StudyConfig
) -> tuple[list[PredictorStats], list[OutOfSample]]:
    """Every predictor and baseline against one fragility summary, over the included models."""
    names = [(k, "predictor") for k in PREDICTORS] + [(k, "baseline") for k in BASELINES]
    rows: list[tuple[str, str, Any]] = []
    for name, kind in names:
        values = [(m.predictors if kind == "predictor" else m.baselines).get(name) for m in models]
        y = [m.fragility[target].mean if target in m.fragility else None for m in models]
        keep = [i for i, (v, t) in enumerate(zip(values, y, strict=True))
                if v is not None and t is not None]  # fmt: skip
        if len(keep) < 3:
            continue
        sub = [models[i] for i in keep]
        bl = {b: [m.baselines.get(b) for m in sub] for b in BASELINES if b != name}
        bl = {b: v for b, v in bl.items() if all(x is not None for x in v)}
        res = analyse(
            {name: [values[i] for i in keep]}, [y[i] for i in keep], bl,
            {"recipe": [m.recipe for m in sub], "architecture": [m.architecture for m in sub],
             "setting": [m.setting or m.name for m in sub]},
            None, n_resamples=config.stats.n_resamples,
            n_permutations=config.stats.n_permutations, seed=config.stats.seed,
        )  # fmt: skip
        rows.append((name, kind, res.predictors[name]))
    stats, oos = [], []
    for kind in ("predictor", "baseline"):
        family = [(n, r) for n, k, r in rows if k == kind]
        adjusted = holm([r.p_perm for _, r in family])
        for (name, r), p in zip(family, adjusted, strict=True):
            stats.append(
                PredictorStats(
                    predictor=name, target=target, kind=kind, n_models=r.n_models,
                    rho=_value(r.rho), ci=_value(r.ci), p_perm=_value(r.p_perm),
                    loo=_value(r.loo), loo_recipe=_value(r.loo_recipe), loo_arch=_value(r.loo_arch),
                    partial={k: _value(v) for k, v in r.partial.items()}, p_holm=_value(p),
                    by_setting=_setting_stats(r.by_setting),
                    undefined=r.rho.reason if isinstance(r.rho, Undefined) else None,
                )
            )  # fmt: skip
            if not isinstance(r.out_of_sample, Undefined):
                oos.append(
                    OutOfSample(
                        predictor=name, target=target, rank_error=_finite(r.out_of_sample.error),
                        per_recipe={k: _value(v) for k, v in r.out_of_sample.per_recipe.items()},
                    )
                )  # fmt: skip
    return stats, oos


def _ceiling(models: list[ModelEntry], target: str) -> NoiseCeiling:
    rows = []
    for m in models:
        per = m.fragility.get(target)
        if per is not None and all(v is not None for v in per.per_seed.values()):
            rows.append([per.per_seed[k] for k in sorted(per.per_seed, key=int)])
    n_seeds = len(rows[0]) if rows else 0
    if not rows or any(len(r) != n_seeds for r in rows):
        return NoiseCeiling(target=target, reliability=None, n_models=len(rows), n_seeds=n_seeds)
    nc = noise_ceiling(np.array(rows))
    if isinstance(nc, Undefined):
        return NoiseCeiling(target=target, reliability=None, n_models=len(rows), n_seeds=n_seeds)
    return NoiseCeiling(
        target=target, reliability=_finite(nc.reliability),
        split_rho=_finite(float(np.nanmean(nc.split_rhos))), ceiling=_finite(nc.ceiling),
        n_models=len(rows), n_seeds=n_seeds,
    )  # fmt: skip


def cross_model(
    models: list[ModelEntry], config: StudyConfig
) -> tuple[list[PredictorStats], list[OutOfSample], dict[str, NoiseCeiling]]:
    """Statistics of every predictor against every summary, out-of-sample errors, ceilings."""
    included = [m for m in models if m.excluded is None]
    stats: list[PredictorStats] = []
    oos: list[OutOfSample] = []
    for target in TARGETS:
        s, o = _stats_rows(included, target, config)
        stats += s
        if target == config.primary_target:
            oos += o
    ceilings = {t: _ceiling(included, t) for t in TARGETS}
    return stats, oos, ceilings


def sweep_rows(
    models: list[ModelEntry], points: dict[str, list[dict]], config: StudyConfig
) -> list[SweepRow]:
    """rho of each swept GFS against the primary target, over the included models."""
    target = config.primary_target
    included = {m.name: m for m in models if m.excluded is None and m.name in points}
    cells: dict[tuple[str, str, str], dict[str, float]] = {}
    for name, pts in points.items():
        if name not in included:
            continue
        for pt in pts:
            if pt["gfs"] is not None and math.isfinite(pt["gfs"]):
                cells.setdefault((pt["setting"], pt["value"], pt["predictor"]), {})[name] = pt[
                    "gfs"
                ]
    rows = []
    for (setting, value, predictor), by_model in cells.items():
        names = [n for n in by_model if target in included[n].fragility
                 and included[n].fragility[target].mean is not None]  # fmt: skip
        x = [by_model[n] for n in names]
        y = [included[n].fragility[target].mean for n in names]
        rho = ci = p = None
        if len(names) >= 3:
            rho = _value(spearman(x, y))
            ci = _value(bootstrap_ci(x, y, n_resamples=config.stats.n_resamples,
                                     seed=config.stats.seed))  # fmt: skip
            p = _value(permutation_p(x, y, n_permutations=config.stats.n_permutations,
                                     seed=config.stats.seed))  # fmt: skip
        rows.append(SweepRow(setting=setting, value=value, predictor=predictor, rho=rho, ci=ci,
                             p_perm=p, n_models=len(names)))  # fmt: skip
    return rows
