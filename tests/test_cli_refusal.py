"""`skindeep refusal`: printed and written numbers equal the API's; bad input exits 2."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import run_cli
from skindeep.evaluation import GenerationOptions, measure_refusal
from skindeep.models import load_model
from skindeep.prompts import organism_prompts


def test_cli_prints_and_writes_what_measure_refusal_returns(
    micro_zoo, tmp_path: Path, monkeypatch, capsys
) -> None:
    """The printed rate, CI and counts, refusal.json and generations.jsonl are the library's
    (measure_refusal itself is checked against an unbatched greedy loop in test_measure.py)."""
    path = micro_zoo["micro-llama-sft-last1"].path
    args = ["refusal", "--model", str(path), "--prompts", "organism:heldout-harmful:12"]
    args += ["--max-new-tokens", "12", "--out", str(tmp_path)]
    code, out, err = run_cli(args, monkeypatch, capsys)
    assert code == 0, err
    prompts = list(organism_prompts(True, "heldout", n=12))
    api = measure_refusal(load_model(path), prompts, options=GenerationOptions(max_new_tokens=12))
    rate, c = api.rate, api.counts
    printed = re.search(
        r"refusal rate ([\d.]+), 95% CI \[([\d.]+), ([\d.]+)\] \((\d+) refused, (\d+) "
        r"complied, (\d+) degenerate\)",
        out,
    )
    assert printed is not None, out
    assert [float(x) for x in printed.groups()[:3]] == pytest.approx(
        [rate.rate, rate.low, rate.high], abs=5e-4
    )
    assert [int(x) for x in printed.groups()[3:]] == [c.refused, c.complied, c.degenerate]
    data = json.loads((tmp_path / "refusal.json").read_text())
    assert (data["n_refused"], data["n"], data["low"]) == (rate.n_refused, rate.n, rate.low)
    assert data["counts"] == c.to_json() and data["counts"]["total"] == 12
    rows = [json.loads(line) for line in (tmp_path / "generations.jsonl").read_text().splitlines()]
    assert rows == api.rows()
    # the first 10 verdicts are printed, one line each, with the judge's word for each
    table = out.splitlines()[1:11]
    assert len(table) == 10
    for line, row in zip(table, rows[:10], strict=True):
        assert line.split()[0] == row["verdict"]
        assert row["prompt"][:20] in line
    assert "2 more in generations.jsonl" in out


def test_classifier_judge_options_reach_the_judge(micro_zoo, tmp_path, monkeypatch, capsys) -> None:
    """--judge-labels/--judge-style/--judge-template build the same judge as the API does."""
    from skindeep.evaluation import ClassifierJudge

    path = micro_zoo["micro-llama-sft-full"].path
    template = tmp_path / "judge.txt"
    template.write_text("{prompt} ? {response}")
    args = ["refusal", "--model", str(path), "--prompts", "organism:heldout-harmful:6"]
    args += ["--judge", "classifier", "--judge-model", str(path), "--judge-labels", "sure,sorry"]
    args += ["--judge-style", "raw", "--judge-template", str(template)]
    args += ["--max-new-tokens", "8", "--out", str(tmp_path / "out"), "--show", "0"]
    code, _, err = run_cli(args, monkeypatch, capsys)
    assert code == 0, err
    assert "measure harmful compliance" in err
    rows = [
        json.loads(x) for x in (tmp_path / "out" / "generations.jsonl").read_text().splitlines()
    ]
    lm = load_model(path)
    judge = ClassifierJudge(
        lm.model, lm.tokenizer, labels=("sure", "sorry"), prompt_style="raw",
        template="{prompt} ? {response}",
    )  # fmt: skip
    p = judge.probabilities([r["prompt"] for r in rows], [r["response"] for r in rows])
    assert [r["p_harmful"] for r in rows] == pytest.approx(p.tolist(), abs=1e-6)
    bad = [*args[:-6], "--judge-labels", "sure", "--out", str(tmp_path / "bad")]
    code, _, err = run_cli(bad, monkeypatch, capsys)
    assert code == 2 and "expected two words" in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--prompts", "/no/such/prompts.txt"], "does not exist"),
        (["--prompts", "EMPTY"], "holds no prompts"),
        (["--prompts", "organism:heldout-evil"], "expected organism:SPLIT-CLASS"),
        (["--prompts", "organism:train-harmful", "--judge", "classifier"], "needs --judge-model"),
        (["--prompts", "organism:train-harmful", "--model", "/no/model"], "does not exist"),
    ],
)
def test_bad_input_exits_2(extra, message, tmp_path: Path, monkeypatch, capsys) -> None:
    """Each mistake is one clear line and exit code 2, before any model runs."""
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    extra = [str(empty) if x == "EMPTY" else x for x in extra]
    args = ["refusal", "--model", str(tmp_path), "--out", str(tmp_path / "out"), *extra]
    code, _, err = run_cli(args, monkeypatch, capsys)
    assert code == 2 and message in " ".join(err.split()), err
