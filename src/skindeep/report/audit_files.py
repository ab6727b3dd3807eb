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
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from skindeep.artifacts import staged_file
from skindeep.errors import SkindeepError
from skindeep.geometry import FloatArray
from skindeep.geometry.subspace import no_energy_layers
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
    """Safetensors content: v per variant and Arditi a as [L, d], subspace bases as [k_l, d].

    A layer where D_l carries no energy has k_l = 0 (a [0, d] basis) and NaN rows in v.*.
    """
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


class AuditFilesError(SkindeepError):
    """A written audit folder is missing, incomplete or unreadable."""


@dataclass(frozen=True)
class SavedSubspaces:
    """The per-layer safety subspaces of a written audit, read back from its directions file."""

    folder: Path
    """The audit folder."""
    layers: tuple[int, ...]
    """Model layer index of each subspace."""
    bases: tuple[FloatArray, ...]
    """Per-layer [d, k_l] orthonormal bases ([d, 0] where D_l carried no energy)."""
    hidden_size: int
    """d, the width of the residual stream."""
    fingerprints: dict[str, str]
    """Checkpoint fingerprints ('aligned', 'base') from the file's metadata."""
    sources: dict[str, str]
    """Model sources ('aligned', 'base') from the results JSON, when it is there."""

    @property
    def ks(self) -> np.ndarray:
        """[L] subspace dimension per layer (0: empty)."""
        return np.array([b.shape[1] for b in self.bases], dtype=np.int64)

    @property
    def label(self) -> str:
        """'aligned vs base' by source (or fingerprint), for tables."""
        names = self.sources or self.fingerprints
        if not names:
            return self.folder.name
        return " vs ".join(Path(names.get(k, "?")).name for k in ("aligned", "base"))


def _read_results(folder: Path) -> dict:
    """The results JSON of an audit folder, or {} when it is absent."""
    path = folder / RESULTS
    if not path.is_file():
        return {}
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AuditFilesError(f"{path} is not a readable results JSON: {exc}") from exc
    return doc if isinstance(doc, dict) else {}


def _old_empty_layers(doc: dict, n_layers: int) -> np.ndarray | None:
    """Layers with no D_l energy per the results of an audit written before empty subspaces
    existed (they stored a made-up k = 1 basis there); None for current or unknown files."""
    sub = doc.get("subspace")
    if not isinstance(sub, dict) or "empty" in sub or "singular_values" not in sub:
        return None
    spectra = sub["singular_values"]
    if not isinstance(spectra, list) or len(spectra) != n_layers:
        return None
    energies = [float(np.sum(np.square(np.asarray(s, dtype=np.float64)))) for s in spectra]
    return no_energy_layers(energies)


def read_subspaces(run: Path) -> SavedSubspaces:
    """Read the safety subspaces an audit wrote: `run` is its folder (or its directions file)."""
    run = Path(run)
    path = run if run.is_file() else run / DIRECTIONS
    folder = path.parent
    if not path.is_file():
        raise AuditFilesError(f"{run} holds no {DIRECTIONS}: pass a `skindeep audit` output folder")
    try:
        with safe_open(str(path), framework="np") as fh:
            meta = dict(fh.metadata() or {})
            names = list(fh.keys())
            tensors = {k: fh.get_tensor(k) for k in names}
    except (SafetensorError, OSError) as exc:
        raise AuditFilesError(f"{path} is not a readable safetensors file: {exc}") from exc
    missing = [k for k in ("layers", "arditi") if k not in tensors]
    if missing:
        raise AuditFilesError(f"{path} is not an audit directions file: no {', '.join(missing)}")
    layers = tuple(int(x) for x in np.asarray(tensors["layers"]).reshape(-1))
    arditi = tensors["arditi"]
    if arditi.ndim != 2 or arditi.shape[0] != len(layers):
        raise AuditFilesError(f"{path}: arditi has shape {arditi.shape} for {len(layers)} layers")
    d = int(arditi.shape[1])
    bases = []
    for layer in layers:
        key = f"subspace.{layer}"
        if key not in tensors:
            raise AuditFilesError(f"{path} has no tensor {key!r}")
        t = np.asarray(tensors[key], dtype=np.float64)
        if t.ndim != 2 or t.shape[1] != d:
            raise AuditFilesError(f"{path}: {key} has shape {t.shape}, expected [k, {d}]")
        bases.append(np.ascontiguousarray(t.T))
    doc = _read_results(folder)
    try:
        stale = _old_empty_layers(doc, len(layers))
    except (TypeError, ValueError) as exc:  # a hand-edited or foreign results file
        raise AuditFilesError(
            f"{folder / RESULTS} holds a value that is not a number: {exc}"
        ) from None
    if stale is not None:
        bases = [np.zeros((d, 0)) if e else b for b, e in zip(bases, stale, strict=True)]
    models = doc.get("models", {}) if isinstance(doc.get("models"), dict) else {}
    sources = {
        k: str(m["source"]) for k, m in models.items() if isinstance(m, dict) and "source" in m
    }
    return SavedSubspaces(
        folder=folder,
        layers=layers,
        bases=tuple(bases),
        hidden_size=d,
        fingerprints={k: str(v) for k, v in meta.items() if k in ("aligned", "base")},
        sources=sources,
    )
