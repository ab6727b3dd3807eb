"""Arditi et al. (2024)'s refusal-direction selection, scored without generation.

Candidates are differences of means (harmful - harmless training prompts) of the block inputs
(resid_pre) at every layer and every post-instruction template position. Each candidate is
scored on validation prompts: the refusal score on harmful prompts with the direction ablated
at every layer, the refusal score on harmless prompts with the raw vector added to its layer's
input (steering), and the next-token KL on harmless prompts under ablation (Arditi's KL filter,
on the validation split). Candidates at layers >= 0.8 L, with KL > 0.1 or with steering score
<= 0 are discarded; the lowest ablated refusal score wins. With `degenerate_check` on (off by
default: Arditi's method), the survivors are also generated from in rank order under ablation
and the first whose answers to the harmful validation prompts rarely loop wins
(`selection.degenerate`).

`SelectionOptions(ablation="affine")` scores ablation in its affine form (Marshall et al. 2024):
block inputs keep the mean harmless coordinate along the direction instead of zero, for models
whose harmless activations sit far from the origin along it (the organisms do).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from skindeep.evaluation.logits import next_token_logprobs, refusal_score, refusal_tokens
from skindeep.interventions.ablation import ablation_form
from skindeep.models.adapter import ModelAdapter
from skindeep.models.chat import format_prompts, post_instruction_tokens
from skindeep.models.loading import LoadedModel
from skindeep.prompts import check_disjoint, check_pair
from skindeep.runtime import ProgressLike, progress_callback
from skindeep.selection.candidates import mean_differences
from skindeep.selection.options import SelectionOptions, filter_reasons, steering_cutoff
from skindeep.selection.result import Candidate, DirectionSelection
from skindeep.selection.scoring import Plan, plan_scores


def _check_sets(
    harmful_train: Sequence[str],
    harmless_train: Sequence[str],
    harmful_val: Sequence[str],
    harmless_val: Sequence[str],
) -> None:
    """Both pairs valid, and validation prompts disjoint from training prompts."""
    check_pair(harmful_train, harmless_train)
    check_pair(harmful_val, harmless_val)
    check_disjoint(
        [*harmful_val, *harmless_val],
        [*harmful_train, *harmless_train],
        "validation prompt(s) are also training prompts",
        "Arditi's selection needs disjoint sets",
    )


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
            ablation=ablation_form(opts.ablation, ref),
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
    lm: LoadedModel,
    harmful_train: Sequence[str],
    harmless_train: Sequence[str],
    harmful_val: Sequence[str],
    harmless_val: Sequence[str],
    options: SelectionOptions | None = None,
    progress: ProgressLike = None,
) -> DirectionSelection:
    """Score every (layer, post-instruction position) candidate and pick Arditi's direction.

    Prompts are plain texts, formatted with the chat template (or skindeep's fallback); the
    validation prompts must be disjoint from the training ones. The result keeps every
    candidate's scores; `.best`/`.direction` raise SelectionError when no candidate passed.

    >>> h = organism_prompts(True, "train", n=24).prompts
    >>> l = organism_prompts(False, "train", n=24).prompts
    >>> sel = select_direction(micro_dpo, h[:16], l[:16], h[16:], l[16:])
    >>> sel.direction.shape == (micro_dpo.adapter.hidden_size,)
    True
    >>> sel.best.kl <= SelectionOptions().kl_threshold
    True
    """
    opts = options or SelectionOptions()
    model, tokenizer, adapter = lm.model, lm.tokenizer, lm.adapter
    _check_sets(harmful_train, harmless_train, harmful_val, harmless_val)
    diffs, harmless_means, offsets = mean_differences(
        model, tokenizer, adapter, harmful_train, harmless_train, opts.batch_size, progress
    )
    n_pos, n_layers, _ = diffs.shape
    norms = np.linalg.norm(diffs, axis=-1)  # [P, L]
    norms[norms <= 1e-7 * max(float(norms.max()), 1e-30)] = 0.0
    grid = [(layer, p) for layer in range(n_layers) for p in range(n_pos)]
    live = [(layer, p) for layer, p in grid if norms[p, layer] > 0]
    harmful = format_prompts(tokenizer, harmful_val, "chat")
    harmless = format_prompts(tokenizer, harmless_val, "chat")
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
    template = post_instruction_tokens(tokenizer)
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
                reasons=filter_reasons(layer, norm, kl, steer, n_layers, opts, steering_min),
            )
        )
    passed = [i for i, c in enumerate(candidates) if c.passed]
    chosen = min(passed, key=lambda i: candidates[i].ablation_score) if passed else None
    if opts.degenerate_check and passed:
        from skindeep.selection.degenerate import check_in_rank_order

        candidates, chosen = check_in_rank_order(
            lm, candidates, (diffs, harmless_means, offsets), harmful_val, opts, progress
        )
    return DirectionSelection(
        candidates=tuple(candidates),
        chosen=chosen,
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
