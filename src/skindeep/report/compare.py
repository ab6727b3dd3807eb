"""Compare the safety subspaces of written audits: across models layer by layer, across layers.

Reads what `skindeep audit` wrote (directions.safetensors, see `read_subspaces`), measures
principal angles with `geometry.subspace`, and writes one JSON. Angles involving a layer where
D_l carried no energy (empty subspace) are undefined: null in the JSON, '-' in the table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

from skindeep.artifacts import json_ready, staged_file
from skindeep.errors import SkindeepError
from skindeep.geometry.subspace import (
    SubspaceAngleMatrix,
    SubspaceComparison,
    compare_subspaces,
    subspace_angle_matrix,
)
from skindeep.report.audit_files import SavedSubspaces

COMPARE_FORMAT = 1
"""Version of the comparison JSON layout."""
COMPARE_JSON = "compare.json"
UNDEFINED = "null where either layer's subspace is empty (D_l = 0: no direction to compare)"


class SubspaceMismatchError(SkindeepError):
    """Two audits' subspaces cannot be compared layer by layer (hidden size, layers)."""


@dataclass(frozen=True)
class RunComparison:
    """Safety subspaces of one or two written audits, compared across layers and models."""

    a: SavedSubspaces
    b: SavedSubspaces | None
    """The second audit; None compares `a` with itself across layers only."""
    by_layer: SubspaceComparison | None
    """Layer l of `a` against layer l of `b` (None without `b`)."""
    cross: SubspaceAngleMatrix | None
    """Every layer of `a` (rows) against every layer of `b` (columns); None without `b`."""
    within_a: SubspaceAngleMatrix
    """Every layer of `a` against every layer of `a`."""
    within_b: SubspaceAngleMatrix | None
    """Every layer of `b` against every layer of `b` (None without `b`)."""


def check_comparable(a: SavedSubspaces, b: SavedSubspaces) -> None:
    """Raise SubspaceMismatchError unless both audits hold the same layers of equal width d."""
    problems = []
    if a.hidden_size != b.hidden_size:
        problems.append(f"hidden size {a.hidden_size} vs {b.hidden_size}")
    if len(a.layers) != len(b.layers):
        problems.append(f"{len(a.layers)} vs {len(b.layers)} layers")
    elif a.layers != b.layers:
        problems.append(f"layers {list(a.layers)} vs {list(b.layers)}")
    if problems:
        raise SubspaceMismatchError(
            f"cannot compare the subspaces of {a.folder} and {b.folder} layer by layer: "
            + "; ".join(problems)
            + ". Audit models of the same hidden size with the same --layers."
        )


def compare_runs(a: SavedSubspaces, b: SavedSubspaces | None = None) -> RunComparison:
    """Principal angles between two audits (layer by layer and all pairs), and within each."""
    if b is None:
        return RunComparison(a, None, None, None, subspace_angle_matrix(a.bases), None)
    check_comparable(a, b)
    return RunComparison(
        a=a,
        b=b,
        by_layer=compare_subspaces(a.bases, b.bases),
        cross=subspace_angle_matrix(a.bases, b.bases),
        within_a=subspace_angle_matrix(a.bases),
        within_b=subspace_angle_matrix(b.bases),
    )


def _run_json(run: SavedSubspaces) -> dict[str, Any]:
    """Where one audit came from and its subspace dimensions."""
    return {
        "folder": str(run.folder),
        "sources": run.sources,
        "fingerprints": run.fingerprints,
        "layers": list(run.layers),
        "k": run.ks,
    }


def _matrix_json(m: SubspaceAngleMatrix | None) -> dict[str, Any] | None:
    """One layer x layer matrix set."""
    if m is None:
        return None
    return {
        "mean_cos": m.mean_cos,
        "min_angle_deg": m.min_angle_deg,
        "max_angle_deg": m.max_angle_deg,
    }


def comparison_json(cmp: RunComparison) -> dict[str, Any]:
    """The comparison as JSON-ready data (NaN as None)."""
    by = cmp.by_layer
    return json_ready(
        {
            "format": COMPARE_FORMAT,
            "kind": "skindeep.audit_compare",
            "runs": {"a": _run_json(cmp.a), "b": None if cmp.b is None else _run_json(cmp.b)},
            "hidden_size": cmp.a.hidden_size,
            "layers": list(cmp.a.layers),
            "undefined": UNDEFINED,
            "by_layer": None
            if by is None
            else {
                "angles_deg": list(by.angles_deg),
                "mean_cos": by.mean_cos,
                "min_angle_deg": by.min_angle_deg,
                "max_angle_deg": by.max_angle_deg,
            },
            "cross": _matrix_json(cmp.cross),
            "within": {"a": _matrix_json(cmp.within_a), "b": _matrix_json(cmp.within_b)},
        }
    )


def write_comparison(cmp: RunComparison, out: Path) -> Path:
    """Write the comparison JSON into folder `out` (created if needed); returns its path."""
    path = Path(out) / COMPARE_JSON
    text = json.dumps(comparison_json(cmp), indent=2, sort_keys=True, allow_nan=False)
    with staged_file(path) as tmp:
        tmp.write_text(text + "\n")
    return path


def _fmt(x: float, digits: int = 3) -> str:
    """A number for the table; '-' when undefined."""
    return "-" if not np.isfinite(x) else f"{x:.{digits}g}"


def comparison_table(cmp: RunComparison) -> Table:
    """One row per layer: k in each audit, min / max principal angle and mean cosine.

    With two audits the angles are between the models at the same layer; with one, between the
    layer and the next.
    """
    layers = cmp.a.layers
    if cmp.b is not None and cmp.by_layer is not None:
        title = f"safety subspaces: {cmp.a.label} (A) vs {cmp.b.label} (B)"
        ks_b = cmp.by_layer.ks_b
        stats = [cmp.by_layer.min_angle_deg, cmp.by_layer.max_angle_deg, cmp.by_layer.mean_cos]
        against = "B, same layer"
    else:
        title = f"safety subspaces across layers: {cmp.a.label}"
        n = len(layers)
        ks_b = np.append(cmp.a.ks[1:], 0)
        nxt = np.arange(1, n)
        stats = [
            np.append(m[np.arange(n - 1), nxt], np.nan)
            for m in (cmp.within_a.min_angle_deg, cmp.within_a.max_angle_deg, cmp.within_a.mean_cos)
        ]
        against = "next layer"
    table = Table(title=title)
    table.add_column("layer", justify="right")
    table.add_column("k A", justify="right")
    table.add_column("k B" if cmp.b is not None else "k next", justify="right")
    table.add_column(f"min angle ({against})", justify="right")
    table.add_column("max angle", justify="right")
    table.add_column("mean cos", justify="right")
    for i, layer in enumerate(layers):
        last = cmp.b is None and i == len(layers) - 1
        table.add_row(
            str(layer),
            str(int(cmp.a.ks[i])),
            "" if last else str(int(ks_b[i])),
            _fmt(stats[0][i], 4),
            _fmt(stats[1][i], 4),
            _fmt(stats[2][i]),
        )
    return table
