"""What a collection run reads (layers, site, positions, format) and the sink interface.

The spec travels to every sink and is stored beside written activations, so a result always
says which residual it holds: block outputs come from hooks, so by default the last layer is the
raw residual, not the final-normed `hidden_states[-1]` of transformers (SPEC 1); with
`last_layer="normed"` it is read after the final norm, as the papers' reference codes do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol

import numpy as np

Label = int | str
"""A prompt's class (e.g. "harmful"/"harmless" or 1/0); must survive a JSON round trip."""

Positions = Literal["last", "post_instruction"] | Sequence[int]
"""`last`: the last real token; `post_instruction`: every chat-template token after the user
message; or explicit negative offsets from the end of each prompt (-1 is the last token)."""

LAST_LAYER_NOTES: dict[str, str] = {
    "raw": "raw residual: block outputs are read with forward hooks, so the last layer is not "
    "passed through the final norm (transformers' hidden_states[-1] is)",
    "normed": "after the final norm: the last layer is read at the output of the model's final "
    "norm, i.e. transformers' hidden_states[-1] (every other layer is a raw block output), as "
    "the Skin-Deep reference code reads it",
}
"""What each `CollectionSpec.last_layer` value means, for reports."""

LAST_LAYER_NOTE = LAST_LAYER_NOTES["raw"]
"""The default (`raw`) convention's note."""


@dataclass(frozen=True)
class CollectionSpec:
    """The settings and shape of one collection run, shared by its sinks and stored with it."""

    layers: tuple[int, ...]
    """Model layer indices read, ascending; axis -2 of every activation array follows them."""
    site: str
    """`block_out` (residual after block l, hidden_states[l+1]) or `block_in` (before it)."""
    positions: str | tuple[int, ...]
    """`last`, `post_instruction`, or the explicit offsets asked for."""
    offsets: tuple[int, ...]
    """The negative token offsets actually read, e.g. (-1,) for `last`."""
    fmt: str
    """`raw` prompt text or `chat` template (of `template`)."""
    hidden_size: int
    num_layers: int
    n_prompts: int
    n_tokens: int
    model: str
    """Model class name, for reports."""
    dtype: str
    """Dtype of the model's weights; activations are always stored as float32."""
    template: str | None = None
    """`name#template-hash` of the tokenizer whose chat template formatted the prompts (chat
    format only; `#fallback` when it had none and skindeep's fallback format was used)."""
    last_layer: str = "raw"
    """`raw`: the last block's raw residual (hooks on the block); `normed`: after the final
    norm, transformers' `hidden_states[-1]`, as the papers' reference codes read it
    (LAST_LAYER_NOTES). Only the model's last layer differs between the two."""

    @property
    def squeeze_positions(self) -> bool:
        """True when a prompt's activations are [L, d] (positions='last'), else [P, L, d]."""
        return self.positions == "last"

    @property
    def row_shape(self) -> tuple[int, ...]:
        """Shape of one prompt's activations: (L, d) or (P, L, d)."""
        core = (len(self.layers), self.hidden_size)
        return core if self.squeeze_positions else (len(self.offsets), *core)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CollectionSpec:
        """Rebuild a spec written by `to_json`."""
        fields = dict(data)
        for key in ("layers", "offsets"):
            fields[key] = tuple(fields[key])
        if not isinstance(fields["positions"], str):
            fields["positions"] = tuple(fields["positions"])
        return cls(**fields)


class ActivationSink(Protocol):
    """Receives activations batch by batch (length-sorted order; `indices` give prompt order)."""

    def begin(self, spec: CollectionSpec, prompts: Sequence[str], labels: Sequence[Label]) -> None:
        """Called once before the first batch."""

    def add(self, indices: Sequence[int], labels: Sequence[Label], acts: np.ndarray) -> None:
        """One batch: float32 [b, L, d] (or [b, P, L, d]) for the prompts at `indices`."""

    def end(self) -> None:
        """Called once after the last batch."""


def check_labels(labels: Sequence[Label] | None, n: int) -> list[Label]:
    """Labels as JSON-safe ints/strings, one per prompt (all 0 when None)."""
    if labels is None:
        return [0] * n
    if len(labels) != n:
        raise ValueError(f"got {len(labels)} labels for {n} prompts; expected one per prompt")
    out: list[Label] = []
    for label in labels:
        if isinstance(label, str):
            out.append(label)
        elif isinstance(label, bool | int | np.integer):
            out.append(int(label))
        else:
            raise ValueError(f"label {label!r} is not an int or a string")
    return out


def labelled_prompts(sets: Mapping[Label, Sequence[str]]) -> tuple[list[str], list[Label]]:
    """Concatenate prompt sets into one prompt list with a label per prompt, e.g.
    `labelled_prompts({"harmful": hs, "harmless": hl})`."""
    prompts: list[str] = []
    labels: list[Label] = []
    for label, ps in sets.items():
        prompts.extend(ps)
        labels.extend([label] * len(ps))
    return prompts, labels


class ArraySink:
    """Keeps every prompt's activations in memory, in prompt order: for small runs and tests."""

    def __init__(self) -> None:
        self.spec: CollectionSpec | None = None
        self.labels: list[Label] = []
        self._array: np.ndarray | None = None

    def begin(self, spec: CollectionSpec, prompts: Sequence[str], labels: Sequence[Label]) -> None:
        """Allocate the [n, ...] float32 result."""
        self.spec, self.labels = spec, list(labels)
        self._array = np.zeros((len(prompts), *spec.row_shape), dtype=np.float32)

    def add(self, indices: Sequence[int], labels: Sequence[Label], acts: np.ndarray) -> None:
        """Place the batch's rows at their prompt indices."""
        assert self._array is not None, "begin() was not called"
        self._array[list(indices)] = acts

    def end(self) -> None:
        """Nothing to finish."""

    @property
    def array(self) -> np.ndarray:
        """[n, L, d] or [n, P, L, d] float32 activations in prompt order."""
        if self._array is None:
            raise RuntimeError("no activations collected yet")
        return self._array
