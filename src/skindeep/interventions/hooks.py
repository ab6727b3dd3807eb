"""Hook-based interventions on the residual stream: directional ablation and activation addition.

Both are context managers that register forward hooks through the `ModelAdapter` and remove
every one of them on exit, even when the body raises. Hooks are prepended, so observers that
were registered earlier (transformers' `output_hidden_states` capture, activation recorders)
see the intervened values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import torch
from numpy.typing import ArrayLike
from torch import nn
from torch.utils.hooks import RemovableHandle

from skindeep.interventions.ablation import Ablation, Projection
from skindeep.interventions.basis import orthonormal_basis
from skindeep.models.adapter import ModelAdapter

AblationMode = Literal["all_layers", "band"]

HOOK_MARK = "_skindeep_intervention"
"""Attribute set on every hook function registered here, so active interventions can be found."""


def project_out(x: torch.Tensor, U: torch.Tensor) -> torch.Tensor:
    """x - (x U) U^T along the last axis: removes the span of U's orthonormal columns."""
    return x - (x @ U) @ U.T


class Projector:
    """Applies h <- h - U U^T h + s in at least float32, caching U and s per device and dtype.

    `shift` s = U U^T mu is the reference point's component in span(U) (zero for plain
    projection): affine ablation moves every activation's U-coordinates to those of mu.
    """

    def __init__(self, U: torch.Tensor, shift: torch.Tensor | None = None) -> None:
        self.U = U
        self.shift = shift
        self._cache: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, ...]] = {}

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        dtype = torch.promote_types(h.dtype, torch.float32)
        key = (h.device, dtype)
        if key not in self._cache:
            parts = (self.U,) if self.shift is None else (self.U, self.shift)
            self._cache[key] = tuple(t.to(device=h.device, dtype=dtype) for t in parts)
        cached = self._cache[key]
        out = project_out(h.to(dtype), cached[0])
        if len(cached) == 2:
            out = out + cached[1]
        return out.to(h.dtype)


def _mark(fn: Callable[..., Any]) -> Callable[..., Any]:
    setattr(fn, HOOK_MARK, True)
    return fn


def edit_output(edit: Callable[[torch.Tensor], torch.Tensor]) -> Callable[..., Any]:
    """A forward hook applying `edit` to a module's output tensor (or a tuple's first element)."""

    def hook(module: nn.Module, _args: Any, output: Any) -> Any:
        if isinstance(output, torch.Tensor):
            return edit(output)
        if isinstance(output, tuple) and output and isinstance(output[0], torch.Tensor):
            return (edit(output[0]), *output[1:])
        raise TypeError(
            f"cannot intervene on {type(module).__name__}: expected a tensor or a tuple starting "
            f"with one as its output, got {type(output).__name__}"
        )

    return _mark(hook)


def edit_input(edit: Callable[[torch.Tensor], torch.Tensor]) -> Callable[..., Any]:
    """A forward pre-hook (with kwargs) applying `edit` to a block's hidden-state input."""

    def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if args and isinstance(args[0], torch.Tensor):
            return (edit(args[0]), *args[1:]), kwargs
        if isinstance(kwargs.get("hidden_states"), torch.Tensor):
            return args, {**kwargs, "hidden_states": edit(kwargs["hidden_states"])}
        raise TypeError(
            f"cannot intervene on {type(module).__name__}: its hidden states are neither the "
            "first positional argument nor the `hidden_states` keyword"
        )

    return _mark(hook)


def _check_model(model: nn.Module, adapter: ModelAdapter) -> None:
    if adapter.model is not model:
        raise ValueError("the adapter was built for a different model than the one passed")


def _layer_indices(adapter: ModelAdapter, layers: Sequence[int] | int) -> list[int]:
    """Normalised, sorted unique layer indices (negative count from the end); IndexError if bad."""
    if isinstance(layers, int):
        layers = [layers]
    indices = sorted({adapter.layer(int(i)).index for i in layers})
    if not indices:
        raise ValueError("band ablation needs at least one layer index")
    return indices


@contextmanager
def registered(handles: list[RemovableHandle]) -> Iterator[None]:
    """Remove every handle in `handles` on exit (filled inside the context), even on error."""
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def sublayer_outputs(adapter: ModelAdapter, index: int) -> list[nn.Module]:
    """Modules whose outputs are added to the residual stream in block `index`.

    The attention and MLP modules themselves (Arditi's hook points), falling back to their
    output projection where the block holds its MLP linears directly (OPT).
    """
    layer = adapter.layer(index)
    writers = [layer.attention, layer.mlp if layer.mlp is not None else layer.mlp_out]
    if writers[1] is None:
        raise ValueError(f"block {index} has no MLP module or MLP output projection to hook")
    return [m for m in writers if m is not None]


