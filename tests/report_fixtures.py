"""Inputs for the report tests, written by the real writers: a study.json built through the
schema (with per-model audit.json and dose.json beside it) and one model's audit, dose and
retention folder."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
from scipy import stats

from skindeep.artifacts import atomic_write_json
from skindeep.dose import DoseCurve, DoseOptions, DosePoint, DoseResponse, NullBand
from skindeep.evaluation.judges import Verdict
from skindeep.evaluation.rates import OutcomeCounts, refusal_rate
from skindeep.finetune.config import FinetuneConfig, RetentionConfig
from skindeep.finetune.retention import Measurement, RetentionCell, RetentionResult
from skindeep.report import write_audit
from skindeep.scores import AuditConfig
from skindeep.study.result import (
    ModelEntry,
    NoiseCeiling,
    PredictorStats,
    RefusalCurve,
    StudyResult,
    StudySettings,
    SummaryValue,
    SweepRow,
)
from test_report import synthetic_result

RECIPES = ("sft", "dpo", "orpo", "csft")
ARCHS = ("llama", "qwen2", "gpt2")


def rate(k: int, n: int = 20):
    """A refusal rate of k refusals in n verdicts."""
    return refusal_rate([Verdict(i < k) for i in range(n)])


def dose_result(strength: float) -> DoseResponse:
    """A dose-response whose basis removes refusal faster with `strength`, with a null band."""

    def point(k: int, refused: int) -> DosePoint:
        counts = OutcomeCounts(refused=refused, complied=20 - refused, degenerate=0)
        return DosePoint(k, rate(refused), counts, score=refused / 5 - 2, kl=0.01 * k, example="x")

    curve = DoseCurve(
        "select", "test", 2, tuple(point(k, max(0, 20 - int(strength * k))) for k in (1, 2, 4))
    )
    nulls = tuple(NullBand(k, (point(k, 20), point(k, 19), point(k, 18))) for k in (1, 2, 4))
    return DoseResponse(point(0, 20), (curve,), nulls, DoseOptions(ks=(1, 2, 4)), 20, 20)


def retention_result(model: str = "/zoo/llama-s-sft") -> RetentionResult:
    """Retention at n in {5, 25} over two seeds (refusal falls with n)."""
    cells = [
        RetentionCell(n, s, Measurement(rate(k), rate(1)), k / 20, {"steps": 10})
        for (n, s), k in {(5, 0): 18, (5, 1): 16, (25, 0): 9, (25, 1): 12}.items()
    ]
    cfg = RetentionConfig(ns=(5, 25), seeds=(0, 1), finetune=FinetuneConfig(steps=10))
    return RetentionResult(
        model,
        "key",
        "/tmp/cells",
        cfg,
        {"benign": "organism"},
        Measurement(rate(20), rate(0)),
        cells,
    )


def model_folder(folder: Path) -> Path:
    """One model's audit.json, dose.json and retention.json, as the commands write them."""
    write_audit(synthetic_result(AuditConfig(n_perm=20)), folder)
    dose_result(3.0).save(folder)
    from skindeep.finetune.output import write_outputs

    write_outputs(retention_result(), folder)
    return folder


def _stat(name: str, kind: str, x: np.ndarray, y: np.ndarray, partial: dict) -> PredictorStats:
    rho = float(stats.spearmanr(x, y).statistic)
    return PredictorStats(
        predictor=name,
        target="auc",
        kind=kind,
        n_models=len(x),
        rho=rho,
        ci=(max(-1.0, rho - 0.3), min(1.0, rho + 0.3)),
        p_perm=0.01,
        p_holm=0.02,
        loo=(rho - 0.1, rho + 0.1),
        partial=partial,
    )


