"""A short rich table of an audit's headline numbers, for the terminal."""

from __future__ import annotations

from rich.table import Table

from skindeep.scores.result import AuditResult


def _fmt(x: float, digits: int = 3) -> str:
    """A number for the table; '-' when missing."""
    return "-" if x != x else f"{x:.{digits}g}"


def audit_summary_table(result: AuditResult, title: str = "skindeep audit") -> Table:
    """Key/value rows: GFS of both variants, the peak layer and what happens there."""
    g, i = result.geometry, result.peak_index
    st = g.stats
    table = Table(title=title, show_header=False)
    table.add_column("measure", style="bold")
    table.add_column("value", justify="right")
    table.add_column("note", style="dim")
    n_layers = len(g.layers)
    for name, res in g.gfs.items():
        mark = " (headline)" if name == result.config.variant else ""
        note = f"alpha = {res.alpha:g}" if res.alpha is not None else "PCA of D_l"
        table.add_row(f"GFS {name}{mark}", _fmt(res.gfs), note)
    table.add_row("peak layer", str(result.peak_layer), f"argmax d over {n_layers} layers")
    table.add_row("d at peak", _fmt(result.primary.d[i]), "|Cohen's d| on v_l")
    table.add_row("c at peak", _fmt(result.primary.c[i]), "|cos(v_l, Arditi a_l)|")
    table.add_row(
        "Arditi |d| at peak", _fmt(g.arditi_d[i]), f"held-out {_fmt(g.arditi_d_heldout[i])}"
    )
    table.add_row("subspace k at peak", str(int(g.subspace.ks[i])), _k_note(result))
    n_empty = int(g.empty.sum())
    if n_empty:
        ids = ", ".join(str(layer) for layer, e in zip(g.layers, g.empty, strict=True) if e)
        table.add_row(
            "layers with D_l = 0", f"{n_empty} / {n_layers}", f"{ids}: no subspace, c undefined"
        )
    table.add_row("probe accuracy at peak", _fmt(st.probe_accuracy[i]), f"on {g.stats_on}")
    table.add_row("linear CKA at peak", _fmt(g.cka[i]), "aligned vs base")
    table.add_row(
        "layers separating (BH)",
        f"{int(st.permanova_reject.sum())} / {int(st.mmd_reject.sum())}",
        f"PERMANOVA ({g.permanova_distance}) / MMD at q = {st.q:g}, {st.n_perm} permutations",
    )
    table.add_row("activations", result.spec.site, f"{result.spec.fmt} format, last token")
    return table


def _k_note(result: AuditResult) -> str:
    """How k was chosen."""
    sub = result.geometry.subspace
    return f"fixed k = {sub.fixed_k}" if sub.fixed_k else f"(1 - {sub.eps:g}) energy of D_l"
