"""Figures across the models of a study: predictor vs fragility with a rank-based fit, the
refusal-during-fine-tuning curves, dose-response per model and the robustness heatmap."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from scipy import stats

from skindeep.report.figures import (
    ARCH_MARKERS,
    RECIPE_COLORS,
    dose_axes,
    nan,
    new_figure,
    palette,
)
from skindeep.study.result import ModelEntry, SweepRow


def _grid(n: int, cols: int = 5, cell: tuple[float, float] = (2.6, 2.1)) -> tuple[Figure, list]:
    """A figure with n small panels in rows of `cols` (unused panels hidden)."""
    cols = max(1, min(cols, n))
    rows = max(1, math.ceil(n / cols))
    fig = new_figure(cell[0] * cols + 0.6, cell[1] * rows + 0.8)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def theil_sen_band(x: np.ndarray, y: np.ndarray) -> dict[str, Any] | None:
    """Theil-Sen fit (median of pairwise slopes, a rank-based regression) with the 95% band
    of its slope, as lines over the range of x; None with fewer than 3 distinct x."""
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if np.unique(x).size < 3:
        return None
    res = stats.theilslopes(y, x, alpha=0.95)
    grid = np.linspace(x.min(), x.max(), 50)
    mx, my = np.median(x), np.median(y)
    ends = [my + s * (grid - mx) for s in (res.low_slope, res.high_slope)]
    return {
        "x": grid,
        "fit": res.intercept + res.slope * grid,
        "low": np.minimum(*ends),
        "high": np.maximum(*ends),
        "slope": res.slope,
    }


def scatter_figure(
    models: Sequence[ModelEntry], predictor: str, target: str, rho_text: str = ""
) -> Figure:
    """Predictor against the target's mean over seeds (bars: +-1 sd), coloured by recipe and
    shaped by architecture, with a Theil-Sen fit and band over the included models; excluded
    models are drawn hollow and grey."""
    fig = new_figure(8.2, 5.4)
    ax = fig.subplots()
    colors = palette([m.recipe for m in models], RECIPE_COLORS)
    markers = palette([m.architecture for m in models], ARCH_MARKERS)
    xs, ys = [], []
    for m in models:
        x, summary = m.predictors.get(predictor), m.fragility.get(target)
        y = summary.mean if summary else None
        if x is None or y is None:
            continue
        sd = summary.sd or 0.0
        if m.excluded is None:
            xs.append(x)
            ys.append(y)
            ax.errorbar(
                x,
                y,
                yerr=sd,
                fmt=markers[m.architecture],
                color=colors[m.recipe],
                ms=7,
                mec="k",
                mew=0.5,
                elinewidth=0.8,
                capsize=2,
                alpha=0.9,
            )
        else:
            ax.plot(x, y, markers[m.architecture], ms=7, mfc="none", mec="0.55")
    band = theil_sen_band(np.asarray(xs, float), np.asarray(ys, float))
    if band is not None:
        ax.fill_between(band["x"], band["low"], band["high"], color="0.6", alpha=0.2, lw=0)
        ax.plot(band["x"], band["fit"], color="0.3", lw=1.2)
    ax.set_xlabel(predictor)
    ax.set_ylabel(f"{target} (mean over fine-tuning seeds, bars +-1 sd)")
    ax.grid(alpha=0.3)
    if rho_text:
        ax.set_title(rho_text, fontsize=10)
    handles = [Line2D([], [], ls="", marker="o", color=c, label=r) for r, c in colors.items()]
    handles += [Line2D([], [], ls="", marker=mk, color="0.3", label=a) for a, mk in markers.items()]
    handles.append(Line2D([], [], color="0.3", label="Theil-Sen fit, 95% slope band"))
    if any(m.excluded for m in models):
        handles.append(Line2D([], [], ls="", marker="o", mfc="none", mec="0.55", label="excluded"))
    ax.legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


def curve_values(models: Sequence[ModelEntry]) -> tuple[str, str]:
    """Which curve field to draw: the soft refusal rate `prob` where every curve has it (the
    fragility summaries come from it), else the refusal log-odds `score`; and its label."""
    curves = [c for m in models for c in m.curves if c.steps]
    if curves and all(len(c.prob) == len(c.steps) for c in curves):
        return "prob", "soft refusal rate (harmful)"
    return "score", "refusal log-odds (harmful)"


def curves_figure(models: Sequence[ModelEntry]) -> Figure:
    """Refusal on held-out harmful prompts against fine-tuning steps, one panel per model:
    every seed thin, their mean thick (soft refusal rate, or log-odds for older studies)."""
    field, label = curve_values(models)
    fig, axes = _grid(len(models))
    colors = palette([m.recipe for m in models], RECIPE_COLORS)
    for ax, m in zip(axes, models, strict=True):
        curves = [c for c in m.curves if c.steps]
        for c in curves:
            ax.plot(c.steps, nan(getattr(c, field)), color=colors[m.recipe], lw=0.7, alpha=0.45)
        if curves and all(c.steps == curves[0].steps for c in curves):
            mean = np.nanmean(np.vstack([nan(getattr(c, field)) for c in curves]), axis=0)
            ax.plot(curves[0].steps, mean, color=colors[m.recipe], lw=2)
        if field == "prob":
            ax.set_ylim(-0.02, 1.02)
        else:
            ax.axhline(0, color="k", lw=0.6, ls=":")
        note = " (excluded)" if m.excluded else ""
        ax.set_title(f"{m.name}{note}", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    fig.supxlabel("benign fine-tuning steps", fontsize=9)
    fig.supylabel(label, fontsize=9)
    return fig


def dose_grid_figure(doses: Sequence[tuple[str, dict[str, Any]]], field: str = "rate") -> Figure:
    """One dose-response panel per model (refusal against k, null band, baseline)."""
    fig, axes = _grid(len(doses))
    for i, (ax, (name, dose)) in enumerate(zip(axes, doses, strict=True)):
        dose_axes(ax, dose, field, legend=i == 0)
        ax.set_title(name, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("")
        if i == 0:
            ax.legend(fontsize=6)
    fig.supxlabel("directions ablated k", fontsize=9)
    fig.supylabel("greedy refusal rate (harmful)" if field == "rate" else field, fontsize=9)
    return fig


def sweep_matrix(rows: Sequence[SweepRow]) -> tuple[list[str], list[str], np.ndarray]:
    """Row labels 'setting = value', predictor columns and the rho matrix (NaN where absent)."""
    labels = list(dict.fromkeys(f"{r.setting} = {r.value}" for r in rows))
    predictors = list(dict.fromkeys(r.predictor for r in rows))
    rho = np.full((len(labels), len(predictors)), np.nan)
    for r in rows:
        if r.rho is not None:
            rho[labels.index(f"{r.setting} = {r.value}"), predictors.index(r.predictor)] = r.rho
    return labels, predictors, rho


def heatmap_figure(rows: Sequence[SweepRow]) -> Figure:
    """Spearman rho of each predictor (columns) under each setting choice (rows), -1 to 1."""
    labels, predictors, rho = sweep_matrix(rows)
    fig = new_figure(max(5.5, 3.2 + 1.1 * len(predictors)), 1.4 + 0.32 * len(labels))
    ax = fig.subplots()
    image = ax.imshow(rho, cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
    ax.set_xticks(range(len(predictors)), predictors, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    for (i, j), v in np.ndenumerate(rho):
        text = "-" if not np.isfinite(v) else f"{v:+.2f}"
        ax.text(
            j,
            i,
            text,
            ha="center",
            va="center",
            fontsize=7,
            color="w" if np.isfinite(v) and abs(v) > 0.6 else "k",
        )
    fig.colorbar(image, ax=ax, label="Spearman rho", shrink=0.9)
    return fig
