"""Audit reports on a synthetic pair: files written atomically and reloadable, figures, table."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import typer
from rich.console import Console
from safetensors.numpy import load_file, save_file
from typer.testing import CliRunner

from skindeep.activations import CollectionSpec
from skindeep.cli.audit import compare_command
from skindeep.errors import SkindeepError
from skindeep.report import (
    AuditFilesError,
    SubspaceMismatchError,
    audit_summary_table,
    compare_runs,
    comparison_json,
    direction_tensors,
    profile_figure,
    read_subspaces,
    save_png,
    spectra_figure,
    write_audit,
)
from skindeep.scores import AuditConfig, AuditResult, ModelInfo, PromptInfo, pair_geometry

N, L, D = 40, 4, 12
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def planted_pair(
    seed: int = 0, n_layers: int = L, d: int = D, untouched: tuple[int, ...] = ()
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(aligned, base, is_harmful): harmful prompts shifted along axis 0, more in later layers."""
    rng = np.random.default_rng(seed)
    harmful = np.arange(N) % 2 == 0
    base = rng.normal(size=(N, n_layers, d))
    aligned = base + 0.2 * rng.normal(size=(N, n_layers, d))
    aligned[harmful, :, 0] += np.linspace(1.0, 4.0, n_layers)
    aligned[:, list(untouched)] = base[:, list(untouched)]
    return aligned, base, harmful


