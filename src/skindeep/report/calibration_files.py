"""Write the MLP calibration: calibration.json, per-run and per-lambda CSVs, a figure, a table."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from rich.table import Table

from skindeep.artifacts import staged_file
from skindeep.calibration import KS, ROBUST_K, RunResult, run_rows
from skindeep.report.plots import save_png
from skindeep.scores.result import json_ready

RESULTS = "calibration.json"


def _write_csv(rows: list[dict[str, Any]], path: Path) -> Path:
    """Rows as CSV through an atomic rename."""
    with staged_file(path) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def calibration_figure(summary: Sequence[dict]) -> Figure:
    """rho per layer, accuracies, and safety after ablating the top k directions, vs lambda."""
    fig = Figure(figsize=(14, 3.8), layout="constrained")
    FigureCanvasAgg(fig)
    ax_r, ax_a, ax_k = fig.subplots(1, 3)
    lams = [row["lam"] for row in summary]
    x = np.arange(len(lams))
    for layer in (1, 2, 3):
        ax_r.plot(x, [row[f"rho_l{layer}"] for row in summary], marker="o", label=f"layer {layer}")
    for key, label in (("safety", "safety accuracy"), ("task", "task accuracy")):
        ys = [row[key] for row in summary]
        lo = [row[f"{key}_min"] for row in summary]
        hi = [row[f"{key}_max"] for row in summary]
        ax_a.errorbar(x, ys, yerr=[np.subtract(ys, lo), np.subtract(hi, ys)], marker="o",
                      capsize=3, label=label)  # fmt: skip
    for name in [*map(str, KS), "eps"]:
        ys = [row[f"safety_ablated_k{name}"] for row in summary]
        ax_k.plot(x, ys, marker="o", label=f"top k={name}")
        ax_k.plot(x, [row[f"safety_null_k{name}"] for row in summary], ls=":", color="0.6")
    for ax in (ax_r, ax_a, ax_k):
        ax.set_xticks(x, [f"{lam:g}" for lam in lams])
        ax.set_xlabel("lambda")
        ax.legend(fontsize=8)
    ax_r.set(ylabel="rho_eps of M_l", title="effective rank per layer")
    ax_a.set(ylabel="accuracy", ylim=(0.4, 1.02), title="before ablation (seed range)")
    ax_k.set(ylabel="safety accuracy", ylim=(0, 1.02), title="after ablation (dotted: random)")
    return fig


def calibration_table(summary: Sequence[dict]) -> Table:
    """Per lambda: rho per layer, accuracies, robustness (means over seeds), and the share of
    the safety gain over the base kept after ablating the top ROBUST_K directions."""
    table = Table(title="MLP calibration (means over seeds)")
    cols = ["lambda", "rho l1", "rho l2", "rho l3", "safety", "task"]
    cols += [f"safe|abl k={k}" for k in (*KS, "eps")] + [f"null k={ROBUST_K}"]
    cols += [f"kept k={ROBUST_K}"]
    for col in cols:
        table.add_column(col, justify="right")
    for row in summary:
        cells = [f"{row['lam']:g}"] + [f"{row[f'rho_l{i}']:.3f}" for i in (1, 2, 3)]
        cells += [f"{row['safety']:.3f}", f"{row['task']:.3f}"]
        cells += [f"{row[f'safety_ablated_k{k}']:.3f}" for k in (*KS, "eps")]
        cells.append(f"{row[f'safety_null_k{ROBUST_K}']:.3f}")
        cells.append(f"{row[f'retained_k{ROBUST_K}']:.2f}")
        table.add_row(*cells)
    return table


def write_calibration(
    runs: Sequence[RunResult], summary: Sequence[dict], verdict: dict, meta: dict, out: Path
) -> list[Path]:
    """Every artifact into `out`; calibration.json last."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / RESULTS).unlink(missing_ok=True)
    files = [
        _write_csv(run_rows(runs), out / "calibration_runs.csv"),
        _write_csv(list(summary), out / "calibration_summary.csv"),
        save_png(calibration_figure(summary), out / "calibration.png"),
    ]
    doc = {"meta": meta, "verdict": verdict, "summary": list(summary), "runs": run_rows(runs)}
    doc["files"] = [p.name for p in files]
    with staged_file(out / RESULTS) as tmp:
        tmp.write_text(json.dumps(json_ready(doc), indent=2, sort_keys=True) + "\n")
    return [*files, out / RESULTS]
