"""`skindeep rank-audit` on the micro zoo: files, numbers equal to numpy on the cached
activations, honest ablation denominators, and clear errors (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from skindeep.activations import cached_collect, labelled_prompts
from skindeep.models import load_model
from skindeep.prompts import organism_prompts

N = 24
ABLATE = [
    *("--ks", "1,2,500", "--n-alone", "2", "--n-ablation-prompts", "6"),
    *("--max-new-tokens", "6", "--n-prompts", str(N)),
]


@pytest.fixture(scope="module")
def pair(micro_zoo) -> tuple[Path, Path]:
    """The full-SFT micro organism and its base."""
    return micro_zoo["micro-llama-sft-full"].path, micro_zoo["micro-llama"].path


@pytest.fixture(scope="module")
def audited(pair, tmp_path_factory) -> tuple[Path, dict]:
    """One rank-audit run (module-scoped: the slow part is shared by the tests below)."""
    import sys

    from skindeep.cli import main

    out = tmp_path_factory.mktemp("rank")
    aligned, base = pair
    argv = sys.argv
    sys.argv = ["skindeep", "rank-audit", "-a", str(aligned), "-b", str(base), "-o", str(out)]
    sys.argv += ABLATE
    try:
        with pytest.raises(SystemExit) as exc:
            main()
            raise SystemExit(0)
    finally:
        sys.argv = argv
    assert exc.value.code in (0, None)
    return out, json.loads((out / "rank_audit.json").read_text())


def test_files_and_summary(audited) -> None:
    out, doc = audited
    for name in ("rank_layers.csv", "rank_gaps.csv", "rank_ablation.csv", "rank_profiles.png"):
        assert (out / name).stat().st_size > 100, name
    assert set(doc["files"]) >= {"rank_spectra.png", "rank_ablation.png", "rank_layers.csv"}
    assert len(doc["layers"]) == 3 and set(doc["variants"]) == {
        "naive",
        "template",
        "aligned",
        "did",
    }
    preds = doc["summary"]["predictors"]
    # the micro organism is aligned: M_DiD's u_1 is the refusal direction at the GFS peak
    assert preds["cos_did_peak"] > 0.8
    assert 0 < preds["rho_template"] <= 1 and 0 < preds["rho_naive"] <= 1
    assert [n["name"] for n in doc["neutral"]] == ["register", "mood"]
    assert doc["spectral_gap"]["n_pairs"] > 0 and doc["spectral_gap"]["ceiling_violations"] == 0


def test_ranks_equal_numpy_on_cached_activations(pair, audited) -> None:
    """Template and naive ranks recomputed from the same cached stores (base fed the template)."""
    _, doc = audited
    aligned, base = (load_model(p) for p in pair)
    harmful, harmless = (organism_prompts(c, "heldout", N) for c in (True, False))
    prompts, labels = labelled_prompts({"harmful": harmful, "harmless": harmless})
    a_chat = cached_collect(aligned, prompts, labels, fmt="chat").array().astype(np.float64)
    b_chat = cached_collect(base, prompts, labels, fmt="chat", template_tokenizer=aligned.tokenizer)
    b_raw = cached_collect(base, prompts, labels, fmt="raw").array()
    h = np.array([lab == "harmful" for lab in labels])
    for layer in range(3):
        for name, ref in (("template", b_chat.array()), ("naive", b_raw)):
            m = (a_chat - ref)[h][:, layer].T
            s = np.linalg.svd(m, compute_uv=False)
            energy = np.cumsum(s**2) / np.sum(s**2)
            rank = int(np.argmax(energy >= 0.95 - 1e-12) + 1)
            assert doc["layers"][layer][f"{name}_rank"] == rank, (name, layer)
            assert doc["layers"][layer][f"{name}_rho"] == pytest.approx(rank / 64)


def test_ablation_counts_every_output(audited) -> None:
    """Doses are capped by the rank; every generation stays in the denominator."""
    _, doc = audited
    ab = doc["ablation"]
    assert ab["ks"] == [1, 2] and ab["flagged_counted_as"] == "compliance"
    assert [b["summary"]["band"] for b in ab["bands"]] == ["narrow", "wide"]
    for band in ab["bands"]:
        assert [c["name"] for c in band["alone"]["curves"]] == ["u1", "u2"]
        points = [
            p for c in band["cumulative"]["curves"] + band["alone"]["curves"] for p in c["points"]
        ]
        for p in points:
            assert p["refusal"]["n"] == 6  # flagged outputs counted, not dropped
            assert 0 <= p["refusal"]["n_refused"] <= 6
        assert len(band["cumulative"]["nulls"]) == 2 and len(band["alone"]["nulls"]) == 1


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--ks", "0"], "--ks"),
        (["--eps", "1.5"], "--eps"),
        (["--neutral", "missing-a.txt", "missing-b.txt"], "missing-a.txt"),
        (["--ablation-matrix", "pca"], "--ablation-matrix"),
    ],
)
def test_bad_input_is_one_error_line(pair, tmp_path, monkeypatch, capsys, extra, message) -> None:
    aligned, base = pair
    args = ["rank-audit", "-a", str(aligned), "-b", str(base), "-o", str(tmp_path), *extra]
    code, _, err = run_cli(args, monkeypatch, capsys)
    assert code == 2
    assert "error:" in err and message in err and "Traceback" not in err


def test_same_checkpoint_is_rejected(pair, tmp_path, monkeypatch, capsys) -> None:
    aligned, _ = pair
    args = ["rank-audit", "-a", str(aligned), "-b", str(aligned), "-o", str(tmp_path)]
    code, _, err = run_cli([*args, "--no-ablation", "--n-prompts", "8"], monkeypatch, capsys)
    assert code == 2 and "same checkpoint" in err
    assert not (tmp_path / "rank_audit.json").exists()


def test_library_predictors_equal_the_written_ones(pair, audited) -> None:
    """The study's entry point gives the numbers rank_audit.json holds (same cached activations)."""
    from skindeep.scores.rank_audit import organism_neutral_contrasts, pair_rank_predictors

    _, doc = audited
    aligned, base = (load_model(p) for p in pair)
    harmful, harmless = (organism_prompts(c, "heldout", N) for c in (True, False))
    preds = pair_rank_predictors(aligned, base, harmful, harmless, organism_neutral_contrasts(N))
    assert preds == pytest.approx(doc["summary"]["predictors"])
