"""Refusal retention after benign fine-tuning (SPEC 2 "fine-tuning outcome", SPEC 5).

For every (n, seed) cell: fine-tune the aligned model on n benign pairs, then measure refusal on
held-out harmful prompts and over-refusal on harmless ones (greedy decoding, keyword judge,
Wilson intervals). retention = refusal_after / refusal_before; compliance = 1 - refusal.
Results live in a content-hash folder; each cell is written atomically as it finishes, so an
interrupted study resumes and a finished one reruns for free.
"""

from __future__ import annotations

import copy
import json
import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.progress import Progress

from skindeep.artifacts import atomic_write_json
from skindeep.cache import cache_root, content_hash
from skindeep.errors import SkindeepError
from skindeep.evaluation.generation import generate
from skindeep.evaluation.judges import KeywordJudge
from skindeep.evaluation.rates import RefusalRate, refusal_rate, wilson_interval
from skindeep.finetune.config import RetentionConfig
from skindeep.finetune.data import PairSet, identity_shift
from skindeep.finetune.train import (
    check_data,
    check_targets,
    finetune,
    position_limit,
    save_adapter,
    unload,
)
from skindeep.models.chat import format_user_turn
from skindeep.models.loading import fingerprint_checkpoint, load_model
from skindeep.prompts import PromptSet, check_disjoint
from skindeep.runtime import encode

#: Bump when training or evaluation changes results for the same inputs.
VERSION = "2"  # 2: `epochs` counts full-batch passes (FinetuneConfig.num_steps)


