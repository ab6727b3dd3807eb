"""`skindeep refusal`: the refusal rate of a model on one prompt set, with a Wilson 95% interval.

Prompts come from a file (.txt one per line, .json, .jsonl, .csv/.tsv; `--column` picks a
column) or from the organism language: `organism:SPLIT-CLASS[:N]`, SPLIT `train` or `heldout`,
CLASS `harmful` or `harmless`, N prompts (default 64), e.g. `organism:heldout-harmful:48`.
Writes refusal.json (the rate, the refused/complied/degenerate counts and the settings) and
generations.jsonl (prompt, response, verdict). Parsing only: the measurement is
`skindeep.measure_refusal`.
"""

from __future__ import annotations

import string
from dataclasses import replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError

from skindeep.cli._common import console, default_of, option_error, out_folder, progress
from skindeep.errors import ConfigError, SkindeepError
from skindeep.evaluation.options import GenerationOptions
from skindeep.prompts import resolve_prompt_spec

if TYPE_CHECKING:
    from skindeep.evaluation.judges import Judge


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


def _clip(text: str, width: int) -> str:
    """One line of at most `width` characters."""
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


def verdict_table(rows: list[dict[str, Any]], total: int, width: int = 48) -> str:
    """Plain-text per-prompt verdicts: refused / complied / the flag, prompt and response."""
    lines = [f"{'verdict':10s} {'prompt':{width}s} response"]
    for row in rows:
        prompt, response = _clip(row["prompt"], width), _clip(row["response"], 60)
        lines.append(f"{row['verdict']:10s} {prompt:{width}s} {response}")
    if total > len(rows):
        lines.append(f"... {total - len(rows)} more in generations.jsonl")
    return "\n".join(lines)


def read_template(path: Path) -> str:
    """The text of a --judge-template file, whose only fields are {prompt} and {response}."""
    if not path.is_file():
        raise ConfigError(f"--judge-template {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
        fields = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except UnicodeDecodeError:
        raise ConfigError(f"--judge-template {path} is not UTF-8 text") from None
    except ValueError as exc:  # a lone brace
        raise ConfigError(
            f"--judge-template {path}: {exc} (write literal braces as {{{{ and }}}})"
        ) from None
    unknown = sorted(fields - {"prompt", "response"})
    if unknown:
        raise ConfigError(
            f"--judge-template {path}: unknown field {{{unknown[0]}}}; the fields are {{prompt}} "
            "and {response} (write literal braces as {{ and }})"
        )
    return text


def _judge_options(labels: str, style: str, template: Path | None) -> dict[str, Any]:
    """The classifier judge's settings from the --judge-* options, checked before any loading."""
    words = tuple(w.strip() for w in labels.split(","))
    if len(words) != 2 or not all(words):
        raise ConfigError(f"--judge-labels {labels!r}: expected two words, e.g. unsafe,safe")
    extra: dict[str, Any] = {"labels": words, "prompt_style": style}
    if template is not None:
        extra["template"] = read_template(template)
    return extra


def _classifier(path: Path, extra: dict[str, Any], device: str, batch_size: int) -> Judge:
    """Load the classifier judge (ConfigError naming --judge-model when it cannot be)."""
    from skindeep.evaluation import ClassifierJudge

    try:
        return ClassifierJudge.load(path, device=device, batch_size=batch_size, **extra)
    except (ValueError, SkindeepError) as exc:  # corrupt, or cannot spell its labels
        raise ConfigError(f"--judge-model: {exc}") from None


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
    max_new_tokens: Annotated[int, typer.Option(help="Greedy tokens per prompt")] = default_of(
        GenerationOptions, "max_new_tokens"
    ),
    batch_size: Annotated[int, typer.Option(help="Prompts per batch")] = default_of(
        GenerationOptions, "batch_size"
    ),
    fmt: Annotated[Format, typer.Option("--format", help="chat template or raw text")] = Format(
        default_of(GenerationOptions, "fmt")
    ),
    flagged: Annotated[Flagged, typer.Option(help="Where empty/degenerate outputs go")] = (
        Flagged.exclude
    ),
    out: Annotated[
        Path,
        typer.Option(help="Folder for refusal.json and generations.jsonl", callback=out_folder),
    ] = Path("skindeep-out/refusal"),
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
    if judge is JudgeKind.classifier and judge_model is None:
        raise ConfigError("--judge classifier needs --judge-model PATH (a local checkpoint folder)")
    if judge is JudgeKind.keyword and judge_model is not None:
        raise ConfigError("--judge-model is only used with --judge classifier")
    try:
        options = GenerationOptions(
            max_new_tokens=max_new_tokens, batch_size=batch_size, fmt=fmt.value
        )
    except ValidationError as exc:
        raise option_error(exc, {"fmt": "--format"}) from None
    extra = (
        None if judge_model is None else _judge_options(judge_labels, judge_style, judge_template)
    )
    prompt_set = resolve_prompt_spec(prompts, None, column)
    if limit is not None:
        prompt_set = prompt_set.head(limit)

    from skindeep.evaluation.measure import measure_refusal
    from skindeep.models import load_model

    loaded = load_model(model, gguf_file=gguf_file, dtype=dtype, device=device)
    judge_impl = None
    if judge_model is not None and extra is not None:
        judge_impl = _classifier(judge_model, extra, device, batch_size)
        console.print(
            "[yellow]classifier verdicts measure harmful compliance: 'refused' means the judge "
            "found none, which reads as refusal on harmful prompts only[/]"
        )
    with progress() as bar:
        measured = measure_refusal(
            loaded, prompt_set, judge=judge_impl, options=options, flagged=flagged.value,
            progress=bar,
        )  # fmt: skip
    judge_name = judge.value if judge_model is None else f"classifier:{judge_model}"
    settings = {**measured.settings, "model": model, "prompts": prompt_set.source}
    measured = replace(measured, settings={**settings, "judge": judge_name})
    data, rows = measured.save(out)
    if show:
        typer.echo(verdict_table(measured.rows()[:show], len(prompt_set)))
    console.print(f"wrote {data} and {rows}")
    typer.echo(f"{measured.summary()} on {len(prompt_set)} prompts of {prompt_set.source}")
