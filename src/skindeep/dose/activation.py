"""Bases from activations: PCA, cPCA and SVD directions of aligned-vs-reference differences."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from skindeep.activations.collect import collect
from skindeep.activations.spec import ArraySink
from skindeep.dose.bases import BasisError, NamedBasis, named_basis
from skindeep.geometry.directions import cohens_d, cpca_subspace, pca_subspace
from skindeep.models.chat import PromptFormat
from skindeep.models.loading import LoadedModel

BasisKind = Literal["pca", "cpca", "svd", "svd-did"]
BASIS_KINDS: tuple[str, ...] = ("pca", "cpca", "svd", "svd-did")


def last_token_activations(
    lm: LoadedModel, prompts: list[str], fmt: PromptFormat, template: Any, batch_size: int
) -> np.ndarray:
    """[n, L, d] block outputs at the last prompt token, every layer."""
    sink = ArraySink()
    collect(
        lm.model,
        lm.tokenizer,
        lm.adapter,
        prompts,
        fmt=fmt,
        template_tokenizer=template,
        batch_size=batch_size,
        sink=sink,
    )
    return sink.array


def _layer_basis(
    kind: str, a: np.ndarray, b: np.ndarray, harmful: np.ndarray, k: int, alpha: float
) -> np.ndarray:
    """[d, <=k] directions at one layer from aligned rows `a` and reference rows `b` [n, d]."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    if kind == "pca":
        diff = a - b  # centered: at most n - 1 directions carry variance
        return pca_subspace(diff, min(k, diff.shape[0] - 1, diff.shape[1])).basis
    if kind == "cpca":
        rank = cpca_subspace(a, b, alpha, 1).spectrum.size
        return cpca_subspace(a, b, alpha, min(k, rank)).basis
    M = (a - b)[harmful]
    if kind == "svd-did":  # M_DiD: harmful columns minus the mean harmless column
        M = M - (a - b)[~harmful].mean(axis=0)
    u, s, _ = np.linalg.svd(M.T, full_matrices=False)
    keep = int(np.sum(s > s[0] * 1e-10)) if s.size and s[0] > 0 else 0
    if keep == 0:
        raise BasisError("the modification matrix is zero at this layer")
    return u[:, : min(k, keep)]


def activation_basis(
    kind: BasisKind,
    aligned: LoadedModel,
    harmful: Sequence[str],
    harmless: Sequence[str],
    base: LoadedModel | None = None,
    layer: int | None = None,
    k_max: int = 8,
    alpha: float = 100.0,
    batch_size: int = 16,
) -> NamedBasis:
    """PCA, cPCA or SVD directions of the aligned model's last-token block outputs (chat format).

    pca: PCA of D_l = H_aligned - H_base over all prompts (Skin-Deep, released code); cpca: top
    eigenvectors of cov(H_aligned) - alpha cov(H_base) (Skin-Deep, paper); svd: left singular
    vectors of M_template = H_aligned - H_base on harmful prompts (the audit's headline matrix),
    or without a base of M_aligned = H_aligned(chat) - H_aligned(raw); svd-did: of M_DiD, those
    harmful columns minus the mean harmless column (the effective-rank audit's difference in
    differences, which cancels what alignment changed on every prompt). The base is fed the aligned
    chat template. `layer` defaults to the Skin-Deep peak layer: the largest |Cohen's d|, harmful
    vs harmless, of the projection onto the layer's first direction (of D_l for pca, as in the
    released code; of the aligned activations for cpca, as in the paper, and for svd).
    """
    if kind not in BASIS_KINDS:
        raise BasisError(f"unknown basis kind {kind!r}; choose one of {', '.join(BASIS_KINDS)}")
    if base is None and kind not in ("svd", "svd-did"):
        raise BasisError(f"{kind} directions are aligned-vs-base differences: pass a base model")
    prompts = [*harmful, *harmless]
    mask = np.array([True] * len(harmful) + [False] * len(harmless))
    h_aligned = last_token_activations(aligned, prompts, "chat", None, batch_size)
    if base is not None:
        h_ref = last_token_activations(base, prompts, "chat", aligned.tokenizer, batch_size)
        reference = f"base {base.source}"
    else:
        h_ref = last_token_activations(aligned, prompts, "raw", None, batch_size)
        reference = "aligned model on raw prompts"
    if h_ref.shape != h_aligned.shape:
        raise BasisError(
            f"aligned and base activations differ in shape: {h_ref.shape} vs "
            f"{h_aligned.shape} (not a version-matched pair)"
        )
    n_layers = h_aligned.shape[1]
    if layer is None:
        effect = []
        for lay in range(n_layers):
            v = _layer_basis(kind, h_aligned[:, lay], h_ref[:, lay], mask, 1, alpha)[:, 0]
            rows = h_aligned[:, lay].astype(np.float64)
            if kind == "pca":  # the released code's d_l projects D_l = H_aligned - H_base
                rows = rows - h_ref[:, lay].astype(np.float64)
            proj = rows @ v
            effect.append(abs(cohens_d(proj[mask], proj[~mask])))
        layer = int(np.nanargmax(effect))
    elif not -n_layers <= layer < n_layers:
        raise BasisError(f"layer {layer} out of range for a model with {n_layers} layers")
    layer %= n_layers
    matrix = _layer_basis(kind, h_aligned[:, layer], h_ref[:, layer], mask, k_max, alpha)
    source = f"{kind} of {aligned.source} vs {reference}, layer {layer}"
    return named_basis(kind, matrix, source, layer)
