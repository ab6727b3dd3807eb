"""The one adapter finds the right modules in many architectures, checked numerically."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import pytest
import torch
import transformers as tf
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from torch import nn

from skindeep.errors import ModelLoadError
from skindeep.models import (
    ChatTemplateWarning,
    LoadedModel,
    ModelAdapter,
    load_model,
    smollm2_gguf_path,
)
from skindeep.models.adapter import LINEAR_TYPES, in_features, out_features

D, L, V = 32, 3, 97
_IDS = dict(vocab_size=V, bos_token_id=1, eos_token_id=2, pad_token_id=0)
_DECODER = dict(
    hidden_size=D, intermediate_size=64, num_hidden_layers=L, num_attention_heads=4, **_IDS
)
FAMILIES: dict[str, Callable[[], tf.PretrainedConfig]] = {
    "llama": lambda: tf.LlamaConfig(num_key_value_heads=2, **_DECODER),
    "qwen2": lambda: tf.Qwen2Config(num_key_value_heads=2, **_DECODER),
    "mistral": lambda: tf.MistralConfig(num_key_value_heads=2, **_DECODER),
    "gemma2": lambda: tf.Gemma2Config(num_key_value_heads=2, head_dim=8, **_DECODER),
    "olmo2": lambda: tf.Olmo2Config(num_key_value_heads=2, **_DECODER),
    "phi3": lambda: tf.Phi3Config(num_key_value_heads=2, **_DECODER),
    "gpt_neox": lambda: tf.GPTNeoXConfig(**_DECODER),
    "gpt2": lambda: tf.GPT2Config(n_embd=D, n_layer=L, n_head=4, n_positions=64, **_IDS),
    "opt": lambda: tf.OPTConfig(
        hidden_size=D, ffn_dim=64, num_hidden_layers=L, num_attention_heads=4,
        word_embed_proj_dim=D, max_position_embeddings=64, **_IDS,
    ),
    "opt_post_ln": lambda: tf.OPTConfig(
        hidden_size=D, ffn_dim=64, num_hidden_layers=L, num_attention_heads=4,
        word_embed_proj_dim=16, do_layer_norm_before=False, max_position_embeddings=64, **_IDS,
    ),
}  # fmt: skip
POST_NORM = {"gemma2", "olmo2", "opt_post_ln"}
FINAL_NORM = {
    "llama": "model.norm",
    "gemma2": "model.norm",
    "gpt2": "transformer.ln_f",
    "gpt_neox": "gpt_neox.final_layer_norm",
    "opt": "model.decoder.final_layer_norm",
    "opt_post_ln": None,
}


def tiny(family: str) -> nn.Module:
    """A randomly initialised 3-layer, d=32 model of one family, in eval mode."""
    torch.manual_seed(0)
    return tf.AutoModelForCausalLM.from_config(FAMILIES[family]()).eval()


def block_outputs(model: nn.Module, adapter: ModelAdapter, ids: torch.Tensor) -> tuple:
    """Outputs of every block (via hooks) and the model's own hidden_states."""
    outs: list[torch.Tensor] = []
    hooks = [
        b.register_forward_hook(lambda _m, _i, o: outs.append(o[0] if isinstance(o, tuple) else o))
        for b in adapter.layers
    ]
    try:
        with torch.no_grad():
            result = model(input_ids=ids, output_hidden_states=True)
    finally:
        for h in hooks:
            h.remove()
    return outs, result.hidden_states


