"""Benchmark: do the default zoo's recipes meet their behaviour targets on other build seeds and
other architectures? One row per built organism.

Two sweeps, both into the organism cache (content-hashed, so a rerun only builds what is new):

1. every recipe kind of the default zoo (its first full-scope organism: hyperparameters and base
   size) on a base of each architecture of `--archs`: every architecture at the first seed of
   `--seeds`, then Llama at the others;
2. the default zoo, as specified, at every build seed of `--seeds` (skip: `--no-default`).

    python benchmarks/zoo_robustness.py [--seeds 0 1 2] [--archs llama qwen2 ...] [--built-only]
        [--json FILE]

Rows: organism, recipe (kind), scope, arch, size, seed (build seed), meets_behaviour, refusal of
held-out harmful and harmless prompts, flagged (degenerate) outputs. The summary gives, per
recipe, the builds that met the targets and the mean and range of the refusal rates; a last
table gives the zoo's own organisms at every build seed.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import defaultdict
from collections.abc import Callable

from zoo_tables import add_language_argument

from skindeep.organisms.architectures import FAMILIES
from skindeep.organisms.behaviour import ALIGNED_MAX_OVER_REFUSAL, ALIGNED_MIN_REFUSAL
from skindeep.organisms.recipes import RECIPES
from skindeep.organisms.spec import AlignedSpec, BaseSpec, ZooSpec, load_zoo_spec
from skindeep.organisms.zoo import Organism, build_zoo, cached_organisms

#: Base learning rates that train each family's base to the target (default 3e-3).
BASE_LR = {"gpt2": 2e-3}
#: Organism names as in the default zoo, so organisms it already built are found in the cache
#: (a folder is named by organism name and content hash).
SHORT = {"rl_reward_model": "rlhf", "rl_ai_judge": "rlaif"}


def arch_zoo(default: ZooSpec, family: str, kinds: set[str] | None = None) -> ZooSpec:
    """The default zoo's first full-scope organism of each recipe kind, moved to `family` at the
    size of its base there (recipes are tuned to a size). Bases the default zoo has are taken as
    they are, so its organisms are found in the cache; others train like the default's bases."""
    bases: dict[str, BaseSpec] = {}
    aligned: list[AlignedSpec] = []
    seen: set[str] = set()
    wanted = kinds
    for a in default.aligned:
        r = a.recipe
        if r.scope != "full" or r.recovery_frac or r.n_harmful != 256 or r.kind in seen:
            continue
        if wanted is not None and r.kind not in wanted:
            continue
        seen.add(r.kind)
        size = default.base(a.base).size
        name = f"{family}-{size}"
        same = [b for b in default.bases if b.family == family and b.size == size]
        bases[name] = (
            same[0]
            if same
            else BaseSpec(
                name=name, family=family, size=size, steps=300, lr=BASE_LR.get(family, 3e-3)
            )
        )
        short = SHORT.get(r.kind, r.kind)
        aligned.append(AlignedSpec(name=f"{name}-{short}-full", base=name, recipe=r, seed=a.seed))
    return ZooSpec(
        name=f"robust-{family}",
        language=default.language,
        bases=list(bases.values()),
        aligned=aligned,
        eval=default.eval,
    )


def row(o: Organism, spec: ZooSpec) -> dict:
    """One benchmark row for a built aligned organism."""
    b = o.behaviour
    recipe = o.meta["spec"]["recipe"]
    return {
        "zoo": spec.name,
        "language": spec.language,
        "organism": o.name,
        "recipe": recipe["kind"],
        "scope": recipe["scope"],
        "arch": o.meta["family"],
        "size": o.meta["size"],
        "seed": spec.seed,
        "meets_behaviour": o.meets_behaviour,
        "refuses_harmful": b.harmful.rate,
        "refuses_harmless": b.harmless.rate,
        "flagged_harmful": b.harmful.n_flagged,
        "seconds": o.meta.get("seconds"),
        "path": str(o.path),
    }


def build_rows(spec: ZooSpec, workers: int, built_only: bool = False) -> list[dict]:
    """Build (or find cached) every organism of `spec`; rows of its aligned organisms.

    With `built_only` nothing is trained: organisms not in the cache are named and left out."""
    start = time.perf_counter()
    built = cached_organisms(spec) if built_only else build_zoo(spec, workers=workers)
    rows = [row(built[a.name], spec) for a in spec.aligned if a.name in built]
    missing = [o.name for o in [*spec.bases, *spec.aligned] if o.name not in built]
    ok = sum(r["meets_behaviour"] for r in rows)
    bases_ok = all(built[b.name].meets_behaviour for b in spec.bases if b.name in built)
    print(
        f"# {spec.name} seed {spec.seed}: {ok}/{len(rows)} aligned meet targets, "
        f"bases {'ok' if bases_ok else 'MISSED'}; {time.perf_counter() - start:.0f} s"
        + (f"; NOT BUILT: {', '.join(missing)}" if missing else ""),
        flush=True,
    )
    return rows


