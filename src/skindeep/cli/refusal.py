"""`skindeep refusal`: the refusal rate of a model on one prompt set, with a Wilson 95% interval.

Prompts come from a file (.txt one per line, .json, .jsonl, .csv/.tsv; `--column` picks a
column) or from the organism language: `organism:SPLIT-CLASS[:N]`, SPLIT `train` or `heldout`,
CLASS `harmful` or `harmless`, N prompts (default 64), e.g. `organism:heldout-harmful:48`.
Writes refusal.json (the rate and settings) and generations.jsonl (prompt, response, verdict).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from skindeep.cache import atomic_write_json, atomic_write_text
from skindeep.cli._common import console, progress
from skindeep.errors import ConfigError
from skindeep.prompts import PromptSet, resolve_prompt_spec


class Format(StrEnum):
    """Prompt format."""

    chat = "chat"
    raw = "raw"


class JudgeKind(StrEnum):
    """Refusal judge."""

    keyword = "keyword"
    classifier = "classifier"


class Flagged(StrEnum):
    """Where empty or degenerate responses go in the rate."""

    exclude = "exclude"
    refusal = "refusal"
    compliance = "compliance"


def resolve_prompts(
    text: str, column: str | None = None, harmful: bool | None = None, seed: int = 0
) -> PromptSet:
    """A prompt set from a file, `hf:NAME[:SPLIT]` or `organism:SPLIT-CLASS[:N]`."""
    return resolve_prompt_spec(text, harmful, column, seed)


def _clip(text: str, width: int) -> str:
    """One line of at most `width` characters."""
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


def verdict_table(rows: list[dict[str, Any]], total: int, width: int = 48) -> str:
    """Plain-text per-prompt verdicts: refused / complied / the flag, prompt and response."""
    lines = [f"{'verdict':10s} {'prompt':{width}s} response"]
    for row in rows:
        verdict = row["flag"] or ("refused" if row["refused"] else "complied")
        lines.append(
            f"{verdict:10s} {_clip(row['prompt'], width):{width}s} {_clip(row['response'], 60)}"
        )
    if total > len(rows):
        lines.append(f"... {total - len(rows)} more in generations.jsonl")
    return "\n".join(lines)


def refusal(
    model: Annotated[str, typer.Option("--model", "-m", help="Hub id, checkpoint folder or .gguf")],
    prompts: Annotated[
        str,
        typer.Option(
            help="Prompt file (.txt, .json, .jsonl, .csv, .tsv), hf:NAME[:SPLIT] (a dataset) "
            "or organism:SPLIT-CLASS[:N] "
            "(SPLIT train|heldout, CLASS harmful|harmless, N default 64), e.g. "
            "organism:heldout-harmful:48"
        ),
    ],
    column: Annotated[str | None, typer.Option(help="Column of a tabular prompt file")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Use only the first N prompts")] = None,
    judge: Annotated[JudgeKind, typer.Option(help="keyword (Arditi's strings) or classifier")] = (
        JudgeKind.keyword
    ),
    judge_model: Annotated[
        Path | None, typer.Option(help="Local causal-LM judge folder (for --judge classifier)")
    ] = None,
    judge_labels: Annotated[
        str,
        typer.Option(
            help="Classifier: the judge's word for harmful compliance and for not, e.g. "
            "unsafe,safe (Llama Guard) or Yes,No (HarmBench classifier)"
        ),
    ] = "unsafe,safe",
    judge_style: Annotated[
        str,
        typer.Option(
            help="Classifier input: auto, conversation (its chat template over the exchange), "
            "instruction (--judge-template as a user message) or raw"
        ),
    ] = "auto",
    judge_template: Annotated[
        Path | None,
        typer.Option(help="Classifier: a text file with {prompt} and {response} placeholders"),
    ] = None,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Greedy tokens per prompt")] = 64,
    batch_size: Annotated[int, typer.Option(min=1, help="Prompts per batch")] = 16,
    fmt: Annotated[
        Format, typer.Option("--format", help="chat template or raw text")
    ] = Format.chat,
    flagged: Annotated[Flagged, typer.Option(help="Where empty/degenerate outputs go")] = (
        Flagged.exclude
    ),
    out: Annotated[Path, typer.Option(help="Folder for refusal.json and generations.jsonl")] = Path(
        "skindeep-out/refusal"
    ),
    show: Annotated[
        int, typer.Option(min=0, help="Print the verdicts of the first N prompts (0: none)")
    ] = 10,
    gguf_file: Annotated[str | None, typer.Option(help="GGUF file name inside --model")] = None,
    dtype: Annotated[str, typer.Option(help="float32, bfloat16, float16 or auto")] = "float32",
    device: Annotated[
        str,
        typer.Option(help="cpu, cuda, cuda:N, mps, or auto (device_map=auto: spread over devices)"),
    ] = "cpu",
) -> None:
    """Generate greedily, judge every response, print the refusal rate with its 95% CI."""
    from skindeep.activations.collect import format_texts
    from skindeep.evaluation import (
        ClassifierJudge,
        Judge,
        KeywordJudge,
        generate,
        refusal_rate,
    )
    from skindeep.models import load_model

    if judge is JudgeKind.classifier and judge_model is None:
        raise ConfigError("--judge classifier needs --judge-model PATH (a local checkpoint folder)")
    if judge is JudgeKind.keyword and judge_model is not None:
        raise ConfigError("--judge-model is only used with --judge classifier")
    if judge is JudgeKind.classifier:
        console.print(
            "[yellow]classifier verdicts measure harmful compliance: 'refused' means the judge "
            "found none, which reads as refusal on harmful prompts only[/]"
        )
    prompt_set = resolve_prompts(prompts, column)
    if limit is not None:
        prompt_set = prompt_set.head(limit)
    loaded = load_model(model, gguf_file=gguf_file, dtype=dtype, device=device)
    judge_impl: Judge = KeywordJudge()
    if judge_model is not None:
        labels = tuple(w.strip() for w in judge_labels.split(","))
        if len(labels) != 2 or not all(labels):
            raise ConfigError(
                f"--judge-labels {judge_labels!r}: expected two words, e.g. unsafe,safe"
            )
        extra: dict[str, Any] = {"labels": labels, "prompt_style": judge_style}
        if judge_template is not None:
            if not judge_template.is_file():
                raise ConfigError(f"--judge-template {judge_template} does not exist")
            extra["template"] = judge_template.read_text(encoding="utf-8")
        try:
            judge_impl = ClassifierJudge.load(
                judge_model, device=device, batch_size=batch_size, **extra
            )
        except ValueError as exc:  # e.g. the judge's tokenizer cannot spell its labels
            raise ConfigError(f"--judge-model {judge_model}: {exc}") from exc
    texts = format_texts(loaded.adapter, list(prompt_set), fmt.value)
    with progress() as bar:
        responses = generate(
            loaded.model,
            loaded.tokenizer,
            texts,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            progress=bar,
        )
    verdicts = judge_impl.judge(list(prompt_set), responses)
    rate = refusal_rate(verdicts, flagged=flagged.value)
    settings: dict[str, Any] = {
        "model": model,
        "fingerprint": loaded.fingerprint,
        "prompts": prompt_set.source,
        "judge": judge.value if judge_model is None else f"classifier:{judge_model}",
        "max_new_tokens": max_new_tokens,
        "format": fmt.value,
        "flagged": flagged.value,
        "decoding": "greedy",
    }
    rows = [
        {"prompt": p, "response": r, **asdict(v)}
        for p, r, v in zip(prompt_set, responses, verdicts, strict=True)
    ]
    numbers = {k: None if isinstance(v, float) and v != v else v for k, v in asdict(rate).items()}
    atomic_write_json(out / "refusal.json", {**numbers, "confidence": 0.95, **settings})
    atomic_write_text(out / "generations.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    if show:
        typer.echo(verdict_table(rows[:show], len(rows)))
    typer.echo(
        f"refusal rate {rate.rate:.3f}, 95% CI [{rate.low:.3f}, {rate.high:.3f}] "
        f"({rate.n_refused}/{rate.n} refused, {rate.n_flagged} flagged) on {len(prompt_set)} "
        f"prompts of {prompt_set.source}"
    )
    console.print(f"wrote {out / 'refusal.json'} and {out / 'generations.jsonl'}")
