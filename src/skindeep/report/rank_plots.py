"""Figures of the effective-rank audit: spectra and cumulative energy at the GFS peak, rho and
|cos(u_1, Arditi)| across layers per variant, and limit (b)'s ablation curves."""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from skindeep.scores.rank_ablation import RankAblation
from skindeep.scores.rank_pair import RankGeometry

_COLORS = {"naive": "tab:gray", "template": "tab:blue", "aligned": "tab:green", "did": "tab:red"}


def _figure(width: float, height: float, ncols: int) -> tuple[Figure, np.ndarray]:
    """A constrained-layout Agg figure with one row of axes."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, np.atleast_1d(fig.subplots(1, ncols))


def spectra_figure(g: RankGeometry, top: int = 50) -> Figure:
    """Normalised singular values and cumulative energy of each variant at the GFS peak layer."""
    fig, (ax_s, ax_e) = _figure(10, 3.8, 2)
    i = g.peak_index
    for name, v in g.variants.items():
        s = v.spectra[i]
        if not s.size or s[0] == 0:
            continue
        ax_s.semilogy(np.arange(1, min(top, s.size) + 1), (s / s[0])[:top], label=name,
                      color=_COLORS.get(name))  # fmt: skip
        energy = np.cumsum(s**2) / np.sum(s**2)
        ax_e.plot(np.arange(1, energy.size + 1), energy, label=f"{name} (r={v.ranks[i]})",
                  color=_COLORS.get(name))  # fmt: skip
    ax_e.axhline(1 - g.eps, color="k", ls=":", lw=1, label=f"1 - eps = {1 - g.eps:.2f}")
    ax_s.set(xlabel="index i", ylabel="s_i / s_1", title=f"spectra at layer {g.peak_layer}")
    ax_e.set(xlabel="k", ylabel="cumulative energy", title="energy rule", xscale="log")
    ax_s.legend(fontsize=8)
    ax_e.legend(fontsize=8)
    return fig


def profiles_figure(g: RankGeometry) -> Figure:
    """rho_eps per layer (safety variants and neutral contrasts) and |cos(u_1, Arditi)|."""
    fig, (ax_r, ax_c) = _figure(10, 3.8, 2)
    x = np.asarray(g.layers)
    for name, v in g.variants.items():
        ax_r.plot(x, v.rho, marker="o", ms=3, label=name, color=_COLORS.get(name))
        ax_c.plot(x, v.cos, marker="o", ms=3, label=name, color=_COLORS.get(name))
    for nr in g.neutral:
        ax_r.plot(x, nr.template.rho, ls="--", label=f"neutral {nr.name} (template)")
    for ax in (ax_r, ax_c):
        ax.axvline(g.peak_layer, color="k", ls=":", lw=1)
        ax.set_xlabel("layer (dotted: GFS peak)")
        ax.legend(fontsize=8)
    ax_r.set(ylabel="rho_eps = rank_eps / d", title=f"effective rank (eps={g.eps})")
    ax_c.set(ylabel="|cos(u_1, Arditi)|", ylim=(-0.03, 1.03), title="direction recovery")
    return fig


def ablation_figure(ab: RankAblation) -> Figure:
    """Refusal after ablating the first k directions vs u_i alone, per band, null band shaded."""
    fig, axes = _figure(5 * len(ab.bands), 3.8, len(ab.bands))
    for ax, band in zip(axes, ab.bands, strict=True):
        ks = list(ab.ks)
        nulls = [band.cumulative.null(k).band("rate") for k in ks]
        lo = [np.nan if b["min"] is None else b["min"] for b in nulls]
        hi = [np.nan if b["max"] is None else b["max"] for b in nulls]
        ax.fill_between(ks, lo, hi, color="0.85", label="random nulls (k dims)")
        ax.plot(ks, band.cumulative_rates, marker="o", label="first k (cumulative)")
        alone = band.alone_rates
        ax.plot(np.arange(1, len(alone) + 1), alone, marker="s", ls="--", label="u_i alone (x=i)")
        ax.axhline(band.cumulative.baseline.refusal.rate, color="k", ls=":", lw=1,
                   label="no ablation")  # fmt: skip
        ax.set(xlabel="k, or i", ylabel="refusal rate", ylim=(-0.03, 1.03),
               title=f"{band.band} band, layers {list(band.layers)}")  # fmt: skip
        ax.legend(fontsize=7)
    fig.suptitle(f"SVD directions of M_{ab.matrix} at layer {ab.layer} (rank_eps {ab.rank_eps})")
    return fig
