"""Content-addressed activation cache: a rerun with the same model, prompts and settings reads
the stored activations instead of running the model.

The key hashes everything the numbers depend on (weights fingerprint, dtype, tokenizer
vocabulary, chat template, prompts, labels, format, positions, site, layers); the folder is
written through `atomic_directory`, so a killed run never leaves a readable half-written entry.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from skindeep.activations.collect import collect, template_tokenizer_of
from skindeep.activations.hooks import LastLayer, Site, normalize_layers
from skindeep.activations.spec import Label, Positions, check_labels
from skindeep.activations.store import METADATA, STORE_FORMAT, ActivationStore, ActivationWriter
from skindeep.artifacts import atomic_directory
from skindeep.cache import cache_root, content_hash
from skindeep.models.chat import PromptFormat
from skindeep.models.loading import LoadedModel
from skindeep.runtime import ProgressLike


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """Hash of what encoding depends on: vocabulary, special tokens, the tokenizer class and,
    for fast tokenizers, the whole pipeline (normaliser, pre-tokenizer, model, post-processor)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    return content_hash(
        {
            "class": type(tokenizer).__name__,
            "vocab": sorted(tokenizer.get_vocab().items()),
            "special": getattr(tokenizer, "special_tokens_map", {}),
            "pipeline": None if backend is None else backend.to_str(),
            "bos_eos": [getattr(tokenizer, k, None) for k in ("add_bos_token", "add_eos_token")],
        }
    )


def activation_key(
    loaded: LoadedModel,
    prompts: Sequence[str],
    labels: Sequence[Label] | None = None,
    *,
    layers: Sequence[int] | None = None,
    site: Site = "block_out",
    positions: Positions = "last",
    fmt: PromptFormat = "raw",
    template_tokenizer: Any | None = None,
    last_layer: LastLayer = "raw",
) -> str:
    """The cache key of a `cached_collect` call (`last_layer` enters it only when `normed`, so
    the keys of raw collections are those they always had). Reads no weights: a
    `DeferredModel` stays unloaded on a cache hit."""
    fmt_tokenizer = template_tokenizer_of(loaded.tokenizer, template_tokenizer)
    enc_tokenizer = fmt_tokenizer if fmt == "chat" else loaded.tokenizer
    key: dict[str, Any] = {
        "store_format": STORE_FORMAT,
        "model": loaded.fingerprint,
        "dtype": f"torch.{loaded.dtype}",
        "tokenizer": tokenizer_fingerprint(enc_tokenizer),
        "chat_template": getattr(enc_tokenizer, "chat_template", None) if fmt == "chat" else None,
        "prompts": list(prompts),
        "labels": check_labels(labels, len(prompts)),
        "fmt": fmt,
        "positions": positions if isinstance(positions, str) else [int(p) for p in positions],
        "site": site,
        "layers": normalize_layers(layers, loaded.num_layers),
    }
    if last_layer != "raw":
        key["last_layer"] = last_layer
    return content_hash(key, length=24)


def cached_collect(
    loaded: LoadedModel,
    prompts: Sequence[str],
    labels: Sequence[Label] | None = None,
    *,
    layers: Sequence[int] | None = None,
    site: Site = "block_out",
    positions: Positions = "last",
    fmt: PromptFormat = "raw",
    template_tokenizer: Any | None = None,
    batch_size: int = 16,
    progress: ProgressLike = None,
    root: Path | None = None,
    refresh: bool = False,
    last_layer: LastLayer = "raw",
) -> ActivationStore:
    """Per-prompt activations from the cache, collecting (and storing) them on a miss.

    Entries live under `root` (default: cache_root()/activations)/<key>; `refresh` recomputes.
    """
    key = activation_key(
        loaded,
        prompts,
        labels,
        layers=layers,
        site=site,
        positions=positions,
        fmt=fmt,
        template_tokenizer=template_tokenizer,
        last_layer=last_layer,
    )
    final = (root or cache_root() / "activations") / key
    if (final / METADATA).is_file() and not refresh:
        return ActivationStore(final)
    with atomic_directory(final) as tmp:
        collect(
            loaded.model,
            loaded.tokenizer,
            loaded.adapter,
            prompts,
            labels=labels,
            layers=layers,
            site=site,
            positions=positions,
            fmt=fmt,
            template_tokenizer=template_tokenizer,
            batch_size=batch_size,
            last_layer=last_layer,
            sink=ActivationWriter(tmp, extra={"source": loaded.source, "key": key}),
            progress=progress,
        )
    return ActivationStore(final)
