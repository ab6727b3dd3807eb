"""Loading causal LMs (hub id, folder, GGUF) and the one architecture adapter."""

from skindeep.models.adapter import (
    FALLBACK_TEMPLATE,
    ChatTemplateWarning,
    LayerModules,
    ModelAdapter,
)
from skindeep.models.gguf import gguf_to_checkpoint, smollm2_checkpoint, smollm2_gguf_path
from skindeep.models.loading import LoadedModel, fingerprint_checkpoint, load_model, load_tokenizer

__all__ = [
    "FALLBACK_TEMPLATE",
    "ChatTemplateWarning",
    "LayerModules",
    "LoadedModel",
    "ModelAdapter",
    "fingerprint_checkpoint",
    "gguf_to_checkpoint",
    "load_model",
    "load_tokenizer",
    "smollm2_checkpoint",
    "smollm2_gguf_path",
]
