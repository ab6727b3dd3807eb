"""Audit every aligned organism of a built zoo against its base and print one table.

Each aligned organism found in the organisms folder (default: $SKINDEEP_CACHE/organisms) is
audited against its recorded base (base_path; by name when the folder has moved) on the
organism language's held-out prompts. The table lists GFS (both variants), the peak layer,
|d| on v at the peak, the Arditi |d| at the peak (in-sample and held-out), and the measured
refusal rate on held-out harmful requests, sorted by the headline GFS.

Usage: python benchmarks/zoo_audit.py [--root DIR] [--match REGEX] [--n 64] [--format chat]
       [--variant code] [--n-perm 200] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path
from typing import Any


def audit_zoo(args: argparse.Namespace) -> list[dict[str, Any]]:
    """One row per aligned organism."""
    import torch

    from skindeep.models import load_model
    from skindeep.organisms.zoo import list_organisms
    from skindeep.prompts import organism_prompts
    from skindeep.scores import AuditConfig, audit_pair

    torch.set_num_threads(args.threads)
    newest = {}  # a zoo rebuilt under a new hash leaves old copies: keep the newest per name
    for o in sorted(list_organisms(args.root), key=lambda o: o.path.stat().st_mtime):
        newest[o.name] = o
    found = sorted(newest.values(), key=lambda o: o.name)
    by_name = {o.name: o for o in found}
    pattern = re.compile(args.match)
    aligned = [o for o in found if o.kind == "aligned" and pattern.search(o.name)]
    if not aligned:
        raise SystemExit(f"no aligned organisms matching {args.match!r} in {args.root or 'cache'}")
    harmful = organism_prompts(True, "heldout", args.n, seed=args.seed)
    harmless = organism_prompts(False, "heldout", args.n, seed=args.seed)
    config = AuditConfig(
        variant=args.variant, fmt=args.format, n_perm=args.n_perm, seed=args.seed,
        cache_dir=args.cache_dir,
    )  # fmt: skip
    rows = []
    for organism in aligned:
        base_path = Path(organism.meta["base_path"])  # the exact base it was aligned from
        if not base_path.is_dir() and organism.meta["base"] in by_name:
            base_path = by_name[organism.meta["base"]].path  # the zoo folder was moved
        start = time.perf_counter()
        res = audit_pair(
            load_model(organism.path), load_model(base_path), harmful, harmless, config
        )
        g, i = res.geometry, res.peak_index
        recipe = organism.meta["spec"].get("recipe", {})
        rows.append(
            {
                "organism": organism.name,
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
                "seconds": round(time.perf_counter() - start, 1),
            }
        )
    return sorted(rows, key=lambda r: r[f"gfs_{args.variant}"])


def print_table(rows: list[dict[str, Any]], title: str) -> None:
    """The rows as a rich table."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for key in rows[0]:
        table.add_column(key, justify="left" if key in ("organism", "recipe", "arch") else "right")
    for row in rows:
        table.add_row(*(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.values()))
    Console(width=200).print(table)


def main() -> None:
    """Parse arguments, audit the zoo, print (and optionally save) the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=None, help="organisms folder")
    parser.add_argument("--match", default=".", help="regex on organism names")
    parser.add_argument("--n", type=int, default=64, help="held-out prompts per class")
    parser.add_argument("--format", choices=("chat", "raw"), default="chat")
    parser.add_argument("--variant", choices=("code", "paper"), default="code")
    parser.add_argument("--n-perm", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache-dir", type=Path, default=None, help="activation cache")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()
    rows = audit_zoo(args)
    print_table(rows, f"zoo audit ({args.format}, {args.n} held-out prompts per class)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
