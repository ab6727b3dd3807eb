"""Vectorised candidate scoring: many interventions in one forward pass, one per row group.

Each prompt batch is tiled once per plan; the hooks give every row group its own direction to
ablate (in the plan's `Ablation` form) or vector to add, so one pass scores up to
`plans_per_pass` candidates and the result equals running each plan alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.hooks import RemovableHandle

from skindeep.evaluation.logits import kl_divergence, refusal_log_odds
from skindeep.interventions.ablation import Ablation, Projection
from skindeep.interventions.hooks import all_layer_hooks, edit_input, registered
from skindeep.models.adapter import ModelAdapter
from skindeep.runtime import batches, encode, model_device, pad_token_id, supported_kwargs


@dataclass(frozen=True, eq=False)
class Plan:
    """One row group's intervention: a unit direction to ablate (in form `ablation`, at every
    layer as `interventions.ablate` does), or a vector to add to the input of block `layer`."""

    direction: torch.Tensor | None = None
    ablation: Ablation = field(default_factory=Projection)
    layer: int | None = None
    vector: torch.Tensor | None = None


def _cast(h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """`x` in h's dtype promoted to at least float32 (the precision every edit runs in)."""
    return x.to(torch.promote_types(h.dtype, torch.float32))


@contextmanager
def row_interventions(
    adapter: ModelAdapter, plans: Sequence[Plan], rows_per_plan: int, device: torch.device
) -> Iterator[None]:
    """Per-row ablation and addition hooks for a batch tiled plan-major; removed on exit."""
    zero = torch.zeros(adapter.hidden_size, dtype=torch.float64)
    n_layers = adapter.num_layers

    def rows(vectors: list[torch.Tensor]) -> torch.Tensor:
        stacked = torch.stack(vectors).repeat_interleave(rows_per_plan, dim=0)
        return stacked.to(device)[:, None, :]

    handles: list[RemovableHandle] = []
    with registered(handles):
        if any(p.direction is not None for p in plans):
            R = rows([p.direction if p.direction is not None else zero for p in plans])
            shifts = [
                p.ablation.shifts(p.direction.to(torch.float64)[:, None], n_layers)
                if p.direction is not None
                else [None] * n_layers
                for p in plans
            ]

            def project(h: torch.Tensor, S: torch.Tensor | None = None) -> torch.Tensor:
                x, r = _cast(h, h), _cast(h, R)
                out = x - (x * r).sum(-1, keepdim=True) * r
                return (out if S is None else out + _cast(h, S)).to(h.dtype)

            def block_input(index: int) -> Callable[[torch.Tensor], torch.Tensor]:
                per_plan = [s[index] for s in shifts]
                if all(s is None for s in per_plan):
                    return project
                S = rows([zero if s is None else s for s in per_plan])
                return lambda h: project(h, S)

            all_layer_hooks(adapter, block_input, project, handles)
        for layer in sorted({p.layer for p in plans if p.layer is not None}):
            A = rows(
                [p.vector if p.layer == layer and p.vector is not None else zero for p in plans]
            )

            def add(h: torch.Tensor, A: torch.Tensor = A) -> torch.Tensor:
                return (_cast(h, h) + _cast(h, A)).to(h.dtype)

            pre = edit_input(add)
            handles.append(
                adapter.layers[layer].register_forward_pre_hook(pre, with_kwargs=True, prepend=True)
            )
        yield


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
    device = model_device(model)
    extra = supported_kwargs(model, logits_to_keep=1)
    scores = np.empty((len(plans), len(texts)))
    kls = None if baseline_logp is None else np.empty((len(plans), len(texts)))
    done = 0
    runs = batches(model, encoded, pad_id=pad_token_id(tokenizer), batch_size=batch_size)
    with runs:
        for batch in runs:
            rows_of = batch.indices
            for start in range(0, len(plans), plans_per_pass):
                chunk = plans[start : start + plans_per_pass]
                tiled = {k: v.repeat(len(chunk), 1) for k, v in batch.inputs.items()}
                with row_interventions(adapter, chunk, len(rows_of), device):
                    logits = model(**tiled, **extra).logits[:, -1, :].to(torch.float64).cpu()
                rows = slice(start, start + len(chunk))
                odds = refusal_log_odds(logits, refusal_ids)
                scores[rows, rows_of] = odds.view(len(chunk), -1).numpy()
                if kls is not None and baseline_logp is not None:
                    base = baseline_logp[rows_of].repeat(len(chunk), 1)
                    kls[rows, rows_of] = kl_divergence(base, logits).reshape(len(chunk), -1)
                done += len(chunk) * len(rows_of)
                if report is not None:
                    report(done)
    return scores, kls
