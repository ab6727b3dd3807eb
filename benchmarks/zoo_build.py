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

from skindeep.organisms.spec import load_zoo_spec
from skindeep.organisms.zoo import build_zoo


def main() -> None:
    """Build, time and tabulate."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--zoo", default="default")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    args = parser.parse_args()
    spec = load_zoo_spec(args.zoo)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        built = build_zoo(spec, root=Path(tmp), workers=args.workers)
        total = time.perf_counter() - start
    print(
        f"zoo={spec.name} workers={args.workers} cpus={os.cpu_count()} torch={torch.__version__} "
        f"python={platform.python_version()}"
    )
    print(
        f"{'organism':28s} {'kind':8s} {'params':>9s} {'seconds':>8s} "
        f"{'harmful':>8s} {'harmless':>8s} ok"
    )
    for name in [b.name for b in spec.bases] + [a.name for a in spec.aligned]:
        o = built[name]
        b = o.behaviour
        print(
            f"{name:28s} {o.kind:8s} {o.meta['num_parameters']:9d} {o.meta['seconds']:8.1f} "
            f"{b.harmful.rate:8.2f} {b.harmless.rate:8.2f} {'yes' if o.meets_behaviour else 'NO'}"
        )
    print(f"total wall time: {total:.1f} s ({total / 60:.2f} min) for {len(built)} organisms")


if __name__ == "__main__":
    main()
