"""Figures of one model's results, drawn from their JSON files: per-layer GFS profiles
(audit.json), ablation dose-response with random-null bands (dose.json) and refusal after
benign fine-tuning (retention.json). The study report reuses them across models.

Figures use `matplotlib.figure.Figure` with the Agg canvas: no pyplot state, no GUI backend.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

RECIPE_COLORS = (
    "tab:blue",
    "tab:orange",
    "tab:green",
    "tab:red",
    "tab:purple",
    "tab:brown",
    "tab:pink",
    "tab:olive",
    "tab:cyan",
    "tab:gray",
)
ARCH_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<")
ARCH_LINES = ("-", "--", ":", "-.")


def new_figure(width: float, height: float) -> Figure:
    """An empty figure on the Agg canvas with constrained layout."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def palette(names: Sequence[str], styles: Sequence[str]) -> dict[str, str]:
    """A style per distinct name, in sorted order (stable across reports of the same study)."""
    return {n: styles[i % len(styles)] for i, n in enumerate(sorted(set(names)))}


def nan(values: Sequence[float | None]) -> np.ndarray:
    """Floats with None as NaN (lines skip missing points)."""
    return np.array([math.nan if v is None else v for v in values], dtype=np.float64)


@dataclass(frozen=True)
class LayerProfile:
    """Per-layer |d_l|, c_l and weighted contribution w_l d_l (1 - c_l) of one GFS variant."""

    label: str
    layers: tuple[int, ...]
    d: np.ndarray
    c: np.ndarray
    contribution: np.ndarray
    gfs: float | None

    @classmethod
    def from_audit(cls, audit: dict[str, Any], variant: str, label: str) -> LayerProfile:
        """Read one variant from an audit.json; layers with D_l = 0 become NaN (not drawn)."""
        g = audit["gfs"][variant]
        empty = np.asarray(g.get("empty", [False] * len(g["d"])), dtype=bool)

        def masked(key: str) -> np.ndarray:
            return np.where(empty, np.nan, nan(g[key]))

        layers = tuple(audit.get("activations", {}).get("layers", range(len(g["d"]))))
        return cls(label, layers, masked("d"), masked("c"), masked("contribution"), g.get("gfs"))

    def depth(self) -> np.ndarray:
        """Relative depth of each layer in [0, 1] (models of different depth share an axis)."""
        n = max(len(self.layers) - 1, 1)
        return np.arange(len(self.layers)) / n


def profiles_figure(
    profiles: Sequence[LayerProfile],
    styles: Sequence[dict[str, Any]],
    relative: bool = False,
    arditi: tuple[tuple[int, ...], Sequence[float | None]] | None = None,
) -> Figure:
    """Three panels over layers: |d_l|, c_l and w_l d_l (1 - c_l); one line per profile.

    `relative` puts relative depth on x (for models of different depth); `arditi` adds the
    Arditi difference-of-means |d| of one model as a dashed grey line.
    """
    fig = new_figure(12, 3.6)
    ax_d, ax_c, ax_w = fig.subplots(1, 3, sharex=True)
    for prof, style in zip(profiles, styles, strict=True):
        x = prof.depth() if relative else np.asarray(prof.layers)
        kw = {"marker": "o", "ms": 2.5, "lw": 1.2} | style
        ax_d.plot(x, prof.d, label=prof.label, **kw)
        ax_c.plot(x, prof.c, **kw)
        ax_w.plot(x, prof.contribution, **kw)
    if arditi is not None:
        ax_d.plot(arditi[0], nan(arditi[1]), color="gray", ls="--", label="Arditi |d|")
    for ax, title in (
        (ax_d, "|Cohen's d| of harmful vs harmless on v_l"),
        (ax_c, "c_l = |cos(v_l, Arditi a_l)|"),
        (ax_w, "contribution w_l d_l (1 - c_l)"),
    ):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("relative depth (layer / last layer)" if relative else "layer")
        if not relative:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    ax_c.set_ylim(-0.02, 1.02)
    if len(profiles) <= 12:
        ax_d.legend(fontsize=7)
    return fig


