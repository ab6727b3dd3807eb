"""Where a warm `skindeep audit` spends its time: imports, lazy loads, cache keys, geometry, files.

Runs the audit's library steps in one process on a pair whose activations are already cached
(run `skindeep audit` once first) and prints wall and CPU seconds per phase. It fails if a
model's weights were read: a warm audit must not load them.

Usage: python benchmarks/warm_audit_phases.py ALIGNED BASE HARMFUL HARMLESS OUT [--n 64]
    [--n-perm 200]
"""

from __future__ import annotations

import argparse
import time

_marks = [(time.perf_counter(), time.process_time())]


def mark(name: str) -> None:
    """Print the wall and CPU seconds since the previous mark."""
    wall, cpu = time.perf_counter(), time.process_time()
    print(f"{name:<32} wall {wall - _marks[-1][0]:6.2f} s  cpu {cpu - _marks[-1][1]:6.2f} s")
    _marks.append((wall, cpu))


def main() -> None:
    """Time each phase of one warm audit."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("aligned", "base", "harmful", "harmless", "out"):
        parser.add_argument(name)
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--n-perm", type=int, default=200)
    args = parser.parse_args()
    import numpy  # noqa: F401
    import scipy.stats  # noqa: F401
    import sklearn  # noqa: F401
    import torch  # noqa: F401

    mark("import torch/scipy/sklearn")
    from skindeep.cli.audit import resolve_prompts
    from skindeep.models import load_model
    from skindeep.report import write_audit
    from skindeep.scores import AuditConfig, audit_pair
    from skindeep.scores.audit import check_compatible, collect_pair

    mark("import skindeep (+transformers)")
    aligned, base = load_model(args.aligned, lazy=True), load_model(args.base, lazy=True)
    mark("2 x lazy load_model")
    harmful = resolve_prompts(args.harmful, True, args.n, None, 0)
    harmless = resolve_prompts(args.harmless, False, args.n, None, 0)
    config = AuditConfig(n_perm=args.n_perm)
    check_compatible(aligned, base)
    mark("prompts + pair check")
    stores = collect_pair(aligned, base, harmful, harmless, config)
    stores.aligned.array(), stores.base.array()
    mark("cache keys + read stores")
    if "model" in vars(aligned) or "model" in vars(base):
        raise SystemExit("error: a model's weights were loaded: the activations were not cached")
    result = audit_pair(aligned, base, harmful, harmless, config)
    mark("audit_pair (geometry)")
    write_audit(result, args.out)
    mark("write_audit (json, plots)")
    wall, cpu = _marks[-1][0] - _marks[0][0], _marks[-1][1] - _marks[0][1]
    print(f"total wall {wall:.1f} s, cpu {cpu:.1f} s")


if __name__ == "__main__":
    main()
