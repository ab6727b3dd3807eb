"""The dose-response figure: refusal rate and refusal score against k, null band shaded."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

if TYPE_CHECKING:  # figures draw results; results import this module only to save
    from skindeep.dose.result import DoseResponse


def dose_figure(result: DoseResponse) -> Figure:
    """Two panels against k: keyword refusal rate and refusal score, null band shaded."""
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    ks = [n.k for n in result.nulls]
    for ax, field, label in (
        (axes[0], "rate", "refusal rate (keyword judge)"),
        (axes[1], "score", "refusal score (log-odds)"),
    ):
        bands = [n.band(field) for n in result.nulls]
        lo = [np.nan if b["min"] is None else b["min"] for b in bands]
        hi = [np.nan if b["max"] is None else b["max"] for b in bands]
        mean = [np.nan if b["mean"] is None else b["mean"] for b in bands]
        ax.fill_between(
            ks, lo, hi, color="0.85", label=f"random nulls (n={result.options.n_random})"
        )
        ax.plot(ks, mean, color="0.5", ls="--", lw=1)
        base = result.baseline.value(field)
        if base is not None:
            ax.axhline(base, color="k", ls=":", lw=1, label="no ablation")
        for c in result.curves:
            ax.plot(
                [p.k for p in c.points],
                [p.value(field) for p in c.points],
                marker="o",
                label=c.name,
            )
        if max(ks) >= 4 * min(ks):
            ax.set_xscale("log", base=2)
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.set_xlabel("k (directions ablated)")
        ax.set_ylabel(label)
    axes[0].set_ylim(-0.03, 1.03)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"dose-response ({result.options.mode}), {result.n_harmful} harmful prompts")
    return fig
