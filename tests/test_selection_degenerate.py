"""The selection's optional degenerate check on a micro organism whose top candidate loops.

On micro-llama-dpo (affine form, midpoint cutoff, 64 + 32 training-topic prompts per class),
Arditi's selection picks layer 2 at the last template token; ablating it makes the model loop
on some harmful validation prompts ("sure . you you you you ..."), while the next candidate in
rank order (layer 1) answers cleanly. Counts are rechecked by generating under `ablate` and
flagging with `output_flag` directly, and against the dose runner (the final ablation's code).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from pydantic import ValidationError
from safetensors.numpy import load_file

from conftest import run_cli
from skindeep.dose import AblateConfig, DoseOptions, dose_response, named_basis
from skindeep.evaluation import generate, output_flag
from skindeep.interventions import Affine, ablate
from skindeep.models import load_model
from skindeep.models.chat import format_prompts
from skindeep.prompts import organism_prompts
from skindeep.selection import SelectionError, SelectionOptions, select_direction

N_VAL = 32
#: Generous: every candidate the check rejects here loops on 2-5 of the 32 prompts.
CHECK = {"degenerate_check": True, "max_degenerate": 0.05, "degenerate_check_tokens": 32}


@pytest.fixture(scope="module")
def loaded(micro_zoo):
    """The DPO micro organism, loaded once."""
    return load_model(micro_zoo["micro-llama-dpo"].path)


@pytest.fixture(scope="module")
def sets() -> dict[str, tuple[str, ...]]:
    """64 training and 32 validation prompts per class (the causal benchmark's split sizes)."""
    harmful = organism_prompts(True, "train", n=96, seed=0).prompts
    harmless = organism_prompts(False, "train", n=96, seed=0).prompts
    return {
        "harmful_train": harmful[:-N_VAL],
        "harmless_train": harmless[:-N_VAL],
        "harmful_val": harmful[-N_VAL:],
        "harmless_val": harmless[-N_VAL:],
    }


def select(loaded, sets, **options):
    """select_direction in the affine form with the midpoint cutoff."""
    opts = SelectionOptions(ablation="affine", steering_threshold="midpoint", **options)
    return select_direction(loaded, **sets, options=opts)


@pytest.fixture(scope="module")
def arditi(loaded, sets):
    """The selection with the check off (Arditi's method)."""
    return select(loaded, sets)


@pytest.fixture(scope="module")
def checked(loaded, sets):
    """The same selection with the degenerate check on."""
    return select(loaded, sets, **CHECK)


def recount(loaded, sel, candidate, prompts, tokens: int = 32) -> int:
    """Flagged greedy answers under the candidate's affine ablation, counted here directly."""
    p = sel.offsets.index(candidate.position)
    vector = sel.mean_diffs[p, candidate.layer]
    texts = format_prompts(loaded.tokenizer, prompts, "chat")
    with ablate(loaded.model, loaded.adapter, vector, ablation=Affine(sel.harmless_means[p])):
        answers = generate(loaded.model, loaded.tokenizer, texts, max_new_tokens=tokens)
    return sum(output_flag(a) is not None for a in answers)


def test_check_passes_over_a_looping_candidate_and_records_why(
    loaded, sets, arditi, checked, tmp_path
) -> None:
    """Arditi's pick loops; the check rejects it with its count and keeps the next in rank
    order, whose answers do not loop; selection.json and the tensors say so."""
    survivors = [i for i, c in enumerate(arditi.candidates) if c.passed]
    ranked = sorted(survivors, key=lambda i: arditi.candidates[i].ablation_score)
    assert arditi.chosen == ranked[0] and len(ranked) >= 2
    first, second = (checked.candidates[i] for i in ranked[:2])
    limit = CHECK["max_degenerate"] * N_VAL
    assert first.degenerate == recount(loaded, checked, first, sets["harmful_val"])
    assert first.degenerate > limit and first.reasons == ("degenerate",) and not first.passed
    assert second.degenerate == recount(loaded, checked, second, sets["harmful_val"])
    assert second.degenerate <= limit and second.passed and checked.chosen == ranked[1]
    assert checked.checked == [first, second]
    assert all(checked.candidates[i].degenerate is None for i in ranked[2:])  # never generated

    checked.save(tmp_path)
    data = json.loads((tmp_path / "selection.json").read_text())
    assert data["degenerate_check"] == [
        {
            "layer": c.layer,
            "position": c.position,
            "degenerate": c.degenerate,
            "of": N_VAL,
            "rejected": c is first,
        }
        for c in (first, second)
    ]
    assert data["chosen"]["layer"] == second.layer and "degenerate" in data["reasons"]
    assert data["options"]["degenerate_check"] is True
    saved = load_file(str(tmp_path / "direction.safetensors"))["direction"]
    vector = checked.mean_diffs[checked.offsets.index(second.position), second.layer]
    np.testing.assert_allclose(saved, vector / np.linalg.norm(vector), rtol=1e-6)


def test_check_generates_as_the_final_ablation_does(loaded, sets, checked) -> None:
    """The rejected candidate's count equals the dose runner's degenerate count for the same
    direction, form and prompts (the code path of `ablate`'s final measurement)."""
    rejected = checked.checked[0]
    p = checked.offsets.index(rejected.position)
    basis = named_basis("arditi", checked.mean_diffs[p, rejected.layer], "rejected candidate")
    opts = DoseOptions(ks=(1,), max_new_tokens=32, n_random=3)
    harmful = list(sets["harmful_val"])
    form = Affine(checked.harmless_means[p])
    dose = dose_response(loaded, [basis], harmful, None, opts, ablation=form)
    assert dose.curve("arditi").at(1).counts.degenerate == rejected.degenerate


def test_check_off_is_arditi_unchanged(arditi, checked) -> None:
    """Off (the default), nothing is generated and the choice is Arditi's: the lowest ablated
    score among the filter survivors; on, every score and tensor is bit for bit the same."""
    assert SelectionOptions().degenerate_check is False
    assert all(c.degenerate is None for c in arditi.candidates) and arditi.checked == []
    assert arditi.to_json()["degenerate_check"] == []
    scores = np.array([c.ablation_score if c.passed else np.inf for c in arditi.candidates])
    assert arditi.chosen == int(np.argmin(scores))
    for off, on in zip(arditi.candidates, checked.candidates, strict=True):
        same = ("layer", "position", "norm", "ablation_score", "steering_score", "kl")
        for name in same:
            a, b = getattr(off, name), getattr(on, name)
            assert a == b or (math.isnan(a) and math.isnan(b)), name
    np.testing.assert_array_equal(arditi.mean_diffs, checked.mean_diffs)
    np.testing.assert_array_equal(arditi.harmless_means, checked.harmless_means)
    assert (arditi.baseline_harmful, arditi.baseline_harmless) == (
        checked.baseline_harmful,
        checked.baseline_harmless,
    )


def test_every_checked_candidate_rejected_is_an_error(loaded, sets, tmp_path) -> None:
    """When the first max_checked candidates all loop, no direction is chosen: the error says
    how many failed the check and that others were never generated from; files still save."""
    sel = select(loaded, sets, **{**CHECK, "max_checked": 1})
    assert sel.chosen is None and len(sel.checked) == 1
    with pytest.raises(SelectionError, match=r"1 failed degenerate; \d+ more passed"):
        _ = sel.best
    sel.save(tmp_path)
    data = json.loads((tmp_path / "selection.json").read_text())
    assert data["chosen"] is None and data["degenerate_check"][0]["rejected"] is True


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_degenerate": 0.2}, "degenerate_check is off, so max_degenerate would do nothing"),
        ({"max_checked": 2}, "so max_checked would do nothing"),
        ({"degenerate_check": True, "max_degenerate": 1.0}, "less than 1"),
        ({"degenerate_check": True, "max_degenerate": -0.1}, "greater than or equal to 0"),
        ({"degenerate_check": True, "max_checked": 0}, "greater than or equal to 1"),
        ({"degenerate_check": True, "degenerate_check_tokens": 0}, "greater than or equal to 1"),
        ({"degenerate_check": True, "max_checks": 2}, "Extra inputs are not permitted"),
    ],
)
def test_option_validation(options, message) -> None:
    """Bad check settings fail on construction, and through AblateConfig's selection too."""
    with pytest.raises(ValidationError, match=message):
        SelectionOptions(**options)
    with pytest.raises(ValidationError, match=message):
        AblateConfig(selection=options)


