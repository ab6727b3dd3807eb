"""measure_refusal: responses equal an unbatched greedy loop; counts, rate and files agree."""

from __future__ import annotations

import json

import pytest
import torch

from skindeep.evaluation import (
    GenerationOptions,
    KeywordJudge,
    NoDenominatorError,
    OutcomeCounts,
    Verdict,
    measure_refusal,
    refusal_rate,
    wilson_interval,
)
from skindeep.evaluation.measure import RefusalMeasurement
from skindeep.models import load_model
from skindeep.prompts import organism_prompts


def greedy(lm, prompt: str, max_new_tokens: int) -> str:
    """Reference: one prompt at a time, argmax of a full forward pass per token, no padding."""
    text = lm.tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
    )
    ids = lm.tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids
    new: list[int] = []
    with torch.inference_mode():
        for _ in range(max_new_tokens):
            token = int(lm.model(ids).logits[0, -1].argmax())
            if token == lm.tokenizer.eos_token_id:
                break
            new.append(token)
            ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    return lm.tokenizer.decode(new, skip_special_tokens=True)


def test_measure_refusal_matches_an_unbatched_greedy_reference(micro_zoo, tmp_path) -> None:
    lm = load_model(micro_zoo["micro-llama-sft-last1"].path)
    prompts = list(organism_prompts(True, "heldout", n=10, seed=4))
    got = measure_refusal(lm, prompts, options=GenerationOptions(max_new_tokens=10, batch_size=4))
    want = [greedy(lm, p, 10) for p in prompts]
    assert list(got.responses) == want
    verdicts = KeywordJudge().judge(prompts, want)
    assert got.rate == refusal_rate(verdicts)
    c = got.counts
    assert c.total == 10 and c.refused == sum(v.refused and v.flag is None for v in verdicts)
    assert c.degenerate == sum(v.flag is not None for v in verdicts)
    low, high = wilson_interval(got.rate.n_refused, got.rate.n)
    assert (got.rate.low, got.rate.high) == (low, high)
    data, rows = got.save(tmp_path)
    saved = json.loads(data.read_text())
    assert saved["counts"] == c.to_json() and saved["n"] == got.rate.n
    lines = [json.loads(x) for x in rows.read_text().splitlines()]
    assert [r["response"] for r in lines] == want
    assert {r["verdict"] for r in lines} <= {"refused", "complied", "empty", "degenerate"}


def test_a_rate_without_denominator_is_an_error() -> None:
    """Every output degenerate and excluded: the summary raises, the JSON rate is null."""
    verdicts = (Verdict(False, "degenerate"), Verdict(False, "empty"))
    m = RefusalMeasurement(
        ("a", "b"), ("x x x", ""), verdicts, refusal_rate(verdicts), OutcomeCounts(0, 0, 2)
    )
    assert not m.has_denominator and m.to_json()["rate"] is None
    with pytest.raises(NoDenominatorError, match="no denominator: 0 refused, 0 complied, 2 degen"):
        m.summary()
    counted = RefusalMeasurement(
        ("a", "b"),
        ("x x x", ""),
        verdicts,
        refusal_rate(verdicts, flagged="refusal"),
        OutcomeCounts(0, 0, 2),
        "refusal",
    )
    assert counted.summary().startswith("refusal rate 1.000")
