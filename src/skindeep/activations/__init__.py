"""The activation engine: hooks on decoder blocks, batched collection, streaming statistics,
safetensors storage and a content-addressed cache."""

from skindeep.activations.cached import activation_key, cached_collect, tokenizer_fingerprint
from skindeep.activations.collect import collect, final_normed
from skindeep.activations.hooks import (
    LAST_LAYERS,
    SITES,
    LastLayer,
    Site,
    record_activations,
    run_forward,
)
from skindeep.activations.spec import (
    LAST_LAYER_NOTE,
    LAST_LAYER_NOTES,
    ActivationSink,
    ArraySink,
    CollectionSpec,
    Label,
    Positions,
    labelled_prompts,
)
from skindeep.activations.stats import Moments, StreamingStats
from skindeep.activations.store import ActivationStore, ActivationWriter

__all__ = [
    "LAST_LAYERS",
    "LAST_LAYER_NOTE",
    "LAST_LAYER_NOTES",
    "SITES",
    "ActivationSink",
    "ActivationStore",
    "ActivationWriter",
    "ArraySink",
    "CollectionSpec",
    "Label",
    "LastLayer",
    "Moments",
    "Positions",
    "Site",
    "StreamingStats",
    "activation_key",
    "cached_collect",
    "collect",
    "final_normed",
    "labelled_prompts",
    "record_activations",
    "run_forward",
    "tokenizer_fingerprint",
]
