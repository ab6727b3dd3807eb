"""Benchmark: refusal retention of every aligned organism of a built zoo after the default recipe.

The default organism recipe (skindeep.finetune.config): LoRA r = 8, alpha 16, all linear layers,
n = 100 benign pairs, 200 steps of batch 32 at lr 5e-3 (options below change it). Prints refusal
before and after, retention per seed and its mean per organism, and the standard deviation of
the mean retention across organisms (the issue's target: >= 0.15, i.e. organisms differ).
Reads the organisms of `--zoo` built at each `--build-seed` with the current recipes from
$SKINDEEP_CACHE/organisms (build them first with `skindeep organisms build --seed N`); results
are cached there too, so a rerun only prints. With several build seeds the summary is each
organism's mean [min, max] over its builds and the spread of those means across organisms.

    SKINDEEP_CACHE=/tmp/sdcache python benchmarks/zoo_retention.py [--zoo default]
        [--build-seed 0 1 2] [--only NAME,...] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import torch
from transformers.utils import logging as hf_logging
from zoo_tables import add_language_argument

from skindeep.artifacts import json_ready
from skindeep.finetune.config import DEFAULT_ORGANISM_N, FinetuneConfig, RetentionConfig
from skindeep.finetune.data import organism_heldout, organism_pairs
from skindeep.finetune.retention import run_retention
from skindeep.organisms.spec import load_zoo_spec
from skindeep.organisms.zoo import cached_organisms, organisms_dir


def summarise(rows: list[dict]) -> None:
    """Per organism the mean [min, max] retention over builds; their spread across organisms."""
    means: dict[str, float] = {}
    for name in dict.fromkeys(r["organism"] for r in rows):
        values = [r["retention_mean"] for r in rows if r["organism"] == name]
        defined = [v for v in values if v == v]
        if len(defined) < len(values):
            print(f"{name}: retention undefined at {len(values) - len(defined)} build(s)")
        if not defined:
            continue
        means[name] = statistics.fmean(defined)
        seeds = ",".join(str(r["build_seed"]) for r in rows if r["organism"] == name)
        print(
            f"{name:24s} builds {seeds:7s} retention {means[name]:.2f} "
            f"[{min(defined):.2f}, {max(defined):.2f}]"
        )
    if len(means) > 1:
        sd = statistics.stdev(means.values())
        print(
            f"mean retention over {len(means)} organisms: {statistics.fmean(means.values()):.3f}; "
            f"standard deviation {sd:.3f} (target >= 0.15: {'met' if sd >= 0.15 else 'NOT met'})"
        )


def main() -> None:
    """Run the default recipe over the zoo's aligned organisms and tabulate retention."""
    defaults = FinetuneConfig()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--zoo", default="default")
    parser.add_argument("--n", type=int, default=DEFAULT_ORGANISM_N)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", type=int, default=None, help="default 200")
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--n-eval", type=int, default=100)
    parser.add_argument("--only", default="", help="comma-separated organism names")
    parser.add_argument("--build-seed", type=int, nargs="+", default=[0], help="zoo build seeds")
    add_language_argument(parser)
    parser.add_argument("--json", default=None, help="also write the rows here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    spec = load_zoo_spec(args.zoo, language=args.language)
    root = organisms_dir()
    config = RetentionConfig(
        ns=(args.n,),
        seeds=tuple(int(s) for s in args.seeds.split(",")),
        finetune=FinetuneConfig(steps=args.steps, lr=args.lr, batch_size=args.batch_size),
        save_adapters=False,
    )
    benign = organism_pairs()
    harmful = organism_heldout(True, args.n_eval)
    harmless = organism_heldout(False, args.n_eval)
    load = os.getloadavg()
    print(
        f"zoo={spec.name} root={root} n={args.n} steps={config.finetune.num_steps(args.n)} "
        f"lr={args.lr} "
        f"batch={args.batch_size} seeds={list(config.seeds)} n_eval={args.n_eval} "
        f"cpus={os.cpu_count()} load={load[0]:.1f} torch={torch.__version__} "
        f"python={platform.python_version()}"
    )
    head = f"{'organism':24s} {'build':>5s} {'recipe':16s} {'before':>6s} {'after/seed':>18s}"
    print(head + f" {'retention':>9s} {'over-ref':>8s} {'seconds':>7s}")
    rows: list[dict] = []
    only = {s for s in args.only.split(",") if s}
    for build_seed in args.build_seed:
        built = cached_organisms(
            load_zoo_spec(args.zoo, seed=build_seed, language=args.language), root=root
        )
        for a in spec.aligned:
            if only and a.name not in only:
                continue
            organism = built.get(a.name)
            if organism is None:
                print(f"{a.name:24s} {build_seed:5d} not built in {root}; skipped")
                continue
            start = time.perf_counter()
            result = run_retention(organism.path, benign, harmful, harmless, config)
            row = result.summary()[0]
            recipe = f"{a.recipe.kind}/{a.recipe.scope}"
            seeds = " ".join(f"{c.refusal:.2f}" for c in result.cells)
            rows.append(
                {
                    "organism": a.name, "build_seed": build_seed, "recipe": recipe,
                    "refusal_before": result.before.harmful.rate,
                    "refusal_after": [c.refusal for c in result.cells],
                    "retention_mean": row.retention_mean,
                    "over_refusal_mean": row.over_refusal_mean,
                    "seconds": round(time.perf_counter() - start, 1),
                }
            )  # fmt: skip
            print(
                f"{a.name:24s} {build_seed:5d} {recipe:16s} {result.before.harmful.rate:6.2f} "
                f"{seeds:>18s} {row.retention_mean:9.2f} {row.over_refusal_mean or 0.0:8.2f} "
                f"{rows[-1]['seconds']:7.1f}",
                flush=True,
            )
    summarise(rows)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(json_ready(rows), fh, indent=2)
    print(f"load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
