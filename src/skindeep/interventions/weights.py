"""Directional ablation baked into the weights of an in-memory copy (Arditi's orthogonalisation).

Diagnostic only: the copy lives in memory for comparison with hook ablation. skindeep has, on
purpose, no function that saves or exports an orthogonalised or ablated checkpoint.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable

import torch
from numpy.typing import ArrayLike
from torch import nn
from transformers.pytorch_utils import Conv1D

from skindeep.errors import SkindeepError
from skindeep.interventions.basis import orthonormal_basis
from skindeep.interventions.hooks import has_active_interventions
from skindeep.models.adapter import LINEAR_TYPES, ModelAdapter


class InexactOrthogonalizationError(SkindeepError):
    """Sublayer outputs are normalised before the residual add, so weight edits are inexact."""


class OrthogonalizationError(SkindeepError):
    """The model has no single output projection per sublayer to orthogonalise."""


class InexactOrthogonalizationWarning(UserWarning):
    """Weight orthogonalisation was done anyway on a model where it does not match hook ablation."""


def _edit(param: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Replace `param` in place by fn(param in float64), cast back to its dtype."""
    with torch.no_grad():
        param.copy_(fn(param.detach().to(torch.float64)).to(param.dtype))


def _orthogonalize_rows(weight: torch.Tensor, U: torch.Tensor) -> None:
    """W <- W - W U U^T for a weight whose rows are residual vectors ([*, d]: W_E, Conv1D)."""
    U = U.to(weight.device)
    _edit(weight, lambda w: w - (w @ U) @ U.T)


def _orthogonalize_columns(weight: torch.Tensor, U: torch.Tensor) -> None:
    """W <- W - U U^T W for a weight whose columns are residual vectors ([d, *]: nn.Linear out)."""
    U = U.to(weight.device)
    _edit(weight, lambda w: w - U @ (U.T @ w))


def _orthogonalize_writer(module: nn.Module, U: torch.Tensor, path: str) -> None:
    """Project U out of everything a linear map writes: its weight and its bias."""
    if isinstance(module, Conv1D):  # y = x W + b, W is [d_in, d_out]
        _orthogonalize_rows(module.weight, U)
    elif isinstance(module, nn.Linear):  # y = x W^T + b, W is [d_out, d_in]
        _orthogonalize_columns(module.weight, U)
    else:
        raise TypeError(f"{path} is a {type(module).__name__}, not one of {LINEAR_TYPES}")
    bias = getattr(module, "bias", None)
    if isinstance(bias, torch.Tensor):
        _orthogonalize_rows(bias, U)


def _position_embeddings(model: nn.Module, adapter: ModelAdapter) -> list[nn.Embedding]:
    """Learned embeddings of width d outside the blocks besides the token embedding (GPT-2 wpe)."""
    inside = {id(m) for m in adapter.layers.modules()}
    skip = {id(adapter.embedding), id(adapter.lm_head)}
    return [
        m
        for m in model.modules()
        if isinstance(m, nn.Embedding)
        and m.embedding_dim == adapter.hidden_size
        and id(m) not in inside | skip
    ]


def _untie_lm_head(model: nn.Module, adapter: ModelAdapter) -> None:
    """Give a tied LM head its own copy of the weight, so orthogonalising W_E leaves it intact."""
    head, emb = adapter.lm_head, adapter.embedding
    if head is None or not adapter.head_is_tied:
        return
    head.weight = nn.Parameter(emb.weight.detach().clone(), requires_grad=emb.weight.requires_grad)
    for config in (getattr(model, "config", None), adapter.config):
        if config is not None and hasattr(config, "tie_word_embeddings"):
            config.tie_word_embeddings = False


def writer_paths(adapter: ModelAdapter, allow_inexact: bool = False) -> list[str]:
    """Module paths of every attention and MLP output projection, after checking that weight
    orthogonalisation can be exact here (InexactOrthogonalizationError, or a warning with
    `allow_inexact`); OrthogonalizationError where a block has no single output projection."""
    if adapter.has_post_sublayer_norm:
        message = (
            f"{type(adapter.model).__name__} normalises sublayer outputs before the residual add, "
            "so orthogonalised weights do not reproduce hook ablation; use `ablate` instead"
        )
        if not allow_inexact:
            raise InexactOrthogonalizationError(message + " (or pass allow_inexact=True)")
        warnings.warn(message, InexactOrthogonalizationWarning, stacklevel=3)
    paths = []
    for index in range(adapter.num_layers):
        layer = adapter.layer(index)
        for name, path in (("attention", layer.attn_out_path), ("MLP", layer.mlp_out_path)):
            if path is None:
                raise OrthogonalizationError(
                    f"block {index} has no single {name} output projection to edit (e.g. a "
                    "mixture of experts); use hook ablation instead"
                )
            paths.append(path)
    return paths


def orthogonalize_weights(
    model: nn.Module,
    adapter: ModelAdapter,
    basis: ArrayLike | torch.Tensor,
    allow_inexact: bool = False,
) -> nn.Module:
    """A deep copy of `model` whose weights never write the span of `basis` to the residual stream.

    Edits, on the copy only: token embeddings W_E <- W_E - W_E U U^T, learned absolute position
    embeddings likewise (GPT-2 wpe), and every attention and MLP output projection
    W_out <- (I - U U^T) W_out with bias b <- b - U U^T b (nn.Linear [d, d_in] and GPT-2 Conv1D
    [d_in, d] both handled). A tied LM head is untied first and keeps the original weight. For
    pre-norm models this equals `ablate(..., "all_layers")` up to float error.

    Where a sublayer output is normalised before the residual add (`has_post_sublayer_norm`:
    Gemma2, Gemma3, OLMo2, post-LN OPT) the weight form is inexact: raises
    InexactOrthogonalizationError, or warns (InexactOrthogonalizationWarning) with
    `allow_inexact=True`. Learned embeddings followed by a norm before the first block are not
    detected. The copy doubles memory; it is never saved.
    """
    if adapter.model is not model:
        raise ValueError("the adapter was built for a different model than the one passed")
    if has_active_interventions(model):
        raise ValueError("leave every ablate/add_activation context before copying the model")
    U = orthonormal_basis(basis, adapter.hidden_size)
    paths = writer_paths(adapter, allow_inexact)
    position_paths = [adapter.path_of(m) for m in _position_embeddings(model, adapter)]

    edited = copy.deepcopy(model)
    edited_adapter = ModelAdapter(edited)
    _untie_lm_head(edited, edited_adapter)
    _orthogonalize_rows(edited_adapter.embedding.weight, U)
    for path in position_paths:
        _orthogonalize_rows(edited.get_submodule(path).weight, U)
    for path in paths:
        _orthogonalize_writer(edited.get_submodule(path), U, path)
    return edited
