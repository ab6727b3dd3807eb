"""Audit one aligned/base pair: check they match, collect (cached) activations, score them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from skindeep.activations import ActivationStore, cached_collect, labelled_prompts
from skindeep.errors import SkindeepError
from skindeep.models import LoadedModel
from skindeep.prompts import PromptSet, check_pair
from skindeep.runtime import ProgressLike
from skindeep.scores.config import AuditConfig
from skindeep.scores.pair import pair_geometry
from skindeep.scores.result import AuditResult, ModelInfo, PromptInfo


class PairMismatchError(SkindeepError):
    """The aligned and base models cannot be compared (architecture, widths, depth, vocabulary)."""


def model_info(loaded: LoadedModel) -> ModelInfo:
    """Identity and shape of a loaded model (a `DeferredModel`'s weights stay unread)."""
    return ModelInfo(
        source=loaded.source,
        fingerprint=loaded.fingerprint,
        architecture=loaded.architecture,
        model_type=loaded.model_type,
        num_layers=loaded.num_layers,
        hidden_size=loaded.hidden_size,
        vocab_size=len(loaded.tokenizer),
        dtype=loaded.dtype,
    )


def _vocab_difference(aligned: LoadedModel, base: LoadedModel) -> str | None:
    """A short description of how the two tokenizer vocabularies differ, or None if equal."""
    va, vb = aligned.tokenizer.get_vocab(), base.tokenizer.get_vocab()
    if va == vb:
        return None
    only_a = sorted(set(va) - set(vb))
    only_b = sorted(set(vb) - set(va))
    moved = sum(1 for t in set(va) & set(vb) if va[t] != vb[t])
    example = (only_a or only_b or ["-"])[0]
    return (
        f"{len(va)} vs {len(vb)} tokens; {len(only_a)} only in aligned, {len(only_b)} only in "
        f"base, {moved} with different ids (e.g. {example!r})"
    )


def check_compatible(aligned: LoadedModel, base: LoadedModel) -> None:
    """Raise PairMismatchError unless both share architecture class, hidden size, depth and
    vocabulary, and are different checkpoints."""
    a, b = model_info(aligned), model_info(base)
    problems = [
        f"{label}: aligned {x} vs base {y}"
        for label, x, y in (
            ("architecture", a.architecture, b.architecture),
            ("hidden size", a.hidden_size, b.hidden_size),
            ("number of layers", a.num_layers, b.num_layers),
        )
        if x != y
    ]
    if a.fingerprint == b.fingerprint:
        problems.append(f"both are the same checkpoint (fingerprint {a.fingerprint}), so D = 0")
    vocab = _vocab_difference(aligned, base)
    if vocab:
        problems.append(f"tokenizer vocabulary: {vocab}")
    if problems:
        raise PairMismatchError(
            f"{aligned.source} and {base.source} are not an aligned/base pair: "
            + "; ".join(problems)
            + ". Pass the base checkpoint the aligned model was trained from."
        )


@dataclass(frozen=True)
class PairStores:
    """The cached activation stores of both models on the same labelled prompts."""

    aligned: ActivationStore
    base: ActivationStore

    @property
    def is_harmful(self) -> np.ndarray:
        """[n] boolean mask of the harmful prompts."""
        return self.aligned.mask("harmful")


def collect_pair(
    aligned: LoadedModel,
    base: LoadedModel,
    harmful: PromptSet,
    harmless: PromptSet,
    config: AuditConfig,
    progress: ProgressLike = None,
) -> PairStores:
    """Activations of both models (from the cache when present); in chat format the base model
    is fed the aligned tokenizer's template."""
    prompts, labels = labelled_prompts({"harmful": harmful, "harmless": harmless})
    template = aligned.tokenizer if config.fmt == "chat" else None
    root = config.cache_dir
    common = dict(
        layers=config.layers, site=config.site, positions="last", fmt=config.fmt,
        last_layer=config.last_layer,
        batch_size=config.batch_size, progress=progress, root=root, refresh=config.refresh,
    )  # fmt: skip
    try:
        store_a = cached_collect(aligned, prompts, labels, **common)
        store_b = cached_collect(base, prompts, labels, template_tokenizer=template, **common)
    except ValueError as exc:  # bad layers, untokenizable prompts: user-fixable
        raise SkindeepError(f"cannot collect activations: {exc}") from exc
    return PairStores(store_a, store_b)


def audit_pair(
    aligned: LoadedModel,
    base: LoadedModel,
    harmful: PromptSet,
    harmless: PromptSet,
    config: AuditConfig | None = None,
    progress: ProgressLike = None,
) -> AuditResult:
    """Skin-Deep audit of one pair: GFS (both variants), subspaces, angles, CKA, layer tests."""
    config = config or AuditConfig()
    check_pair(harmful, harmless)
    check_compatible(aligned, base)
    stores = collect_pair(aligned, base, harmful, harmless, config, progress)
    geometry = pair_geometry(
        stores.aligned.array(),
        stores.base.array(),
        stores.is_harmful,
        config,
        layers=stores.aligned.layers,
    )
    return AuditResult(
        config=config,
        aligned=model_info(aligned),
        base=model_info(base),
        harmful=PromptInfo.of(harmful),
        harmless=PromptInfo.of(harmless),
        spec=stores.aligned.spec,
        stores={"aligned": str(stores.aligned.path), "base": str(stores.base.path)},
        geometry=geometry,
    )
