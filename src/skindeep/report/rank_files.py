"""Write an effective-rank audit to a folder: rank_audit.json, per-layer tables, figures.

Every file goes through a temporary sibling and an atomic rename; an old rank_audit.json is
removed first and the new one written last, so its presence means a complete audit.
"""

from __future__ import annotations

import csv
import importlib.util
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from skindeep.artifacts import staged_file
from skindeep.report.plots import save_png
from skindeep.report.rank_plots import ablation_figure, profiles_figure, spectra_figure
from skindeep.scores.rank_audit import RankAuditResult
from skindeep.scores.rank_pair import NeutralRank, RankGeometry, VariantRank, rank_predictors
from skindeep.scores.result import json_ready

RESULTS = "rank_audit.json"
LAYERS_CSV = "rank_layers.csv"
GAPS_CSV = "rank_gaps.csv"
ABLATION_CSV = "rank_ablation.csv"


def _variant_columns(prefix: str, v: VariantRank, i: int) -> dict[str, Any]:
    """One layer's numbers of one variant, as flat table columns."""
    return {
        f"{prefix}_rank": int(v.ranks[i]),
        f"{prefix}_rho": float(v.rho[i]),
        f"{prefix}_rho_min": float(v.rho_min[i]),
        f"{prefix}_rank_centered": int(v.ranks_centered[i]),
        f"{prefix}_rho_centered": float(v.rho_centered[i]),
        f"{prefix}_rho_min_centered": float(v.rho_min_centered[i]),
        f"{prefix}_cos": float(v.cos[i]),
    }


def layer_rows(g: RankGeometry) -> list[dict[str, Any]]:
    """One row per layer: every variant's rank, rho (both normalisations, both centerings) and
    |cos(u_1, Arditi)|, and each neutral contrast's template rho."""
    rows = []
    for i, layer in enumerate(g.layers):
        row: dict[str, Any] = {"layer": layer, "gfs_peak": i == g.peak_index}
        row["base_contrast"] = float(g.base_contrast[i])
        for name, v in g.variants.items():
            row.update(_variant_columns(name, v, i))
        for nr in g.neutral:
            row.update(_variant_columns(f"neutral_{nr.name}", nr.template, i))
            row[f"neutral_{nr.name}_did_cos_own"] = float(nr.did.cos[i])
        rows.append(row)
    return rows


def ablation_rows(result: RankAuditResult) -> list[dict[str, Any]]:
    """One row per (band, kind, k or i): refusal with Wilson interval, flagged count, nulls."""
    if result.ablation is None:
        return []
    rows = []
    for band in result.ablation.bands:
        for kind, dose in (("cumulative", band.cumulative), ("alone", band.alone)):
            for curve in dose.curves:
                for p in curve.points:
                    null = dose.null(p.k).band("rate")
                    rows.append(
                        {
                            "band": band.band, "kind": kind, "basis": curve.name, "k": p.k,
                            "rate": p.refusal.rate, "low": p.refusal.low, "high": p.refusal.high,
                            "n": p.refusal.n, "n_refused": p.refusal.n_refused,
                            "n_flagged": p.refusal.n_flagged, "refused": p.counts.refused,
                            "complied": p.counts.complied, "degenerate": p.counts.degenerate,
                            "score": p.score, "kl": p.kl,
                            "null_min": null["min"], "null_mean": null["mean"],
                            "null_max": null["max"],
                            "baseline": dose.baseline.refusal.rate,
                        }
                    )  # fmt: skip
    return rows


def _variant_json(v: VariantRank) -> dict[str, Any]:
    """Per-layer arrays and means of one variant."""
    return {
        "n_columns": v.n_columns,
        "means": v.means(),
        "rank": v.ranks,
        "rank_centered": v.ranks_centered,
        "cos": v.cos,
    }


