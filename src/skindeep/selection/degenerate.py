"""The selection's optional degenerate check: generate under each candidate's ablation.

Arditi's filters read only the next token, so a candidate whose ablation makes the model loop a
few tokens later ("here is you you you ...") passes them. With `degenerate_check` on, the
candidates that passed are taken in rank order (lowest ablated refusal score first); each is
ablated as the final ablation will be (every layer, the selection's form and reference) while
the model answers the harmful *validation* prompts greedily, and the judges' flag (empty or
degenerate, `evaluation.judges.output_flag`) is counted. The first candidate whose share is at
most `max_degenerate` is chosen; every checked candidate keeps its count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from skindeep.evaluation import GenerationOptions, measure_refusal
from skindeep.interventions.ablation import Ablation, AblationForm, ablation_form
from skindeep.interventions.hooks import ablate
from skindeep.models.loading import LoadedModel
from skindeep.runtime import ProgressLike, progress_callback
from skindeep.selection.options import SelectionOptions
from skindeep.selection.result import Candidate


def degenerate_count(
    lm: LoadedModel,
    direction: np.ndarray,
    ablation: Ablation,
    prompts: Sequence[str],
    opts: SelectionOptions,
) -> int:
    """Flagged (degenerate or empty) greedy answers to the plain `prompts`, in the chat format
    the selection scores them in, with `direction` ablated at every layer in form `ablation`."""
    generation = GenerationOptions(
        max_new_tokens=opts.degenerate_check_tokens, batch_size=opts.batch_size, fmt="chat"
    )
    with ablate(lm.model, lm.adapter, direction, mode="all_layers", ablation=ablation):
        return measure_refusal(lm, prompts, options=generation).counts.degenerate


def candidate_form(
    candidate: Candidate,
    diffs: np.ndarray,
    harmless_means: np.ndarray,
    offsets: Sequence[int],
    form: AblationForm,
) -> tuple[np.ndarray, Ablation]:
    """A candidate's unit direction and ablation form, as `DirectionSelection` gives the chosen
    one to the final ablation (affine: the harmless means at its position)."""
    p = list(offsets).index(candidate.position)
    vector = diffs[p, candidate.layer]
    reference = harmless_means[p] if form == "affine" else None
    return vector / np.linalg.norm(vector), ablation_form(form, reference)


def check_in_rank_order(
    lm: LoadedModel,
    candidates: Sequence[Candidate],
    means: tuple[np.ndarray, np.ndarray, Sequence[int]],
    prompts: Sequence[str],
    opts: SelectionOptions,
    progress: ProgressLike = None,
) -> tuple[list[Candidate], int | None]:
    """Generate under the candidates that passed the filters, in rank order, at most
    `opts.max_checked` of them. `means` = ([P, L, d] differences of means, [P, L, d] harmless
    means, the P position offsets). Returns the candidates with the checked ones' counts (and
    the "degenerate" reason where rejected) and the chosen index, None when every checked
    candidate was rejected."""
    passed = [i for i, c in enumerate(candidates) if c.passed]
    ranked = sorted(passed, key=lambda i: (candidates[i].ablation_score, i))
    out = list(candidates)
    limit = opts.max_degenerate * len(prompts)
    tick = progress_callback(progress, min(len(ranked), opts.max_checked), "degenerate check")
    for done, i in enumerate(ranked[: opts.max_checked], start=1):
        direction, ablation = candidate_form(out[i], *means, opts.ablation)
        n = degenerate_count(lm, direction, ablation, prompts, opts)
        tick(done)
        if n <= limit:
            out[i] = replace(out[i], degenerate=n)
            return out, i
        out[i] = replace(out[i], degenerate=n, reasons=(*out[i].reasons, "degenerate"))
    return out, None