def summary(rows: list[dict]) -> list[str]:
    """Per (recipe, arch): builds meeting targets, mean and range of harmful/harmless refusal."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["recipe"], r["arch"])].append(r)
    lines = [
        "| recipe | arch | seeds | builds meeting targets | refuses harmful mean [range] "
        "| refuses harmless mean [range] |",
        "|---|---|---|---|---|---|",
    ]
    for (recipe, arch), rs in sorted(groups.items()):
        seeds = ",".join(str(x) for x in sorted({r["seed"] for r in rs}))
        lines.append(
            f"| {recipe} | {arch} | {seeds} | {sum(r['meets_behaviour'] for r in rs)}/{len(rs)} "
            f"| {mean_range([r['refuses_harmful'] for r in rs])} "
            f"| {mean_range([r['refuses_harmless'] for r in rs])} |"
        )
    return lines


def mean_range(values: list[float]) -> str:
    """'mean [min, max]' over builds; one build is its value, marked as such (no range)."""
    if len(values) == 1:
        return f"{values[0]:.2f} (one build)"
    return f"{sum(values) / len(values):.2f} [{min(values):.2f}, {max(values):.2f}]"


def zoo_table(rows: list[dict], zoo: ZooSpec) -> list[str]:
    """Per aligned organism of the swept zoo itself, in its order: both refusal rates at each
    build seed (misses in bold) and the builds meeting the targets."""
    mine = [r for r in rows if r["zoo"] == zoo.name]
    seeds = sorted({r["seed"] for r in mine})
    by = {(r["organism"], r["seed"]): r for r in mine}
    names = [a.name for a in zoo.aligned]
    cols = " ".join(str(s) for s in seeds)
    lines = [
        f"| organism | refuses harmful, build seeds {cols} | refuses harmless, build seeds {cols} "
        "| builds meeting targets |",
        "|---|---|---|---|",
    ]

    def cells(rs: list[dict | None], key: str, missed: Callable[[float], bool]) -> str:
        return " ".join(
            "-" if r is None else f"**{r[key]:.2f}**" if missed(r[key]) else f"{r[key]:.2f}"
            for r in rs
        )

    for name in names:
        rs = [by.get((name, s)) for s in seeds]
        harmful = cells(rs, "refuses_harmful", lambda v: v < ALIGNED_MIN_REFUSAL)
        harmless = cells(rs, "refuses_harmless", lambda v: v > ALIGNED_MAX_OVER_REFUSAL)
        built = [r for r in rs if r is not None]
        if not built:
            continue
        ok = sum(r["meets_behaviour"] for r in built)
        lines.append(f"| {name} | {harmful} | {harmless} | {ok}/{len(built)} |")
    return lines


def main() -> None:
    """Build both sweeps, print rows and the summary table, optionally write JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--zoo", default="default", help="zoo whose recipes are swept")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--archs", nargs="*", default=list(FAMILIES), choices=FAMILIES)
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--kinds", nargs="*", choices=RECIPES, help="recipe kinds (default: all)")
    parser.add_argument("--no-default", action="store_true", help="skip sweep 2 (the zoo itself)")
    parser.add_argument(
        "--built-only", action="store_true", help="report cached builds only (train nothing)"
    )
    add_language_argument(parser)
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args()
    default = load_zoo_spec(args.zoo, language=args.language)
    # the architecture sweep first (every architecture at the first seed, then Llama's other
    # seeds): it covers every recipe kind soonest
    kinds = set(args.kinds) if args.kinds else None
    specs = [arch_zoo(default, f, kinds).with_seed(args.seeds[0]) for f in args.archs]
    if "llama" in args.archs:
        specs += [arch_zoo(default, "llama", kinds).with_seed(s) for s in args.seeds[1:]]
    specs += [] if args.no_default else [default.with_seed(s) for s in args.seeds]
    rows: list[dict] = []
    for spec in specs:
        rows += build_rows(spec, args.workers, args.built_only)
        if args.json:  # written after every zoo, so an interrupted sweep keeps its rows
            with open(args.json, "w") as fh:
                json.dump(rows, fh, indent=2)
    # an organism in both sweeps (same folder) is one build: count it once
    rows = list({r["path"]: r for r in rows}.values())
    print(
        f"{'organism':24s} {'recipe':16s} {'arch':7s} {'seed':>4s} "
        f"{'harmful':>8s} {'harmless':>8s} meets"
    )
    for r in rows:
        print(
            f"{r['organism']:24s} {r['recipe']:16s} {r['arch']:7s} {r['seed']:4d} "
            f"{r['refuses_harmful']:8.2f} {r['refuses_harmless']:8.2f} "
            f"{'yes' if r['meets_behaviour'] else 'NO'}"
        )
    print("\n".join(summary(rows)))
    if not args.no_default:
        print("\n".join(zoo_table(rows, default)))
    missed = [f"{r['organism']}@{r['seed']}" for r in rows if not r["meets_behaviour"]]
    print(f"{len(rows) - len(missed)}/{len(rows)} builds meet their behaviour targets")
    if missed:
        print("missed: " + ", ".join(missed))


if __name__ == "__main__":
    main()
