"""Effective-rank audit of every aligned organism of a built zoo; one row per organism.

Each aligned organism of the zoo spec built at the asked build seed with the current recipes
(found by content hash in the organisms folder, default $SKINDEEP_CACHE/organisms; nothing is
trained) is audited against its own base on the organism language's held-out prompts, with the
register (en/fr) and mood (question/statement) neutral contrasts. Columns:
|cos(u_1, Arditi)| of each variant at the GFS peak layer, mean rho per variant (uncentered and
the template's centered), the neutral contrasts' template rho, the spectral-gap share, and the
base contrast |m_base|/|m_aligned - m_base| at the peak (how much of the harmful-minus-harmless
separation the base already had, against what alignment changed: M_DiD sees only the change).
Limit (b)'s ablation is skipped unless --ablate (it generates; slow on CPU). With several
build seeds, a second table gives each organism's mean [range] over the seeds found.

Usage: python benchmarks/zoo_rank_audit.py [--zoo default] [--build-seed 0 [1 2]] [--root DIR]
       [--match REGEX] [--n 64] [--ablate] [--json FILE]
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
    """One row per aligned organism built with `build_seed`."""
    import numpy as np
    import torch

    from skindeep.models import load_model
    from skindeep.organisms.spec import load_zoo_spec
    from skindeep.organisms.zoo import cached_organisms
    from skindeep.prompts import organism_prompts
    from skindeep.scores.rank_audit import organism_neutral_contrasts, rank_audit
    from skindeep.scores.rank_config import RankAuditConfig
    from skindeep.scores.rank_pair import rank_predictors

    torch.set_num_threads(args.threads)
    # the zoo's organisms at this build seed with the current recipes (by content hash)
    by_name = dict(
        sorted(
            cached_organisms(
                load_zoo_spec(args.zoo, seed=build_seed, language=args.language), root=args.root
            ).items()
        )
    )
    pattern = re.compile(args.match)
    aligned = [o for o in by_name.values() if o.kind == "aligned" and pattern.search(o.name)]
    if not aligned:
        return []
    harmful = organism_prompts(True, "heldout", args.n, seed=args.seed)
    harmless = organism_prompts(False, "heldout", args.n, seed=args.seed)
    neutral = organism_neutral_contrasts(args.n, args.seed)
    config = RankAuditConfig(
        ablate=args.ablate, n_ablation_prompts=32, max_new_tokens=args.max_new_tokens,
        seed=args.seed, cache_dir=args.cache_dir,
    )  # fmt: skip
    rows = []
    for organism in aligned:
        if organism.meta["base"] not in by_name:
            print(f"build seed {build_seed}: the base of {organism.name} is not built; skipped")
            continue
        base_path = by_name[organism.meta["base"]].path
        start = time.perf_counter()
        res = rank_audit(
            load_model(organism.path), load_model(base_path), harmful, harmless, neutral, config
        )
        g = res.geometry
        p = rank_predictors(g)
        recipe = organism.meta["spec"].get("recipe", {})
        row: dict[str, Any] = {
            "organism": organism.name,
            "build_seed": build_seed,
            "recipe": f"{recipe.get('kind', '?')}/{recipe.get('scope', '?')}",
            "layers": len(g.layers),
            "d": g.d,
            "peak_layer": g.peak_layer,
            "cos_did_peak": p["cos_did_peak"],
            "cos_did_best": float(np.nanmax(g.variants["did"].cos)),
            "cos_did_best_layer": g.layers[int(np.nanargmax(g.variants["did"].cos))],
            "cos_template_peak": p["cos_template_peak"],
            "cos_naive_peak": p["cos_naive_peak"],
            "cos_aligned_peak": p["cos_aligned_peak"],
            "rho_naive": p["rho_naive"],
            "rho_template": p["rho_template"],
            "rho_aligned": p["rho_aligned"],
            "rho_did": p["rho_did"],
            "rho_template_centered": p["rho_template_centered"],
            "rho_neutral_register": p["rho_neutral_register"],
            "rho_neutral_mood": p["rho_neutral_mood"],
            "gap_share": p["gap_share"],
            "gap_ceiling_violations": sum(r.kappa_lb > r.ceiling * (1 + 1e-9) for r in g.gaps),
            "base_contrast_peak": p["base_contrast_peak"],
        }
        if res.ablation is not None:
            for band in res.ablation.bands:
                s = band.summary()
                row[f"{band.band}_monotone"] = s["cumulative_monotone"]
                row[f"{band.band}_spearman"] = s["spearman_index_vs_score"]
                row[f"{band.band}_rates"] = "/".join(f"{r:.2f}" for r in s["cumulative_rates"])
                row[f"{band.band}_alone"] = "/".join(f"{r:.2f}" for r in s["alone_rates"])
        row["seconds"] = round(time.perf_counter() - start, 1)
        rows.append(row)
    return rows


def print_table(rows: list[dict[str, Any]], title: str) -> None:
    """The rows as a rich table, and how many organisms meet |cos| >= 0.8 for M_DiD."""
    print_rows(rows, title, width=260)
    met = sum(r["cos_did_peak"] >= 0.8 for r in rows)
    print(f"|cos(u_1(M_DiD), Arditi)| >= 0.8 at the GFS peak: {met}/{len(rows)} organisms")


SEED_SUMMARY = ("cos_did_peak", "cos_did_best", "base_contrast_peak", "rho_naive", "rho_template")
"""Columns summarised over build seeds."""


def main() -> None:
    """Parse arguments, audit the zoo, print (and optionally save) the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=None, help="organisms folder")
    parser.add_argument("--zoo", default="default", help="zoo spec whose organisms are audited")
    parser.add_argument(
        "--build-seed", type=int, nargs="+", default=[0], help="zoo build seed(s) to audit"
    )
    add_language_argument(parser)
    parser.add_argument("--match", default=".", help="regex on organism names")
    parser.add_argument("--n", type=int, default=64, help="held-out prompts per class")
    parser.add_argument("--ablate", action="store_true", help="also run limit (b) (slow)")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache-dir", type=Path, default=None, help="activation cache")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()
    rows = []
    for build_seed in args.build_seed:
        seed_rows = audit_zoo(args, build_seed)
        if not seed_rows:
            print(f"build seed {build_seed}: no aligned organisms matching {args.match!r}")
            continue
        title = f"zoo effective-rank audit, build seed {build_seed} ({args.n} prompts per class)"
        print_table(seed_rows, title)
        rows += seed_rows
    if not rows:
        raise SystemExit(f"no aligned organisms matching {args.match!r} in {args.root or 'cache'}")
    if len(args.build_seed) > 1:
        print_seed_summary(rows, SEED_SUMMARY, width=260)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
