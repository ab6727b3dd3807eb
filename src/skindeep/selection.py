"""Arditi et al. (2024)'s refusal-direction selection, scored without generation.

Candidates are differences of means (harmful - harmless training prompts) of the block inputs
(resid_pre) at every layer and every post-instruction template position. Each candidate is
scored on validation prompts: the refusal score on harmful prompts with the direction ablated
at every layer, the refusal score on harmless prompts with the raw vector added to its layer's
input (steering), and the next-token KL on harmless prompts under ablation. Candidates at
layers >= 0.8 L, with KL > 0.1 or with steering score <= 0 are discarded; the lowest ablated
refusal score wins. Candidates are evaluated many at a time: the prompt batch is tiled once per
candidate and each row gets its own direction and vector inside the hooks.

`SelectionOptions(ablation="affine")` scores ablation in its affine form (Marshall et al. 2024):
block inputs keep the mean harmless coordinate along the direction instead of zero, for models
whose harmless activations sit far from the origin along it (the organisms do).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from safetensors.numpy import save_file
from torch.utils.hooks import RemovableHandle

from skindeep.activations.collect import collect, format_texts, formatting_adapter
from skindeep.activations.spec import CollectionSpec, Label
from skindeep.cache import atomic_write_json
from skindeep.errors import PromptError, SkindeepError
from skindeep.evaluation.generation import (
    ProgressLike,
    encode,
    eval_mode,
    left_pad,
    length_sorted_batches,
    model_device,
    pad_token_id,
    progress_callback,
)
from skindeep.evaluation.logits import (
    kl_divergence,
    next_token_logprobs,
    refusal_score,
    refusal_tokens,
)
from skindeep.interventions.hooks import (
    _edit_input,
    _edit_output,
    _registered,
    _sublayer_outputs,
)
from skindeep.models.adapter import ModelAdapter
from skindeep.prompts import check_pair

#: Filter codes a discarded candidate can carry.
REASONS: dict[str, str] = {
    "zero": "the difference of means is zero (e.g. the embedding layer at a template token)",
    "layer": "layer >= max_layer_fraction * L",
    "kl": "mean KL on harmless prompts under ablation > kl_threshold",
    "steering": "steering score on harmless prompts <= steering_threshold",
}


AblationForm = Literal["projection", "affine"]
ABLATION_FORMS: tuple[str, ...] = ("projection", "affine")


class SelectionError(SkindeepError):
    """No candidate direction survived the filters, or the inputs cannot be used."""


@dataclass(frozen=True)
class SelectionOptions:
    """Filters and batching of Arditi's selection (defaults: the paper's)."""

    max_layer_fraction: float = 0.8
    """Discard candidates at layers l >= max_layer_fraction * L."""
    kl_threshold: float = 0.1
    """Discard candidates whose ablation moves harmless next-token distributions more (nats)."""
    steering_threshold: float | Literal["midpoint"] = 0.0
    """Keep only candidates whose steering score (harmless refusal log-odds) exceeds this.

    0 (Arditi) asks that steering make a refusal opening more likely than not; "midpoint" asks
    that it move harmless prompts at least halfway from their baseline score to the harmful
    baseline, for models that refuse greedily with low confidence (p(refusal token) < 0.5
    even on harmful prompts), where no candidate can pass 0."""
    steering_coeff: float = 1.0
    """Multiple of the raw difference-of-means vector added when steering."""
    batch_size: int = 16
    """Prompts per forward batch."""
    candidates_per_pass: int = 8
    """Candidates evaluated in one forward pass (rows = batch_size * candidates_per_pass)."""
    ablation: AblationForm = "projection"
    """'projection': Arditi's h - r r^T h; 'affine': h - r r^T (h - mu_l), mu_l the mean harmless
    block input at the candidate's position (affine concept editing, Marshall et al. 2024)."""


