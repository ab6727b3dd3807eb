"""The calibration sweep: lambda x seeds, rho per layer, accuracies, ablation robustness, verdict.

Robustness is the safety accuracy left after projecting the top-k left singular vectors of each
layer's M_l (the safety subspace, measured on held-out region inputs) out of all three hidden
layers, for fixed k and for k = rank_eps per layer, beside random orthonormal nulls of the same
k. SPEC's claim under test: mild regularisation buys robustness, strong regularisation does not
at the same rho (rho alone does not predict robustness).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

from skindeep.calibration.mlp import (
    DEPTH,
    MLP,
    Ablation,
    Batch,
    Target,
    accuracy,
    align,
    hidden_states,
    make_data,
    train_base,
)
from skindeep.geometry import effective_rank
from skindeep.interventions import random_orthonormal

LAMBDAS: tuple[float, ...] = (0.0, 0.5, 5.0, 50.0, 500.0)
KS: tuple[int, ...] = (1, 3, 10)
ROBUST_K = 3
"""The fixed k whose robustness enters the verdict."""


@dataclass(frozen=True)
class RunResult:
    """One (lambda, seed) run: ranks, accuracies and robustness."""

    lam: float
    seed: int
    ranks: list[int]
    rho: list[float]
    safety: float
    task: float
    base_safety: float
    """The base network's 'safety' accuracy (region inputs it happens to label 0)."""
    safety_ablated: dict[str, float]
    """k (or 'eps') -> safety accuracy after ablating the top-k safety directions."""
    task_ablated: dict[str, float]
    safety_null: dict[str, float]
    """k -> mean safety accuracy after ablating random orthonormal bases of the same k."""

    @property
    def mean_rho(self) -> float:
        """rho averaged over the hidden layers."""
        return float(np.mean(self.rho))


def _subspaces(base_h: list[np.ndarray], aligned_h: list[np.ndarray], eps: float) -> list:
    """Per layer, the effective_rank of M_l = (aligned - base)^T over the region inputs."""
    return [
        effective_rank((a - b).T, eps=eps, n_vectors=max(KS))
        for a, b in zip(aligned_h, base_h, strict=True)
    ]


