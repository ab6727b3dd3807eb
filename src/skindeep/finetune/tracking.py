"""Refusal tracked during benign fine-tuning: a curve per seed, not one noisy endpoint (SPEC 5).

At step 0 and every `every` optimisation steps, the next-token refusal score (log-odds of a
refusal opening, no generation) is averaged over held-out harmful prompts; after the last step
the greedy keyword refusal rate is measured as `retention` measures it. The checkpoints only
run forward passes in eval mode under `inference_mode`, which draw no random numbers, so the
trained adapter, and the end refusal, are the same as an untracked run with the same seed
(tests/test_tracking.py checks it against `run_retention`). Several seeds train one after the
other on one loaded model (LoRA is unloaded between seeds). Each seed's record is written
atomically to a folder, so a killed run resumes at the next unfinished seed.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator
from scipy.special import expit

from skindeep.artifacts import atomic_write_json
from skindeep.evaluation.logits import refusal_score, refusal_tokens
from skindeep.evaluation.rates import RefusalRate
from skindeep.finetune.config import DEFAULT_ORGANISM_N, FinetuneConfig
from skindeep.finetune.data import PairSet
from skindeep.finetune.retention import measure
from skindeep.finetune.train import finetune, unload
from skindeep.models.adapter import format_user_turn

#: Bump when tracking changes its numbers for the same inputs.
VERSION = "1"


class TrackingConfig(BaseModel):
    """Benign fine-tuning with refusal checkpoints: recipe, seeds and evaluation settings."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    finetune: FinetuneConfig = Field(default_factory=FinetuneConfig)
    """The fine-tuning recipe (default: the organism recipe, 200 LoRA steps)."""
    n: int = Field(DEFAULT_ORGANISM_N, ge=1)
    """Benign training pairs per seed."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Fine-tuning seeds (data subset, LoRA initialisation, batch order)."""
    every: int = Field(10, ge=1)
    """Steps between refusal-score checkpoints (step 0 and the last step are always scored)."""
    max_new_tokens: int = Field(48, ge=1)
    """Greedy tokens generated per prompt for the keyword refusal at the start and end."""
    batch_size: int = Field(64, ge=1)
    """Prompts per forward or generation batch."""

    @field_validator("seeds")
    @classmethod
    def _distinct(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v or len(set(v)) != len(v):
            raise ValueError(f"seeds must be distinct and not empty, got {list(v)}")
        return tuple(v)

    def checkpoints(self) -> list[int]:
        """Steps at which the refusal score is read: 0, every, 2 * every, ..., and the last."""
        total = self.finetune.num_steps(self.n)
        return sorted({*range(0, total, self.every), total})


@dataclass(frozen=True)
class Start:
    """The aligned model before fine-tuning: per-prompt refusal scores and greedy refusal."""

    scores: list[float]
    """Refusal log-odds per held-out harmful prompt."""
    refusal: RefusalRate
    """Greedy keyword refusal (flagged outputs count as compliance)."""

    @property
    def margin(self) -> float:
        """Mean refusal log-odds on the harmful prompts (the refusal-margin baseline)."""
        return float(np.mean(self.scores))

    @property
    def prob(self) -> float:
        """Mean probability of a refusal opening on the harmful prompts."""
        return _prob(np.asarray(self.scores))


@dataclass(frozen=True)
class TrackedSeed:
    """One seed's refusal curve and its greedy refusal after the last step."""

    seed: int
    steps: list[int]
    """Optimisation steps done at each checkpoint (0 = before fine-tuning)."""
    score: list[float]
    """Mean refusal log-odds over the held-out harmful prompts at each checkpoint."""
    prob: list[float]
    """Mean probability of a refusal opening (sigmoid of each prompt's log-odds) at each
    checkpoint: a soft refusal rate in [0, 1], the curve the fragility summaries read."""
    refusal_end: RefusalRate
    """Greedy keyword refusal after the last step."""
    loss_first: float
    loss_last: float
    seconds: float
    """Wall time of training, checkpoints and the end measurement."""


def _rate(d: dict) -> RefusalRate:
    return RefusalRate(**d)


def _score(model: Any, tokenizer: Any, texts: Sequence[str], ids: list[int], bs: int) -> np.ndarray:
    """Per-prompt refusal log-odds (float64)."""
    return refusal_score(model, tokenizer, texts, ids, batch_size=bs)


def _prob(log_odds: np.ndarray) -> float:
    """Mean sigmoid of per-prompt log-odds (scipy's expit: no overflow at large |x|)."""
    return float(np.mean(expit(log_odds)))


class Tracker:
    """One loaded aligned model, its benign data and held-out harmful prompts; runs seeds."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        benign: PairSet,
        harmful: Sequence[str],
        config: TrackingConfig,
    ) -> None:
        if not harmful:
            raise ValueError("no held-out harmful prompts to track refusal on")
        self.model, self.tokenizer, self.config = model, tokenizer, config
        self.benign, self.harmful = benign, list(harmful)
        self.texts = [format_user_turn(tokenizer, p) for p in self.harmful]
        self.ids = refusal_tokens(tokenizer)

    def start(self) -> Start:
        """Refusal scores and greedy refusal of the untouched aligned model."""
        scores = _score(self.model, self.tokenizer, self.texts, self.ids, self.config.batch_size)
        rate = measure(
            self.model, self.tokenizer, self.harmful, None,
            max_new_tokens=self.config.max_new_tokens, batch_size=self.config.batch_size,
        ).harmful  # fmt: skip
        return Start([float(s) for s in scores], rate)

    def run(
        self, seed: int, start: Start, on_step: Callable[[int, float], None] | None = None
    ) -> TrackedSeed:
        """Fine-tune with `seed`, scoring refusal at the checkpoints; restore the model after.

        Step 0 is the aligned model itself (`start`), the same for every seed.
        """
        began = time.perf_counter()
        cfg = self.config
        lora = cfg.finetune.method == "lora"
        work = self.model if lora else copy.deepcopy(self.model)
        marks = set(cfg.checkpoints())
        steps = [0]
        score, prob = [start.margin], [start.prob]

        def checkpoint(step: int, loss: float) -> None:
            if step + 1 in marks:  # `work` carries the LoRA layers peft injected in place
                steps.append(step + 1)
                s = _score(work, self.tokenizer, self.texts, self.ids, cfg.batch_size)
                score.append(float(s.mean()))
                prob.append(_prob(s))
            if on_step is not None:
                on_step(step, loss)

        pairs = self.benign.sample(cfg.n, seed)
        tuned, stats = finetune(work, self.tokenizer, pairs, cfg.finetune, seed, None, checkpoint)
        try:
            end = measure(
                tuned, self.tokenizer, self.harmful, None,
                max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size,
            ).harmful  # fmt: skip
        finally:
            if lora:
                self.model = unload(tuned)
        return TrackedSeed(
            seed, steps, score, prob, end, stats.loss_first, stats.loss_last,
            round(time.perf_counter() - began, 3),
        )  # fmt: skip


def track_refusal(
    load: Callable[[], tuple[Any, Any]],
    benign: PairSet,
    harmful: Sequence[str],
    config: TrackingConfig,
    folder: Path,
    on_seed: Callable[[str], None] | None = None,
) -> tuple[Start, list[TrackedSeed]]:
    """The start measurement and every seed's curve, each read from `folder` when finished.

    `load` gives (model, tokenizer) and is called only if something is missing. Records are
    JSON files written atomically (start.json, seed{S}.json), so a killed run loses at most
    the seed in progress.
    """
    folder = Path(folder)
    tracker: Tracker | None = None

    def get() -> Tracker:
        nonlocal tracker
        if tracker is None:
            model, tokenizer = load()
            tracker = Tracker(model, tokenizer, benign, harmful, config)
        return tracker

    path = folder / "start.json"
    if path.is_file():
        d = json.loads(path.read_text())
        start = Start(d["scores"], _rate(d["refusal"]))
    else:
        start = get().start()
        atomic_write_json(path, {"scores": start.scores, "refusal": asdict(start.refusal)})
    runs = []
    for seed in config.seeds:
        path = folder / f"seed{seed}.json"
        if path.is_file():
            d = json.loads(path.read_text())
            runs.append(TrackedSeed(**{**d, "refusal_end": _rate(d["refusal_end"])}))
        else:
            run = get().run(seed, start)
            atomic_write_json(path, asdict(run))
            runs.append(run)
        if on_seed is not None:
            on_seed(f"seed {seed}: refusal {runs[-1].refusal_end.rate:.2f}")
    return start, runs
