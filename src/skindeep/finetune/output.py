"""Files of a retention study: the full record (JSON), the table (CSV), the curve and its plot."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict
from pathlib import Path

from skindeep.artifacts import atomic_write_json, atomic_write_text, save_figure
from skindeep.finetune.retention import RetentionResult

CELL_COLUMNS: tuple[str, ...] = (
    "n",
    "seed",
    "refusal",
    "refusal_low",
    "refusal_high",
    "n_refused",
    "n_prompts",
    "n_flagged",
    "compliance",
    "retention",
    "over_refusal",
    "over_refusal_low",
    "over_refusal_high",
    "steps",
    "loss_first",
    "loss_last",
    "train_seconds",
)


def _fmt(value: object) -> object:
    """Floats rounded for the CSV; NaN and None written as empty cells."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return round(value, 6) if isinstance(value, float) else value


def _csv(rows: list[dict], columns: tuple[str, ...] | list[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _fmt(row.get(k)) for k in columns})
    return buf.getvalue()


def table_rows(result: RetentionResult) -> list[dict]:
    """One row for "before" (n = 0), one per (n, seed) cell, and one mean row per n."""
    b = result.before
    rows = [
        {
            "n": 0,
            "seed": "before",
            "refusal": b.harmful.rate,
            "refusal_low": b.harmful.low,
            "refusal_high": b.harmful.high,
            "n_refused": b.harmful.n_refused,
            "n_prompts": b.harmful.n,
            "n_flagged": b.harmful.n_flagged,
            "compliance": b.harmful.compliance,
            "retention": 1.0,
            "over_refusal": b.harmless.rate if b.harmless else None,
            "over_refusal_low": b.harmless.low if b.harmless else None,
            "over_refusal_high": b.harmless.high if b.harmless else None,
        }
    ]
    for c in sorted(result.cells, key=lambda c: (c.n, c.seed)):
        h, s = c.after.harmful, c.after.harmless
        rows.append(
            {
                "n": c.n,
                "seed": c.seed,
                "refusal": h.rate,
                "refusal_low": h.low,
                "refusal_high": h.high,
                "n_refused": h.n_refused,
                "n_prompts": h.n,
                "n_flagged": h.n_flagged,
                "compliance": h.compliance,
                "retention": c.retention,
                "over_refusal": s.rate if s else None,
                "over_refusal_low": s.low if s else None,
                "over_refusal_high": s.high if s else None,
                "steps": c.train.get("steps"),
                "loss_first": c.train.get("loss_first"),
                "loss_last": c.train.get("loss_last"),
                "train_seconds": c.train.get("seconds"),
            }
        )
    for r in result.summary():
        rows.append(
            {
                "n": r.n,
                "seed": "mean",
                "refusal": r.refusal_mean,
                "refusal_low": r.refusal_low,
                "refusal_high": r.refusal_high,
                "compliance": r.compliance_mean,
                "retention": r.retention_mean,
                "over_refusal": r.over_refusal_mean,
            }
        )
    return rows


def plot_curve(result: RetentionResult, path: Path) -> Path:
    """Refusal vs n: seeds as points, the mean with its pooled 95% band, refusal before."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result.summary()
    ns = [r.n for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.fill_between(
        ns, [r.refusal_low for r in rows], [r.refusal_high for r in rows], alpha=0.2, lw=0
    )
    ax.plot(ns, [r.refusal_mean for r in rows], "o-", label="refusal after (mean over seeds)")
    ax.scatter(
        [c.n for c in result.cells],
        [c.refusal for c in result.cells],
        s=12,
        c="k",
        alpha=0.5,
        label="one seed",
    )
    over = [(r.n, r.over_refusal_mean) for r in rows if r.over_refusal_mean is not None]
    if over:
        ax.plot(*zip(*over, strict=True), "s--", label="over-refusal on harmless")
    ax.axhline(result.before.harmful.rate, color="grey", ls=":", label="refusal before")
    ax.set_xscale("log")
    ax.set_xticks(ns, [str(n) for n in ns])
    ax.minorticks_off()
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("benign fine-tuning examples n")
    ax.set_ylabel("refusal rate on held-out harmful prompts")
    control = result.config.control
    data = "benign data" if control == "none" else f"{control} control data"
    method = result.config.finetune.method
    ax.set_title(f"{Path(result.model).name}\n{method} fine-tuning on {data}", fontsize=9)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return path


def write_outputs(result: RetentionResult, out: Path) -> dict[str, Path]:
    """Write retention.json, retention.csv, curve.csv and retention.png into `out`."""
    out = Path(out)
    paths = {
        "json": out / "retention.json",
        "table": out / "retention.csv",
        "curve": out / "curve.csv",
        "plot": out / "retention.png",
    }
    atomic_write_json(paths["json"], result.to_dict())
    atomic_write_text(paths["table"], _csv(table_rows(result), CELL_COLUMNS))
    before = result.before.harmful.rate
    summary = [
        asdict(r) | {"seeds": " ".join(map(str, r.seeds)), "refusal_before": before}
        for r in result.summary()
    ]
    columns = list(summary[0]) if summary else ["n"]
    atomic_write_text(paths["curve"], _csv(summary, columns))
    plot_curve(result, paths["plot"])
    return paths
