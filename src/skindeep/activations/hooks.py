"""Recording decoder-block activations with forward hooks, and stopping a forward pass early.

`record_activations` registers one hook per requested block, yields the dict the hooks fill, and
removes every hook on exit, even on error. With `stop_early=True` the hook of the last requested
block ends the forward pass (run it through `run_forward`), so later blocks, the final norm and
the LM head never run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import torch
from torch import nn

from skindeep.models.adapter import ModelAdapter

Site = Literal["block_out", "block_in"]
"""`block_out`: residual stream after block l (hidden_states[l+1]); `block_in`: before it."""

SITES: tuple[str, ...] = ("block_out", "block_in")

LastLayer = Literal["raw", "normed"]
"""How the last block's output is read: `raw` residual (a hook on the block) or `normed`, after
the model's final norm (a hook on the norm), which is transformers' `hidden_states[-1]`."""

LAST_LAYERS: tuple[str, ...] = ("raw", "normed")

#: Applied to each captured [batch, seq, d] tensor inside the hook (e.g. pick positions).
Select = Callable[[torch.Tensor], torch.Tensor]


class _StopForwardError(Exception):
    """Raised by the hook of the last needed block to end the forward pass there."""


def normalize_layers(layers: Sequence[int] | None, num_layers: int) -> list[int]:
    """Sorted non-negative layer indices (all when None); negatives count from the end."""
    if layers is None:
        return list(range(num_layers))
    out: list[int] = []
    for layer in layers:
        if not -num_layers <= int(layer) < num_layers:
            raise ValueError(f"layer {layer} out of range for a model with {num_layers} layers")
        out.append(int(layer) % num_layers)
    if not out:
        raise ValueError("layers must name at least one layer (or be None for all)")
    if len(set(out)) != len(out):
        raise ValueError(f"layers {list(layers)} name the same layer twice")
    return sorted(out)


def _hidden(value: Any) -> torch.Tensor:
    """The hidden-state tensor of a block output (tuple-returning blocks put it first)."""
    return value[0] if isinstance(value, tuple | list) else value


@contextmanager
def record_activations(
    model: nn.Module,
    adapter: ModelAdapter,
    layers: Sequence[int] | None = None,
    site: Site = "block_out",
    *,
    select: Select | None = None,
    stop_early: bool = False,
    last_layer: LastLayer = "raw",
) -> Iterator[dict[int, list[torch.Tensor]]]:
    """Hook decoder blocks and yield {layer: [captured tensor per forward pass]}.

    `select` reduces each capture inside the hook (default: a detached copy of the whole
    [batch, seq, d] tensor). `stop_early` makes the last requested block end the pass; run the
    model through `run_forward`, which catches that. With `last_layer="normed"` (block outputs
    only) the last block is read at the output of the model's final norm, as
    `output_hidden_states[-1]` is. Hooks are removed on exit, even on error.
    """
    if site not in SITES:
        raise ValueError(f"site must be one of {SITES}, got {site!r}")
    if last_layer not in LAST_LAYERS:
        raise ValueError(f"last_layer must be one of {LAST_LAYERS}, got {last_layer!r}")
    if last_layer == "normed" and site != "block_out":
        raise ValueError("last_layer='normed' reads block outputs: it needs site='block_out'")
    wanted = normalize_layers(layers, adapter.num_layers)
    final = adapter.num_layers - 1
    normed = last_layer == "normed" and final in wanted
    if normed and adapter.final_norm is None:
        raise ValueError(
            f"last_layer='normed': no final norm was found in {type(model).__name__}; "
            "read the raw last layer instead"
        )
    if not any(module is adapter.layers for module in model.modules()):
        raise ValueError("the adapter's decoder blocks are not part of this model")
    reduce = select or (lambda h: h.detach().clone())
    records: dict[int, list[torch.Tensor]] = {layer: [] for layer in wanted}
    last = wanted[-1]

    def capture(layer: int, hidden: torch.Tensor) -> None:
        records[layer].append(reduce(hidden))
        if stop_early and layer == last:
            raise _StopForwardError

    def out_hook(layer: int) -> Callable[..., None]:
        return lambda _m, _args, output: capture(layer, _hidden(output))

    def in_hook(layer: int) -> Callable[..., None]:
        def hook(_m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            capture(layer, args[0] if args else kwargs["hidden_states"])

        return hook

    handles = []
    try:
        for layer in wanted:
            block = adapter.layers[layer]
            if normed and layer == final:
                assert adapter.final_norm is not None
                handles.append(adapter.final_norm.register_forward_hook(out_hook(layer)))
            elif site == "block_out":
                handles.append(block.register_forward_hook(out_hook(layer)))
            else:
                handles.append(block.register_forward_pre_hook(in_hook(layer), with_kwargs=True))
        yield records
    finally:
        for handle in handles:
            handle.remove()


def run_forward(model: nn.Module, **inputs: Any) -> Any | None:
    """Run `model(**inputs)`; None when a `stop_early` recording hook ended the pass."""
    try:
        return model(**inputs)
    except _StopForwardError:
        return None
