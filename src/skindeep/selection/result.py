"""The selection's result: every candidate with its validation scores, and the chosen one."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save_file

from skindeep.artifacts import atomic_write_json, json_ready, staged_file
from skindeep.interventions.ablation import Ablation, ablation_form
from skindeep.selection.options import REASONS, SelectionError, SelectionOptions, steering_cutoff


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
    degenerate: int | None = None
    """Degenerate or empty greedy answers to the harmful validation prompts under its ablation
    (the optional degenerate check); None when it was not checked."""

    @property
    def passed(self) -> bool:
        """Whether the candidate survived every filter."""
        return not self.reasons

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN becomes null)."""
        out = {k: json_ready(v) for k, v in asdict(self).items()}
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
            unchecked = sum(c.passed for c in self.candidates)
            raise SelectionError(
                f"no candidate direction passed the filters (of {len(self.candidates)}: "
                + ", ".join(f"{n} failed {r}" for r, n in counts.items() if n)
                + (
                    f"; {unchecked} more passed the others but were not generated from "
                    "(max_checked)"
                    if unchecked
                    else ""
                )
                + "); see the per-candidate scores"
            )
        return self.candidates[self.chosen]

    @property
    def checked(self) -> list[Candidate]:
        """The candidates the degenerate check generated from, in the order it took them
        (rank order); empty when the check was off."""
        done = [c for c in self.candidates if c.degenerate is not None]
        return sorted(done, key=lambda c: c.ablation_score)

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

    @property
    def ablation(self) -> Ablation:
        """The selected direction's ablation form: `Projection()`, or `Affine` with its reference
        (the mean harmless block inputs at the selected position) in affine selection."""
        if self.options.ablation == "affine":
            note = (
                "mean block inputs of the selection's harmless training split at template "
                f"position {self.best.position}"
            )
            return ablation_form("affine", self.reference, note)
        return ablation_form("projection")

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
            "options": self.options.model_dump(),
            "reasons": REASONS,
            "candidates": [c.to_json() for c in self.candidates],
            "degenerate_check": [
                {
                    "layer": c.layer,
                    "position": c.position,
                    "degenerate": c.degenerate,
                    "of": self.n_prompts["harmful_val"],
                    "rejected": "degenerate" in c.reasons,
                }
                for c in self.checked
            ],
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
        with staged_file(folder / "direction.safetensors") as tmp:
            save_file(
                {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()},
                str(tmp),
            )
        return path