def all_layer_hooks(
    adapter: ModelAdapter,
    block_input: Callable[[int], Callable[[torch.Tensor], torch.Tensor]],
    writer_output: Callable[[torch.Tensor], torch.Tensor],
    handles: list[RemovableHandle],
) -> None:
    """Register Arditi's all-layer ablation sites: `block_input(l)` edits block l's input,
    `writer_output` every attention and MLP output; the handles go into `handles`."""
    for index, block in enumerate(adapter.layers):
        pre = edit_input(block_input(index))
        handles.append(block.register_forward_pre_hook(pre, with_kwargs=True, prepend=True))
        for writer in sublayer_outputs(adapter, index):
            handles.append(writer.register_forward_hook(edit_output(writer_output), prepend=True))


@contextmanager
def ablate(
    model: nn.Module,
    adapter: ModelAdapter,
    basis: ArrayLike | torch.Tensor,
    mode: AblationMode = "all_layers",
    layers: Sequence[int] | int | None = None,
    ablation: Ablation | None = None,
) -> Iterator[torch.Tensor]:
    """Remove the span of `basis` from the residual stream while the context is open.

    `basis` is [d, k] (or [d]) and is orthonormalised by QR; the context yields that [d, k]
    float64 basis U. Mode "all_layers" (Arditi's directional ablation) projects
    h <- h - U U^T h at every block input and at every attention and MLP output, so the
    residual stream never holds U (in pre-norm models; a post-sublayer norm re-mixes it until
    the next block input). Mode "band" projects only the outputs of the blocks in `layers`, at
    all positions (the effective-rank audit's band ablation).

    `ablation` is the form (default `Projection()`). With `Affine(reference)` (reference [d], or
    [L, d] one per layer: the mean harmless activation at the hooked site, block inputs for
    "all_layers", block outputs for "band") it is h <- h - U U^T (h - mu_l) at block inputs
    (resp. the band's outputs), so activations keep the reference's coordinates along U instead
    of zero; attention and MLP outputs still write nothing along U.
    """
    _check_model(model, adapter)
    U = orthonormal_basis(basis, adapter.hidden_size)
    shifts = (ablation or Projection()).shifts(U, adapter.num_layers)
    handles: list[RemovableHandle] = []
    with registered(handles):
        if mode == "all_layers":
            if layers is not None:
                raise ValueError("mode 'all_layers' hooks every layer; pass layers only for 'band'")
            all_layer_hooks(
                adapter, lambda index: Projector(U, shifts[index]), Projector(U), handles
            )
        elif mode == "band":
            if layers is None:
                raise ValueError("mode 'band' needs the layer indices to ablate (see `bands`)")
            for index in _layer_indices(adapter, layers):
                block = adapter.layers[index]
                edit = edit_output(Projector(U, shifts[index]))
                handles.append(block.register_forward_hook(edit, prepend=True))
        else:
            raise ValueError(f"unknown ablation mode {mode!r}; choose 'all_layers' or 'band'")
        yield U


@contextmanager
def add_activation(
    model: nn.Module,
    adapter: ModelAdapter,
    vector: ArrayLike | torch.Tensor,
    layer: int,
    coeff: float = 1.0,
) -> Iterator[None]:
    """Add `coeff * vector` to the input of block `layer` at every position (activation addition).

    The vector is used as given (Arditi add the un-normalised difference of means); it is cast
    to each input's dtype and device.
    """
    _check_model(model, adapter)
    vec = torch.as_tensor(vector).detach().to("cpu", torch.float64).reshape(-1)
    if vec.numel() != adapter.hidden_size or not torch.isfinite(vec).all():
        raise ValueError(
            f"vector must be {adapter.hidden_size} finite values, got shape {tuple(vec.shape)}"
        )
    shift = coeff * vec

    def add(h: torch.Tensor) -> torch.Tensor:
        return h + shift.to(device=h.device, dtype=h.dtype)

    block = adapter.layer(layer).block
    handle = block.register_forward_pre_hook(edit_input(add), with_kwargs=True, prepend=True)
    with registered([handle]):
        yield


def has_active_interventions(model: nn.Module) -> bool:
    """Whether any hook registered by this module is still attached to `model`."""
    for module in model.modules():
        for hooks in (module._forward_hooks, module._forward_pre_hooks):
            if any(getattr(fn, HOOK_MARK, False) for fn in hooks.values()):
                return True
    return False
