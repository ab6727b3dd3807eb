"""Ablation hooks, activation addition and weight orthogonalisation on tiny random organisms."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from torch import nn
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

from skindeep.errors import SkindeepError
from skindeep.interventions import (
    Affine,
    InexactOrthogonalizationError,
    InexactOrthogonalizationWarning,
    ablate,
    add_activation,
    bands,
    has_active_interventions,
    orthogonalize_weights,
    orthonormal_basis,
    random_nulls,
    random_orthonormal,
)
from skindeep.models import ModelAdapter
from skindeep.organisms.architectures import build_config, build_model
from skindeep.organisms.language import DEFAULT_LANGUAGE
from skindeep.organisms.tokenizer import build_tokenizer

PRE_NORM = ("llama", "qwen2", "mistral", "phi3", "gpt2")


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Tiny matmuls run far faster on one thread (a shared 2-core box thrashes with two)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@functools.cache
def tokenizer() -> PreTrainedTokenizerFast:
    """The organism tokenizer, built once."""
    return build_tokenizer(DEFAULT_LANGUAGE)


@functools.cache
def organism(family: str, tied: bool = False) -> tuple[nn.Module, ModelAdapter]:
    """A seeded xs organism of `family` in eval mode and its adapter (optionally tied head)."""
    if not tied:
        model = build_model(family, "xs", tokenizer(), seed=0).eval()
    else:
        config = build_config(family, "xs", tokenizer())
        config.tie_word_embeddings = True
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config, torch_dtype=torch.float32).eval()
    return model, ModelAdapter(model)


def prompts(seed: int = 1, batch: int = 3, length: int = 9) -> torch.Tensor:
    """Random token ids (no special tokens) as a [batch, length] prompt batch."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(10, len(tokenizer()), (batch, length), generator=gen)


def run(model: nn.Module, ids: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """Logits and hidden_states of one forward pass."""
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids), output_hidden_states=True)
    return out.logits, out.hidden_states


def block_io(adapter: ModelAdapter, ids: torch.Tensor) -> tuple[list, list]:
    """Inputs and outputs of every block, recorded by hooks registered after any intervention."""
    inputs: list[torch.Tensor] = []
    outputs: list[torch.Tensor] = []

    def first(x: object) -> torch.Tensor:
        return x[0] if isinstance(x, tuple) else x  # type: ignore[return-value]

    handles = []
    for block in adapter.layers:
        handles.append(
            block.register_forward_pre_hook(
                lambda _m, a, k: inputs.append(a[0] if a else k["hidden_states"]), with_kwargs=True
            )
        )
        handles.append(block.register_forward_hook(lambda _m, _a, o: outputs.append(first(o))))
    try:
        run(adapter.model, ids)
    finally:
        for handle in handles:
            handle.remove()
    return inputs, outputs


