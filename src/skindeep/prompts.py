"""Prompt sets: load them from files, datasets or the organism language, validate, and split.

Every problem a user can fix (missing or empty file, unknown column, duplicates, a class too
small for a harmful/harmless pair) is a `PromptError` that says what was found and expected.
"""

from __future__ import annotations

import csv
import json
import random
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from skindeep.errors import PromptError

DEFAULT_COLUMNS: tuple[str, ...] = ("goal", "Goal", "prompt", "instruction", "text")
"""Columns tried, in order, when a tabular prompt file is loaded without `column=`."""

MIN_PER_CLASS = 2
"""Fewest prompts per class for a harmful/harmless pair (a mean and a spread need two)."""


def excerpt(text: str, width: int = 60) -> str:
    """A prompt (or instruction) shortened for an error message."""
    return repr(text if len(text) <= width else text[: width - 3] + "...")


def check_disjoint(first: Iterable[str], second: Iterable[str], what: str, fix: str) -> None:
    """Raise PromptError when two prompt collections share a prompt: the one overlap check.

    The message reads "<n> <what>, e.g. <first shared prompt>; <fix>".
    """
    shared = sorted(set(first) & set(second))
    if shared:
        raise PromptError(f"{len(shared)} {what}, e.g. {excerpt(shared[0])}; {fix}")


@dataclass(frozen=True)
class PromptSet:
    """A named, ordered tuple of distinct non-empty prompts and where they came from."""

    name: str
    prompts: tuple[str, ...]
    source: str

    def __post_init__(self) -> None:
        """Reject empty sets, non-strings, blank prompts and duplicates at construction."""
        if not self.prompts:
            raise PromptError(f"prompt set {self.name!r} ({self.source}) is empty")
        for i, p in enumerate(self.prompts):
            if not isinstance(p, str) or not p.strip():
                raise PromptError(
                    f"prompt {i} of {self.name!r} ({self.source}) is {p!r}; expected non-empty text"
                )
        counts = Counter(self.prompts)
        repeated = [p for p, c in counts.items() if c > 1]
        if repeated:
            extra = sum(counts[p] - 1 for p in repeated)
            raise PromptError(
                f"prompt set {self.name!r} ({self.source}) has {extra} duplicate prompt(s) "
                f"({len(repeated)} distinct text(s) repeated), e.g. {excerpt(repeated[0])}; "
                "remove them so that no prompt is counted twice"
            )

    def __len__(self) -> int:
        """Number of prompts."""
        return len(self.prompts)

    def __iter__(self) -> Iterator[str]:
        """The prompts in order."""
        return iter(self.prompts)

    def head(self, n: int) -> PromptSet:
        """The first n prompts (all when fewer), as a new set."""
        if n < 1:
            raise PromptError(f"limit must be >= 1, got {n}")
        return PromptSet(self.name, self.prompts[:n], self.source)


# ---- files -----------------------------------------------------------------------------------


def _pick_column(available: Sequence[str], column: str | None, where: str) -> str:
    """The column to read: the one asked for, else the first default present."""
    if column is not None:
        if column not in available:
            raise PromptError(
                f"{where} has no column {column!r}; available columns: {', '.join(available)}"
            )
        return column
    for name in DEFAULT_COLUMNS:
        if name in available:
            return name
    raise PromptError(
        f"{where} has none of the default prompt columns ({', '.join(DEFAULT_COLUMNS)}); choose "
        f"one with --column (column= in Python): {', '.join(available)}"
    )


def _from_records(records: list[Any], column: str | None, where: str) -> list[str]:
    """Prompts from a list of strings, or of objects read at one column."""
    if all(isinstance(r, str) for r in records):
        if column is not None:
            raise PromptError(f"{where} is a list of strings; --column {column!r} does not apply")
        return list(records)
    if not all(isinstance(r, dict) for r in records):
        raise PromptError(f"{where}: expected a list of strings or a list of objects")
    available = list(dict.fromkeys(k for r in records for k in r))
    key = _pick_column(available, column, where)
    out: list[str] = []
    for i, r in enumerate(records):
        value = r.get(key)
        if not isinstance(value, str):
            raise PromptError(f"{where}: record {i} has {key}={value!r}; expected text")
        out.append(value)
    return out


def _read_json(path: Path, column: str | None) -> list[str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise PromptError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, list):
        raise PromptError(
            f"{path}: expected a JSON list of strings or objects, got {type(data).__name__}"
        )
    return _from_records(data, column, str(path))


def _read_jsonl(path: Path, column: str | None) -> list[str]:
    records: list[Any] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise PromptError(f"{path} line {number} is not valid JSON: {exc}") from exc
    return _from_records(records, column, str(path)) if records else []


def _read_csv(path: Path, column: str | None, delimiter: str) -> list[str]:
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh, delimiter=delimiter)
        available = [name for name in (reader.fieldnames or []) if name]
        if not available:
            return []
        key = _pick_column(available, column, str(path))
        return [row.get(key) or "" for row in reader]


