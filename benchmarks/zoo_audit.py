"""Audit every aligned organism of a built zoo against its base, per build seed, in tables.

The aligned organisms of `--zoo` built at each `--build-seed` with the current recipes (found by
their content hash in the organisms folder, default $SKINDEEP_CACHE/organisms; nothing is
trained) are audited against their own bases on the organism language's held-out prompts. One
table per build seed lists GFS (both variants), the peak layer, |d| on v at the peak, the
Arditi |d| at the peak (in-sample and held-out) and the measured refusal of held-out harmful
requests; with several build seeds a last table gives each organism's mean [min, max].

Usage: python benchmarks/zoo_audit.py [--zoo default] [--build-seed 0 [1 2]] [--root DIR]
       [--match REGEX] [--n 64] [--format chat] [--variant code] [--n-perm 200] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path
from typing import Any

from zoo_tables import add_language_argument, print_rows, print_seed_summary


def audit_zoo(args: argparse.Namespace, build_seed: int) -> list[dict[str, Any]]:
    """One row per aligned organism of the zoo built at `build_seed` (missing ones are named)."""
    import torch
    from transformers.utils import logging as hf_logging

    from skindeep.models import load_model
    from skindeep.organisms.spec import load_zoo_spec
    from skindeep.organisms.zoo import cached_organisms
    from skindeep.prompts import organism_prompts
    from skindeep.scores import AuditConfig, audit_pair

    torch.set_num_threads(args.threads)
    hf_logging.disable_progress_bar()
    spec = load_zoo_spec(args.zoo, seed=build_seed, language=args.language)
    built = cached_organisms(spec, root=args.root)
    pattern = re.compile(args.match)
    harmful = organism_prompts(True, "heldout", args.n, seed=args.seed)
    harmless = organism_prompts(False, "heldout", args.n, seed=args.seed)
    config = AuditConfig(
        variant=args.variant, fmt=args.format, n_perm=args.n_perm, seed=args.seed,
        cache_dir=args.cache_dir, last_layer=args.last_layer,
    )  # fmt: skip
    rows = []
    for spec_aligned in spec.aligned:
        if not pattern.search(spec_aligned.name):
            continue
        organism, base = built.get(spec_aligned.name), built.get(spec_aligned.base)
        if organism is None or base is None:
            print(f"build seed {build_seed}: {spec_aligned.name} not built; skipped")
            continue
        start = time.perf_counter()
        models = load_model(organism.path), load_model(base.path)
        res = audit_pair(*models, harmful, harmless, config)
        g, i = res.geometry, res.peak_index
        recipe = organism.meta["spec"].get("recipe", {})
        rows.append(
            {
                "organism": organism.name,
                "build_seed": build_seed,
                "recipe": f"{recipe.get('kind', '?')}/{recipe.get('scope', '?')}",
                "arch": organism.meta["architecture"].removesuffix("ForCausalLM"),
                "layers": res.aligned.num_layers,
                "d_model": res.aligned.hidden_size,
                "gfs_code": g.gfs["code"].gfs,
                "gfs_paper": g.gfs["paper"].gfs,
                "peak_layer": res.peak_layer,
                "d_peak": float(res.primary.d[i]),
                "arditi_d_peak": float(g.arditi_d[i]),
                "arditi_d_heldout_peak": float(g.arditi_d_heldout[i]),
                "refusal_harmful": organism.behaviour.harmful.rate,
                "meets_behaviour": organism.meets_behaviour,
                "seconds": round(time.perf_counter() - start, 1),
            }
        )
    return sorted(rows, key=lambda r: r[f"gfs_{args.variant}"])


SEED_SUMMARY = ("gfs_code", "gfs_paper", "d_peak", "arditi_d_heldout_peak", "refusal_harmful")
"""Columns summarised over build seeds."""


def main() -> None:
    """Parse arguments, audit the zoo, print (and optionally save) the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--zoo", default="default", help="zoo spec whose organisms are audited")
    parser.add_argument(
        "--build-seed", type=int, nargs="+", default=[0], help="zoo build seed(s) to audit"
    )
    add_language_argument(parser)
    parser.add_argument("--root", type=Path, default=None, help="organisms folder")
    parser.add_argument("--match", default=".", help="regex on organism names")
    parser.add_argument("--n", type=int, default=64, help="held-out prompts per class")
    parser.add_argument("--format", choices=("chat", "raw"), default="chat")
    parser.add_argument("--variant", choices=("code", "paper"), default="code")
    parser.add_argument(
        "--last-layer", choices=("raw", "normed"), default="raw", help="as `skindeep audit`"
    )
    parser.add_argument("--n-perm", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache-dir", type=Path, default=None, help="activation cache")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()
    rows = []
    for build_seed in args.build_seed:
        seed_rows = audit_zoo(args, build_seed)
        if seed_rows:
            title = f"zoo audit, build seed {build_seed} ({args.format}, {args.n} per class)"
            print_rows(seed_rows, title)
        rows += seed_rows
    if not rows:
        raise SystemExit(f"no built aligned organisms matching {args.match!r}")
    if len(args.build_seed) > 1:
        print_seed_summary(rows, SEED_SUMMARY, listed=("peak_layer",))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
