"""How much of a per-organism figure is the recipe's and how much the build's: ICC over seeds.

Reads the `--json` rows of `zoo_audit.py`, `zoo_rank_audit.py` or `zoo_retention.py` (one row
per organism and build seed) and prints, for each numeric column asked for, the one-way ICC(1)
over organisms (groups) x build seeds (raw and, for positive figures, of the log), the Spearman
correlation between every pair of build seeds, and the largest max/min over one organism's builds.
Only organisms present at every build seed in the files enter (a balanced design); the others
are named.

ICC(1) = (MSB - MSW) / (MSB + (k - 1) MSW), the one-way random-effects, single-measure form
(Shrout & Fleiss 1979, case 1): 1 when the build seed never moves an organism's figure, about 0
(it can go below) when the figure is the build's, not the recipe's.

Usage: python benchmarks/zoo_icc.py FILE [FILE ...] [--columns gfs_code gfs_paper]
       [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr


def icc1(table: np.ndarray) -> float:
    """One-way ICC(1) of an (n groups, k measures) array; NaN-free input, n >= 2, k >= 2.

    >>> round(icc1(np.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])), 6)
    1.0
    """
    n, k = table.shape
    grand = table.mean()
    msb = k * ((table.mean(axis=1) - grand) ** 2).sum() / (n - 1)
    msw = ((table - table.mean(axis=1, keepdims=True)) ** 2).sum() / (n * (k - 1))
    return float((msb - msw) / (msb + (k - 1) * msw))


def seed_of(row: dict) -> int:
    """The build seed of a row, whatever the benchmark called it."""
    for key in ("build_seed", "seed"):
        if key in row:
            return int(row[key])
    raise SystemExit(f"a row has no build seed: {sorted(row)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", type=Path, nargs="+", help="--json files of a zoo benchmark")
    parser.add_argument("--columns", nargs="+", default=["gfs_code", "gfs_paper"])
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default: all found")
    args = parser.parse_args()
    rows = [r for f in args.files for r in json.loads(f.read_text(encoding="utf-8"))]
    seeds = sorted(args.seeds if args.seeds is not None else {seed_of(r) for r in rows})
    for column in args.columns:
        values: dict[str, dict[int, float]] = defaultdict(dict)
        for r in rows:
            v = r.get(column)
            if seed_of(r) in seeds and isinstance(v, int | float) and math.isfinite(v):
                values[r["organism"]][seed_of(r)] = float(v)
        names = sorted(n for n, per in values.items() if all(s in per for s in seeds))
        missing = sorted(set(values) - set(names))
        if len(names) < 2 or len(seeds) < 2:
            raise SystemExit(f"{column}: need 2+ organisms at 2+ build seeds, have {len(names)}")
        table = np.array([[values[n][s] for s in seeds] for n in names])
        line = f"{column}: {len(names)} organisms x seeds {','.join(map(str, seeds))}: "
        line += f"ICC(1) {icc1(table):+.2f}"
        if (table > 0).all():
            line += f", of log {icc1(np.log(table)):+.2f}"
            ratio = table.max(axis=1) / table.min(axis=1)
            line += f", largest max/min {ratio.max():.1f}x ({names[int(ratio.argmax())]})"
        pairs = [
            f"{a}-{b} {spearmanr(table[:, i], table[:, j]).statistic:+.2f}"
            for (i, a), (j, b) in itertools.combinations(enumerate(seeds), 2)
        ]
        if len(pairs) <= 10:
            line += "; Spearman between seeds " + ", ".join(pairs)
        print(line + (f" (left out, not at every seed: {', '.join(missing)})" if missing else ""))


if __name__ == "__main__":
    main()
