"""`skindeep ablate`: curve data equal to the API's, selection files, clear errors (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from conftest import run_cli
from skindeep.dose import DoseOptions, dose_response, harmless_reference, load_basis
from skindeep.interventions import Affine, bands
from skindeep.models import load_model
from skindeep.prompts import organism_prompts

SETS = [
    *("--harmful", "organism:train:16", "--harmless", "organism:train:16"),
    *("--eval-harmful", "organism:heldout:8", "--eval-harmless", "organism:heldout:8"),
    *("--max-new-tokens", "8", "--batch-size", "16"),
]


@pytest.fixture(scope="module")
def organism(micro_zoo) -> Path:
    """Checkpoint folder of the DPO micro organism."""
    return micro_zoo["micro-llama-dpo"].path


@pytest.fixture(scope="module")
def directions(tmp_path_factory) -> Path:
    """A file with a [d, 2] basis and a [L, d] stack, so --key is needed."""
    rng = np.random.default_rng(7)
    path = tmp_path_factory.mktemp("dirs") / "dirs.safetensors"
    tensors = {"basis": rng.standard_normal((64, 2)), "stack": rng.standard_normal((3, 64))}
    save_file({k: v.astype(np.float32) for k, v in tensors.items()}, str(path))
    return path


def test_file_directions_match_api(organism, directions, tmp_path, monkeypatch, capsys) -> None:
    """dose.json equals dose_response with the same options; weights agree with hooks."""
    args = ["ablate", "--model", str(organism), "--directions", str(directions), "--key", "basis"]
    args += ["--k", "1,2", "--check-weights", "--out", str(tmp_path), *SETS]
    code, out, err = run_cli(args, monkeypatch, capsys)
    assert code == 0, err
    assert "random x3" in out and (tmp_path / "dose.png").stat().st_size > 1000
    data = json.loads((tmp_path / "dose.json").read_text())
    lm = load_model(organism)
    basis = load_basis(directions, 64, "basis")
    opts = DoseOptions(ks=(1, 2), n_random=3, max_new_tokens=8, batch_size=16)
    harmful = list(organism_prompts(True, "heldout", n=8))
    harmless = list(organism_prompts(False, "heldout", n=8))
    api = dose_response(lm, [basis], harmful, harmless, opts)
    assert data["curves"][0]["points"] == [p.to_json() for p in api.curves[0].points]
    assert data["nulls"][0]["score"] == pytest.approx(api.null(1).band("score"))
    checks = json.loads((tmp_path / "weight_check.json").read_text())["max_abs_logit_diff"]
    assert set(checks["basis"]) == {"1", "2"} and max(checks["basis"].values()) < 1e-4


def test_select_writes_selection(organism, tmp_path, monkeypatch, capsys) -> None:
    """`--directions select` runs Arditi's selection first and keeps its JSON and tensors."""
    args = ["ablate", "--model", str(organism), "--directions", "select", "--kl-threshold", "10"]
    args += ["--n-random", "3", "--out", str(tmp_path), *SETS]
    code, _, err = run_cli(args, monkeypatch, capsys)
    assert code == 0, err
    selection = json.loads((tmp_path / "selection.json").read_text())
    dose = json.loads((tmp_path / "dose.json").read_text())
    assert selection["chosen"]["passed"] and dose["curves"][0]["name"] == "arditi"
    assert [p["k"] for p in dose["curves"][0]["points"]] == [1]  # one direction: default k is 1
    assert (tmp_path / "direction.safetensors").is_file()


def test_affine_file_directions_match_api(
    organism, directions, tmp_path, monkeypatch, capsys
) -> None:
    """--ablation affine: the reference is the harmless finding prompts' last-token block-input
    mean, recorded in dose.json, and the curve equals dose_response with that reference."""
    args = ["ablate", "--model", str(organism), "--directions", str(directions), "--key", "basis"]
    args += ["--k", "1", "--ablation", "affine", "--out", str(tmp_path), *SETS]
    code, _, err = run_cli(args, monkeypatch, capsys)
    assert code == 0, err
    data = json.loads((tmp_path / "dose.json").read_text())
    assert data["ablation"] == "affine"
    assert "16 direction-finding harmless prompts, last token" in data["reference"]
    lm = load_model(organism)
    harmless_find = list(organism_prompts(False, "train", n=16))
    reference = harmless_reference(lm, harmless_find)
    assert reference.shape == (lm.adapter.num_layers, 64)
    opts = DoseOptions(ks=(1,), n_random=3, max_new_tokens=8, batch_size=16)
    harmful = list(organism_prompts(True, "heldout", n=8))
    harmless = list(organism_prompts(False, "heldout", n=8))
    basis = load_basis(directions, 64, "basis")
    api = dose_response(
        lm,
        [basis],
        harmful,
        harmless,
        opts,
        ablation=Affine(reference),
    )
    assert data["curves"][0]["points"] == [p.to_json() for p in api.curves[0].points]
    plain = dose_response(
        lm,
        [basis],
        harmful,
        harmless,
        DoseOptions(ks=(1,), n_random=3, max_new_tokens=8, batch_size=16),
    )
    assert plain.curves[0].points[0].score != pytest.approx(api.curves[0].points[0].score)


