"""Refusal of a model on one prompt set: greedy generations, verdicts, counts and a Wilson rate.

The library call behind `skindeep refusal`. Refused, complied and degenerate (empty or
repetitive) responses are counted apart, so the degenerate ones never leave a denominator
unseen; the rate puts them where `flagged` says.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from skindeep.artifacts import atomic_write_json, atomic_write_text, json_ready
from skindeep.errors import SkindeepError
from skindeep.evaluation.generation import GenerationOptions, generate
from skindeep.evaluation.judges import Judge, KeywordJudge, Verdict
from skindeep.evaluation.rates import FlaggedPolicy, OutcomeCounts, RefusalRate, refusal_rate
from skindeep.models.chat import format_prompts
from skindeep.models.loading import LoadedModel
from skindeep.runtime import ProgressLike


class NoDenominatorError(SkindeepError):
    """A refusal rate was asked for, but no response was counted (all excluded as degenerate)."""


@dataclass(frozen=True)
class RefusalMeasurement:
    """Every prompt's response and verdict, the outcome counts and the refusal rate."""

    prompts: tuple[str, ...]
    responses: tuple[str, ...]
    verdicts: tuple[Verdict, ...]
    rate: RefusalRate
    """Refusal rate with its Wilson 95% interval, degenerate outputs placed per `flagged`."""
    counts: OutcomeCounts
    """Refused, complied and degenerate responses (they sum to the number of prompts)."""
    flagged: FlaggedPolicy = "exclude"
    settings: dict[str, Any] = field(default_factory=dict)
    """How it was measured (model, judge, format, tokens), recorded in refusal.json."""

    @property
    def has_denominator(self) -> bool:
        """Whether the rate counts at least one response (False: every one was excluded)."""
        return self.rate.n > 0

    def rows(self) -> list[dict[str, Any]]:
        """Per prompt: prompt, response, verdict ('refused', 'complied' or the flag) and fields."""
        return [
            {
                "prompt": p,
                "response": r,
                "verdict": v.flag or ("refused" if v.refused else "complied"),
                **asdict(v),
            }
            for p, r, v in zip(self.prompts, self.responses, self.verdicts, strict=True)
        ]

    def to_json(self) -> dict[str, Any]:
        """The rate (null without a denominator), the counts and the settings."""
        numbers = {k: json_ready(v) for k, v in asdict(self.rate).items()}
        return {
            **numbers,
            "counts": self.counts.to_json(),
            "flagged": self.flagged,
            "confidence": 0.95,
            **self.settings,
        }

    def save(self, folder: str | Path) -> tuple[Path, Path]:
        """Write refusal.json and generations.jsonl (one row per prompt) into `folder`."""
        folder = Path(folder)
        data, rows = folder / "refusal.json", folder / "generations.jsonl"
        atomic_write_json(data, self.to_json())
        atomic_write_text(rows, "".join(json.dumps(r) + "\n" for r in self.rows()))
        return data, rows

    def summary(self) -> str:
        """One line: the rate with its interval and the three counts.

        Raises NoDenominatorError when no response was counted: a rate without a denominator
        is an error, not NaN.
        """
        c = self.counts
        counts = f"{c.refused} refused, {c.complied} complied, {c.degenerate} degenerate"
        if not self.has_denominator:
            raise NoDenominatorError(
                f"the refusal rate has no denominator: {counts} of {c.total} responses, and "
                f"flagged={self.flagged!r} excludes every degenerate one; count them with "
                "--flagged refusal or compliance"
            )
        r = self.rate
        return f"refusal rate {r.rate:.3f}, 95% CI [{r.low:.3f}, {r.high:.3f}] ({counts})"


def measure_refusal(
    model: LoadedModel | str | Path,
    prompts: Sequence[str],
    *,
    judge: Judge | None = None,
    options: GenerationOptions | None = None,
    flagged: FlaggedPolicy = "exclude",
    progress: ProgressLike = None,
) -> RefusalMeasurement:
    """Generate greedily for every prompt, judge each response and count the outcomes.

    `model` is a LoadedModel or anything `load_model` takes; prompts are plain texts, formatted
    per `options.fmt` (chat by default); `judge` defaults to the keyword judge (Arditi's
    strings).

    >>> harmful = organism_prompts(True, "heldout", n=8)
    >>> m = measure_refusal(micro_dpo, harmful, options=GenerationOptions(max_new_tokens=8))
    >>> m.counts.total, m.counts.refused + m.counts.complied + m.counts.degenerate
    (8, 8)
    >>> m.rate.rate > 0.5, m.rows()[0]["verdict"] in ("refused", "complied", "degenerate")
    (True, True)
    """
    from skindeep.models import load_model

    opts = options or GenerationOptions()
    lm = model if isinstance(model, LoadedModel) else load_model(str(model))
    texts = format_prompts(lm.tokenizer, list(prompts), opts.fmt)
    responses = generate(
        lm.model,
        lm.tokenizer,
        texts,
        max_new_tokens=opts.max_new_tokens,
        batch_size=opts.batch_size,
        progress=progress,
    )
    judge = judge or KeywordJudge()
    verdicts = judge.judge(list(prompts), responses)
    settings = {
        "model": lm.source,
        "fingerprint": lm.fingerprint,
        "judge": type(judge).__name__,
        "max_new_tokens": opts.max_new_tokens,
        "format": opts.fmt,
        "decoding": "greedy",
    }
    return RefusalMeasurement(
        tuple(prompts),
        tuple(responses),
        tuple(verdicts),
        refusal_rate(verdicts, flagged=flagged),
        OutcomeCounts.from_verdicts(verdicts),
        flagged,
        settings,
    )