def _band(null: dict[str, Any], field: str) -> tuple[float, float, float]:
    """min, max, mean of a null band field ('rate', 'score', 'kl'); NaN where missing."""
    b = null.get(field) or {}
    return tuple(math.nan if b.get(k) is None else b[k] for k in ("min", "max", "mean"))


def _dose_value(point: dict[str, Any], field: str) -> float:
    """A dose point's refusal rate, score or KL (NaN where missing)."""
    value = point["refusal"]["rate"] if field == "rate" else point.get(field)
    return math.nan if value is None else value


_DOSE_FIELDS = {
    "rate": "greedy refusal rate (harmful)",
    "score": "refusal log-odds (harmful)",
    "kl": "KL on harmless prompts",
}


def dose_axes(ax: Any, dose: dict[str, Any], field: str, legend: bool = True) -> None:
    """Draw one dose-response panel: each basis against k, the random-null band, the baseline."""
    nulls = sorted(dose.get("nulls", []), key=lambda n: n["k"])
    if nulls:
        ks = [n["k"] for n in nulls]
        low, high, mean = (np.array(v) for v in zip(*(_band(n, field) for n in nulls), strict=True))
        ax.fill_between(ks, low, high, color="0.8", lw=0, label="random null (min-max)")
        ax.plot(ks, mean, color="0.5", ls="--", lw=1, label="random null (mean)")
    for i, curve in enumerate(dose.get("curves", [])):
        pts = sorted(curve["points"], key=lambda p: p["k"])
        ax.plot(
            [p["k"] for p in pts],
            [_dose_value(p, field) for p in pts],
            marker="o",
            color=RECIPE_COLORS[i % len(RECIPE_COLORS)],
            label=curve["name"],
        )
    base = _dose_value(dose["baseline"], field)
    if math.isfinite(base):
        ax.axhline(base, color="k", ls=":", lw=1, label="no ablation")
    ks = sorted(
        {p["k"] for c in dose.get("curves", []) for p in c["points"]} | {n["k"] for n in nulls}
    )
    ax.set_xscale("log", base=2)
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.minorticks_off()
    ax.set_xlabel("directions ablated k")
    ax.grid(alpha=0.3)
    if field == "rate":
        ax.set_ylim(-0.02, 1.02)
    if legend:
        ax.legend(fontsize=7)


def dose_figure(dose: dict[str, Any], title: str = "") -> Figure:
    """Refusal rate, refusal log-odds and harmless KL against k, each with its null band."""
    fig = new_figure(12, 3.6)
    for j, (ax, field) in enumerate(zip(fig.subplots(1, 3), _DOSE_FIELDS, strict=True)):
        dose_axes(ax, dose, field, legend=j == 0)
        ax.set_title(_DOSE_FIELDS[field], fontsize=10)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def retention_figure(retention: dict[str, Any], title: str = "") -> Figure:
    """Refusal after benign fine-tuning against n: seeds as dots, mean with its pooled 95%
    band, over-refusal on harmless prompts and the refusal before fine-tuning."""
    rows = sorted(retention.get("summary", []), key=lambda r: r["n"])
    fig = new_figure(6.5, 4)
    ax = fig.subplots()
    if rows:
        ns = [r["n"] for r in rows]
        ax.fill_between(
            ns,
            nan([r.get("refusal_low") for r in rows]),
            nan([r.get("refusal_high") for r in rows]),
            alpha=0.2,
            lw=0,
        )
        ax.plot(ns, nan([r["refusal_mean"] for r in rows]), "o-", label="refusal (mean of seeds)")
        over = nan([r.get("over_refusal_mean") for r in rows])
        if np.isfinite(over).any():
            ax.plot(ns, over, "s--", label="over-refusal on harmless")
        ax.set_xscale("log")
        ax.set_xticks(ns, [str(n) for n in ns])
        ax.minorticks_off()
    cells = retention.get("cells", [])
    ax.scatter(
        [c["n"] for c in cells],
        [c["after"]["harmful"]["rate"] for c in cells],
        s=14,
        c="k",
        alpha=0.5,
        label="one seed",
    )
    ax.axhline(retention["before"]["harmful"]["rate"], color="gray", ls=":", label="before")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("benign fine-tuning examples n")
    ax.set_ylabel("refusal rate, held-out harmful prompts")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return fig
