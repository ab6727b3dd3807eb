"""One architecture adapter for every Hugging Face causal LM.

Finds the decoder blocks, embedding, final norm, LM head and each block's attention/MLP output
projections from the module structure (names and shapes, never a table of model families), and
formats chat prompts with the tokenizer's chat template.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from skindeep.errors import ModelLoadError
from skindeep.models.chat import (
    format_user_turn,
    has_chat_template,
    post_instruction_tokens,
    warn_fallback,
)

LINEAR_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, Conv1D)
"""Module types that count as a linear map (GPT-2 style models use `Conv1D`)."""

_ATTN_NAME = re.compile(r"attn|attention", re.IGNORECASE)
_MLP_NAME = re.compile(r"mlp|feed_?forward|ffn", re.IGNORECASE)
_ATTN_OUT_NAME = re.compile(r"^(o_proj|out_proj|c_proj|dense|wo|o|out|output)$")
_MLP_OUT_NAME = re.compile(r"^(down_proj|c_proj|fc2|fc_out|dense_4h_to_h|w2|wo|out_proj)$")
_LAYER_COUNT_KEYS = ("num_hidden_layers", "n_layer", "num_layers", "n_layers")
_HIDDEN_SIZE_KEYS = ("hidden_size", "n_embd", "d_model", "dim")


class _StopForwardError(Exception):
    """Raised by a hook to end a forward pass once the first block has run."""


@dataclass(frozen=True)
class LayerModules:
    """The modules of one decoder block and their dotted paths inside the model.

    `mlp` is None when the block holds its MLP linears directly (OPT); `attn_out`/`mlp_out` are
    None when that sublayer has no single output linear map (e.g. mixture-of-experts MLPs).
    """

    index: int
    block: nn.Module
    block_path: str
    attention: nn.Module
    attention_path: str
    attn_out: nn.Module | None
    attn_out_path: str | None
    mlp: nn.Module | None
    mlp_path: str | None
    mlp_out: nn.Module | None
    mlp_out_path: str | None


def out_features(module: nn.Module) -> int | None:
    """Output width of a linear-like module (`nn.Linear` or GPT-2 `Conv1D`), else None."""
    if isinstance(module, Conv1D):
        return int(module.nf)
    return getattr(module, "out_features", None)


def in_features(module: nn.Module) -> int | None:
    """Input width of a linear-like module (`nn.Linear` or GPT-2 `Conv1D`), else None."""
    if isinstance(module, Conv1D):
        return int(module.weight.shape[0])
    return getattr(module, "in_features", None)


def _config_value(config: Any, keys: tuple[str, ...]) -> int | None:
    for key in keys:
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _has_linear(module: nn.Module) -> bool:
    return any(isinstance(m, LINEAR_TYPES) for m in module.modules())


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, nn.LayerNorm | nn.RMSNorm) or "norm" in type(module).__name__.lower()


def _under(prefix: str, name: str | None) -> str | None:
    """`prefix.name`, or None when there is no such module."""
    if not name:
        return None
    return f"{prefix}.{name}" if prefix else name


def _find_sublayer(block: nn.Module, pattern: re.Pattern[str]) -> str | None:
    """Relative name of the first non-norm descendant named like `pattern` that holds a linear."""
    for name, module in block.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        if (
            name
            and pattern.search(leaf)
            and not isinstance(module, LINEAR_TYPES)
            and _has_linear(module)
            and not _is_norm(module)
        ):
            return name
    return None


def _find_out_proj(
    root: nn.Module, width: int, pattern: re.Pattern[str], skip: str | None = None
) -> str | None:
    """Relative name of the one linear in `root` writing `width` features (by name if several)."""
    found = [
        name
        for name, m in root.named_modules()
        if isinstance(m, LINEAR_TYPES)
        and out_features(m) == width
        and not (skip and (name == skip or name.startswith(skip + ".")))
    ]
    named = [n for n in found if pattern.match(n.rsplit(".", 1)[-1])]
    for group in (named, found):
        if len(group) == 1:
            return group[0]
    return None


class ModelAdapter:
    """Where things are inside a causal LM, found by module structure; one class for all families.

    Hooks, ablations and reports use its modules and dotted paths instead of hard-coded names.
    """

    def __init__(self, model: nn.Module, tokenizer: Any | None = None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        config = getattr(model, "config", None)
        if config is not None and hasattr(config, "get_text_config"):
            config = config.get_text_config()
        self.config = config
        self._paths: dict[int, str] = {}
        for name, module in model.named_modules(remove_duplicate=False):
            self._paths.setdefault(id(module), name)
        self.layers_path, self.layers = self._find_layers(_config_value(config, _LAYER_COUNT_KEYS))
        self.num_layers = len(self.layers)
        self.embedding: nn.Module = model.get_input_embeddings()
        self.embedding_path = self.path_of(self.embedding)
        self.hidden_size = self._check_hidden_size(_config_value(config, _HIDDEN_SIZE_KEYS))
        self.lm_head: nn.Module | None = model.get_output_embeddings()
        self.lm_head_path = None if self.lm_head is None else self.path_of(self.lm_head)
        self.final_norm_path = self._find_final_norm()
        self.final_norm = (
            model.get_submodule(self.final_norm_path) if self.final_norm_path else None
        )
        self._names = self._find_sublayer_names(self.layers[0])
        self._warned_template = False

    # ---- discovery ---------------------------------------------------------------------------

    def _find_layers(self, expected: int | None) -> tuple[str, nn.ModuleList]:
        """The longest ModuleList of identical blocks (of the config's layer count, if known)."""
        candidates = [
            (name, ml)
            for name, ml in self.model.named_modules()
            if isinstance(ml, nn.ModuleList)
            and len(ml) > 0
            and len({type(b) for b in ml}) == 1
            and _has_linear(ml[0])
            and (expected is None or len(ml) == expected)
        ]
        if not candidates:
            want = f"{expected} identical blocks" if expected else "identical blocks"
            raise ModelLoadError(
                f"could not find the decoder blocks of {type(self.model).__name__}: expected an "
                f"nn.ModuleList of {want} (config num_hidden_layers / n_layer)"
            )
        return max(candidates, key=lambda c: (len(c[1]), sum(p.numel() for p in c[1].parameters())))

    def _check_hidden_size(self, configured: int | None) -> int:
        """Residual width from the config, checked against the embedding (or a projection of it)."""
        emb_dim = int(self.embedding.weight.shape[1])
        width = configured or emb_dim
        if width != emb_dim and not any(
            isinstance(m, LINEAR_TYPES) and in_features(m) == emb_dim and out_features(m) == width
            for m in self.model.modules()
        ):
            raise ModelLoadError(
                f"config hidden size {width} does not match the embedding width {emb_dim}, and no "
                "linear projection between the two was found"
            )
        return width

    def _find_final_norm(self) -> str | None:
        """A norm beside the block list (not an embedding norm), preferably registered after it."""
        child = self.layers_path
        while child:
            parent_path, _, child_name = child.rpartition(".")
            children = list(self.model.get_submodule(parent_path).named_children())
            position = [n for n, _ in children].index(child_name)
            norms = [
                (i, n)
                for i, (n, m) in enumerate(children)
                if _is_norm(m) and "emb" not in n.lower()
            ]
            if norms:
                after = [n for i, n in norms if i > position]
                return _under(parent_path, after[0] if after else norms[-1][1])
            child = parent_path
        return None

    def _find_sublayer_names(self, block: nn.Module) -> dict[str, str | None]:
        """Relative names in a block of the attention and MLP modules and their output linears."""
        d = self.hidden_size
        attention = _find_sublayer(block, _ATTN_NAME)
        if attention is None:
            raise ModelLoadError(
                f"could not find the attention module in {type(block).__name__}: expected a child "
                "named like attn / attention / self_attn holding linear layers"
            )
        attn_out = _find_out_proj(block.get_submodule(attention), d, _ATTN_OUT_NAME)
        mlp = _find_sublayer(block, _MLP_NAME)
        if mlp is None:  # MLP linears directly in the block (OPT fc1/fc2)
            mlp_out = _find_out_proj(block, d, _MLP_OUT_NAME, skip=attention)
        else:
            mlp_out = _under(mlp, _find_out_proj(block.get_submodule(mlp), d, _MLP_OUT_NAME))
        return {
            "attention": attention,
            "attn_out": _under(attention, attn_out),
            "mlp": mlp,
            "mlp_out": mlp_out,
        }

    # ---- access ------------------------------------------------------------------------------

    def path_of(self, module: nn.Module) -> str:
        """Dotted name of a module inside the model (first name if it is registered twice)."""
        try:
            return self._paths[id(module)]
        except KeyError:
            raise ValueError(f"{type(module).__name__} is not a submodule of this model") from None

    def layer(self, index: int) -> LayerModules:
        """The modules and paths of decoder block `index` (negative indices count from the end)."""
        if not -self.num_layers <= index < self.num_layers:
            raise IndexError(f"layer {index} out of range for {self.num_layers} layers")
        index %= self.num_layers
        block = self.layers[index]
        block_path = f"{self.layers_path}.{index}"

        def part(key: str) -> nn.Module | None:
            name = self._names[key]
            return block.get_submodule(name) if name else None

        attention = part("attention")
        assert attention is not None  # discovery guarantees it
        return LayerModules(
            index=index,
            block=block,
            block_path=block_path,
            attention=attention,
            attention_path=f"{block_path}.{self._names['attention']}",
            attn_out=part("attn_out"),
            attn_out_path=_under(block_path, self._names["attn_out"]),
            mlp=part("mlp"),
            mlp_path=_under(block_path, self._names["mlp"]),
            mlp_out=part("mlp_out"),
            mlp_out_path=_under(block_path, self._names["mlp_out"]),
        )

    def module_paths(self) -> dict[str, str | None]:
        """Dotted paths for reporting; per-layer paths use `{i}` for the layer index."""
        block = f"{self.layers_path}.{{i}}"
        return {
            "embedding": self.embedding_path,
            "layers": self.layers_path,
            **{key: _under(block, name) for key, name in self._names.items()},
            "final_norm": self.final_norm_path,
            "lm_head": self.lm_head_path,
        }

    @property
    def head_is_tied(self) -> bool:
        """Whether the LM head shares a weight with the input embedding (tie_word_embeddings)."""
        if self.lm_head is None:
            return False
        embedding = {p.data_ptr() for p in self.embedding.parameters()}
        return any(p.data_ptr() in embedding for p in self.lm_head.parameters())

    # ---- post-sublayer norm ------------------------------------------------------------------

    @cached_property
    def has_post_sublayer_norm(self) -> bool:
        """True if a sublayer's output is normed (or otherwise transformed) before the residual add.

        Tested on block 0 by adding a vector to each sublayer's output and checking that the block
        output moves by exactly that vector (Gemma2 post-norms and post-LN OPT fail it); where it
        is True, weight orthogonalisation of the output projections is inexact.
        """
        first = self.layer(0)
        attn = first.attention
        mlp = first.mlp if first.mlp is not None else first.mlp_out
        checks = [self._moves_block_by(attn, silence=mlp)]
        if mlp is not None:
            checks.append(self._moves_block_by(mlp, silence=None))
        return not all(checks)

    def _moves_block_by(self, target: nn.Module, silence: nn.Module | None) -> bool:
        """Does adding delta to `target`'s output shift block 0's output by exactly delta?"""
        baseline = self._block0_output(None, silence, None)
        scale = 3.0 * max(1.0, float(baseline.float().pow(2).mean().sqrt()))
        gen = torch.Generator().manual_seed(0)
        delta = torch.randn(self.hidden_size, generator=gen) * scale
        shifted = self._block0_output(target, silence, delta)
        moved = (shifted.float() - baseline.float()).cpu()
        error = (moved - delta).norm(dim=-1).max() / delta.norm()
        return bool(error < 0.05)

    def _block0_output(
        self, target: nn.Module | None, silence: nn.Module | None, delta: torch.Tensor | None
    ) -> torch.Tensor:
        """Block 0's output on a 3-token input, with optional output edits; stops after block 0."""

        def add(_m: nn.Module, _i: Any, out: Any) -> Any:
            if isinstance(out, tuple):
                return (out[0] + delta.to(out[0]), *out[1:])
            return out + delta.to(out)

        def zero(_m: nn.Module, _i: Any, out: Any) -> Any:
            return (torch.zeros_like(out[0]), *out[1:]) if isinstance(out, tuple) else out * 0

        captured: list[torch.Tensor] = []

        def stop(_m: nn.Module, _i: Any, out: Any) -> None:
            captured.append(out[0] if isinstance(out, tuple) else out)
            raise _StopForwardError

        handles = [self.layers[0].register_forward_hook(stop)]
        if silence is not None:
            handles.append(silence.register_forward_hook(zero))
        if target is not None and delta is not None:
            handles.append(target.register_forward_hook(add))
        vocab = int(self.embedding.weight.shape[0])
        ids = (torch.arange(1, 4) % vocab).unsqueeze(0).to(self.embedding.weight.device)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                self.model(input_ids=ids, attention_mask=torch.ones_like(ids))
        except _StopForwardError:
            pass
        finally:
            for handle in handles:
                handle.remove()
            self.model.train(was_training)
        return captured[0].detach()

    # ---- chat --------------------------------------------------------------------------------

    @property
    def has_chat_template(self) -> bool:
        """Whether the tokenizer carries a chat template."""
        return has_chat_template(self.tokenizer)

    def format_chat(self, user_text: str, system: str | None = None) -> str:
        """The prompt text for one user turn with the generation prompt, ready to tokenize.

        `skindeep.models.chat.format_user_turn` with this adapter's tokenizer; without a chat
        template it warns once per adapter (ChatTemplateWarning) and uses FALLBACK_TEMPLATE.
        """
        tokenizer = self._require_tokenizer()
        if not self.has_chat_template and not self._warned_template:
            warn_fallback(tokenizer)
            self._warned_template = True
        return format_user_turn(tokenizer, user_text, system)

    def post_instruction_tokens(self, system: str | None = None) -> list[int]:
        """Token ids after the user message in the chat format (Arditi's post-instruction span)."""
        return post_instruction_tokens(self._require_tokenizer(), system)

    def _require_tokenizer(self) -> Any:
        if self.tokenizer is None:
            raise ValueError("this ModelAdapter has no tokenizer; pass one to format chat prompts")
        return self.tokenizer