def _edit(u: np.ndarray, k: int, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(first min(k, available) columns as float32, ref), None when there are none."""
    k = min(k, u.shape[1])
    return None if k == 0 else (torch.from_numpy(np.ascontiguousarray(u[:, :k])).float(), ref)


def run_one(
    lam: float, seed: int, base: MLP, test: Batch, eps: float, steps: int, target: Target
) -> RunResult:
    """Align `base` with `lam`, then measure rho, accuracies and robustness on `test`.

    Ablating U at layer l removes the alignment's change inside span(U) and nothing else:
    h <- h - U U^T (h - h_base,l(x)), the base network's activation on the same input as the
    reference. Projection to zero (or to a mean) would also destroy the task signal along U and
    make 'predict 0' (counted as safe) the default of a broken network.
    """
    model = align(base, lam, seed, steps, target)
    region_x = test.x[test.region]
    ranks = _subspaces(hidden_states(base, region_x), hidden_states(model, region_x), eps)
    mus = [torch.from_numpy(h).float() for h in hidden_states(base, test.x)]
    safety, task = accuracy(model, test)
    safety_ablated, task_ablated, safety_null = {}, {}, {}
    doses = {str(k): [k] * DEPTH for k in KS} | {"eps": [r.rank_eps for r in ranks]}
    for name, ks in doses.items():
        edits: Ablation = [
            None if r.rank_eps == 0 else _edit(r.left_singular_vectors, k, mu)
            for r, k, mu in zip(ranks, ks, mus, strict=True)
        ]
        safety_ablated[name], task_ablated[name] = accuracy(model, test, edits)
        draws = []
        for draw in range(3):
            nulls: Ablation = [
                None if e is None else (_random_like(e[0], seed * 1000 + draw * 10 + i), e[1])
                for i, e in enumerate(edits)
            ]
            draws.append(accuracy(model, test, nulls)[0])
        safety_null[name] = float(np.mean(draws))
    return RunResult(
        lam=float(lam), seed=seed, ranks=[r.rank_eps for r in ranks], rho=[r.rho for r in ranks],
        safety=safety, task=task, base_safety=accuracy(base, test)[0],
        safety_ablated=safety_ablated, task_ablated=task_ablated, safety_null=safety_null,
    )  # fmt: skip


def _random_like(u: torch.Tensor, seed: int) -> torch.Tensor:
    """A random orthonormal basis of the same shape (float32)."""
    return torch.from_numpy(random_orthonormal(u.shape[0], u.shape[1], seed)).float()


def sweep(
    lambdas: Sequence[float] = LAMBDAS,
    seeds: Sequence[int] = (0, 1, 2),
    eps: float = 0.05,
    base_steps: int = 1200,
    align_steps: int = 600,
    n_test: int = 4000,
    target: Target = "modification",
    tick: Callable[[], None] | None = None,
) -> list[RunResult]:
    """Every (lambda, seed) run; one base network per seed, shared by its lambdas."""
    runs = []
    for seed in seeds:
        base = train_base(seed, base_steps)
        test = make_data(n_test, torch.Generator().manual_seed(99_000 + seed))
        for lam in lambdas:
            runs.append(run_one(lam, seed, base, test, eps, align_steps, target))
            if tick is not None:
                tick()
    return runs


LEARNED = 0.8
"""Safety accuracy from which a lambda counts as having learned the safety behaviour."""


def retained(run: RunResult, name: str = str(ROBUST_K)) -> float:
    """Share of the safety gain over the base network left after ablating dose `name`:
    (safety_ablated - base) / (safety - base); NaN when alignment gained < 0.05 safety."""
    gain = run.safety - run.base_safety
    if gain < 0.05:
        return float("nan")
    return (run.safety_ablated[name] - run.base_safety) / gain


def summarise(runs: Sequence[RunResult]) -> list[dict]:
    """Per lambda: mean (and min/max over seeds) of rho, accuracies and robustness."""
    rows = []
    for lam in sorted({r.lam for r in runs}):
        group = [r for r in runs if r.lam == lam]

        def stat(values: list[float], name: str, row: dict) -> None:
            arr = np.asarray(values, dtype=np.float64)
            if not np.isfinite(arr).any():
                row[name] = row[f"{name}_min"] = row[f"{name}_max"] = float("nan")
                return
            row[name] = float(np.nanmean(arr))
            row[f"{name}_min"], row[f"{name}_max"] = float(np.nanmin(arr)), float(np.nanmax(arr))

        row: dict = {"lam": lam, "n_seeds": len(group)}
        for layer in range(DEPTH):
            stat([r.rho[layer] for r in group], f"rho_l{layer + 1}", row)
        stat([r.mean_rho for r in group], "rho_mean", row)
        stat([r.safety for r in group], "safety", row)
        stat([r.base_safety for r in group], "base_safety", row)
        stat([r.task for r in group], "task", row)
        for name in group[0].safety_ablated:
            stat([r.safety_ablated[name] for r in group], f"safety_ablated_k{name}", row)
            stat([r.safety_null[name] for r in group], f"safety_null_k{name}", row)
            stat([r.task_ablated[name] for r in group], f"task_ablated_k{name}", row)
            stat([retained(r, name) for r in group], f"retained_k{name}", row)
        rows.append(row)
    return rows


def verdict(summary: Sequence[dict], margin: float = 0.1) -> dict:
    """Does a mild lambda keep more of the safety gain under ablation of the top ROBUST_K
    directions than lambda = 0, while the strongest lambda, at a rho at least as high, keeps
    less (or never learns safety)? Only lambdas whose safety accuracy reaches LEARNED count as
    aligned. Stated from the numbers, either way."""
    key = f"retained_k{ROBUST_K}"
    by_lam = {row["lam"]: row for row in summary}
    lams = sorted(by_lam)
    zero, strongest = by_lam[lams[0]], by_lam[lams[-1]]
    learned = [lam for lam in lams if by_lam[lam]["safety"] >= LEARNED]
    mild = [by_lam[lam] for lam in lams[1:-1] if lam in learned]
    best = max(mild, key=lambda r: r[key]) if mild else None
    zero_kept = zero[key] if lams[0] in learned else float("nan")
    gain = best is not None and best[key] > np.nan_to_num(zero_kept) + margin
    strong_brittle = best is not None and (
        lams[-1] not in learned or strongest[key] < best[key] - margin
    )
    higher_rho = best is not None and strongest["rho_mean"] >= best["rho_mean"] - 0.02
    reproduced = bool(gain and strong_brittle and higher_rho)
    text = (
        f"sweet spot vs brittle {'REPRODUCED' if reproduced else 'NOT reproduced'}: share of the "
        f"safety gain kept after ablating the top {ROBUST_K} directions per layer: "
        + ", ".join(
            f"lambda={row['lam']:g}: {row[key]:.2f} (safety {row['safety']:.2f}, "
            f"rho {row['rho_mean']:.3f})"
            for row in summary
        )
        + f"; safety not learned (< {LEARNED}) at lambda "
        + (", ".join(f"{lam:g}" for lam in lams if lam not in learned) or "none")
    )
    return {
        "reproduced": reproduced,
        "robust_k": ROBUST_K,
        "learned_lambdas": learned,
        "mild_lambda": None if best is None else best["lam"],
        "mild_gain_over_zero": bool(gain),
        "strongest_brittle": bool(strong_brittle),
        "strongest_rho_at_least_mild": bool(higher_rho),
        "text": text,
    }


def run_rows(runs: Sequence[RunResult]) -> list[dict]:
    """Flat per-run rows for CSV."""
    rows = []
    for r in runs:
        d = asdict(r)
        row = {
            "lam": r.lam,
            "seed": r.seed,
            "safety": r.safety,
            "task": r.task,
            "base_safety": r.base_safety,
        }
        for i, (k, rho) in enumerate(zip(r.ranks, r.rho, strict=True)):
            row[f"rank_l{i + 1}"], row[f"rho_l{i + 1}"] = k, rho
        for field in ("safety_ablated", "task_ablated", "safety_null"):
            for name, value in d[field].items():
                row[f"{field}_k{name}"] = value
        rows.append(row)
    return rows