def _read_text(path: Path, column: str | None) -> list[str]:
    if column is not None:
        raise PromptError(f"{path} is plain text (one prompt per line); --column does not apply")
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@contextmanager
def reading(path: Path, what: str) -> Iterator[None]:
    """Turn the errors of reading a text file (not UTF-8, malformed CSV, unreadable) into one
    PromptError line naming `what` and the file."""
    try:
        yield
    except UnicodeDecodeError as exc:
        raise PromptError(
            f"{what} {path} is not UTF-8 text (byte {exc.start}: {exc.reason}); re-save it as UTF-8"
        ) from exc
    except csv.Error as exc:
        raise PromptError(f"{what} {path} is not valid CSV: {exc}") from exc
    except OSError as exc:
        raise PromptError(f"could not read {what} {path}: {exc}") from exc


def load_prompts(
    path: str | Path, column: str | None = None, limit: int | None = None, name: str | None = None
) -> PromptSet:
    """Load prompts from .json, .jsonl, .csv/.tsv, or plain text (one per line); `limit` keeps
    the first ones. Tabular files default to the first column of DEFAULT_COLUMNS present."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise PromptError(f"prompt file {path} does not exist")
    suffix = path.suffix.lower()
    with reading(path, "prompt file"):
        if suffix == ".json":
            prompts = _read_json(path, column)
        elif suffix == ".jsonl":
            prompts = _read_jsonl(path, column)
        elif suffix in (".csv", ".tsv"):
            prompts = _read_csv(path, column, "\t" if suffix == ".tsv" else ",")
        else:
            prompts = _read_text(path, column)
    prompts = [p.strip() for p in prompts]
    if not prompts:
        raise PromptError(f"prompt file {path} holds no prompts")
    blank = [i for i, p in enumerate(prompts) if not p]
    if blank:
        raise PromptError(f"{path}: {len(blank)} empty prompt(s), first at record {blank[0]}")
    if limit is not None:
        if limit < 1:
            raise PromptError(f"limit must be >= 1, got {limit}")
        prompts = prompts[:limit]
    source = f"{path}#{column}" if column else str(path)
    return PromptSet(name or path.stem, tuple(prompts), source)


# ---- datasets --------------------------------------------------------------------------------


@contextmanager
def _offline_hub() -> Iterator[None]:
    """Make `datasets` use its local cache only (no retries against an unreachable hub)."""
    import datasets
    from huggingface_hub import constants

    saved = (datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE)
    datasets.config.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE = saved


def from_dataset(
    name: str,
    split: str = "train",
    column: str | None = None,
    *,
    config: str | None = None,
    limit: int | None = None,
) -> PromptSet:
    """Load prompts from a Hugging Face dataset (the local cache when the hub is unreachable)."""
    import datasets

    from skindeep.models.loading import hub_offline, hub_reachable

    offline = hub_offline() or not hub_reachable()
    try:
        if offline:
            with _offline_hub():
                data = datasets.load_dataset(name, config, split=split)
        else:
            data = datasets.load_dataset(name, config, split=split)
    except Exception as exc:  # datasets raises many types; all mean "could not load"
        state = " (the hub is offline or unreachable and it is not cached)" if offline else ""
        raise PromptError(
            f"could not load dataset {name!r} split {split!r}{state}: {exc}; download it, or "
            "pass a local file to load_prompts"
        ) from exc
    key = _pick_column(list(data.column_names), column, f"dataset {name!r}")
    rows = data[key] if limit is None else data.select(range(min(limit, len(data))))[key]
    prompts = tuple(str(p).strip() for p in rows)
    return PromptSet(name.rsplit("/", 1)[-1], prompts, f"hf:{name}:{split}#{key}")


# ---- organisms -------------------------------------------------------------------------------


def organism_prompts(
    harmful: bool, split: Literal["train", "heldout"] = "train", n: int = 64, seed: int = 0
) -> PromptSet:
    """n distinct requests of one class from the organism language, shuffled with `seed`."""
    from skindeep.organisms.language import DEFAULT_LANGUAGE

    if split not in ("train", "heldout"):
        raise PromptError(f"split must be 'train' or 'heldout', got {split!r}")
    if n < 1:
        raise PromptError(f"n must be >= 1, got {n}")
    requests = DEFAULT_LANGUAGE.sample_requests(n, harmful=harmful, split=split, seed=seed)
    kind = "harmful" if harmful else "harmless"
    if len(requests) < n:
        raise PromptError(
            f"the organism language has only {len(requests)} distinct {kind} {split} requests; "
            f"asked for {n}"
        )
    source = f"organism language: {kind}, split={split}, seed={seed}"
    return PromptSet(f"organism-{kind}-{split}", tuple(r.text for r in requests), source)


# ---- splitting and pairs ---------------------------------------------------------------------


def _split_sizes(n: int, fractions: Sequence[float]) -> list[int]:
    """Part sizes summing to n: floors, remainder to the largest fractional parts (ties: first)."""
    raw = [f * n for f in fractions]
    sizes = [int(r) for r in raw]
    by_remainder = sorted(range(len(raw)), key=lambda i: (-(raw[i] - sizes[i]), i))
    for i in by_remainder[: n - sum(sizes)]:
        sizes[i] += 1
    return sizes


def split_prompts(
    ps: PromptSet, fractions: Sequence[float] = (0.8, 0.2), seed: int = 0
) -> tuple[PromptSet, ...]:
    """Disjoint random parts of a set with the given size fractions (summing to 1), reproducible."""
    if len(fractions) < 2 or any(f <= 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-9:
        raise PromptError(
            f"fractions must be two or more positive numbers summing to 1, got {list(fractions)}"
        )
    sizes = _split_sizes(len(ps), fractions)
    if min(sizes) == 0:
        raise PromptError(
            f"cannot split {len(ps)} prompts of {ps.name!r} into {list(fractions)}: a part would "
            f"be empty (sizes {sizes})"
        )
    order = list(range(len(ps)))
    random.Random(seed).shuffle(order)
    parts: list[PromptSet] = []
    start = 0
    for i, size in enumerate(sizes):
        idx = order[start : start + size]
        start += size
        source = f"{ps.source} | split {i + 1}/{len(sizes)} of {list(fractions)}, seed={seed}"
        parts.append(PromptSet(f"{ps.name}[{i}]", tuple(ps.prompts[j] for j in idx), source))
    return tuple(parts)


def check_pair(
    harmful: PromptSet | Sequence[str],
    harmless: PromptSet | Sequence[str],
    min_per_class: int = MIN_PER_CLASS,
) -> None:
    """Check a harmful/harmless pair: enough prompts per class and no prompt in both classes."""
    for label, ps in (("harmful", harmful), ("harmless", harmless)):
        if len(ps) < min_per_class:
            raise PromptError(
                f"the {label} set has {len(ps)} prompt(s); at least {min_per_class} per class "
                "are needed to compare the two classes"
            )
    check_disjoint(
        harmful,
        harmless,
        "prompt(s) are in both the harmful and the harmless set",
        "a prompt must have one label",
    )


ORGANISM_PREFIX = "organism:"
DATASET_PREFIX = "hf:"
ORGANISM_DEFAULT_N = 64
"""Prompts per class drawn from the organism language when a spec gives no count."""


def resolve_prompt_spec(
    text: str,
    harmful: bool | None = None,
    column: str | None = None,
    seed: int = 0,
    n: int | None = None,
) -> PromptSet:
    """The prompt set a command-line spec names, the same syntax for every command.

    `organism:SPLIT[-CLASS][:N]` (SPLIT train or heldout, CLASS harmful or harmless, implied by
    `harmful` when omitted, N default `n` or 64), `hf:NAME[:SPLIT]` (a dataset through
    `datasets`, `column` picks the field), or a prompt file (`column` for tabular files); a
    file or dataset spec may end in `#COLUMN` to pick its own column, overriding `column`. `n`
    caps the prompts taken from a file or dataset.
    """
    head, sep, field = text.rpartition("#")
    if sep and field and not text.startswith(ORGANISM_PREFIX):
        text, column = head, field  # SPEC#COLUMN: a column for this set only
    if text.startswith(DATASET_PREFIX):
        name, _, split = text.removeprefix(DATASET_PREFIX).partition(":")
        if not name:
            raise PromptError(f"{text!r}: expected hf:NAME[:SPLIT], e.g. hf:walledai/AdvBench")
        return from_dataset(name, split or "train", column, limit=n)
    if not text.startswith(ORGANISM_PREFIX):
        return load_prompts(text, column=column, limit=n)
    spec, _, count = text.removeprefix(ORGANISM_PREFIX).partition(":")
    split, _, kind = spec.partition("-")
    if not kind and harmful is not None:
        kind = "harmful" if harmful else "harmless"
    if split not in ("train", "heldout") or kind not in ("harmful", "harmless"):
        raise PromptError(
            f"{text!r}: expected organism:SPLIT-CLASS[:N] with SPLIT train or heldout and CLASS "
            "harmful or harmless (e.g. organism:heldout-harmful:48), or a prompt file"
        )
    if harmful is not None and (kind == "harmful") != harmful:
        raise PromptError(f"{text!r} names {kind} prompts where harmful={harmful} are expected")
    try:
        count_n = int(count) if count else (n or ORGANISM_DEFAULT_N)
    except ValueError:
        raise PromptError(f"{text!r}: the count after the second ':' must be an integer") from None
    return organism_prompts(kind == "harmful", split, count_n, seed)  # type: ignore[arg-type]