def test_ablate_config_carries_the_check() -> None:
    """AblateConfig's selection holds the check, in the experiment's ablation form."""
    cfg = AblateConfig(ablation="affine", selection={"degenerate_check": True, "max_checked": 2})
    assert cfg.selection.degenerate_check and cfg.selection.max_checked == 2
    assert cfg.selection.ablation == "affine"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--max-degenerate", "0.2"], "--degenerate-check is off, so --max-degenerate would"),
        (["--degenerate-check", "--max-checked", "0"], "--max-checked 0: expected greater"),
        (["--degenerate-check", "--max-degenerate", "1"], "--max-degenerate 1.0: expected less"),
    ],
)
def test_cli_bad_check_settings_exit_2(
    extra, message, micro_zoo, tmp_path, monkeypatch, capsys
) -> None:
    """`skindeep ablate` names the flag in one error line, exit code 2, before any model work."""
    model = str(micro_zoo["micro-llama-dpo"].path)
    args = ["ablate", "--model", model, "--directions", "select", "--out", str(tmp_path), *extra]
    code, _, err = run_cli(args, monkeypatch, capsys)
    assert code == 2 and message in " ".join(err.split()), err


def test_cli_reports_the_check(micro_zoo, tmp_path, monkeypatch, capsys) -> None:
    """`skindeep ablate --degenerate-check` prints each checked candidate's count and writes
    them to selection.json."""
    model = str(micro_zoo["micro-llama-dpo"].path)
    args = ["ablate", "--model", model, "--directions", "select", "--ablation", "affine"]
    args += ["--steering-threshold", "midpoint", "--degenerate-check", "--out", str(tmp_path)]
    args += ["--harmful", "organism:train:40", "--harmless", "organism:train:40"]
    args += ["--eval-harmful", "organism:heldout:8", "--eval-harmless", "organism:heldout:8"]
    args += ["--max-new-tokens", "8", "--degenerate-check-tokens", "16"]
    code, out, err = run_cli(args, monkeypatch, capsys)
    assert code == 0, err
    checks = json.loads((tmp_path / "selection.json").read_text())["degenerate_check"]
    assert checks and checks[-1]["rejected"] is False and checks[-1]["of"] == 8
    said = " ".join((out + err).split())
    for c in checks:
        verdict = "passed over" if c["rejected"] else "kept"
        assert f"layer {c['layer']}, position {c['position']}: {c['degenerate']}/8" in said
        assert verdict in said
