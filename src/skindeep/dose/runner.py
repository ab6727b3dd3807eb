"""Dose-response of refusal to directional ablation: refusal against k for each basis.

Ablating the first k columns of an ordered basis is dose k. Each dose is measured by the judge
on greedy generations (refused, complied and degenerate counted apart) and by the refusal
score, against random orthonormal nulls of the same k and, when harmless prompts are given,
with the next-token KL on them. Diagnostic only: nothing here saves an ablated model.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from skindeep.activations.collect import collect
from skindeep.activations.spec import ArraySink
from skindeep.dose.bases import BasisError, NamedBasis
from skindeep.dose.options import DoseOptions
from skindeep.dose.result import DoseCurve, DosePoint, DoseResponse, NullBand
from skindeep.evaluation.generation import generate
from skindeep.evaluation.judges import Judge, KeywordJudge
from skindeep.evaluation.logits import (
    kl_divergence,
    next_token_logprobs,
    refusal_score,
    refusal_tokens,
)
from skindeep.evaluation.rates import OutcomeCounts, refusal_rate
from skindeep.interventions import Ablation, AblationMode, Projection, ablate, random_nulls
from skindeep.models.chat import PromptFormat, format_prompts
from skindeep.models.loading import LoadedModel
from skindeep.runtime import ProgressLike, progress_callback


@dataclass(frozen=True)
class _Inputs:
    """What every dose is measured on: plain and formatted prompts, baseline, refusal ids."""

    harmful: list[str]
    harmful_texts: list[str]
    harmless_texts: list[str] | None
    baseline_logp: torch.Tensor | None
    refusal_ids: list[int]


def _measure(
    model: Any, tokenizer: Any, x: _Inputs, k: int, judge: Judge, opts: DoseOptions
) -> DosePoint:
    """One dose under whatever intervention is active: generations, score and KL."""
    responses = generate(
        model,
        tokenizer,
        x.harmful_texts,
        max_new_tokens=opts.max_new_tokens,
        batch_size=opts.batch_size,
    )
    verdicts = judge.judge(x.harmful, responses)
    rate = refusal_rate(verdicts, flagged=opts.flagged)
    scores = refusal_score(model, tokenizer, x.harmful_texts, x.refusal_ids, opts.batch_size)
    kl = None
    if x.harmless_texts and x.baseline_logp is not None:
        logp = next_token_logprobs(model, tokenizer, x.harmless_texts, opts.batch_size)
        kl = float(kl_divergence(x.baseline_logp, logp).mean())
    counts = OutcomeCounts.from_verdicts(verdicts)
    return DosePoint(k, rate, counts, float(scores.mean()), kl, responses[0])


def dose_response(
    lm: LoadedModel,
    bases: Sequence[NamedBasis],
    harmful: Sequence[str],
    harmless: Sequence[str] | None = None,
    options: DoseOptions | None = None,
    *,
    ablation: Ablation | None = None,
    judge: Judge | None = None,
    progress: ProgressLike = None,
) -> DoseResponse:
    """Refusal against k for every basis and for `n_random` random nulls of each k.

    Prompts are plain texts, formatted per `options.fmt`; `judge` defaults to the keyword judge.
    Every k must be available from every basis (BasisError otherwise). `ablation` is the form,
    `Projection()` by default; with `Affine(reference)` (the mean harmless activations at the
    hooked site, see `harmless_reference`) bases and random nulls are ablated against the same
    reference.

    >>> import numpy as np
    >>> harmful = organism_prompts(True, "heldout", n=8)
    >>> harmless = organism_prompts(False, "heldout", n=8)
    >>> basis = named_basis("random", np.eye(micro_dpo.adapter.hidden_size)[:, :2], "e1, e2")
    >>> opts = DoseOptions(ks=(1, 2), max_new_tokens=8)
    >>> res = dose_response(micro_dpo, [basis], harmful, harmless, opts)
    >>> [p.k for p in res.curve("random").points], res.baseline.counts.total
    ([1, 2], 8)
    """
    opts = options or DoseOptions()
    model, tokenizer, adapter = lm.model, lm.tokenizer, lm.adapter
    ablation = ablation or Projection()
    if not harmful:
        raise BasisError("dose-response needs at least one harmful prompt")
    for b in bases:
        b.first(max(opts.ks))  # fail before any generation
    judge = judge or KeywordJudge()
    controls = format_prompts(tokenizer, harmless, opts.fmt) if harmless else None
    x = _Inputs(
        harmful=list(harmful),
        harmful_texts=format_prompts(tokenizer, harmful, opts.fmt),
        harmless_texts=controls,
        baseline_logp=next_token_logprobs(model, tokenizer, controls, opts.batch_size)
        if controls
        else None,
        refusal_ids=refusal_tokens(tokenizer),
    )

    total = 1 + len(opts.ks) * (len(bases) + opts.n_random)
    tick = progress_callback(progress, total, "dose-response")
    done = 0
    where: dict[str, Any] = {"mode": opts.mode, "ablation": ablation}
    if opts.mode == "band":
        where["layers"] = list(opts.layers or ())

    def point(basis: np.ndarray | None, k: int) -> DosePoint:
        nonlocal done
        ctx = nullcontext() if basis is None else ablate(model, adapter, basis, **where)
        with ctx:
            measured = _measure(model, tokenizer, x, k, judge, opts)
        done += 1
        tick(done)
        return measured

    baseline = point(None, 0)
    curves = tuple(
        DoseCurve(b.name, b.source, b.layer, tuple(point(b.first(k), k) for k in opts.ks))
        for b in bases
    )
    d = adapter.hidden_size
    nulls = tuple(
        NullBand(k, tuple(point(U, k) for U in random_nulls(d, k, opts.n_random, opts.seed + k)))
        for k in opts.ks
    )
    return DoseResponse(
        baseline,
        curves,
        nulls,
        opts,
        len(harmful),
        len(harmless or ()),
        ablation.name,
        ablation.note if ablation.name == "affine" else None,
    )


def harmless_reference(
    lm: LoadedModel,
    harmless: Sequence[str],
    mode: AblationMode = "all_layers",
    fmt: PromptFormat = "chat",
    batch_size: int = 16,
) -> np.ndarray:
    """[L, d] mean harmless activations at the last prompt token: block inputs for "all_layers"
    ablation, block outputs for "band" (the reference points of affine ablation)."""
    sink = ArraySink()
    collect(
        lm.model,
        lm.tokenizer,
        lm.adapter,
        list(harmless),
        site="block_in" if mode == "all_layers" else "block_out",
        fmt=fmt,
        batch_size=batch_size,
        sink=sink,
    )
    return sink.array.astype(np.float64).mean(axis=0)
