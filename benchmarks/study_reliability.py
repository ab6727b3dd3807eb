"""Benchmark: how reliable is each fragility summary of a finished study, and what would 0.8 take?

Reads a study.json (`skindeep study run ... --out DIR`) and prints, per fragility summary, the
split-seed reliability the study recorded (Spearman-Brown corrected, the noise ceiling), the
mean Spearman rho between single seeds across models (r1), and the Spearman-Brown projection of
how many fine-tuning seeds the mean would need for a reliability of 0.8:
n = ceil(0.8 (1 - r1) / (r1 (1 - 0.8))). Also the study's wall time and the primary row.

    python benchmarks/study_reliability.py DIR/study.json
"""

from __future__ import annotations

import argparse
import itertools
import math
from pathlib import Path

import numpy as np

from skindeep.study.correlation import Undefined, spearman
from skindeep.study.fragility import spearman_brown
from skindeep.study.result import StudyResult

TARGET = 0.8


def single_seed_rho(result: StudyResult, summary: str) -> tuple[float | None, int, int]:
    """Mean Spearman rho between pairs of seeds across the included models; models, seeds."""
    rows = []
    for m in result.included():
        per = m.fragility.get(summary)
        if per is not None and all(v is not None for v in per.per_seed.values()):
            rows.append([per.per_seed[k] for k in sorted(per.per_seed, key=int)])
    if len(rows) < 4 or len({len(r) for r in rows}) != 1 or len(rows[0]) < 2:
        return None, len(rows), len(rows[0]) if rows else 0
    m = np.array(rows, dtype=np.float64)
    rhos = [spearman(m[:, i], m[:, j]) for i, j in itertools.combinations(range(m.shape[1]), 2)]
    ok = [r for r in rhos if not isinstance(r, Undefined)]
    return (float(np.mean(ok)) if ok else None), m.shape[0], m.shape[1]


def seeds_needed(r1: float | None) -> str:
    """Spearman-Brown: seeds for the mean to reach TARGET reliability."""
    if r1 is None or r1 <= 0:
        return "unreachable (r1 <= 0)" if r1 is not None else "-"
    return str(math.ceil(TARGET * (1 - r1) / (r1 * (1 - TARGET))))


def main() -> None:
    """Print the reliability table of a study.json."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("study", type=Path)
    args = parser.parse_args()
    result = StudyResult.load(args.study)
    s = result.settings
    print(f"study {s.config.get('name')}: {len(result.included())} models included, "
          f"{len(result.excluded())} excluded; wall {s.wall_seconds} s; {s.machine}")  # fmt: skip
    print(f"{'summary':18s} {'reliability':>11s} {'r1 (1 seed)':>11s} {'SB @ seeds':>10s} "
          f"{'models':>6s} {'seeds':>5s} {'seeds for 0.8':>14s}")  # fmt: skip
    for name, nc in result.noise_ceiling.items():
        r1, n_models, n_seeds = single_seed_rho(result, name)
        rel = "-" if nc.reliability is None else f"{nc.reliability:.3f}"
        sb = "-" if r1 is None else f"{float(spearman_brown(r1, n_seeds)):.3f}"
        r1s = "-" if r1 is None else f"{r1:.3f}"
        print(f"{name:18s} {rel:>11s} {r1s:>11s} {sb:>10s} {n_models:6d} {n_seeds:5d} "
              f"{seeds_needed(r1):>14s}")  # fmt: skip
    print(result.headline)


if __name__ == "__main__":
    main()
