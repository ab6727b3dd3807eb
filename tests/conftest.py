"""Shared fixtures: the micro zoo (built once per session), the organism tokenizer, real data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: Small excerpts of AdvBench, JailbreakBench and Alpaca shipped with the tests (licences in
#: tests/data/README.md), so the suite runs from a plain clone.
DATA = Path(__file__).resolve().parent / "data"

# Organisms and activations are cached by content hash; keep the tests' cache in the repo so a
# second local run reuses it (CI starts from a clean clone and builds it once).
os.environ.setdefault("SKINDEEP_CACHE", str(REPO / ".skindeep-cache"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """Folder of the shipped real prompt excerpts."""
    return DATA


@pytest.fixture(scope="session")
def organism_tokenizer():
    """The organism language's tokenizer (a Hugging Face fast tokenizer with chat template)."""
    from skindeep.organisms.language import DEFAULT_LANGUAGE
    from skindeep.organisms.tokenizer import build_tokenizer

    return build_tokenizer(DEFAULT_LANGUAGE)


@pytest.fixture(scope="session")
def micro_zoo():
    """The micro zoo (a Llama base and three aligned organisms), built or read from the cache."""
    from skindeep.organisms.spec import load_zoo_spec
    from skindeep.organisms.zoo import build_zoo

    return build_zoo(load_zoo_spec("micro"))


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tiny models run fastest single-threaded; two threads on a shared 2-core box spin-wait."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def run_cli(args: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    """Run `skindeep ARGS` through the real entry point; return exit code, stdout, stderr."""
    import sys

    from skindeep.cli import main

    monkeypatch.setattr(sys, "argv", ["skindeep", *args])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def synthetic_study():
    """A tiny hand-made `StudyResult` (four models, one excluded) for schema and report tests."""
    from skindeep.study.result import (
        ModelEntry,
        NoiseCeiling,
        OutOfSample,
        PredictorStats,
        RefusalCurve,
        StudyResult,
        StudySettings,
        SummaryValue,
        SweepRow,
    )

    def entry(
        name: str, recipe: str, arch: str, gfs: float, auc: tuple[float, float]
    ) -> ModelEntry:
        curves = [
            RefusalCurve(
                seed=s,
                steps=[0, 10, 20],
                score=[3.0, 3.0 - a, 3.0 - 2 * a],
                refusal_end=1.0 - a / 3,
                n_prompts=8,
            )
            for s, a in enumerate(auc)
        ]
        return ModelEntry(
            name=name,
            recipe=recipe,
            scope="full",
            architecture=arch,
            size="s",
            params=10_000,
            build_seed=0,
            predictors={"gfs_code": gfs},
            baselines={"initial_refusal": 1.0},
            fragility={
                "auc": SummaryValue(
                    per_seed={"0": auc[0], "1": auc[1]},
                    mean=sum(auc) / 2,
                    sd=abs(auc[0] - auc[1]) / 2**0.5,
                )
            },
            curves=curves,
        )

    models = [
        entry("llama-s-sft", "sft", "llama", 0.1, (0.9, 0.8)),
        entry("qwen-s-dpo", "dpo", "qwen2", 0.2, (0.6, 0.7)),
        entry("gpt2-s-orpo", "orpo", "gpt2", 0.3, (0.4, 0.3)),
        entry("llama-s-csft", "csft", "llama", 0.4, (0.1, 0.2)).model_copy(
            update={"meets_behaviour": False, "excluded": "refuses 0.40 of harmful (< 0.80)"}
        ),
    ]
    settings = StudySettings(
        config={"name": "synthetic"},
        config_hash="0" * 16,
        primary_target="auc",
        primary_predictor="gfs_code",
        software={"python": "3"},
        wall_seconds=1.0,
    )
    stats = [
        PredictorStats(
            predictor="gfs_code",
            target="auc",
            n_models=3,
            rho=-1.0,
            ci=(-1.0, -1.0),
            p_perm=0.33,
            loo=(-1.0, -1.0),
            loo_recipe=(-1.0, -1.0),
            loo_arch=(-1.0, -1.0),
            partial={"initial_refusal": None},
            p_holm=0.33,
        )
    ]
    return StudyResult(
        settings=settings,
        models=models,
        stats=stats,
        noise_ceiling={
            "auc": NoiseCeiling(
                target="auc", reliability=1.0, split_rho=1.0, ceiling=1.0, n_models=3, n_seeds=2
            )
        },
        out_of_sample=[
            OutOfSample(
                predictor="gfs_code",
                target="auc",
                rank_error=0.0,
                per_recipe={"sft": 0.0, "dpo": 0.0, "orpo": 0.0},
            )
        ],
        sweep=[SweepRow(setting="k", value="1", predictor="gfs_code", rho=-1.0, n_models=3)],
        headline="gfs_code ranks the three models exactly (synthetic).",
    )