@dataclass(frozen=True)
class Candidate:
    """One (layer, position) difference of means and its validation scores."""

    layer: int
    position: int
    """Negative token offset from the end of the prompt (-1 is the last template token)."""
    token: str
    """The template token at that position."""
    norm: float
    """Norm of the raw difference of means."""
    ablation_score: float
    """Mean refusal log-odds on harmful validation prompts with the direction ablated."""
    steering_score: float
    """Mean refusal log-odds on harmless validation prompts with the vector added."""
    kl: float
    """Mean KL(original || ablated) on harmless validation prompts, last position, nats."""
    reasons: tuple[str, ...] = ()
    """Codes of the filters it failed (see REASONS); empty when it passed."""

    @property
    def passed(self) -> bool:
        """Whether the candidate survived every filter."""
        return not self.reasons

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN becomes null)."""
        out = {k: _finite_or_none(v) for k, v in asdict(self).items()}
        return {**out, "reasons": list(self.reasons), "passed": self.passed}


@dataclass(frozen=True)
class DirectionSelection:
    """All candidates with their scores, the chosen one, and the baselines they compare to."""

    candidates: tuple[Candidate, ...]
    chosen: int | None
    """Index into `candidates` of the selected direction; None when none passed."""
    mean_diffs: np.ndarray = field(repr=False)
    """[P, L, d] float64 raw differences of means, P positions in `offsets` order."""
    harmless_means: np.ndarray = field(repr=False)
    """[P, L, d] float64 mean harmless block inputs (the affine ablation's reference points)."""
    offsets: tuple[int, ...]
    baseline_harmful: float
    """Mean refusal log-odds on harmful validation prompts without intervention."""
    baseline_harmless: float
    """Mean refusal log-odds on harmless validation prompts without intervention."""
    refusal_token_ids: tuple[int, ...]
    n_prompts: dict[str, int]
    options: SelectionOptions

    @property
    def best(self) -> Candidate:
        """The selected candidate; raises SelectionError when every candidate was discarded."""
        if self.chosen is None:
            counts = {r: sum(r in c.reasons for c in self.candidates) for r in REASONS}
            raise SelectionError(
                f"no candidate direction passed the filters (of {len(self.candidates)}: "
                + ", ".join(f"{n} failed {r}" for r, n in counts.items() if n)
                + "); see the per-candidate scores"
            )
        return self.candidates[self.chosen]

    @property
    def vector(self) -> np.ndarray:
        """[d] raw difference of means of the selected candidate."""
        best = self.best
        return self.mean_diffs[self.offsets.index(best.position), best.layer]

    @property
    def direction(self) -> np.ndarray:
        """[d] unit direction of the selected candidate."""
        return self.vector / np.linalg.norm(self.vector)

    @property
    def reference(self) -> np.ndarray:
        """[L, d] mean harmless block inputs at the selected position (for affine ablation)."""
        return self.harmless_means[self.offsets.index(self.best.position)]

    def to_json(self) -> dict[str, Any]:
        """Everything but the vectors, JSON-ready."""
        chosen = None if self.chosen is None else self.candidates[self.chosen].to_json()
        return {
            "method": "arditi-2024 difference of means at block inputs (resid_pre)",
            "ablation": self.options.ablation,
            "chosen": chosen,
            "baseline_harmful_score": self.baseline_harmful,
            "baseline_harmless_score": self.baseline_harmless,
            "steering_cutoff": steering_cutoff(
                self.options, self.baseline_harmful, self.baseline_harmless
            ),
            "refusal_token_ids": list(self.refusal_token_ids),
            "positions": list(self.offsets),
            "num_layers": int(self.mean_diffs.shape[1]),
            "hidden_size": int(self.mean_diffs.shape[2]),
            "n_prompts": self.n_prompts,
            "options": asdict(self.options),
            "reasons": REASONS,
            "candidates": [c.to_json() for c in self.candidates],
        }

    def save(self, folder: str | Path) -> Path:
        """Write selection.json and direction.safetensors into `folder`; return the JSON path.

        The safetensors file holds `mean_diffs.pos{offset}` and `harmless_means.pos{offset}`
        [L, d] (raw, every layer, one per position) and, when a candidate was chosen,
        `direction` [d] (unit), `vector` [d] (raw) and `reference` [L, d] (the harmless means at
        its position), all float32.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "selection.json"
        atomic_write_json(path, self.to_json())
        tensors = {f"mean_diffs.pos{o}": self.mean_diffs[p] for p, o in enumerate(self.offsets)}
        for p, o in enumerate(self.offsets):
            tensors[f"harmless_means.pos{o}"] = self.harmless_means[p]
        if self.chosen is not None:
            tensors.update(direction=self.direction, vector=self.vector, reference=self.reference)
        save_file(
            {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()},
            str(folder / "direction.safetensors"),
        )
        return path


def _finite_or_none(value: Any) -> Any:
    """NaN and infinities become None, so the JSON stays standard."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ---- candidates ------------------------------------------------------------------------------


class _MeanSink:
    """A collect sink keeping float64 per-label sums only (no [n, P, L, d] array in memory)."""

    def __init__(self) -> None:
        self.sums: dict[Label, np.ndarray] = {}
        self.counts: dict[Label, int] = {}

    def begin(self, spec: CollectionSpec, prompts: Sequence[str], labels: Sequence[Label]) -> None:
        """Start empty sums."""
        self.sums, self.counts = {}, {}

    def add(self, indices: Sequence[int], labels: Sequence[Label], acts: np.ndarray) -> None:
        """Add each row to its label's sum."""
        for label, row in zip(labels, acts, strict=True):
            if label not in self.sums:
                self.sums[label] = np.zeros(row.shape, dtype=np.float64)
                self.counts[label] = 0
            self.sums[label] += row
            self.counts[label] += 1

    def end(self) -> None:
        """Nothing to finish."""

    def mean(self, label: Label) -> np.ndarray:
        """Mean activation of one label."""
        return self.sums[label] / self.counts[label]


def mean_differences(
    model: Any,
    tokenizer: Any,
    adapter: ModelAdapter,
    harmful: Sequence[str],
    harmless: Sequence[str],
    batch_size: int = 16,
    progress: ProgressLike = None,
) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """[P, L, d] mean(harmful) - mean(harmless) and mean(harmless) block inputs at the
    post-instruction positions, and those positions' offsets."""
    sink = _MeanSink()
    prompts = [*harmful, *harmless]
    labels: list[Label] = ["harmful"] * len(harmful) + ["harmless"] * len(harmless)
    spec = collect(
        model,
        tokenizer,
        adapter,
        prompts,
        labels=labels,
        site="block_in",
        positions="post_instruction",
        fmt="chat",
        batch_size=batch_size,
        sink=sink,
        progress=progress,
    )
    harmless_mean = sink.mean("harmless")
    return sink.mean("harmful") - harmless_mean, harmless_mean, spec.offsets


# ---- vectorised scoring ----------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """One row group's intervention: a unit direction to ablate, or a vector to add at a layer.

    `reference` [L, d] makes the ablation affine: block inputs keep the reference's coordinate
    along the direction, layer by layer, instead of zero.
    """

    direction: torch.Tensor | None = None
    reference: torch.Tensor | None = None
    layer: int | None = None
    vector: torch.Tensor | None = None


def _accepts(model: Any, name: str) -> bool:
    """Whether the model's forward takes a keyword argument `name`."""
    try:
        return name in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


@contextmanager
def _row_interventions(
    adapter: ModelAdapter, plans: Sequence[Plan], rows_per_plan: int, device: torch.device
) -> Iterator[None]:
    """Per-row ablation and addition hooks for a batch tiled plan-major; removed on exit."""
    zero = torch.zeros(adapter.hidden_size, dtype=torch.float64)

    def rows(vectors: list[torch.Tensor]) -> torch.Tensor:
        stacked = torch.stack(vectors).repeat_interleave(rows_per_plan, dim=0)
        return stacked.to(device)[:, None, :]

    def cast(h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return x.to(torch.promote_types(h.dtype, torch.float32))

    handles: list[RemovableHandle] = []
    with _registered(handles):
        if any(p.direction is not None for p in plans):
            R = rows([p.direction if p.direction is not None else zero for p in plans])

            def project(h: torch.Tensor, S: torch.Tensor | None = None) -> torch.Tensor:
                x, r = cast(h, h), cast(h, R)
                out = x - (x * r).sum(-1, keepdim=True) * r
                return (out if S is None else out + cast(h, S)).to(h.dtype)

            for index, block in enumerate(adapter.layers):
                S = None
                if any(p.reference is not None for p in plans):
                    S = rows([_shift(p, index, zero) for p in plans])
                pre = _edit_input(lambda h, S=S: project(h, S))
                handles.append(block.register_forward_pre_hook(pre, with_kwargs=True, prepend=True))
                for writer in _sublayer_outputs(adapter, index):
                    handles.append(
                        writer.register_forward_hook(_edit_output(project), prepend=True)
                    )
        for layer in sorted({p.layer for p in plans if p.layer is not None}):
            A = rows(
                [p.vector if p.layer == layer and p.vector is not None else zero for p in plans]
            )

            def add(h: torch.Tensor, A: torch.Tensor = A) -> torch.Tensor:
                return (cast(h, h) + cast(h, A)).to(h.dtype)

            pre = _edit_input(add)
            handles.append(
                adapter.layers[layer].register_forward_pre_hook(pre, with_kwargs=True, prepend=True)
            )
        yield


def _shift(plan: Plan, layer: int, zero: torch.Tensor) -> torch.Tensor:
    """(r . mu_l) r: the plan's reference component along its direction at `layer` (or 0)."""
    if plan.direction is None or plan.reference is None:
        return zero
    r = plan.direction.to(torch.float64)
    return (r @ plan.reference[layer].to(torch.float64)) * r


def plan_scores(
    model: Any,
    tokenizer: Any,
    adapter: ModelAdapter,
    texts: Sequence[str],
    plans: Sequence[Plan],
    refusal_ids: Sequence[int],
    baseline_logp: torch.Tensor | None = None,
    batch_size: int = 16,
    plans_per_pass: int = 8,
    report: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Refusal log-odds [n_plans, n] (and KL to `baseline_logp` [n, vocab]) under each plan.

    Each prompt batch is tiled once per plan in a chunk, so one forward pass scores up to
    `plans_per_pass` interventions; the result equals running each plan alone.
    """
    encoded = encode(tokenizer, texts)
    pad_id = pad_token_id(tokenizer)
    device = model_device(model)
    extra = {"logits_to_keep": 1} if _accepts(model, "logits_to_keep") else {}
    keep_positions = _accepts(model, "position_ids")
    ids = sorted({int(t) for t in refusal_ids})
    scores = np.empty((len(plans), len(texts)))
    kls = None if baseline_logp is None else np.empty((len(plans), len(texts)))
    done = 0
    with eval_mode(model), torch.inference_mode():
        for batch in length_sorted_batches([len(e) for e in encoded], batch_size):
            inputs = left_pad([encoded[i] for i in batch], pad_id, device)
            if not keep_positions:
                inputs.pop("position_ids")
            for start in range(0, len(plans), plans_per_pass):
                chunk = plans[start : start + plans_per_pass]
                tiled = {k: v.repeat(len(chunk), 1) for k, v in inputs.items()}
                with _row_interventions(adapter, chunk, len(batch), device):
                    logits = model(**tiled, **extra).logits[:, -1, :].to(torch.float64).cpu()
                rows = slice(start, start + len(chunk))
                scores[rows, batch] = _log_odds(logits, ids).view(len(chunk), -1).numpy()
                if kls is not None and baseline_logp is not None:
                    base = baseline_logp[batch].repeat(len(chunk), 1)
                    kls[rows, batch] = kl_divergence(base, logits).reshape(len(chunk), -1)
                done += len(chunk) * len(batch)
                if report is not None:
                    report(done)
    return scores, kls


def _log_odds(logits: torch.Tensor, ids: Sequence[int]) -> torch.Tensor:
    """Per-row logsumexp over refusal ids minus logsumexp over the rest (as `refusal_score`)."""
    in_set = torch.zeros(logits.shape[1], dtype=torch.bool)
    in_set[list(ids)] = True
    return torch.logsumexp(logits[:, in_set], -1) - torch.logsumexp(logits[:, ~in_set], -1)


# ---- selection -------------------------------------------------------------------------------


def _check_sets(
    harmful_train: Sequence[str],
    harmless_train: Sequence[str],
    harmful_val: Sequence[str],
    harmless_val: Sequence[str],
) -> None:
    """Both pairs valid, and validation prompts disjoint from training prompts."""
    check_pair(harmful_train, harmless_train)
    check_pair(harmful_val, harmless_val)
    shared = (set(harmful_train) | set(harmless_train)) & (set(harmful_val) | set(harmless_val))
    if shared:
        raise PromptError(
            f"{len(shared)} validation prompt(s) are also training prompts, e.g. "
            f"{sorted(shared)[0]!r}; Arditi's selection needs disjoint sets"
        )


def steering_cutoff(
    opts: SelectionOptions, baseline_harmful: float, baseline_harmless: float
) -> float:
    """The numeric steering threshold: the option itself, or the midpoint of the baselines."""
    if opts.steering_threshold == "midpoint":
        return 0.5 * (baseline_harmful + baseline_harmless)
    return float(opts.steering_threshold)


def _filter_reasons(
    layer: int,
    norm: float,
    kl: float,
    steering: float,
    num_layers: int,
    opts: SelectionOptions,
    steering_min: float,
) -> tuple[str, ...]:
    """Codes of the filters a candidate fails, in REASONS order."""
    if norm == 0.0:
        return ("zero",)
    failed = {
        "layer": layer >= opts.max_layer_fraction * num_layers,
        "kl": not kl <= opts.kl_threshold,
        "steering": not steering > steering_min,
    }
    return tuple(code for code, bad in failed.items() if bad)


def _score_candidates(
    model: Any,
    tokenizer: Any,
    adapter: ModelAdapter,
    vectors: list[np.ndarray],
    layers: list[int],
    references: list[np.ndarray | None],
    harmful: list[str],
    harmless: list[str],
    opts: SelectionOptions,
    progress: ProgressLike,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per candidate: mean ablated harmful score, mean steered harmless score, mean KL."""
    ids = refusal_tokens(tokenizer)
    ablations = [
        Plan(
            direction=torch.as_tensor(v / np.linalg.norm(v)),
            reference=None if ref is None else torch.as_tensor(ref),
        )
        for v, ref in zip(vectors, references, strict=True)
    ]
    steerings = [
        Plan(layer=layer, vector=torch.as_tensor(opts.steering_coeff * v))
        for v, layer in zip(vectors, layers, strict=True)
    ]
    baseline_logp = next_token_logprobs(model, tokenizer, harmless, opts.batch_size)
    n_first = len(vectors) * len(harmful)
    tick = progress_callback(progress, n_first + 2 * len(vectors) * len(harmless), "candidates")
    kw: dict[str, Any] = {"batch_size": opts.batch_size, "plans_per_pass": opts.candidates_per_pass}
    ablated, _ = plan_scores(model, tokenizer, adapter, harmful, ablations, ids, report=tick, **kw)
    on_harmless, kls = plan_scores(
        model,
        tokenizer,
        adapter,
        harmless,
        ablations + steerings,
        ids,
        baseline_logp,
        report=lambda n: tick(n_first + n),
        **kw,
    )
    assert kls is not None
    n = len(vectors)
    return ablated.mean(axis=1), on_harmless[n:].mean(axis=1), kls[:n].mean(axis=1)


def select_direction(
    model: Any,
    tokenizer: Any,
    adapter: ModelAdapter,
    harmful_train: Sequence[str],
    harmless_train: Sequence[str],
    harmful_val: Sequence[str],
    harmless_val: Sequence[str],
    options: SelectionOptions | None = None,
    progress: ProgressLike = None,
) -> DirectionSelection:
    """Score every (layer, post-instruction position) candidate and pick Arditi's direction.

    Prompts are plain texts, formatted with the chat template (or skindeep's fallback). The
    result keeps every candidate's scores; `.best`/`.direction` raise SelectionError when no
    candidate passed the filters.
    """
    opts = options or SelectionOptions()
    if opts.batch_size < 1 or opts.candidates_per_pass < 1:
        raise ValueError("batch_size and candidates_per_pass must be >= 1")
    if opts.ablation not in ABLATION_FORMS:
        raise SelectionError(f"ablation must be one of {ABLATION_FORMS}, got {opts.ablation!r}")
    if isinstance(opts.steering_threshold, str) and opts.steering_threshold != "midpoint":
        raise SelectionError(
            f"steering_threshold must be a number or 'midpoint', got {opts.steering_threshold!r}"
        )
    _check_sets(harmful_train, harmless_train, harmful_val, harmless_val)
    diffs, harmless_means, offsets = mean_differences(
        model, tokenizer, adapter, harmful_train, harmless_train, opts.batch_size, progress
    )
    n_pos, n_layers, _ = diffs.shape
    norms = np.linalg.norm(diffs, axis=-1)  # [P, L]
    norms[norms <= 1e-7 * max(float(norms.max()), 1e-30)] = 0.0
    grid = [(layer, p) for layer in range(n_layers) for p in range(n_pos)]
    live = [(layer, p) for layer, p in grid if norms[p, layer] > 0]
    fmt_adapter = formatting_adapter(adapter, tokenizer, None)
    harmful = format_texts(fmt_adapter, harmful_val, "chat")
    harmless = format_texts(fmt_adapter, harmless_val, "chat")
    ablated, steered, kls = _score_candidates(
        model,
        tokenizer,
        adapter,
        [diffs[p, layer] for layer, p in live],
        [layer for layer, _ in live],
        [harmless_means[p] if opts.ablation == "affine" else None for _, p in live],
        harmful,
        harmless,
        opts,
        progress,
    )
    scored = {key: (ablated[i], steered[i], kls[i]) for i, key in enumerate(live)}
    ids = refusal_tokens(tokenizer)
    baseline_harmful = float(refusal_score(model, tokenizer, harmful, ids).mean())
    baseline_harmless = float(refusal_score(model, tokenizer, harmless, ids).mean())
    steering_min = steering_cutoff(opts, baseline_harmful, baseline_harmless)
    template = fmt_adapter.post_instruction_tokens()
    candidates = []
    for layer, p in grid:
        abl, steer, kl = (float(x) for x in scored.get((layer, p), (math.nan,) * 3))
        norm = float(norms[p, layer])
        candidates.append(
            Candidate(
                layer=layer,
                position=offsets[p],
                token=str(tokenizer.convert_ids_to_tokens(template[offsets[p]])),
                norm=norm,
                ablation_score=abl,
                steering_score=steer,
                kl=kl,
                reasons=_filter_reasons(layer, norm, kl, steer, n_layers, opts, steering_min),
            )
        )
    passed = [i for i, c in enumerate(candidates) if c.passed]
    return DirectionSelection(
        candidates=tuple(candidates),
        chosen=min(passed, key=lambda i: candidates[i].ablation_score) if passed else None,
        mean_diffs=diffs,
        harmless_means=harmless_means,
        offsets=tuple(offsets),
        baseline_harmful=baseline_harmful,
        baseline_harmless=baseline_harmless,
        refusal_token_ids=tuple(ids),
        n_prompts={
            "harmful_train": len(harmful_train),
            "harmless_train": len(harmless_train),
            "harmful_val": len(harmful_val),
            "harmless_val": len(harmless_val),
        },
        options=opts,
    )