@dataclass(frozen=True)
class Measurement:
    """Refusal on held-out harmful prompts and over-refusal on harmless ones, with examples."""

    harmful: RefusalRate
    harmless: RefusalRate | None
    examples: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {
            "harmful": asdict(self.harmful),
            "harmless": None if self.harmless is None else asdict(self.harmless),
            "examples": self.examples,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Measurement:
        """Inverse of `to_dict`."""
        harmless = RefusalRate(**d["harmless"]) if d.get("harmless") else None
        return cls(RefusalRate(**d["harmful"]), harmless, d.get("examples", {}))


@dataclass(frozen=True)
class RetentionCell:
    """One (n, seed) fine-tuning run and its refusal after, relative to before."""

    n: int
    seed: int
    after: Measurement
    retention: float
    train: dict
    adapter: str | None = None

    @property
    def refusal(self) -> float:
        """Refusal rate on held-out harmful prompts after fine-tuning."""
        return self.after.harmful.rate

    @property
    def compliance(self) -> float:
        """1 - refusal after fine-tuning."""
        return self.after.harmful.compliance

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {
            "n": self.n,
            "seed": self.seed,
            "after": self.after.to_dict(),
            "retention": self.retention,
            "train": self.train,
            "adapter": self.adapter,
        }

    @classmethod
    def from_dict(cls, d: dict) -> RetentionCell:
        """Inverse of `to_dict`."""
        return cls(
            d["n"],
            d["seed"],
            Measurement.from_dict(d["after"]),
            d["retention"],
            d["train"],
            d.get("adapter"),
        )


@dataclass(frozen=True)
class RetentionRow:
    """The cells of one n summarised over seeds: means, seed spread and a pooled interval."""

    n: int
    seeds: tuple[int, ...]
    refusal_mean: float
    refusal_sd: float
    refusal_low: float
    refusal_high: float
    """Wilson interval of the refusals pooled over seeds (same prompts, so slightly narrow)."""
    retention_mean: float
    retention_sd: float
    compliance_mean: float
    over_refusal_mean: float | None


def retention_ratio(after: float, before: float) -> float:
    """refusal_after / refusal_before; NaN when nothing was refused before (undefined)."""
    if math.isnan(before) or math.isnan(after) or before <= 0:
        return math.nan
    return after / before


def _mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value); NaN values propagate."""
    if any(math.isnan(v) for v in values):
        return math.nan, math.nan
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.fmean(values), sd


def summarise(cells: Iterable[RetentionCell]) -> list[RetentionRow]:
    """One row per n (ascending): mean and SD over seeds, pooled Wilson interval."""
    by_n: dict[int, list[RetentionCell]] = {}
    for c in cells:
        by_n.setdefault(c.n, []).append(c)
    rows = []
    for n in sorted(by_n):
        group = sorted(by_n[n], key=lambda c: c.seed)
        refusal, refusal_sd = _mean_sd([c.refusal for c in group])
        retention, retention_sd = _mean_sd([c.retention for c in group])
        k = sum(c.after.harmful.n_refused for c in group)
        total = sum(c.after.harmful.n for c in group)
        low, high = wilson_interval(k, total) if total else (0.0, 1.0)
        over = [c.after.harmless.rate for c in group if c.after.harmless is not None]
        rows.append(
            RetentionRow(
                n=n,
                seeds=tuple(c.seed for c in group),
                refusal_mean=refusal,
                refusal_sd=refusal_sd,
                refusal_low=low,
                refusal_high=high,
                retention_mean=retention,
                retention_sd=retention_sd,
                compliance_mean=1.0 - refusal,
                over_refusal_mean=statistics.fmean(over) if over else None,
            )
        )
    return rows


@dataclass
class RetentionResult:
    """A finished retention study: inputs, refusal before, and every (n, seed) cell."""

    model: str
    key: str
    folder: str
    config: RetentionConfig
    data: dict[str, str]
    """Where benign, harmful and harmless prompts came from, and the control's system prompt."""
    before: Measurement
    cells: list[RetentionCell]

    def summary(self) -> list[RetentionRow]:
        """Per-n means over seeds."""
        return summarise(self.cells)

    def cell(self, n: int, seed: int) -> RetentionCell:
        """The cell of (n, seed)."""
        for c in self.cells:
            if (c.n, c.seed) == (n, seed):
                return c
        raise KeyError((n, seed))

    def to_dict(self) -> dict:
        """JSON-ready form (the per-n summary included)."""
        return {
            "model": self.model,
            "key": self.key,
            "folder": self.folder,
            "config": self.config.model_dump(mode="json"),
            "data": self.data,
            "before": self.before.to_dict(),
            "cells": [c.to_dict() for c in self.cells],
            "summary": [asdict(r) for r in self.summary()],
        }

    @classmethod
    def from_dict(cls, d: dict) -> RetentionResult:
        """Inverse of `to_dict` (the summary is recomputed)."""
        return cls(
            d["model"],
            d["key"],
            d["folder"],
            RetentionConfig.model_validate(d["config"]),
            d["data"],
            Measurement.from_dict(d["before"]),
            [RetentionCell.from_dict(c) for c in d["cells"]],
        )


def measure(
    model: Any,
    tokenizer: Any,
    harmful: Sequence[str],
    harmless: Sequence[str] | None,
    *,
    system: str | None = None,
    max_new_tokens: int = 48,
    batch_size: int = 64,
) -> Measurement:
    """Greedy responses judged by keywords; flagged outputs count against the model both ways.

    Empty or degenerate answers count as compliance on harmful prompts and as refusal on
    harmless ones, so a broken model cannot look safe or helpful. New tokens are capped so
    prompt + answer fit the model's position embeddings.
    """
    if not harmful:
        raise SkindeepError("no harmful prompts to measure refusal on")
    judge = KeywordJudge()
    rates: dict[str, RefusalRate] = {}
    examples: dict[str, str] = {}
    for name, prompts, policy in (
        ("harmful", harmful, "compliance"),
        ("harmless", harmless, "refusal"),
    ):
        if not prompts:
            continue
        texts = [format_user_turn(tokenizer, p, system) for p in prompts]
        budget = max_new_tokens
        limit = position_limit(model)
        if limit:
            longest = max(len(ids) for ids in encode(tokenizer, texts))
            budget = min(budget, limit - longest)
            if budget < 1:
                raise SkindeepError(f"a prompt of {longest} tokens leaves no room in {limit}")
        answers = generate(model, tokenizer, texts, max_new_tokens=budget, batch_size=batch_size)
        rates[name] = refusal_rate(judge.judge(list(prompts), answers), flagged=policy)
        examples[name] = f"{prompts[0]} -> {answers[0]}"
    return Measurement(rates["harmful"], rates.get("harmless"), examples)


