"""Measuring refusal: greedy generation, judges, rates with Wilson intervals, logit scores, KL.

Names load lazily, so the torch-free parts (options, rates) import without torch.
"""

from skindeep.lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(
        [
            "generate",
            "generate_responses",
            "generate_token_ids",
        ],
        ".generation",
    ),
    **dict.fromkeys(
        [
            "ClassifierJudge",
            "Judge",
            "KeywordJudge",
            "Verdict",
            "output_flag",
        ],
        ".judges",
    ),
    **dict.fromkeys(
        [
            "kl_divergence",
            "next_token_logprobs",
            "refusal_log_odds",
            "refusal_score",
            "refusal_tokens",
        ],
        ".logits",
    ),
    **dict.fromkeys(["NoDenominatorError", "RefusalMeasurement", "measure_refusal"], ".measure"),
    "GenerationOptions": ".options",
    "REFUSAL_KEYWORDS": ".phrases",
    **dict.fromkeys(["OutcomeCounts", "RefusalRate", "refusal_rate", "wilson_interval"], ".rates"),
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