def hook_count(model: nn.Module) -> int:
    """Number of forward and pre-forward hooks on all modules."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


# ---- (1) all-layer ablation leaves no component along U ----------------------------------------


@pytest.mark.parametrize("family", PRE_NORM)
def test_all_layers_ablation_removes_the_subspace_everywhere(family: str) -> None:
    model, adapter = organism(family)
    U = random_orthonormal(adapter.hidden_size, 3, seed=5)
    Ut = torch.as_tensor(U, dtype=torch.float32)
    ids = prompts()
    _, before = run(model, ids)
    assert before[1].matmul(Ut).abs().max() > 1e-2  # the random model does use these directions
    with ablate(model, adapter, U, mode="all_layers") as basis:
        assert torch.allclose(basis, torch.as_tensor(U), atol=1e-12)
        _, hidden = run(model, ids)
        inputs, outputs = block_io(adapter, ids)
    # hidden_states[-1] is after the final norm, which re-mixes directions; the raw residual
    # of the last block is checked through the block outputs instead
    for h in [*hidden[:-1], *inputs, *outputs]:
        assert h.matmul(Ut).abs().max() < 1e-5


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_affine_ablation_pins_block_inputs_to_the_reference(family: str) -> None:
    """All layers, affine: every block input's U-coordinates equal the layer's reference
    coordinates at every position; the rest of the input is what projection leaves."""
    model, adapter = organism(family)
    L, d = adapter.num_layers, adapter.hidden_size
    U = random_orthonormal(d, 2, seed=11)
    Ut = torch.as_tensor(U, dtype=torch.float32)
    reference = np.random.default_rng(3).standard_normal((L, d))
    ids = prompts(seed=2)
    with ablate(model, adapter, U):
        plain_in, _ = block_io(adapter, ids)
    with ablate(model, adapter, U, ablation=Affine(reference)):
        inputs, outputs = block_io(adapter, ids)
    for layer, (h, p) in enumerate(zip(inputs, plain_in, strict=True)):
        target = torch.as_tensor(U.T @ reference[layer], dtype=torch.float32)
        assert torch.allclose(h.matmul(Ut), target.expand(*h.shape[:-1], 2), atol=1e-5)
        if layer == 0:  # before any block, the part outside span(U) is untouched
            off = h - h.matmul(Ut).matmul(Ut.T)
            assert torch.allclose(off, p - p.matmul(Ut).matmul(Ut.T), atol=1e-5)
    # the sublayers still write nothing along U: the last block output keeps the last reference
    last = torch.as_tensor(U.T @ reference[-1], dtype=torch.float32)
    assert torch.allclose(
        outputs[-1].matmul(Ut), last.expand(*outputs[-1].shape[:-1], 2), atol=1e-4
    )
    # a zero reference is plain projection; a [d] reference serves every layer
    with ablate(model, adapter, U, ablation=Affine(np.zeros(d))):
        zero_in, _ = block_io(adapter, ids)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(zero_in, plain_in, strict=True))
    with (
        pytest.raises(ValueError, match="reference must be"),
        ablate(model, adapter, U, ablation=Affine(np.zeros((L + 1, d)))),
    ):
        pass
    assert not has_active_interventions(model)


def test_affine_band_ablation_pins_band_outputs() -> None:
    model, adapter = organism("llama")
    L, d = adapter.num_layers, adapter.hidden_size
    U = random_orthonormal(d, 1, seed=4)
    Ut = torch.as_tensor(U, dtype=torch.float32)
    reference = np.random.default_rng(1).standard_normal((L, d))
    with ablate(model, adapter, U, mode="band", layers=[1], ablation=Affine(reference)):
        _, outputs = block_io(adapter, prompts())
    target = float(U[:, 0] @ reference[1])
    assert torch.allclose(
        outputs[1].matmul(Ut), torch.full_like(outputs[1][..., :1], target), atol=1e-5
    )


def test_ablate_accepts_a_single_unnormalised_numpy_direction() -> None:
    model, adapter = organism("llama")
    direction = 7.0 * np.random.default_rng(0).standard_normal(adapter.hidden_size)
    unit = torch.as_tensor(direction / np.linalg.norm(direction), dtype=torch.float32)
    with ablate(model, adapter, direction) as basis:
        assert basis.shape == (adapter.hidden_size, 1)
        _, outputs = block_io(adapter, prompts())
    assert max(float(o.matmul(unit).abs().max()) for o in outputs) < 1e-5


# ---- (2) orthogonalised weights reproduce hook ablation ----------------------------------------


@pytest.mark.parametrize(("family", "tied"), [(f, False) for f in PRE_NORM] + [("gpt2", True)])
def test_orthogonalized_weights_match_hook_ablation(family: str, tied: bool) -> None:
    model, adapter = organism(family, tied)
    U = random_orthonormal(adapter.hidden_size, 4, seed=11)
    ids = prompts(seed=2)
    original, _ = run(model, ids)
    with ablate(model, adapter, U):
        hooked, _ = run(model, ids)
    edited = orthogonalize_weights(model, adapter, U)
    baked, _ = run(edited, ids)
    assert (hooked - original).abs().max() > 1e-3  # the ablation does something
    assert (baked - hooked).abs().max() < 1e-4
    assert torch.equal(run(model, ids)[0], original)  # the original model is untouched
    assert edited is not model and hook_count(edited) == hook_count(model)


def test_gpt2_position_embeddings_and_biases_are_orthogonalized() -> None:
    model, adapter = organism("gpt2")
    U = torch.as_tensor(random_orthonormal(adapter.hidden_size, 2, seed=3))
    edited = orthogonalize_weights(model, adapter, U)
    e = ModelAdapter(edited)
    writers = [
        edited.transformer.wpe.weight,
        e.embedding.weight,
        e.layer(0).attn_out.bias,
        e.layer(1).mlp_out.bias,
        e.layer(2).mlp_out.weight,  # Conv1D weight is [d_in, d]: rows are residual vectors
    ]
    for w in writers:
        assert w.detach().double().matmul(U).abs().max() < 1e-6
    assert model.transformer.wpe.weight.double().matmul(U).abs().max() > 1e-3


# ---- (3) post-sublayer norms make the weight form inexact ---------------------------------------


def test_gemma2_refuses_inexact_orthogonalization_unless_allowed() -> None:
    model, adapter = organism("gemma2")
    assert adapter.has_post_sublayer_norm
    U = random_orthonormal(adapter.hidden_size, 2, seed=0)
    # raised as a SkindeepError, so the CLI prints it as one `error:` line
    with pytest.raises(SkindeepError, match="allow_inexact") as raised:
        orthogonalize_weights(model, adapter, U)
    assert raised.type is InexactOrthogonalizationError
    with pytest.warns(InexactOrthogonalizationWarning):
        edited = orthogonalize_weights(model, adapter, U, allow_inexact=True)
    assert isinstance(edited, nn.Module) and edited is not model
    with ablate(model, adapter, U):  # hook ablation still works; it is exact at block inputs
        inputs, _ = block_io(adapter, prompts())
    assert (
        max(float(h.matmul(torch.as_tensor(U, dtype=torch.float32)).abs().max()) for h in inputs)
        < 1e-5
    )


# ---- (4) hooks are removed on exit and on error -------------------------------------------------


@pytest.mark.parametrize("mode", ["all_layers", "band"])
def test_hooks_are_removed_after_the_context_and_after_an_exception(mode: str) -> None:
    model, adapter = organism("qwen2")
    U = random_orthonormal(adapter.hidden_size, 2, seed=4)
    layers = None if mode == "all_layers" else [1]
    ids = prompts(seed=3)
    original, _ = run(model, ids)
    hooks = hook_count(model)
    with ablate(model, adapter, U, mode=mode, layers=layers):
        assert has_active_interventions(model)
        assert not torch.equal(run(model, ids)[0], original)
    assert hook_count(model) == hooks and not has_active_interventions(model)
    assert torch.equal(run(model, ids)[0], original)
    with pytest.raises(RuntimeError, match="boom"), ablate(model, adapter, U, mode, layers):
        raise RuntimeError("boom")
    with pytest.raises(RuntimeError, match="boom"), add_activation(model, adapter, U[:, 0], 1, 3.0):
        raise RuntimeError("boom")
    assert hook_count(model) == hooks and not has_active_interventions(model)
    assert torch.equal(run(model, ids)[0], original)


def test_orthogonalize_refuses_a_model_with_active_hooks() -> None:
    model, adapter = organism("llama")
    U = random_orthonormal(adapter.hidden_size, 1, seed=0)
    with ablate(model, adapter, U), pytest.raises(ValueError, match="leave every"):
        orthogonalize_weights(model, adapter, U)


# ---- (5) band ablation changes only the stream from the first band layer on ---------------------


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_band_mode_changes_only_layers_from_the_band_on(family: str) -> None:
    model, adapter = organism(family)
    U = random_orthonormal(adapter.hidden_size, 3, seed=8)
    Ut = torch.as_tensor(U, dtype=torch.float32)
    ids = prompts(seed=4)
    _, before = run(model, ids)  # installs transformers' capture hooks before ours
    first = 1
    with ablate(model, adapter, U, mode="band", layers=[first, -1]):
        _, after = run(model, ids)
    for i in range(first + 1):  # embedding output and outputs of blocks before the band
        assert torch.equal(after[i], before[i])
    assert after[first + 1].matmul(Ut).abs().max() < 1e-5  # output of the band layer
    for i in range(first + 1, len(before)):
        assert not torch.allclose(after[i], before[i], atol=1e-4)


def test_band_mode_validates_its_layers() -> None:
    model, adapter = organism("llama")
    U = random_orthonormal(adapter.hidden_size, 1, seed=0)
    with pytest.raises(ValueError, match="needs the layer"), ablate(model, adapter, U, mode="band"):
        pass
    with pytest.raises(IndexError), ablate(model, adapter, U, mode="band", layers=[99]):
        pass
    with pytest.raises(ValueError, match="unknown"), ablate(model, adapter, U, mode="peak"):  # type: ignore[arg-type]
        pass
    assert not has_active_interventions(model)


# ---- (6) activation addition shifts the block input by exactly coeff * vector -------------------


@pytest.mark.parametrize(("family", "layer"), [("llama", 1), ("gpt2", 0), ("phi3", 2)])
def test_add_activation_shifts_block_input_by_coeff_times_vector(family: str, layer: int) -> None:
    model, adapter = organism(family)
    harmful, harmless = prompts(seed=5), prompts(seed=6)
    inputs_a, _ = block_io(adapter, harmful)
    inputs_b, _ = block_io(adapter, harmless)
    vector = inputs_a[layer][:, -1].mean(0) - inputs_b[layer][:, -1].mean(0)  # Arditi, un-normed
    coeff = 2.5
    baseline, _ = block_io(adapter, harmless)
    with add_activation(model, adapter, vector, layer=layer, coeff=coeff):
        shifted, _ = block_io(adapter, harmless)
    delta = shifted[layer] - baseline[layer]
    assert torch.allclose(delta, (coeff * vector).expand_as(delta), atol=1e-5)
    for i in range(layer):
        assert torch.equal(shifted[i], baseline[i])


def test_add_activation_rejects_a_vector_of_the_wrong_width() -> None:
    model, adapter = organism("llama")
    with (
        pytest.raises(ValueError, match="finite values"),
        add_activation(model, adapter, torch.ones(adapter.hidden_size + 1), layer=0),
    ):
        pass


# ---- (7) random bases, basis checks and bands ---------------------------------------------------


def test_random_orthonormal_is_orthonormal_and_seeded() -> None:
    Q = random_orthonormal(64, 5, seed=3)
    assert Q.shape == (64, 5) and Q.dtype == np.float64
    np.testing.assert_allclose(Q.T @ Q, np.eye(5), atol=1e-12)
    np.testing.assert_array_equal(Q, random_orthonormal(64, 5, seed=3))
    assert not np.allclose(Q, random_orthonormal(64, 5, seed=4))
    draws = random_nulls(64, 5, n_draws=3, seed=9)
    assert len(draws) == 3 and not np.allclose(draws[0], draws[1])
    for a, b in zip(draws, random_nulls(64, 5, n_draws=3, seed=9), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="k <= d"):
        random_orthonormal(4, 5, seed=0)


def test_orthonormal_basis_checks_its_input() -> None:
    B = np.random.default_rng(0).standard_normal((16, 3))
    U = orthonormal_basis(B, 16)
    U = U.numpy()
    np.testing.assert_allclose(U.T @ U, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(U @ U.T @ B, B, atol=1e-12)  # same span
    with pytest.raises(ValueError, match="width 8"):
        orthonormal_basis(B, 8)
    with pytest.raises(ValueError, match="dependent"):
        orthonormal_basis(np.c_[B, B[:, :1] * 2], 16)
    with pytest.raises(ValueError, match="NaN"):
        orthonormal_basis(np.full(16, np.nan), 16)


def test_bands_match_hand_computed_lists() -> None:
    # L=30: narrow linspace(13.5, 21, 5) = 13.5, 15.375, 17.25, 19.125, 21 -> round half up
    # wide linspace(9, 25.5, 8) = 9, 11.36, 13.71, 16.07, 18.43, 20.79, 23.14, 25.5
    b = bands(30)
    assert b.narrow == [14, 15, 17, 19, 21]
    assert b.wide == [9, 11, 14, 16, 18, 21, 23, 26]
    assert bands(3).narrow == [1, 2] and bands(3).wide == [1, 2]  # deduped, clipped to L-1
    assert bands(1).narrow == [0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert all(bands(n).wide[-1] <= n - 1 for n in range(1, 100))
