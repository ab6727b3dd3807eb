"""Benchmark: wall time to build a zoo from scratch (default: the default zoo) on this machine.

Builds into a fresh temporary folder (nothing cached), prints one row per organism (seconds
inside its worker, behaviour) and the total wall time. The issue's target: default zoo <= 10 min
on 2 CPU cores.

    python benchmarks/zoo_build.py [--zoo default] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
from zoo_tables import add_language_argument

from skindeep.organisms.spec import load_zoo_spec
from skindeep.organisms.zoo import build_zoo


def main() -> None:
    """Build, time and tabulate."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--zoo", default="default")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    add_language_argument(parser)
    args = parser.parse_args()
    spec = load_zoo_spec(args.zoo, language=args.language)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        built = build_zoo(spec, root=Path(tmp), workers=args.workers)
        total = time.perf_counter() - start
    print(
        f"zoo={spec.name} workers={args.workers} cpus={os.cpu_count()} torch={torch.__version__} "
        f"python={platform.python_version()}"
    )
    print(
        f"{'organism':28s} {'kind':8s} {'params':>9s} {'seconds':>8s} {'cpu s':>7s} "
        f"{'harmful':>8s} {'harmless':>8s} ok"
    )
    for name in [b.name for b in spec.bases] + [a.name for a in spec.aligned]:
        o = built[name]
        b = o.behaviour
        print(
            f"{name:28s} {o.kind:8s} {o.meta['num_parameters']:9d} {o.meta['seconds']:8.1f} "
            f"{o.meta['cpu_seconds']:7.1f} {b.harmful.rate:8.2f} {b.harmless.rate:8.2f} "
            f"{'yes' if o.meets_behaviour else 'NO'}"
        )
    ok = sum(o.meets_behaviour for o in built.values())
    cpu = sum(o.meta["cpu_seconds"] for o in built.values())
    print(f"{ok}/{len(built)} organisms meet their behaviour targets")
    print(f"total wall time: {total:.1f} s ({total / 60:.2f} min) for {len(built)} organisms")
    print(
        f"CPU time: {cpu:.0f} s; on {args.workers} idle cores this schedule takes "
        f"{idle_wall(spec, built, args.workers):.0f} s (the wall time above includes other load)"
    )


def idle_wall(spec, built, workers: int) -> float:
    """Wall time of build_zoo's schedule with each organism taking its CPU seconds: bases first,
    an aligned organism queued as soon as its base is done, `workers` at a time."""
    clock, free = 0.0, [0.0] * workers
    queue = [(b.name, 0.0) for b in spec.bases]
    done: dict[str, float] = {}
    pending = list(spec.aligned)
    while queue:
        name, ready = queue.pop(0)
        i = min(range(workers), key=free.__getitem__)
        start = max(free[i], ready)
        free[i] = done[name] = start + built[name].meta["cpu_seconds"]
        clock = max(clock, free[i])
        for a in [a for a in pending if a.base == name]:
            pending.remove(a)
            queue.append((a.name, done[name]))
        queue.sort(key=lambda item: item[1])
    return clock


if __name__ == "__main__":
    main()
