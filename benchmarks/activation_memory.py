"""Peak memory of activation collection for N and 10N prompts: streaming statistics vs in memory.

Each measurement runs in a fresh process (ru_maxrss is a high-water mark) on a random organism
of size `l` (Llama, 8 layers, d = 192): build the model, warm up on a few prompts, then collect
all layers at the last token. Reported: peak RSS growth over the warmed-up baseline (torch and
numpy memory included) and the tracemalloc peak (Python and numpy allocations). The target of
the activation-engine issue: 10x the prompts, < 10% more peak memory for streaming statistics.

Usage: python benchmarks/activation_memory.py [--n 200] [--family llama] [--size l]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import tracemalloc
from typing import Any

SINKS = ("stats", "stats+cov", "array")


def _rss_mib() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(n: int, sink_name: str, family: str, size: str) -> dict[str, Any]:
    """Collect n organism prompts into one sink; return memory and speed figures."""
    import torch

    from skindeep.activations import ArraySink, StreamingStats, collect
    from skindeep.models import ModelAdapter
    from skindeep.organisms.architectures import build_model
    from skindeep.organisms.language import DEFAULT_LANGUAGE
    from skindeep.organisms.tokenizer import build_tokenizer

    torch.set_num_threads(1)
    tok = build_tokenizer(DEFAULT_LANGUAGE)
    model = build_model(family, size, tok, seed=0).eval()
    adapter = ModelAdapter(model, tok)
    requests = DEFAULT_LANGUAGE.sample_requests(n, harmful=None, split="all", seed=0)
    if len(requests) < n:
        raise SystemExit(f"the organism language has only {len(requests)} requests")
    prompts = [r.text for r in requests]
    labels = ["harmful" if r.harmful else "harmless" for r in requests]
    collect(model, tok, adapter, prompts[:32], labels=labels[:32], sink=StreamingStats())
    baseline = _rss_mib()
    if sink_name == "array":
        sink: Any = ArraySink()
    else:
        sink = StreamingStats(full_covariance=sink_name == "stats+cov")
    tracemalloc.start()
    start = time.perf_counter()
    spec = collect(model, tok, adapter, prompts, labels=labels, sink=sink, batch_size=16)
    seconds = time.perf_counter() - start
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "n": n,
        "sink": sink_name,
        "tokens": spec.n_tokens,
        "seconds": seconds,
        "rss_growth_mib": _rss_mib() - baseline,
        "traced_peak_mib": traced_peak / 2**20,
        "peak_rss_mib": _rss_mib(),
    }


def run_child(n: int, sink: str, family: str, size: str) -> dict[str, Any]:
    """Measure in a fresh interpreter, so peak RSS belongs to this measurement alone."""
    cmd = [sys.executable, __file__, "--child", str(n), sink, "--family", family, "--size", size]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    """Print a table of N vs 10N prompts for each sink."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--family", default="llama")
    parser.add_argument("--size", default="l")
    parser.add_argument("--child", nargs=2, metavar=("N", "SINK"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(int(args.child[0]), args.child[1], args.family, args.size)))
        return
    print(f"organism {args.family}/{args.size}, all layers, last token, batch 16, 1 thread")
    header = (
        f"{'sink':<10} {'prompts':>7} {'tokens':>7} {'tok/s':>7} "
        f"{'peak RSS MiB':>12} {'RSS growth MiB':>14} {'traced peak MiB':>15}"
    )
    print(header)
    print("-" * len(header))
    for sink in SINKS:
        rows = [run_child(n, sink, args.family, args.size) for n in (args.n, 10 * args.n)]
        for r in rows:
            print(
                f"{sink:<10} {r['n']:>7} {r['tokens']:>7} {r['tokens'] / r['seconds']:>7.0f} "
                f"{r['peak_rss_mib']:>12.1f} {r['rss_growth_mib']:>14.2f} "
                f"{r['traced_peak_mib']:>15.3f}"
            )
        small, big = rows
        ratio = big["peak_rss_mib"] / small["peak_rss_mib"]
        print(f"{'':<10} 10x prompts: peak RSS x{ratio:.3f} ({100 * (ratio - 1):+.1f}%)")


if __name__ == "__main__":
    main()
