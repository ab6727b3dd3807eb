"""Measuring refusal: greedy generation, judges, rates with Wilson intervals, logit scores, KL."""

from skindeep.evaluation.generation import (
    GenerationOptions,
    format_prompts,
    generate,
    generate_responses,
    generate_token_ids,
)
from skindeep.evaluation.judges import (
    REFUSAL_KEYWORDS,
    ClassifierJudge,
    Judge,
    KeywordJudge,
    Verdict,
    output_flag,
)
from skindeep.evaluation.logits import (
    kl_divergence,
    next_token_logprobs,
    refusal_score,
    refusal_tokens,
)
from skindeep.evaluation.rates import OutcomeCounts, RefusalRate, refusal_rate, wilson_interval

__all__ = [
    "REFUSAL_KEYWORDS",
    "ClassifierJudge",
    "GenerationOptions",
    "Judge",
    "KeywordJudge",
    "OutcomeCounts",
    "RefusalRate",
    "Verdict",
    "format_prompts",
    "generate",
    "generate_responses",
    "generate_token_ids",
    "kl_divergence",
    "next_token_logprobs",
    "output_flag",
    "refusal_rate",
    "refusal_score",
    "refusal_tokens",
    "wilson_interval",
]
