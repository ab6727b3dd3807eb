"""Sections of a single model's results, built from the JSON files its commands wrote:
audit.json (`skindeep audit`), dose.json (`skindeep ablate`), retention.json (`skindeep
retention`). One folder may hold several; each becomes a section of one document."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from skindeep.report.document import Plot, Section, Table, Text
from skindeep.report.figures import (
    LayerProfile,
    dose_figure,
    profiles_figure,
    retention_figure,
)

_VARIANT_STYLE = {"code": {"color": "tab:blue"}, "paper": {"color": "tab:orange"}}


def model_name(source: str) -> str:
    """The last part of a model path or hub id."""
    return source.rstrip("/").rsplit("/", 1)[-1] or source


def audit_section(audit: dict[str, Any]) -> Section:
    """Headline numbers, the per-layer table and the GFS profiles of one audit."""
    aligned = model_name(audit["models"]["aligned"]["source"])
    base = model_name(audit["models"]["base"]["source"])
    h, layers = audit["headline"], audit["activations"]["layers"]
    variants = list(audit["gfs"])
    sec = Section(f"Audit: {aligned} vs {base}")
    prompts = audit.get("prompts", {})
    sec.add(
        Text(
            f"Geometry of refusal in {aligned} against its base {base}: "
            f"{prompts.get('harmful', {}).get('n', '?')} harmful and "
            f"{prompts.get('harmless', {}).get('n', '?')} harmless prompts, "
            f"{audit['activations']['format']} format, {audit['activations']['site']} "
            f"activations at the last token. Headline variant: {h['variant']}."
        )
    )
    rows = [{"measure": f"GFS ({v})", "value": audit["gfs"][v]["gfs"]} for v in variants]
    peak = layers.index(h["peak_layer"]) if h["peak_layer"] in layers else None
    sub_k = audit.get("subspace", {}).get("k", [])
    rows += [
        {"measure": "peak layer", "value": h["peak_layer"]},
        {"measure": "|d| at peak", "value": h["d_at_peak"]},
        {"measure": "Arditi |d| at peak", "value": h["arditi_d_at_peak"]},
        {"measure": "Arditi |d| at peak, held out", "value": h.get("arditi_d_heldout_at_peak")},
        {"measure": "subspace k at peak", "value": sub_k[peak] if peak is not None else None},
        {
            "measure": "linear CKA at peak",
            "value": audit["cka"][peak] if peak is not None else None,
        },
    ]
    sec.add(Table("audit_headline", ("measure", "value"), tuple(rows), "headline numbers"))
    per_layer = []
    for i, layer in enumerate(layers):
        row: dict[str, Any] = {"layer": layer}
        for v in variants:
            g = audit["gfs"][v]
            row |= {
                f"d_{v}": g["d"][i],
                f"c_{v}": g["c"][i],
                f"contribution_{v}": g["contribution"][i],
            }
        row |= {
            "arditi_d": audit["arditi"]["d"][i],
            "cka": audit["cka"][i],
            "k": sub_k[i] if i < len(sub_k) else None,
            "relative_change": (audit.get("relative_change") or [None] * len(layers))[i],
        }
        per_layer.append(row)
    sec.add(Table("audit_layers", tuple(per_layer[0]), tuple(per_layer), "per layer"))
    profiles = [
        LayerProfile.from_audit(audit, v, f"{v}: GFS {audit['gfs'][v]['gfs']:.3g}")
        for v in variants
    ]
    fig = profiles_figure(
        profiles,
        [_VARIANT_STYLE.get(v, {}) for v in variants],
        arditi=(tuple(layers), audit["arditi"]["d"]),
    )
    sec.add(
        Plot.from_figure(
            "audit_profiles",
            fig,
            "Per layer: the effect size |d_l| of the "
            "harmful/harmless split on the difference direction v_l, its alignment c_l with "
            "Arditi's refusal direction, and the weighted contribution to GFS. Layers where "
            "alignment changed nothing (D_l = 0) are not drawn.",
        )
    )
    return sec


def dose_rows(dose: dict[str, Any], model: str = "") -> list[dict[str, Any]]:
    """One row per basis and k (and the baseline), with the null band at that k."""
    nulls = {n["k"]: n for n in dose.get("nulls", [])}
    b = dose["baseline"]
    rows = [
        {
            "model": model,
            "basis": "none",
            "k": 0,
            "refusal": b["refusal"]["rate"],
            "refusal_low": b["refusal"]["low"],
            "refusal_high": b["refusal"]["high"],
            "score": b["score"],
            "kl": b["kl"],
        }
    ]
    for curve in dose.get("curves", []):
        for p in sorted(curve["points"], key=lambda p: p["k"]):
            null = nulls.get(p["k"], {})
            rate = null.get("rate") or {}
            rows.append(
                {
                    "model": model,
                    "basis": curve["name"],
                    "k": p["k"],
                    "refusal": p["refusal"]["rate"],
                    "refusal_low": p["refusal"]["low"],
                    "refusal_high": p["refusal"]["high"],
                    "score": p["score"],
                    "kl": p["kl"],
                    "null_refusal_min": rate.get("min"),
                    "null_refusal_max": rate.get("max"),
                    "null_refusal_mean": rate.get("mean"),
                }
            )
    return rows


def dose_section(dose: dict[str, Any], name: str) -> Section:
    """The dose-response table and figure of one `skindeep ablate` run."""
    o = dose.get("options", {})
    sec = Section(f"Ablation dose-response: {name}")
    sec.add(
        Text(
            f"Refusal on {dose.get('n_harmful', '?')} held-out harmful prompts (greedy, "
            f"{o.get('max_new_tokens', '?')} tokens) and KL on {dose.get('n_harmless', '?')} "
            f"harmless prompts with the first k directions of each basis removed "
            f"({dose.get('ablation') or o.get('ablation', 'projection')} ablation, "
            f"{o.get('mode', 'all_layers')}); "
            f"the grey band spans {o.get('n_random', '?')} random orthonormal bases of the "
            "same k. A basis matters causally where it falls outside the band."
        )
    )
    for curve in dose.get("curves", []):
        test = curve.get("causal_test")
        if test:
            verdict = "passes" if test["passed"] else "fails"
            kl = "-" if test.get("kl") is None else f"{test['kl']:.3g}"
            sec.add(
                Text(
                    f"Causal test of {curve['name']} at k = {test['k']}: it {verdict} "
                    f"(refusal drop {test['drop']:.2f}, largest null drop "
                    f"{test['null_drop']:.2f}, KL {kl}; {test['degenerate']} of "
                    f"{test['total']} generations degenerate, counted as refusals)."
                )
            )
    rows = dose_rows(dose)
    columns = tuple(c for c in rows[-1] if c != "model")
    sec.add(Table("dose", columns, tuple(rows), "refusal against k, with the random-null band"))
    sec.add(
        Plot.from_figure(
            "dose",
            dose_figure(dose),
            "Left to right: greedy refusal rate, "
            "refusal log-odds at the last prompt token, KL on harmless prompts.",
        )
    )
    return sec


def retention_section(retention: dict[str, Any]) -> Section:
    """Refusal before and after benign fine-tuning at every n, per seed and mean."""
    name = model_name(retention["model"])
    cfg = retention.get("config", {})
    ft = cfg.get("finetune", {})
    before = retention["before"]["harmful"]
    sec = Section(f"Refusal retention under benign fine-tuning: {name}")
    sec.add(
        Text(
            f"{ft.get('method', '?')} fine-tuning ({ft.get('steps') or ft.get('epochs')} "
            f"{'steps' if ft.get('steps') else 'epochs'}, lr {ft.get('lr')}) on n benign "
            f"examples, seeds {cfg.get('seeds')}; refusal measured on {before['n']} "
            f"held-out harmful prompts (refusal before: {before['rate']:.2f}). Data: "
            f"{retention.get('data', {}).get('benign', '?')}."
        )
    )
    rows = [
        {
            "n": 0,
            "seed": "before",
            "refusal": before["rate"],
            "refusal_low": before["low"],
            "refusal_high": before["high"],
            "retention": 1.0,
        }
    ]
    for c in sorted(retention.get("cells", []), key=lambda c: (c["n"], c["seed"])):
        h = c["after"]["harmful"]
        rows.append(
            {
                "n": c["n"],
                "seed": str(c["seed"]),
                "refusal": h["rate"],
                "refusal_low": h["low"],
                "refusal_high": h["high"],
                "retention": c.get("retention"),
            }
        )
    for r in retention.get("summary", []):
        rows.append(
            {
                "n": r["n"],
                "seed": "mean",
                "refusal": r["refusal_mean"],
                "refusal_low": r.get("refusal_low"),
                "refusal_high": r.get("refusal_high"),
                "retention": r.get("retention_mean"),
            }
        )
    sec.add(Table("retention", tuple(rows[0]), tuple(rows), "refusal per (n, seed) and mean"))
    sec.add(
        Plot.from_figure(
            "retention",
            retention_figure(retention),
            "Refusal on held-out harmful prompts after fine-tuning on n benign examples.",
        )
    )
    return sec


def folder_name(folder: Path, found: dict[str, dict[str, Any]]) -> str:
    """The model a folder's results belong to: the audit's aligned model, the retention's
    model, else the folder's name (dose.json does not record its model)."""
    if "audit" in found:
        return model_name(found["audit"]["models"]["aligned"]["source"])
    if "retention" in found:
        return model_name(found["retention"]["model"])
    return folder.resolve().name


def folder_sections(folder: Path, found: dict[str, dict[str, Any]]) -> list[Section]:
    """Sections for whichever of audit.json, dose.json and retention.json a folder holds."""
    sections = []
    if "audit" in found:
        sections.append(audit_section(found["audit"]))
    if "dose" in found:
        sections.append(dose_section(found["dose"], folder_name(folder, found)))
    if "retention" in found:
        sections.append(retention_section(found["retention"]))
    return sections
