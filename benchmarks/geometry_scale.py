"""The audit geometry at paper scale: time and peak memory on synthetic activations.

Synthetic aligned/base activations of the size the Skin-Deep paper works at (n prompts per
class, L layers, hidden size d; float32 as the activation store holds them): the base has a
decaying spectrum, alignment adds a harmful-only shift along a refusal direction, a rank-8
modification and small noise, so D_l is low-rank as in real models. Each part runs in a fresh
process (peak RSS is a high-water mark) with BLAS limited to the given thread count:

- gfs-code, gfs-paper: `geometric_fragility` of each variant;
- subspace: `safety_subspace` of D (eps-energy rule);
- stats: `layer_statistics` (PERMANOVA and MMD with their default 1000 permutations, probe);
- audit: the whole `pair_geometry` of `skindeep audit` (all of the above, CKA, Arditi effects).

Reported: wall seconds and CPU seconds of the process (data generation excluded), peak RSS in
GiB (inputs included: two float32 [2n, L, d] arrays are 2 x 2n*L*d*4 bytes) and the 1-minute
load average at the end of each part (on a shared machine, wall time is only meaningful beside
it). With 2 threads the geometry runs two layers at a time, one BLAS thread each. The goal of
the performance issue: the whole audit geometry at n = 1000, L = 32, d = 4096 under 30 s wall
and 4 GiB on 2 cores.

Usage: python benchmarks/geometry_scale.py [--n 1000] [--layers 32] [--d 4096]
       [--threads 1 2] [--parts audit ...] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from typing import Any

PARTS = ("gfs-code", "gfs-paper", "subspace", "stats", "audit")


def synthetic_pair(n: int, n_layers: int, d: int, seed: int = 0):
    """Paired float32 activations [2n, L, d] of an aligned and a base model, and the labels."""
    import numpy as np

    rng = np.random.default_rng(seed)
    total = 2 * n
    harmful = np.zeros(total, dtype=bool)
    harmful[:n] = True
    base = np.empty((total, n_layers, d), dtype=np.float32)
    aligned = np.empty_like(base)
    scales = (1.0 / np.sqrt(np.arange(1, 65))).astype(np.float32)  # decaying base spectrum
    for layer in range(n_layers):
        basis = np.linalg.qr(rng.standard_normal((d, 64)))[0].astype(np.float32)
        b = (rng.standard_normal((total, 64), dtype=np.float32) * scales) @ basis.T
        b += 0.05 * rng.standard_normal((total, d), dtype=np.float32)
        refusal = rng.standard_normal(d).astype(np.float32)
        refusal /= np.linalg.norm(refusal)
        modification = np.linalg.qr(rng.standard_normal((d, 8)))[0].astype(np.float32)
        delta = (0.2 * rng.standard_normal((total, 8), dtype=np.float32)) @ modification.T
        delta[harmful] += (1.0 + 0.1 * rng.standard_normal((n, 1), dtype=np.float32)) * refusal
        delta += 0.005 * rng.standard_normal((total, d), dtype=np.float32)
        base[:, layer] = b
        aligned[:, layer] = b + delta
    return aligned, base, harmful


def run_part(part: str, n: int, n_layers: int, d: int, threads: int) -> dict[str, Any]:
    """Time one part in this process; return seconds and peak RSS."""
    from threadpoolctl import threadpool_limits

    from skindeep.geometry import geometric_fragility, layer_statistics, safety_subspace
    from skindeep.scores import AuditConfig, pair_geometry

    aligned, base, harmful = synthetic_pair(n, n_layers, d)
    with threadpool_limits(limits=threads):
        start, cpu_start = time.perf_counter(), time.process_time()
        if part == "gfs-code":
            geometric_fragility(aligned, base, harmful, "code")
        elif part == "gfs-paper":
            geometric_fragility(aligned, base, harmful, "paper")
        elif part == "subspace":
            safety_subspace(aligned - base)
        elif part == "stats":
            layer_statistics(aligned[harmful], aligned[~harmful])
        elif part == "audit":
            pair_geometry(aligned, base, harmful, AuditConfig())
        else:
            raise ValueError(f"unknown part {part!r}")
        seconds = time.perf_counter() - start
        cpu_seconds = time.process_time() - cpu_start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    return {
        "part": part, "threads": threads, "seconds": seconds, "cpu_seconds": cpu_seconds,
        "peak_rss_gib": peak, "load_avg_1min": os.getloadavg()[0],
    }  # fmt: skip


def _in_fresh_process(part: str, args: argparse.Namespace, threads: int) -> dict[str, Any]:
    """Run one part in a child process so its peak RSS is its own."""
    out = subprocess.run(
        [sys.executable, __file__, "--child", part, "--n", str(args.n), "--layers",
         str(args.layers), "--d", str(args.d), "--threads", str(threads)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    """Parse flags, run every part at every thread count, print a table (and write JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="prompts per class")
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--d", type=int, default=4096)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--json", help="write the rows (and the whole-audit figures) here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_part(args.child, args.n, args.layers, args.d, args.threads[0])))
        return
    rows = [_in_fresh_process(p, args, t) for t in args.threads for p in args.parts]
    print(f"n = {args.n} per class, L = {args.layers}, d = {args.d}; {platform.processor()}")
    head = f"{'part':<10} {'threads':>7} {'seconds':>9} {'cpu s':>8} {'peak RSS GiB':>13}"
    print(f"{head} {'load':>5}")
    for row in rows:
        print(
            f"{row['part']:<10} {row['threads']:>7} {row['seconds']:>9.1f} "
            f"{row['cpu_seconds']:>8.1f} {row['peak_rss_gib']:>13.2f} {row['load_avg_1min']:>5.1f}"
        )
    if args.json:
        audit = [r for r in rows if r["part"] == "audit"]
        best = min(audit, key=lambda r: r["seconds"]) if audit else None
        summary = {
            "n": args.n, "layers": args.layers, "d": args.d, "rows": rows,
            "seconds": best["seconds"] if best else None,
            "cpu_seconds": best["cpu_seconds"] if best else None,
            "peak_rss_gib": max(r["peak_rss_gib"] for r in audit) if audit else None,
        }  # fmt: skip
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(summary, fh, indent=2)


if __name__ == "__main__":
    main()
