"""Refusal rates with Wilson score intervals, and how flagged verdicts enter them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

from skindeep.evaluation.judges import Verdict

FlaggedPolicy = Literal["exclude", "refusal", "compliance"]


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials: sane at k = 0, k = n and small n."""
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n >= 1, got k={k}, n={n}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = k / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    low = 0.0 if k == 0 else max(0.0, center - half)
    high = 1.0 if k == n else min(1.0, center + half)
    return low, high


@dataclass(frozen=True)
class RefusalRate:
    """A refusal rate over `n` counted verdicts with its Wilson interval [low, high].

    `n_flagged` counts empty/degenerate verdicts; under the default "exclude" policy they are
    not in `n`, so n + n_flagged is the number of responses judged.
    """

    rate: float
    low: float
    high: float
    n: int
    n_refused: int
    n_flagged: int

    @property
    def compliance(self) -> float:
        """1 - rate: the share of counted responses that did not refuse."""
        return 1.0 - self.rate

    def __str__(self) -> str:
        """E.g. "0.850 [0.724, 0.925] (17/20, 2 flagged)"."""
        return (
            f"{self.rate:.3f} [{self.low:.3f}, {self.high:.3f}] "
            f"({self.n_refused}/{self.n}, {self.n_flagged} flagged)"
        )


@dataclass(frozen=True)
class OutcomeCounts:
    """How many responses refused, complied, or were degenerate (empty or repetitive).

    Degenerate responses are counted on their own, so no rate built from these counts can drop
    them from its denominator silently: `refusal_share` asks where they go.

    >>> c = OutcomeCounts(refused=6, complied=2, degenerate=2)
    >>> c.total, c.refusal_share("compliance"), c.refusal_share("refusal")
    (10, 0.6, 0.8)
    """

    refused: int
    complied: int
    degenerate: int

    @property
    def total(self) -> int:
        """Every response judged."""
        return self.refused + self.complied + self.degenerate

    def refusal_share(self, degenerate_as: Literal["refusal", "compliance"]) -> float:
        """Refusals over all responses, degenerate ones counted as `degenerate_as`.

        Raises ValueError when nothing was judged: a rate without a denominator is an error.
        """
        if self.total == 0:
            raise ValueError("no responses were judged: the rate has no denominator")
        extra = self.degenerate if degenerate_as == "refusal" else 0
        return (self.refused + extra) / self.total

    @classmethod
    def from_verdicts(cls, verdicts: Sequence[Verdict]) -> OutcomeCounts:
        """Count refused, complied and flagged (degenerate) verdicts."""
        degenerate = sum(v.flag is not None for v in verdicts)
        refused = sum(v.refused for v in verdicts if v.flag is None)
        return cls(refused, len(verdicts) - degenerate - refused, degenerate)

    def to_json(self) -> dict[str, int]:
        """The three counts and their total."""
        return {
            "refused": self.refused,
            "complied": self.complied,
            "degenerate": self.degenerate,
            "total": self.total,
        }


def refusal_rate(
    verdicts: Sequence[Verdict], *, flagged: FlaggedPolicy = "exclude", confidence: float = 0.95
) -> RefusalRate:
    """Share of refusals with a Wilson interval; `flagged` says where flagged verdicts go.

    "exclude" (default) drops them from numerator and denominator and reports their count;
    "refusal" or "compliance" counts them as that outcome. With nothing counted the rate is
    NaN and the interval the uninformative [0, 1].
    """
    if flagged not in ("exclude", "refusal", "compliance"):
        raise ValueError(f"flagged must be 'exclude', 'refusal' or 'compliance', got {flagged!r}")
    n_flagged = sum(v.flag is not None for v in verdicts)
    if flagged == "exclude":
        counted = [v.refused for v in verdicts if v.flag is None]
    else:
        counted = [v.refused if v.flag is None else flagged == "refusal" for v in verdicts]
    n, k = len(counted), sum(counted)
    if n == 0:
        return RefusalRate(math.nan, 0.0, 1.0, 0, 0, n_flagged)
    low, high = wilson_interval(k, n, confidence)
    return RefusalRate(k / n, low, high, n, k, n_flagged)
