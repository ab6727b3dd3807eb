"""Loading causal LMs (hub id, folder, GGUF) and the one architecture adapter."""

from skindeep.models.adapter import LayerModules, ModelAdapter
from skindeep.models.chat import (
    FALLBACK_TEMPLATE,
    ChatTemplateWarning,
    PromptFormat,
    format_prompts,
    format_user_turn,
)
from skindeep.models.gguf import gguf_to_checkpoint, smollm2_checkpoint, smollm2_gguf_path
from skindeep.models.loaded import DeferredModel, LoadedModel, ModelFacts
from skindeep.models.loading import fingerprint_checkpoint, load_model, load_tokenizer

__all__ = [
    "FALLBACK_TEMPLATE",
    "ChatTemplateWarning",
    "DeferredModel",
    "LayerModules",
    "LoadedModel",
    "ModelAdapter",
    "ModelFacts",
    "PromptFormat",
    "fingerprint_checkpoint",
    "format_prompts",
    "format_user_turn",
    "gguf_to_checkpoint",
    "load_model",
    "load_tokenizer",
    "smollm2_checkpoint",
    "smollm2_gguf_path",
]