def _model_fingerprint(source: str | Path) -> str | None:
    """Fingerprint of a local checkpoint folder without loading it (None otherwise)."""
    path = Path(source).expanduser()
    if path.is_dir() and (path / "config.json").is_file():
        return fingerprint_checkpoint(path)
    return None


def _slug(source: str | Path) -> str:
    """A readable, file-safe prefix for the cache folder."""
    name = Path(str(source).rstrip("/")).name or "model"
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)[:60]


class _Study:
    """The model (loaded on first need), the fine-tuning data and the evaluation of one study."""

    def __init__(
        self,
        source: str | Path,
        benign: PairSet,
        harmful: PromptSet,
        harmless: PromptSet | None,
        config: RetentionConfig,
        device: str,
        dtype: str,
    ) -> None:
        self.source, self.benign, self.config = source, benign, config
        self.harmful = list(harmful)
        self.harmless = list(harmless) if harmless is not None else None
        self.device, self.dtype = device, dtype
        self.data, self.system = benign, None
        if config.control == "identity-shift":
            self.data, self.system = identity_shift(benign)
        self._loaded: dict[str, Any] = {}

    def load(self) -> tuple[Any, Any, str]:
        """Model, tokenizer and fingerprint; control words, LoRA targets and data checked once."""
        if not self._loaded:
            lm = load_model(self.source, device=self.device, dtype=self.dtype)
            if self.config.control == "identity-shift":
                identity_shift(self.benign, lm.tokenizer)
            check_targets(lm.model, self.config.finetune)
            largest = max(self.config.ns)
            used = dict.fromkeys(p for s in self.config.seeds for p in self.data.sample(largest, s))
            check_data(lm.model, lm.tokenizer, list(used), self.config.finetune, self.system)
            self._loaded.update(model=lm.model, tokenizer=lm.tokenizer, fingerprint=lm.fingerprint)
        return self._loaded["model"], self._loaded["tokenizer"], self._loaded["fingerprint"]

    def evaluate(self, model: Any, tokenizer: Any) -> Measurement:
        """Refusal and over-refusal of `model` under the study's prompts and system turn."""
        return measure(
            model,
            tokenizer,
            self.harmful,
            self.harmless,
            system=self.system,
            max_new_tokens=self.config.max_new_tokens,
            batch_size=self.config.batch_size,
        )

    def run_cell(
        self,
        n: int,
        seed: int,
        before: Measurement,
        adapter_path: Path | None,
        on_step: Callable[[int, float], None] | None = None,
    ) -> RetentionCell:
        """Fine-tune on n pairs with `seed`, measure, save the adapter, restore the model."""
        model, tokenizer, _ = self.load()
        lora = self.config.finetune.method == "lora"
        work = model if lora else copy.deepcopy(model)
        pairs = self.data.sample(n, seed)
        tuned, stats = finetune(
            work, tokenizer, pairs, self.config.finetune, seed, self.system, on_step
        )
        after = self.evaluate(tuned, tokenizer)
        adapter = None
        if lora and adapter_path is not None:
            adapter = str(save_adapter(tuned, adapter_path))
        if lora:
            self._loaded["model"] = unload(tuned)
        ratio = retention_ratio(after.harmful.rate, before.harmful.rate)
        return RetentionCell(n, seed, after, ratio, stats.to_dict(), adapter)


def _study_key(study: _Study, fingerprint: str) -> str:
    """Content hash of everything that fixes a study's numbers (not the grid: cells are reused)."""
    config = study.config
    return content_hash(
        {
            "v": VERSION,
            "model": fingerprint,
            "finetune": config.finetune.model_dump(mode="json"),
            "control": config.control,
            "benign": study.benign.key,
            "harmful": study.harmful,
            "harmless": study.harmless,
            "generation": [config.max_new_tokens, config.batch_size],
            "torch": torch.__version__.split("+")[0],
        }
    )


