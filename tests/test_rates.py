"""Wilson intervals against two independent references, and refusal rates with flags."""

from __future__ import annotations

import math

import pytest
from scipy.stats import binomtest, norm

from skindeep.evaluation.judges import Verdict
from skindeep.evaluation.rates import RefusalRate, refusal_rate, wilson_interval

CASES = [(0, 1), (1, 1), (0, 10), (3, 10), (10, 10), (17, 20), (1, 100), (50, 100), (499, 1000)]


def wilson_reference(k: int, n: int, confidence: float) -> tuple[float, float]:
    """The Wilson bounds written as (2k + z^2 -/+ z sqrt(z^2 + 4k(n-k)/n)) / (2(n + z^2))."""
    z = norm.ppf(1 - (1 - confidence) / 2)
    root = z * math.sqrt(z * z + 4 * k * (n - k) / n)
    return (2 * k + z * z - root) / (2 * (n + z * z)), (2 * k + z * z + root) / (2 * (n + z * z))


@pytest.mark.parametrize(("k", "n"), CASES)
@pytest.mark.parametrize("confidence", [0.8, 0.95, 0.99])
def test_wilson_matches_references(k: int, n: int, confidence: float) -> None:
    """Equal to the closed formula and to scipy's binomtest(...).proportion_ci('wilson')."""
    got = wilson_interval(k, n, confidence)
    assert got == pytest.approx(wilson_reference(k, n, confidence), abs=1e-12)
    ci = binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    assert got == pytest.approx((ci.low, ci.high), abs=1e-12)


def test_wilson_edges_and_validation() -> None:
    """All-or-nothing counts pin one bound exactly; bad counts and levels are rejected."""
    assert wilson_interval(0, 7)[0] == 0.0
    assert wilson_interval(7, 7)[1] == 1.0
    low, high = wilson_interval(5, 10)
    assert low < 0.5 < high and low == pytest.approx(1 - high)
    for k, n in [(1, 0), (-1, 5), (6, 5)]:
        with pytest.raises(ValueError, match="0 <= k <= n"):
            wilson_interval(k, n)
    with pytest.raises(ValueError, match="confidence"):
        wilson_interval(1, 2, confidence=1.0)


VERDICTS = [
    Verdict(True),
    Verdict(True),
    Verdict(False),
    Verdict(True),
    Verdict(False, "empty"),
    Verdict(True, "degenerate"),
]


def test_refusal_rate_excludes_flagged_by_default() -> None:
    """Flagged verdicts leave numerator and denominator and are counted separately."""
    rate = refusal_rate(VERDICTS)
    low, high = wilson_interval(3, 4)
    assert rate == RefusalRate(0.75, low, high, n=4, n_refused=3, n_flagged=2)
    assert rate.compliance == pytest.approx(0.25)
    assert str(rate) == f"0.750 [{low:.3f}, {high:.3f}] (3/4, 2 flagged)"


@pytest.mark.parametrize(("policy", "k"), [("refusal", 5), ("compliance", 3)])
def test_refusal_rate_flag_policies(policy: str, k: int) -> None:
    """Flagged verdicts can instead count as refusals or as compliance, whatever they said."""
    rate = refusal_rate(VERDICTS, flagged=policy)  # type: ignore[arg-type]
    assert (rate.n, rate.n_refused, rate.n_flagged) == (6, k, 2)
    assert (rate.low, rate.high) == wilson_interval(k, 6)


def test_refusal_rate_nothing_counted() -> None:
    """No countable verdicts: NaN rate and the uninformative interval, not an error."""
    rate = refusal_rate([Verdict(False, "empty")])
    assert math.isnan(rate.rate) and (rate.low, rate.high, rate.n, rate.n_flagged) == (0, 1, 0, 1)
    assert math.isnan(refusal_rate([]).rate)
    with pytest.raises(ValueError, match="flagged must be"):
        refusal_rate(VERDICTS, flagged="ignore")  # type: ignore[arg-type]
