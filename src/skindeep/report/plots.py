"""Audit figures as PNG: per-layer d, c and GFS contribution, and the D_l spectra.

Built on `matplotlib.figure.Figure` with the Agg canvas, so no pyplot state or GUI backend is
touched; each function returns the figure and `save_png` writes it atomically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from skindeep.artifacts import staged_file
from skindeep.scores.result import AuditResult

_COLORS = {"code": "tab:blue", "paper": "tab:orange"}


def save_png(fig: Figure, path: Path, dpi: int = 120) -> Path:
    """Write the figure as PNG through a temporary file and an atomic rename."""
    with staged_file(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    return path


def short_name(source: str) -> str:
    """The last part of a model path or hub id, for titles."""
    return source.rstrip("/").rsplit("/", 1)[-1] or source


def _masked(values: np.ndarray, empty: np.ndarray) -> np.ndarray:
    """A float copy with NaN at empty layers, so lines skip them."""
    return np.where(empty, np.nan, np.asarray(values, dtype=np.float64))


def profile_figure(result: AuditResult) -> Figure:
    """Three panels over layers: effect size d (and Arditi |d|), alignment c, contribution.

    Layers where D_l carries no energy have no v_l: their d, c and contribution are not drawn
    and the layers are shaded.
    """
    g = result.geometry
    layers = np.asarray(g.layers)
    fig = Figure(figsize=(11, 3.4), layout="constrained")
    FigureCanvasAgg(fig)
    ax_d, ax_c, ax_w = fig.subplots(1, 3, sharex=True)
    for name, res in g.gfs.items():
        style = {"color": _COLORS.get(name), "marker": "o", "ms": 3}
        ax_d.plot(layers, _masked(res.d, res.empty), label=f"d ({name})", **style)
        ax_c.plot(layers, _masked(res.c, res.empty), label=name, **style)
        label = f"{name}: GFS {res.gfs:.3g}"
        ax_w.plot(layers, _masked(res.contribution, res.empty), label=label, **style)
    ax_d.plot(layers, g.arditi_d, color="gray", ls="--", label="Arditi |d|")
    ax_d.axvline(result.peak_layer, color="k", lw=0.8, ls=":")
    for ax, title in (
        (ax_d, "|Cohen's d| on v_l"),
        (ax_c, "c = |cos(v_l, a_l)|"),
        (ax_w, "w * d * (1 - c)"),
    ):
        for j, layer in enumerate(layers[g.empty]):
            label = "D_l = 0 (no v_l)" if j == 0 else None
            ax.axvspan(layer - 0.4, layer + 0.4, color="0.9", lw=0, zorder=0, label=label)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("layer")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=7)
    ax_c.set_ylim(-0.02, 1.02)
    fig.suptitle(f"{short_name(result.aligned.source)} vs {short_name(result.base.source)}")
    return fig


def spectra_figure(result: AuditResult, top: int = 32) -> Figure:
    """Normalised squared singular values of D_l per layer, with the chosen k marked; layers
    where D_l carries no energy (empty subspace) are left out."""
    sub = result.geometry.subspace
    fig = Figure(figsize=(6.5, 4), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    cmap = colormaps["viridis"]
    n = len(sub.layers)
    for i, (layer, s) in enumerate(zip(result.geometry.layers, sub.layers, strict=True)):
        if s.is_empty:
            continue
        energy = s.singular_values**2
        share = energy[:top] / energy.sum()
        color = cmap(i / max(n - 1, 1))
        ranks = np.arange(1, share.size + 1)
        ax.plot(ranks, share, color=color, lw=1, label=f"layer {layer} (k={s.k})")
        if 1 <= s.k <= share.size:
            ax.plot([s.k], [share[s.k - 1]], "o", color=color, ms=4)
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.set_xlabel("component")
    ax.set_ylabel("share of squared singular values")
    rule = f"k fixed = {sub.fixed_k}" if sub.fixed_k else f"k: (1 - {sub.eps:g}) energy"
    n_empty = int(sub.empty.sum())
    skipped = f"; {n_empty} layer(s) with D_l = 0 not shown" if n_empty else ""
    ax.set_title(f"spectra of D = aligned - base ({rule}{skipped})", fontsize=10)
    if n - n_empty <= 12 and n_empty < n:
        ax.legend(fontsize=7)
    return fig