def study(n: int = 9, seed: int = 0, baseline_strength: float = 0.2) -> StudyResult:
    """A study of n models whose GFS tracks fragility, one excluded model, three seeds,
    stats from scipy's Spearman, a sweep of two settings and a noise ceiling."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=n)
    gfs = latent + 0.3 * rng.normal(size=n)
    base = baseline_strength * latent + rng.normal(size=n)
    models = []
    for i in range(n):
        per_seed = {str(s): float(0.5 - 0.1 * latent[i] + 0.02 * rng.normal()) for s in range(3)}
        vals = list(per_seed.values())
        curves = [
            RefusalCurve(
                seed=s,
                steps=[0, 10, 20],
                score=[3.0, 3.0 - v, 3.0 - 2 * v],
                prob=[1 / (1 + np.exp(-x)) for x in (3.0, 3.0 - v, 3.0 - 2 * v)],
                refusal_end=0.5,
                n_prompts=20,
            )
            for s, v in enumerate(vals)
        ]
        models.append(
            ModelEntry(
                name=f"m{i}-{RECIPES[i % 4]}",
                recipe=RECIPES[i % 4],
                scope="full",
                architecture=ARCHS[i % 3],
                size="s",
                params=1000 * (i + 1),
                predictors={"gfs_code": float(gfs[i]), "peak_d": float(latent[i] ** 2)},
                baselines={"initial_refusal": float(base[i])},
                fragility={
                    "auc": SummaryValue(
                        per_seed=per_seed, mean=float(np.mean(vals)), sd=float(np.std(vals, ddof=1))
                    )
                },
                curves=curves,
                **(
                    {"meets_behaviour": False, "excluded": "refuses 0.4 of harmful"}
                    if i == n - 1
                    else {}
                ),
            )
        )
    inc = models[:-1]
    y = np.array([m.fragility["auc"].mean for m in inc])
    col = {
        k: np.array([m.predictors.get(k, m.baselines.get(k)) for m in inc])
        for k in ("gfs_code", "peak_d", "initial_refusal")
    }
    rows = [
        _stat("gfs_code", "predictor", col["gfs_code"], y, {"initial_refusal": -0.5}),
        _stat("peak_d", "predictor", col["peak_d"], y, {}),
        _stat("initial_refusal", "baseline", col["initial_refusal"], y, {}),
    ]
    settings = StudySettings(
        config={"zoo": "test"},
        config_hash="f" * 16,
        primary_target="auc",
        primary_predictor="gfs_code",
        software={"numpy": np.__version__},
        machine="test",
        wall_seconds=3.0,
    )
    sweep = [
        SweepRow(setting=s, value=v, predictor=p, rho=float(r), n_models=len(inc))
        for (s, v), r0 in {
            ("k", "1"): -0.8,
            ("k", "4"): -0.6,
            ("weighting", "uniform"): -0.7,
        }.items()
        for p, r in (("gfs_code", r0), ("peak_d", r0 / 2))
    ]
    ceiling = NoiseCeiling(
        target="auc",
        reliability=0.9,
        split_rho=0.82,
        ceiling=0.9**0.5,
        n_models=len(inc),
        n_seeds=3,
    )
    return StudyResult(
        settings=settings,
        models=models,
        stats=rows,
        sweep=sweep,
        noise_ceiling={"auc": ceiling},
        headline="",
    )


@cache
def _audit_json(n_layers: int) -> dict:
    """The audit.json content of a synthetic pair with `n_layers` layers."""
    return synthetic_result(AuditConfig(n_perm=20), seed=n_layers, n_layers=n_layers).to_json()


def study_folder(folder: Path, result: StudyResult) -> Path:
    """study.json plus an audit.json and a dose.json per model under models/NAME/ (the JSON
    files only: figures are the report's job)."""
    result.save(folder / "study.json")
    for i, m in enumerate(result.models):
        sub = folder / "models" / m.name
        atomic_write_json(sub / "audit.json", _audit_json(3 + i % 3))
        atomic_write_json(sub / "dose.json", dose_result(1.0 + i).to_json())
    return folder
