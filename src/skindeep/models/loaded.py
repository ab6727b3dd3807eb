"""What loading a model gives: `LoadedModel` (weights in memory) and `DeferredModel` (weights
read on first use, so that a cache hit never reads them)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from skindeep.errors import ModelLoadError
from skindeep.models.adapter import ModelAdapter


@dataclass
class LoadedModel:
    """A model ready for analysis: eval mode, a tokenizer with a pad token, its adapter, and a
    fingerprint of the weights on disk (dtype and device are not part of it)."""

    model: Any
    tokenizer: Any
    adapter: ModelAdapter
    source: str
    fingerprint: str
    gguf_file: str | None = None

    @property
    def dtype(self) -> str:
        """The weights' dtype as a short string ('float32')."""
        return str(next(self.model.parameters()).dtype).removeprefix("torch.")

    @property
    def architecture(self) -> str:
        """The model class name ('LlamaForCausalLM')."""
        return str(type(self.model).__name__)

    @property
    def num_layers(self) -> int:
        """Number of decoder blocks."""
        return self.adapter.num_layers

    @property
    def hidden_size(self) -> int:
        """Residual stream width."""
        return self.adapter.hidden_size

    @property
    def model_type(self) -> str:
        """The config's model_type ('llama'), '?' when it has none."""
        return str(getattr(self.adapter.config, "model_type", "?"))


@dataclass(frozen=True)
class ModelFacts:
    """What a checkpoint's config and the requested dtype say about the model, weights unread."""

    dtype: str
    architecture: str
    num_layers: int
    hidden_size: int
    model_type: str


class DeferredModel(LoadedModel):
    """A `LoadedModel` whose weights load on first use of `.model` or `.adapter`.

    Its tokenizer, fingerprint and `ModelFacts` (dtype, class, depth, width) are there at once,
    so a cache key or a compatibility check needs no weights: a warm audit never loads them.
    On loading, the model is checked against the facts it was described by.
    """

    def __init__(
        self,
        *,
        tokenizer: Any,
        source: str,
        fingerprint: str,
        facts: ModelFacts,
        load: Callable[[], Any],
    ) -> None:
        self.tokenizer = tokenizer
        self.source = source
        self.fingerprint = fingerprint
        self.gguf_file = None
        self.facts = facts
        self._load = load

    def __getattr__(self, name: str) -> Any:
        """Load the weights the first time `model` or `adapter` is asked for."""
        if name not in ("model", "adapter"):
            raise AttributeError(f"{type(self).__name__!s} has no attribute {name!r}")
        model = self._load()
        adapter = ModelAdapter(model, self.tokenizer)
        self.model, self.adapter = model, adapter
        found = ModelFacts(
            LoadedModel.dtype.fget(self),  # type: ignore[attr-defined]
            type(model).__name__,
            adapter.num_layers,
            adapter.hidden_size,
            str(getattr(adapter.config, "model_type", "?")),
        )
        if found != self.facts:
            raise ModelLoadError(
                f"{self.source}: the loaded model ({found}) differs from what its config "
                f"described ({self.facts})"
            )
        return getattr(self, name)

    def __repr__(self) -> str:
        loaded = "loaded" if "model" in self.__dict__ else "weights not loaded"
        return f"DeferredModel({self.source!r}, {loaded})"

    @property
    def dtype(self) -> str:
        return self.facts.dtype

    @property
    def architecture(self) -> str:
        return self.facts.architecture

    @property
    def num_layers(self) -> int:
        return self.facts.num_layers

    @property
    def hidden_size(self) -> int:
        return self.facts.hidden_size

    @property
    def model_type(self) -> str:
        return self.facts.model_type
