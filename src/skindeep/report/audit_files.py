"""Write an audit to a folder: results JSON, per-layer table, directions, figures.

Every file is written through a temporary sibling and an atomic rename. An old results JSON is
removed first and the new one is written last, so a folder with an `audit.json` holds a complete
audit whose files all belong to it; a killed write leaves no results JSON (rerun to finish).
"""

from __future__ import annotations

import csv
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from skindeep.report._atomic import staged_file
from skindeep.report.plots import profile_figure, save_png, spectra_figure
from skindeep.scores.result import AuditResult

RESULTS = "audit.json"
TABLE_CSV = "layers.csv"
TABLE_PARQUET = "layers.parquet"
DIRECTIONS = "directions.safetensors"
PROFILES_PNG = "profiles.png"
SPECTRA_PNG = "spectra.png"


@dataclass(frozen=True)
class AuditFiles:
    """Paths of everything `write_audit` wrote."""

    results: Path
    table: Path
    parquet: Path | None
    directions: Path
    profiles: Path
    spectra: Path


def direction_tensors(result: AuditResult) -> dict[str, np.ndarray]:
    """Safetensors content: v per variant and Arditi a as [L, d], subspace bases as [k_l, d]."""
    g = result.geometry
    tensors = {f"v.{name}": res.directions for name, res in g.gfs.items()}
    tensors["arditi"] = g.gfs["code"].arditi
    tensors["layers"] = np.asarray(g.layers, dtype=np.int64)
    tensors["subspace.k"] = g.subspace.ks
    for layer, sub in zip(g.layers, g.subspace.layers, strict=True):
        tensors[f"subspace.{layer}"] = sub.basis.T
    return {k: np.ascontiguousarray(v) for k, v in tensors.items()}


def _write_csv(rows: list[dict], path: Path) -> None:
    """Rows as CSV (empty cells for missing values)."""
    with staged_file(path) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _write_parquet(rows: list[dict], path: Path) -> None:
    """Rows as a parquet table (needs pyarrow)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(rows)
    with staged_file(path) as tmp:
        pq.write_table(table, tmp)


def write_audit(result: AuditResult, out: Path) -> AuditFiles:
    """Write every audit artifact into `out` (created if needed); the results JSON last."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / RESULTS).unlink(missing_ok=True)
    rows = result.layer_rows()
    _write_csv(rows, out / TABLE_CSV)
    parquet = None
    if importlib.util.find_spec("pyarrow") is not None:
        parquet = out / TABLE_PARQUET
        _write_parquet(rows, parquet)
    with staged_file(out / DIRECTIONS) as tmp:
        meta = {"aligned": result.aligned.fingerprint, "base": result.base.fingerprint}
        save_file(direction_tensors(result), str(tmp), metadata=meta)
    save_png(profile_figure(result), out / PROFILES_PNG)
    save_png(spectra_figure(result), out / SPECTRA_PNG)
    files = AuditFiles(
        results=out / RESULTS,
        table=out / TABLE_CSV,
        parquet=parquet,
        directions=out / DIRECTIONS,
        profiles=out / PROFILES_PNG,
        spectra=out / SPECTRA_PNG,
    )
    doc = result.to_json()
    doc["files"] = {k: None if v is None else v.name for k, v in vars(files).items()}
    with staged_file(files.results) as tmp:
        tmp.write_text(json.dumps(doc, indent=2, sort_keys=True, allow_nan=False) + "\n")
    return files