def _neutral_json(nr: NeutralRank, g: RankGeometry) -> dict[str, Any]:
    """One neutral contrast, with its mean template rho relative to the safety value."""
    safety = g.variants["template"].means()["rho"]
    return {
        "name": nr.name,
        "classes": list(nr.classes),
        "n_first": nr.n_first,
        "n_second": nr.n_second,
        "template": _variant_json(nr.template),
        "did": _variant_json(nr.did),
        "ratio_to_safety": nr.template.means()["rho"] / safety if safety > 0 else None,
    }


def rank_audit_json(result: RankAuditResult) -> dict[str, Any]:
    """Everything in the audit as JSON-ready data."""
    g = result.geometry
    gaps = [asdict(r) for r in g.gaps]
    by_ref: dict[str, list[bool]] = {}
    for r in g.gaps:
        by_ref.setdefault(r.reference, []).append(r.holds)
    doc: dict[str, Any] = {
        "config": result.config.json_dict(),
        "aligned": asdict(result.aligned),
        "base": asdict(result.base),
        "prompts": {
            "harmful": asdict(result.harmful),
            "harmless": asdict(result.harmless),
            "neutral": [
                {"name": n, "first": asdict(a), "second": asdict(b)} for n, a, b in result.neutral
            ],
        },
        "summary": {
            "peak_layer": g.peak_layer,
            "gfs_code": g.gfs,
            "eps": g.eps,
            "d": g.d,
            "n_harmful": g.n_harmful,
            "n_harmless": g.n_harmless,
            "predictors": rank_predictors(g),
        },
        "layers": layer_rows(g),
        "variants": {name: _variant_json(v) for name, v in g.variants.items()},
        "neutral": [_neutral_json(nr, g) for nr in g.neutral],
        "spectral_gap": {
            "n_pairs": len(g.gaps),
            "n_holds": int(sum(r.holds for r in g.gaps)),
            "share_holds": g.gap_share,
            "ceiling_violations": int(sum(r.kappa_lb > r.ceiling * (1 + 1e-9) for r in g.gaps)),
            "share_by_reference": {k: float(np.mean(v)) for k, v in by_ref.items()},
            "pairs": gaps,
        },
        "ablation": None,
    }
    if result.ablation is not None:
        ab = result.ablation
        doc["ablation"] = {
            "matrix": ab.matrix, "layer": ab.layer, "rank_eps": ab.rank_eps,
            "numerical_rank": ab.numerical_rank, "ks": list(ab.ks),
            "flagged_counted_as": "compliance",
            "bands": [
                {"summary": b.summary(), "cumulative": b.cumulative.to_json(),
                 "alone": b.alone.to_json()}
                for b in ab.bands
            ],
        }  # fmt: skip
    return json_ready(doc)


def _write_table(rows: list[dict[str, Any]], path: Path) -> list[Path]:
    """Rows as CSV, and as parquet beside it when pyarrow is installed."""
    if not rows:
        return []
    with staged_file(path) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    written = [path]
    if importlib.util.find_spec("pyarrow") is not None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        parquet = path.with_suffix(".parquet")
        with staged_file(parquet) as tmp:
            pq.write_table(pa.Table.from_pylist(rows), tmp)
        written.append(parquet)
    return written


def write_rank_audit(result: RankAuditResult, out: Path) -> list[Path]:
    """Write every artifact into `out` (created if needed); rank_audit.json last. Returns paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / RESULTS).unlink(missing_ok=True)
    g = result.geometry
    files = _write_table(layer_rows(g), out / LAYERS_CSV)
    files += _write_table([asdict(r) for r in g.gaps], out / GAPS_CSV)
    files += _write_table(ablation_rows(result), out / ABLATION_CSV)
    files.append(save_png(spectra_figure(g), out / "rank_spectra.png"))
    files.append(save_png(profiles_figure(g), out / "rank_profiles.png"))
    if result.ablation is not None:
        files.append(save_png(ablation_figure(result.ablation), out / "rank_ablation.png"))
    doc = rank_audit_json(result)
    doc["files"] = [p.name for p in files]
    with staged_file(out / RESULTS) as tmp:
        tmp.write_text(json.dumps(doc, indent=2, sort_keys=True, allow_nan=False) + "\n")
    return [*files, out / RESULTS]