IDS = torch.randint(3, V, (2, 6), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("family", list(FAMILIES))
def test_blocks_are_the_residual_stream(family: str) -> None:
    model = tiny(family)
    adapter = ModelAdapter(model)
    assert (adapter.num_layers, adapter.hidden_size) == (L, D)
    outs, hidden = block_outputs(model, adapter, IDS)
    assert len(outs) == L and len(hidden) == L + 1
    for layer in range(L - 1):
        torch.testing.assert_close(outs[layer], hidden[layer + 1], rtol=0, atol=1e-6)
    if adapter.final_norm is not None:  # transformers' last hidden state is after the final norm
        with torch.no_grad():
            torch.testing.assert_close(adapter.final_norm(outs[-1]), hidden[-1])
    assert adapter.lm_head is model.get_output_embeddings()


@pytest.mark.parametrize("family", list(FAMILIES))
def test_paths_and_output_projections(family: str) -> None:
    model = tiny(family)
    adapter = ModelAdapter(model)
    if family in FINAL_NORM:
        assert adapter.final_norm_path == FINAL_NORM[family]
    assert model.get_submodule(adapter.layers_path) is adapter.layers
    assert model.get_submodule(adapter.embedding_path) is model.get_input_embeddings()
    paths = adapter.module_paths()
    for i in range(L):
        parts = adapter.layer(i)
        for name in ("attention", "attn_out", "mlp_out"):
            path = paths[name]
            assert path is not None
            assert model.get_submodule(path.format(i=i)) is getattr(parts, name)
        for proj in (parts.attn_out, parts.mlp_out):
            assert isinstance(proj, LINEAR_TYPES)
            assert out_features(proj) == D
        assert in_features(parts.mlp_out) > D  # the down projection, not an up projection
    assert adapter.layer(-1).index == L - 1


@pytest.mark.parametrize("family", list(FAMILIES))
def test_zeroing_mlp_out_removes_exactly_its_contribution(family: str) -> None:
    model = tiny(family)
    adapter = ModelAdapter(model)
    target = adapter.layer(1).mlp_out
    contribution: list[torch.Tensor] = []
    hook = target.register_forward_hook(lambda _m, _i, o: contribution.append(o))
    before, _ = block_outputs(model, adapter, IDS)
    hook.remove()
    with torch.no_grad():
        target.weight.zero_()
        if getattr(target, "bias", None) is not None:
            target.bias.zero_()
    after, _ = block_outputs(model, adapter, IDS)
    torch.testing.assert_close(after[0], before[0], rtol=0, atol=0)
    assert (after[1] - before[1]).abs().max() > 1e-4
    if family not in POST_NORM:  # the MLP output is added to the residual as it is
        torch.testing.assert_close(
            after[1], before[1] - contribution[0].reshape(before[1].shape), rtol=1e-5, atol=1e-5
        )


@pytest.mark.parametrize("family", list(FAMILIES))
def test_zeroing_attn_out_changes_the_layer(family: str) -> None:
    model = tiny(family)
    adapter = ModelAdapter(model)
    before, _ = block_outputs(model, adapter, IDS)
    with torch.no_grad():
        adapter.layer(2).attn_out.weight.mul_(0)
    after, _ = block_outputs(model, adapter, IDS)
    torch.testing.assert_close(after[1], before[1], rtol=0, atol=0)
    assert (after[2] - before[2]).abs().max() > 1e-4


@pytest.mark.parametrize("family", list(FAMILIES))
def test_post_sublayer_norm_flag(family: str) -> None:
    model = tiny(family)
    assert ModelAdapter(model).has_post_sublayer_norm is (family in POST_NORM)
    assert not model.training


def test_no_block_list_is_a_clear_error() -> None:
    class Flat(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.config = tf.LlamaConfig(num_hidden_layers=4, hidden_size=8, num_attention_heads=2)
            self.embed = nn.Embedding(10, 8)
            self.layers = nn.ModuleList([nn.Linear(8, 8), nn.Linear(8, 8)])

        def get_input_embeddings(self) -> nn.Module:
            return self.embed

    with pytest.raises(ModelLoadError, match="4 identical blocks"):
        ModelAdapter(Flat())


# ---- chat templates ------------------------------------------------------------------------

LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>"
    "\n\n{{ m['content'] }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
SPECIALS = ["<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>"]


def byte_bpe_tokenizer() -> tf.PreTrainedTokenizerFast:
    """A small byte-level BPE tokenizer without chat template or pad token."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(["### User: hello there\n### Assistant: general kenobi"] * 5, trainer)
    return tf.PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>"
    )


def test_fallback_template_warns_once() -> None:
    adapter = ModelAdapter(tiny("llama"), byte_bpe_tokenizer())
    assert not adapter.has_chat_template
    with pytest.warns(ChatTemplateWarning, match="no chat template"):
        text = adapter.format_chat("hi")
    assert text == "### User:\nhi\n\n### Assistant:\n"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the warning came once already
        text = adapter.format_chat("hi", system="be brief")
    assert text == "### System:\nbe brief\n\n### User:\nhi\n\n### Assistant:\n"
    suffix = adapter.post_instruction_tokens()
    assert adapter.tokenizer.decode(suffix) == "\n\n### Assistant:\n"


def test_template_and_post_instruction_tokens() -> None:
    tokenizer = byte_bpe_tokenizer()
    tokenizer.chat_template = LLAMA3_TEMPLATE
    adapter = ModelAdapter(tiny("llama"), tokenizer)
    assert adapter.has_chat_template
    text = adapter.format_chat("hello", system="sys")
    assert text == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nsys<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nhello<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    suffix = adapter.post_instruction_tokens()
    assert tokenizer.decode(suffix) == "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    assert suffix[:2] == tokenizer.convert_tokens_to_ids(["<|eot_id|>", "<|start_header_id|>"])
    full = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert full[-len(suffix) :] == suffix


def test_format_chat_needs_a_tokenizer() -> None:
    with pytest.raises(ValueError, match="no tokenizer"):
        ModelAdapter(tiny("gpt2")).format_chat("hi")


# ---- the real SmolLM2-135M-Instruct --------------------------------------------------------


@pytest.fixture(scope="module")
def smollm2() -> LoadedModel:
    return load_model(smollm2_gguf_path())


@pytest.mark.slow
def test_smollm2_structure(smollm2: LoadedModel) -> None:
    loaded = smollm2
    adapter = loaded.adapter
    assert (adapter.num_layers, adapter.hidden_size) == (30, 576)
    assert adapter.module_paths() == {
        "embedding": "model.embed_tokens",
        "layers": "model.layers",
        "attention": "model.layers.{i}.self_attn",
        "attn_out": "model.layers.{i}.self_attn.o_proj",
        "mlp": "model.layers.{i}.mlp",
        "mlp_out": "model.layers.{i}.mlp.down_proj",
        "final_norm": "model.norm",
        "lm_head": "lm_head",
    }
    assert not adapter.has_post_sublayer_norm
    ids = loaded.tokenizer(adapter.format_chat("Name a colour."), return_tensors="pt")["input_ids"]
    outs, hidden = block_outputs(loaded.model, adapter, ids)
    for layer in (0, 14, 28):
        torch.testing.assert_close(outs[layer], hidden[layer + 1], rtol=0, atol=1e-5)
    # the last hidden state is normed: it differs a lot from the raw residual (SPEC trap)
    assert (outs[-1] - hidden[-1]).abs().max() > 10


@pytest.mark.slow
def test_smollm2_chat_template(smollm2: LoadedModel) -> None:
    loaded = smollm2
    adapter = loaded.adapter
    assert adapter.has_chat_template
    text = adapter.format_chat("hello")
    assert text.endswith("<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n")
    suffix = adapter.post_instruction_tokens()
    assert loaded.tokenizer.decode(suffix) == "<|im_end|>\n<|im_start|>assistant\n"
