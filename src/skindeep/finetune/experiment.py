"""The whole retention experiment in one call: data, held-out sets and `run_retention`."""

from __future__ import annotations

from pathlib import Path

from rich.progress import Progress

from skindeep.finetune.config import RetentionConfig
from skindeep.finetune.data import benign_pairs, retention_sets
from skindeep.finetune.retention import RetentionResult, run_retention
from skindeep.prompts import load_prompts


def retention_experiment(
    source: str,
    config: RetentionConfig,
    *,
    benign: str = "organism",
    harmful: str = "organism",
    harmless: str | None = None,
    instruction_column: str | None = None,
    response_column: str | None = None,
    prompt_column: str | None = None,
    n_eval: int = 100,
    exclude: str | Path | None = None,
    device: str = "cpu",
    dtype: str = "float32",
    progress: Progress | None = None,
) -> RetentionResult:
    """Benign pairs, held-out evaluation prompts (disjoint from `exclude`) and every cell.

    What `skindeep retention` runs: `benign`, `harmful` and `harmless` take the prompt-spec
    syntax of every command (a file, `organism`, `hf:NAME`); `exclude` names the prompts used
    for directions, which the evaluation must not reuse.
    """
    excluded = load_prompts(exclude) if exclude else ()
    pairs = benign_pairs(benign, instruction_column, response_column)
    harmful_set, harmless_set = retention_sets(harmful, harmless, n_eval, prompt_column, excluded)
    return run_retention(
        source, pairs, harmful_set, harmless_set, config, exclude=excluded, device=device,
        dtype=dtype, progress=progress,
    )  # fmt: skip