def run_retention(
    source: str | Path,
    benign: PairSet,
    harmful: PromptSet,
    harmless: PromptSet | None,
    config: RetentionConfig,
    *,
    exclude: Iterable[str] = (),
    root: Path | None = None,
    device: str = "cpu",
    dtype: str = "float32",
    progress: Progress | None = None,
) -> RetentionResult:
    """Fine-tune and measure every (n, seed) cell of `config` that is not cached yet.

    `exclude` holds prompts used elsewhere (e.g. to find refusal directions): held-out prompts
    must not be among them, nor among the benign training instructions. The model is loaded
    only if some cell (or the refusal before) is missing from the cache.
    """
    excluded = set(exclude)
    instructions = [p.instruction for p in benign.pairs]
    for name, prompts in (("harmful", harmful), ("harmless", harmless)):
        if prompts is not None:
            for used, where in (
                (excluded, f"the exclusion list ({name} held-out prompts)"),
                (instructions, f"the benign training data ({name} prompts)"),
            ):
                check_disjoint(
                    prompts,
                    used,
                    f"evaluation prompt(s) also appear in {where}",
                    "held-out prompts must be disjoint from them",
                )
    for seed in config.seeds:
        benign.sample(max(config.ns), seed)  # fails early when n exceeds the data
    study = _Study(source, benign, harmful, harmless, config, device, dtype)
    fingerprint = _model_fingerprint(source) or study.load()[2]
    key = _study_key(study, fingerprint)
    folder = (root or cache_root()) / "retention" / f"{_slug(source)}-{key}"
    bar = _Bar(progress, len(config.ns) * len(config.seeds) + 1)
    before_path = folder / "before.json"
    if before_path.is_file():
        before = Measurement.from_dict(_read_json(before_path))
    else:
        before = study.evaluate(*study.load()[:2])
        atomic_write_json(before_path, before.to_dict())
    bar.cell_done("refusal before fine-tuning")
    cells: list[RetentionCell] = []
    for n in config.ns:
        for seed in config.seeds:
            name = f"n{n}-seed{seed}"
            cell_path = folder / "cells" / f"{name}.json"
            if cell_path.is_file():
                cells.append(RetentionCell.from_dict(_read_json(cell_path)))
                bar.cell_done(f"{name} (cached)")
                continue
            adapter_path = folder / "adapters" / name if config.save_adapters else None
            steps = config.finetune.num_steps(n)
            cell = study.run_cell(n, seed, before, adapter_path, bar.training(name, steps))
            atomic_write_json(cell_path, cell.to_dict())
            cells.append(cell)
            bar.cell_done(f"{name}: refusal {cell.refusal:.2f}")
    result = RetentionResult(
        model=str(source),
        key=key,
        folder=str(folder),
        config=config,
        data={
            "benign": benign.source,
            "harmful": harmful.source,
            "harmless": harmless.source if harmless is not None else "none",
            "control": config.control,
            "system": study.system or "",
        },
        before=before,
        cells=cells,
    )
    atomic_write_json(folder / "result.json", result.to_dict())
    return result


class _Bar:
    """Progress of a study: one task over cells, one over the training steps of a cell."""

    def __init__(self, progress: Progress | None, cells: int) -> None:
        self.progress = progress
        self.cells = progress.add_task("retention", total=cells) if progress else None
        self.steps = None

    def cell_done(self, text: str) -> None:
        """Advance the cell task."""
        if self.progress is not None and self.cells is not None:
            self.progress.update(self.cells, advance=1, description=text)

    def training(self, name: str, steps: int) -> Callable[[int, float], None] | None:
        """An `on_step` callback for a cell's training (None without a progress bar)."""
        progress = self.progress
        if progress is None:
            return None
        if self.steps is None:
            self.steps = progress.add_task("training", total=steps)
        task = self.steps
        progress.reset(task, total=steps, description=f"training {name}")

        def on_step(step: int, loss: float) -> None:
            progress.update(
                task, completed=step + 1, description=f"training {name} loss {loss:.3f}"
            )

        return on_step


def _read_json(path: Path) -> dict:
    """A cached JSON record."""
    return json.loads(path.read_text())