def synthetic_result(
    config: AuditConfig,
    seed: int = 0,
    n_layers: int = L,
    d: int = D,
    untouched: tuple[int, ...] = (),
) -> AuditResult:
    """An audit of a planted pair: the aligned model shifts harmful prompts along one axis;
    `untouched` layers are left as in the base (D_l = 0, like last-block-only alignment)."""
    aligned, base, harmful = planted_pair(seed, n_layers, d, untouched)
    info = ModelInfo(
        f"org/aligned{seed}", f"fa{seed}", "LlamaForCausalLM", "llama", n_layers, d, 100, "float32"
    )
    spec = CollectionSpec(
        layers=tuple(range(n_layers)), site="block_out", positions="last", offsets=(-1,),
        fmt="chat", hidden_size=d, num_layers=n_layers, n_prompts=N, n_tokens=5 * N,
        model="LlamaForCausalLM", dtype="float32", template="tok#abc",
    )  # fmt: skip
    return AuditResult(
        config=config,
        aligned=info,
        base=ModelInfo("org/base", "fb", "LlamaForCausalLM", "llama", n_layers, d, 100, "float32"),
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
    """The panels draw the result's profiles; the spectra are D_l's own (numpy SVD)."""
    fig = profile_figure(result)
    ax_d, ax_c, ax_w = fig.axes
    for name, res in result.geometry.gfs.items():
        drawn = {ax: {ln.get_label(): ln.get_ydata() for ln in ax.get_lines()} for ax in fig.axes}
        np.testing.assert_allclose(drawn[ax_d][f"d ({name})"], res.d)
        np.testing.assert_allclose(drawn[ax_c][name], res.c)
        np.testing.assert_allclose(drawn[ax_w][f"{name}: GFS {res.gfs:.3g}"], res.contribution)
        assert res.contribution.sum() == pytest.approx(res.gfs)
    aligned, base, _ = planted_pair()
    diff = aligned.astype(np.float32).astype(np.float64) - base.astype(np.float32)
    spectra = spectra_figure(result).axes[0]
    curves = [ln for ln in spectra.get_lines() if ln.get_label().startswith("layer")]
    assert len(curves) == L
    for layer, line in enumerate(curves):
        s = np.linalg.svd(diff[:, layer] - diff[:, layer].mean(0), compute_uv=False)
        np.testing.assert_allclose(line.get_ydata(), s**2 / np.sum(s**2), rtol=1e-6)
        assert line.get_label() == f"layer {layer} (k={result.geometry.subspace.layers[layer].k})"
    path = save_png(fig, tmp_path / "p.png")
    assert path.read_bytes()[:8] == PNG_MAGIC
    console = Console(record=True, width=120)
    console.print(audit_summary_table(result))
    text = console.export_text()
    assert "GFS code (headline)" in text and "GFS paper" in text and "peak layer" in text


# ---- layers alignment left untouched --------------------------------------------------------


def test_untouched_layers_are_written_without_made_up_subspaces(tmp_path: Path) -> None:
    res = synthetic_result(AuditConfig(n_perm=19), untouched=(0, 1))
    files = write_audit(res, tmp_path)  # allow_nan=False: a leaked NaN would raise here
    doc = json.loads(files.results.read_text())
    assert doc["subspace"]["empty"] == [True, True, False, False]
    assert doc["subspace"]["k"][:2] == [0, 0] and min(doc["subspace"]["k"][2:]) >= 1
    assert doc["principal_angles"]["radians"][:2] == [None, None]  # 0-1 and 1-2: undefined
    assert len(doc["principal_angles"]["radians"][2]) >= 1
    for name in ("code", "paper"):
        g = doc["gfs"][name]
        assert g["c"][:2] == [None, None] and g["d"][:2] == [0, 0]
        assert g["contribution"][:2] == [0, 0] and g["empty"] == doc["subspace"]["empty"]
        assert g["gfs"] == pytest.approx(sum(g["contribution"][2:]), rel=1e-12)
    tensors = load_file(str(files.directions))
    assert tensors["subspace.0"].shape == (0, D) and tensors["subspace.k"].tolist()[:2] == [0, 0]
    assert np.isnan(tensors["v.code"][:2]).all() and np.isfinite(tensors["v.code"][2:]).all()
    with files.table.open() as fh:
        rows = list(csv.DictReader(fh))
    assert rows[0]["code_c"] == "" and rows[0]["empty"] == "True" and rows[2]["empty"] == "False"
    assert rows[0]["min_angle_to_next_deg"] == "" and rows[2]["min_angle_to_next_deg"] != ""
    assert len(profile_figure(res).axes) == 3
    labels = [str(ln.get_label()) for ln in spectra_figure(res).axes[0].get_lines()]
    assert [x.split()[1] for x in labels if x.startswith("layer ")] == ["2", "3"]
    console = Console(record=True, width=160)
    console.print(audit_summary_table(res))
    assert "layers with D_l = 0" in console.export_text()


def test_permanova_distance_is_recorded(result: AuditResult, tmp_path: Path) -> None:
    doc = json.loads(write_audit(result, tmp_path).results.read_text())
    stats = doc["layer_statistics"]
    assert stats["permanova_distance"] == "euclidean" == doc["config"]["permanova_distance"]
    assert stats["permanova_sums_over"].startswith("squared Euclidean distances")
    other = synthetic_result(AuditConfig(n_perm=19, permanova_distance="sqeuclidean"))
    doc = json.loads(write_audit(other, tmp_path / "sq").results.read_text())
    assert doc["layer_statistics"]["permanova_distance"] == "sqeuclidean"
    assert doc["layer_statistics"]["pseudo_f"] != stats["pseudo_f"]


# ---- comparing written audits ---------------------------------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, tuple[AuditResult, Path]]:
    """Written synthetic audits: two comparable ones (b untouched at layer 0), two mismatched."""
    root = tmp_path_factory.mktemp("runs")
    cfg = AuditConfig(n_perm=9)
    results = {
        "a": synthetic_result(cfg, seed=0),
        "b": synthetic_result(cfg, seed=1, untouched=(0,)),
        "wide": synthetic_result(cfg, seed=2, d=D + 2),
        "deep": synthetic_result(cfg, seed=3, n_layers=L + 1),
    }
    return {k: (r, write_audit(r, root / k).results.parent) for k, r in results.items()}


def test_read_subspaces_round_trips(runs) -> None:
    res, folder = runs["b"]
    saved = read_subspaces(folder)
    assert saved.layers == res.geometry.layers and saved.hidden_size == D
    np.testing.assert_array_equal(saved.ks, res.geometry.subspace.ks)
    for got, want in zip(saved.bases, res.geometry.subspace.bases, strict=True):
        np.testing.assert_array_equal(got, want)
    assert saved.fingerprints == {"aligned": "fa1", "base": "fb"}
    assert saved.sources == {"aligned": "org/aligned1", "base": "org/base"}
    assert saved.label == "aligned1 vs base"
    assert read_subspaces(folder / "directions.safetensors").layers == saved.layers


def test_compare_runs_matches_scipy(runs) -> None:
    (ra, fa), (rb, fb) = runs["a"], runs["b"]
    cmp = compare_runs(read_subspaces(fa), read_subspaces(fb))
    assert cmp.by_layer is not None and cmp.cross is not None and cmp.within_b is not None
    ua, ub = ra.geometry.subspace.bases, rb.geometry.subspace.bases
    assert cmp.by_layer.angles_deg[0] is None and np.isnan(cmp.by_layer.mean_cos[0])
    for layer in range(1, L):
        ref = np.sort(scipy.linalg.subspace_angles(ua[layer], ub[layer]))
        # spans of k_a + k_b > d dimensions meet: scipy's zero angles carry ~1e-6 degree noise
        np.testing.assert_allclose(cmp.by_layer.angles_deg[layer], np.degrees(ref), atol=1e-5)
        assert cmp.by_layer.mean_cos[layer] == pytest.approx(np.mean(np.cos(ref)), abs=1e-12)
    ref = scipy.linalg.subspace_angles(ua[3], ub[1])
    assert cmp.cross.mean_cos[3, 1] == pytest.approx(np.mean(np.cos(ref)), abs=1e-12)
    assert np.isnan(cmp.cross.mean_cos[:, 0]).all() and np.isnan(cmp.within_b.mean_cos[0]).all()
    doc = json.loads(json.dumps(comparison_json(cmp), allow_nan=False))
    assert doc["by_layer"]["angles_deg"][0] is None and doc["by_layer"]["mean_cos"][0] is None
    assert doc["runs"]["b"]["k"][0] == 0 and doc["layers"] == list(range(L))
    assert len(doc["cross"]["mean_cos"]) == L and doc["within"]["a"]["mean_cos"][1][1] == 1.0


def test_compare_mismatches_are_clear_errors(runs, tmp_path: Path) -> None:
    a = read_subspaces(runs["a"][1])
    with pytest.raises(SubspaceMismatchError, match=f"hidden size {D} vs {D + 2}"):
        compare_runs(a, read_subspaces(runs["wide"][1]))
    with pytest.raises(SubspaceMismatchError, match=f"{L} vs {L + 1} layers"):
        compare_runs(a, read_subspaces(runs["deep"][1]))
    with pytest.raises(AuditFilesError, match=r"holds no directions\.safetensors"):
        read_subspaces(tmp_path)
    (tmp_path / "directions.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(AuditFilesError, match="not a readable safetensors file"):
        read_subspaces(tmp_path)
    assert issubclass(SubspaceMismatchError, SkindeepError)
    assert issubclass(AuditFilesError, SkindeepError)


def test_audits_written_before_empty_subspaces_are_read_as_empty(runs, tmp_path: Path) -> None:
    """Old audits stored a made-up k = 1 basis where D_l = 0; the results JSON unmasks it."""
    res, folder = runs["b"]
    tensors = load_file(str(folder / "directions.safetensors"))
    tensors["subspace.0"] = np.eye(D)[:1]
    tensors["subspace.k"] = np.array([1, *tensors["subspace.k"][1:]])
    save_file(tensors, str(tmp_path / "directions.safetensors"))
    doc = json.loads((folder / "audit.json").read_text())
    del doc["subspace"]["empty"]
    (tmp_path / "audit.json").write_text(json.dumps(doc))
    assert read_subspaces(tmp_path).ks.tolist() == res.geometry.subspace.ks.tolist()


def test_compare_command(runs, tmp_path: Path) -> None:
    app = typer.Typer()
    app.command()(compare_command)
    runner = CliRunner()
    fa, fb = str(runs["a"][1]), str(runs["b"][1])
    out = runner.invoke(app, [fa, fb, "--out", str(tmp_path / "ab")])
    assert out.exit_code == 0, out.output
    assert "safety subspaces: aligned0 vs base (A) vs aligned1 vs base (B)" in out.output
    doc = json.loads((tmp_path / "ab" / "compare.json").read_text())
    assert doc["kind"] == "skindeep.audit_compare" and doc["by_layer"]["angles_deg"][0] is None
    one = runner.invoke(app, [fa, "-o", str(tmp_path / "a")])
    assert one.exit_code == 0, one.output
    assert "safety subspaces across layers: aligned0 vs base" in one.output
    doc = json.loads((tmp_path / "a" / "compare.json").read_text())
    assert doc["by_layer"] is None and doc["runs"]["b"] is None
    assert len(doc["within"]["a"]["mean_cos"]) == L
    bad = runner.invoke(app, [fa, str(runs["wide"][1]), "-o", str(tmp_path / "x")])
    assert isinstance(bad.exception, SubspaceMismatchError)
    assert not (tmp_path / "x").exists()
