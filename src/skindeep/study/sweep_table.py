"""The robustness sweep's table: rho of each swept GFS against the target, across models.

`sweep.sweep_pair` gives each model's GFS under every choice; this module correlates each
(setting, value, predictor) cell with the fragility target over the models, as `study.json`'s
sweep rows (rho, BCa CI, permutation p).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from skindeep.study.correlation import (
    Interval,
    Undefined,
    bootstrap_ci,
    permutation_p,
    spearman,
)
from skindeep.study.sweep import SweepPoint


@dataclass(frozen=True)
class SweepRho:
    """rho of one predictor against the target across models, under one choice of one setting."""

    setting: str
    value: str
    predictor: str
    n_models: int
    rho: float | Undefined
    ci: Interval | Undefined
    p_perm: float | Undefined

    def to_json(self) -> dict[str, object]:
        """A `study.json` sweep row: Undefined becomes None, intervals [low, high]."""

        def clean(v: object) -> object:
            return (
                None if isinstance(v, Undefined) else v.as_list() if isinstance(v, Interval) else v
            )

        keys = ("setting", "value", "predictor", "n_models", "rho", "ci", "p_perm")
        return {k: clean(getattr(self, k)) for k in keys}


def sweep_table(
    points: Mapping[str, Sequence[SweepPoint]],
    target: Mapping[str, float],
    *,
    n_resamples: int = 9999,
    n_permutations: int = 9999,
    seed: int = 0,
) -> list[SweepRho]:
    """Spearman rho (BCa CI, permutation p) of every swept GFS against the target over models.

    points: model name -> its `sweep_pair` / `convention_points` output; target: model name ->
    fragility. A (setting, value, predictor) cell uses the models that have both (a prompt
    count above a model's prompts leaves that model out of the cell).
    """
    cells: dict[tuple[str, str, str], dict[str, float]] = {}
    for model, pts in points.items():
        if model not in target:
            continue
        for p in pts:
            cells.setdefault((p.setting, p.value, p.predictor), {})[model] = p.gfs
    rows = []
    for (setting, value, predictor), by_model in cells.items():
        names = sorted(by_model)
        x = np.array([by_model[m] for m in names])
        y = np.array([target[m] for m in names])
        rows.append(
            SweepRho(
                setting, value, predictor, len(names), spearman(x, y),
                bootstrap_ci(x, y, n_resamples=n_resamples, seed=seed),
                permutation_p(x, y, n_permutations=n_permutations, seed=seed),
            )
        )  # fmt: skip
    return rows
