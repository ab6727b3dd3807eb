"""Benchmark: are the cached organisms what today's code builds? Rebuild and compare bit for bit.

An organism folder is named by the hash of its spec, language, build and recipe versions, not of
the training code. Two things can therefore put other weights under a current name: a code
change that moves weights without a version bump (every figure measured on the old folder then
describes old code), and a build that depends on anything but its spec, such as the process's
history or the schedule (found 2026-12-02: LoRA organisms, BENCHMARKS.md "Zoo robustness", the
erratum). This rebuilds a zoo at the given build seeds into an empty temporary folder, on one
thread as every build does, and compares each organism's weights with the cached folder of the
same name.
Bit-identical is the expectation on the machine that built the cache; another CPU differs
everywhere (README, "What is reproducible"), so run it where the cache was built.

    python benchmarks/zoo_cache_audit.py [--zoo default] [--seeds 0] [--language core]
        [--workers 2] [--root CACHE/organisms]

Exit status 1 when a cached organism differs from its rebuild (the table names it).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from zoo_tables import add_language_argument


def compare(cached: Path, rebuilt: Path) -> str:
    """'identical', or 'DIFFERENT (max |diff| X in N of M tensors)' between two folders."""
    import torch
    from safetensors.torch import load_file

    a = load_file(str(cached / "model.safetensors"))
    b = load_file(str(rebuilt / "model.safetensors"))
    if a.keys() != b.keys() or any(a[k].shape != b[k].shape for k in a):
        return "DIFFERENT (other tensor names or shapes)"
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    if not differ:
        return "identical"
    worst = max(float((a[k].float() - b[k].float()).abs().max()) for k in differ)
    return f"DIFFERENT (max |diff| {worst:.3g} in {len(differ)} of {len(a)} tensors)"


def main() -> None:
    """Rebuild each requested zoo build in a temporary folder and compare with the cache."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--zoo", default="default")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="build seeds")
    add_language_argument(parser)
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--root", type=Path, default=None, help="cached organisms folder")
    args = parser.parse_args()
    from transformers.utils import logging as hf_logging

    from skindeep.organisms.spec import load_zoo_spec
    from skindeep.organisms.zoo import build_zoo, cached_organisms

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    stale = 0
    print("| build seed | organism | cached | rebuilt against cached |")
    print("|---|---|---|---|")
    for seed in args.seeds:
        spec = load_zoo_spec(args.zoo, seed=seed, language=args.language)
        cached = cached_organisms(spec, root=args.root)
        with tempfile.TemporaryDirectory(prefix="zoo-cache-audit-") as tmp:
            rebuilt = build_zoo(spec, root=Path(tmp), workers=args.workers)
            for name, organism in rebuilt.items():
                if name not in cached:
                    print(f"| {seed} | {name} | no | - |", flush=True)
                    continue
                verdict = compare(cached[name].path, organism.path)
                stale += verdict != "identical"
                print(f"| {seed} | {name} | yes | {verdict} |", flush=True)
    print(f"\n{stale} cached organism(s) differ from today's build")
    sys.exit(1 if stale else 0)


if __name__ == "__main__":
    main()