def test_select_with_affine_ablation_reuses_the_selection_reference(
    organism, tmp_path, monkeypatch, capsys
) -> None:
    """select + affine: candidates and the dose run share the harmless means at the chosen
    position, and dose.json says so."""
    args = ["ablate", "--model", str(organism), "--directions", "select", "--kl-threshold", "10"]
    args += ["--ablation", "affine", "--out", str(tmp_path), *SETS]
    code, _, err = run_cli(args, monkeypatch, capsys)
    assert code == 0, err
    selection = json.loads((tmp_path / "selection.json").read_text())
    dose = json.loads((tmp_path / "dose.json").read_text())
    assert selection["ablation"] == "affine" and dose["ablation"] == "affine"
    position = selection["chosen"]["position"]
    assert dose["reference"].endswith(f"at template position {position}")


def test_band_mode_runs_the_wide_band(organism, directions, tmp_path, monkeypatch, capsys) -> None:
    """--mode band --band wide ablates the block outputs of the audit's wide band."""
    args = ["ablate", "--model", str(organism), "--directions", str(directions), "--key", "basis"]
    args += ["--k", "2", "--mode", "band", "--band", "wide", "--out", str(tmp_path), *SETS]
    code, _, err = run_cli(args, monkeypatch, capsys)
    assert code == 0, err
    data = json.loads((tmp_path / "dose.json").read_text())
    lm = load_model(organism)
    wide = bands(lm.adapter.num_layers).wide
    assert data["options"]["mode"] == "band" and data["options"]["layers"] == wide
    opts = DoseOptions(
        ks=(2,), mode="band", layers=tuple(wide), n_random=3, max_new_tokens=8, batch_size=16
    )
    harmful = list(organism_prompts(True, "heldout", n=8))
    harmless = list(organism_prompts(False, "heldout", n=8))
    basis = load_basis(directions, 64, "basis")
    api = dose_response(lm, [basis], harmful, harmless, opts)
    assert data["curves"][0]["points"] == [p.to_json() for p in api.curves[0].points]


def test_real_model_needs_prompt_files(tmp_path, monkeypatch, capsys) -> None:
    """A model that is not an organism cannot silently use the organism-language defaults."""
    (tmp_path / "config.json").write_text("{}")  # a model folder, not an organism
    args = ["ablate", "--model", str(tmp_path), "--directions", "select"]
    code, _, err = run_cli(args, monkeypatch, capsys)
    assert code == 2 and "is not a skindeep organism" in err and "--harmful" in err, err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--directions", "FILE", "--key", "nope"], "no tensor 'nope'"),
        (["--directions", "FILE", "--key", "basis", "--k", "1,3"], "k=3 is larger than the 2"),
        (["--directions", "FILE", "--key", "stack"], "choose one with --layer"),
        (["--directions", "FILE"], "pick one with --key"),
        (["--directions", "/no/dirs.safetensors"], "no such file exists"),
        (["--directions", "pca"], "pass a base model"),
        (["--directions", "FILE", "--mode", "band", "--check-weights"], "use mode all_layers"),
        (["--directions", "FILE", "--ablation", "affine", "--check-weights"], "use mode all_lay"),
        (["--directions", "select", "--layer", "1"], "layer does not apply"),
        (["--directions", "FILE", "--n-random", "2"], "--n-random 2: expected greater"),
        (["--directions", "select", "--steering-threshold", "half"], "a number or 'midpoint'"),
        (["--directions", "FILE", "--eval-harmful", "organism:train:16"], "also used to find"),
        (["--directions", "FILE", "--k", "0"], "positive integers"),
    ],
)
def test_bad_input_exits_2(
    extra, message, organism, directions, tmp_path, monkeypatch, capsys
) -> None:
    """Each mistake is one clear line and exit code 2."""
    extra = [str(directions) if x == "FILE" else x for x in extra]
    args = ["ablate", "--model", str(organism), "--out", str(tmp_path), *SETS, *extra]
    code, _, err = run_cli(args, monkeypatch, capsys)
    assert code == 2 and message in " ".join(err.split()), err
