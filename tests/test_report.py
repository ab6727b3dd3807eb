"""Audit reports on a synthetic pair: files written atomically and reloadable, figures, table."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from safetensors.numpy import load_file

from skindeep.activations import CollectionSpec
from skindeep.report import (
    audit_summary_table,
    direction_tensors,
    profile_figure,
    save_png,
    spectra_figure,
    write_audit,
)
from skindeep.report._atomic import staged_file
from skindeep.scores import AuditConfig, AuditResult, ModelInfo, PromptInfo, pair_geometry

N, L, D = 40, 4, 12
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def synthetic_result(config: AuditConfig) -> AuditResult:
    """An audit of a planted pair: the aligned model shifts harmful prompts along one axis."""
    rng = np.random.default_rng(0)
    harmful = np.arange(N) % 2 == 0
    base = rng.normal(size=(N, L, D))
    aligned = base + 0.2 * rng.normal(size=(N, L, D))
    aligned[harmful, :, 0] += np.linspace(1.0, 4.0, L)
    info = ModelInfo("org/aligned", "fa", "LlamaForCausalLM", "llama", L, D, 100, "float32")
    spec = CollectionSpec(
        layers=tuple(range(L)), site="block_out", positions="last", offsets=(-1,), fmt="chat",
        hidden_size=D, num_layers=L, n_prompts=N, n_tokens=5 * N, model="LlamaForCausalLM",
        dtype="float32", template="tok#abc",
    )  # fmt: skip
    return AuditResult(
        config=config,
        aligned=info,
        base=ModelInfo("org/base", "fb", "LlamaForCausalLM", "llama", L, D, 100, "float32"),
        harmful=PromptInfo("harmful", "synthetic", N // 2),
        harmless=PromptInfo("harmless", "synthetic", N // 2),
        spec=spec,
        stores={"aligned": "/nowhere/a", "base": "/nowhere/b"},
        geometry=pair_geometry(
            aligned.astype(np.float32), base.astype(np.float32), harmful, config
        ),
    )


@pytest.fixture(scope="module")
def result() -> AuditResult:
    """The synthetic audit with default settings and few permutations."""
    return synthetic_result(AuditConfig(n_perm=49))


def test_write_audit_files_reload(result: AuditResult, tmp_path: Path) -> None:
    files = write_audit(result, tmp_path / "out")
    doc = json.loads(files.results.read_text())
    assert doc["kind"] == "skindeep.audit" and doc["headline"]["gfs"] == result.gfs
    assert set(doc["gfs"]) == {"code", "paper"} and len(doc["gfs"]["paper"]["d"]) == L
    assert doc["activations"]["site"] == "block_out" and doc["activations"]["last_layer"] == "raw"
    assert doc["files"]["directions"] == "directions.safetensors"
    tensors = load_file(str(files.directions))
    for key in ("v.code", "v.paper", "arditi"):
        assert tensors[key].shape == (L, D)
        np.testing.assert_allclose(np.linalg.norm(tensors[key], axis=1), 1.0, atol=1e-12)
    for layer, k in zip(tensors["layers"], tensors["subspace.k"], strict=True):
        basis = tensors[f"subspace.{layer}"]
        assert basis.shape == (k, D) and k == doc["subspace"]["k"][layer]
        np.testing.assert_allclose(basis @ basis.T, np.eye(k), atol=1e-10)
    with files.table.open() as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["layer"]) for r in rows] == list(range(L))
    assert float(rows[2]["code_d"]) == pytest.approx(result.geometry.gfs["code"].d[2])
    assert rows[-1]["min_angle_to_next_deg"] == ""  # the last layer has no next layer
    if files.parquet is not None:
        import pyarrow.parquet as pq

        assert pq.read_table(files.parquet).num_rows == L
    for png in (files.profiles, files.spectra):
        assert png.read_bytes()[:8] == PNG_MAGIC
    assert not [p for p in files.results.parent.iterdir() if p.name.startswith(".")]
    assert (files.results.stat().st_mode & 0o777) != 0o600  # not mkstemp's private mode


def test_rewrite_removes_stale_results_first(
    result: AuditResult, tmp_path: Path, monkeypatch
) -> None:
    """A write that dies midway leaves no results JSON, never an old one beside new files."""
    import skindeep.report.audit_files as audit_files

    write_audit(result, tmp_path)

    def boom(*args, **kwargs):
        raise RuntimeError("killed")

    monkeypatch.setattr(audit_files, "save_png", boom)
    with pytest.raises(RuntimeError, match="killed"):
        write_audit(result, tmp_path)
    assert not (tmp_path / "audit.json").exists()


def test_json_has_no_nan_and_selected_alpha(tmp_path: Path) -> None:
    cfg = AuditConfig(n_perm=19, select_alpha=True, alphas=(1.0, 10.0), k=2, variant="paper")
    res = synthetic_result(cfg)
    doc = json.loads(write_audit(res, tmp_path).results.read_text())
    assert doc["alpha"] in (1.0, 10.0) and doc["alpha_selection"]["alphas"] == [1.0, 10.0]
    assert len(doc["alpha_selection"]["accuracy_by_layer"]) == L
    assert doc["subspace"]["k"] == [2] * L and doc["headline"]["variant"] == "paper"
    assert doc["gfs"]["paper"]["alpha"] == doc["alpha"]


def test_direction_tensors_are_contiguous_float(result: AuditResult) -> None:
    tensors = direction_tensors(result)
    assert all(t.flags.c_contiguous for t in tensors.values())
    np.testing.assert_array_equal(tensors["arditi"], result.geometry.gfs["paper"].arditi)


def test_figures_and_summary(result: AuditResult, tmp_path: Path) -> None:
    fig = profile_figure(result)
    assert len(fig.axes) == 3
    assert len(spectra_figure(result).axes) == 1
    path = save_png(fig, tmp_path / "p.png")
    assert path.read_bytes()[:8] == PNG_MAGIC
    console = Console(record=True, width=120)
    console.print(audit_summary_table(result))
    text = console.export_text()
    assert "GFS code (headline)" in text and "GFS paper" in text and "peak layer" in text


def test_staged_file_cleans_up_on_error(tmp_path: Path) -> None:
    target = tmp_path / "x.bin"
    with pytest.raises(ValueError), staged_file(target) as tmp:
        tmp.write_bytes(b"half")
        raise ValueError("stop")
    assert list(tmp_path.iterdir()) == []
