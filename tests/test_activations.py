"""The activation engine on tiny random Llama and GPT-2 organisms: values against
`output_hidden_states`, padding and batch invariance, streaming moments, early stop, storage
order and the content-addressed cache."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerFast

import skindeep.activations.store as store_module
from skindeep.activations import (
    ActivationStore,
    ActivationWriter,
    ArraySink,
    StreamingStats,
    activation_key,
    cached_collect,
    collect,
    final_normed,
    labelled_prompts,
    record_activations,
    run_forward,
)
from skindeep.models import LoadedModel, ModelAdapter
from skindeep.organisms.architectures import build_model
from skindeep.organisms.language import DEFAULT_LANGUAGE
from skindeep.organisms.tokenizer import build_tokenizer
from skindeep.prompts import organism_prompts

FAMILIES = ("llama", "gpt2")


@pytest.fixture(scope="module")
def tok() -> PreTrainedTokenizerFast:
    """The organism tokenizer (chat template, left padding)."""
    return build_tokenizer(DEFAULT_LANGUAGE)


@pytest.fixture(scope="module")
def models(tok: PreTrainedTokenizerFast) -> dict[str, tuple[PreTrainedModel, ModelAdapter]]:
    """One random xs organism per family, with its adapter."""
    out = {}
    for family in FAMILIES:
        model = build_model(family, "xs", tok, seed=0).eval()
        out[family] = (model, ModelAdapter(model, tok))
    return out


@pytest.fixture(scope="module")
def data() -> tuple[list[str], list[str]]:
    """Twelve organism prompts of varied length, with harmful/harmless labels."""
    return labelled_prompts(
        {
            "harmful": organism_prompts(True, n=6, seed=1).prompts,
            "harmless": organism_prompts(False, n=6, seed=1).prompts,
        }
    )


def run(model, tok, adapter, prompts, **kwargs) -> np.ndarray:
    """Collect into memory and return the [n, ...] array."""
    sink = ArraySink()
    collect(model, tok, adapter, prompts, sink=sink, **kwargs)
    return sink.array


def reference(model, tok, text: str) -> tuple[torch.Tensor, ...]:
    """hidden_states of one unpadded prompt (BOS handling as in `collect`: none added here)."""
    ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        return model(input_ids=ids, output_hidden_states=True).hidden_states


@pytest.mark.parametrize("family", FAMILIES)
def test_block_out_matches_hidden_states_and_last_layer_is_raw(models, tok, data, family) -> None:
    """Block outputs equal hidden_states[l+1] at the last token; the last layer is un-normed."""
    model, adapter = models[family]
    prompts, _ = data
    acts = run(model, tok, adapter, prompts, batch_size=5)
    n_layers = adapter.num_layers
    assert acts.shape == (len(prompts), n_layers, adapter.hidden_size)
    assert acts.dtype == np.float32
    for i, text in enumerate(prompts):
        hs = reference(model, tok, text)
        for layer in range(n_layers - 1):
            np.testing.assert_allclose(acts[i, layer], hs[layer + 1][0, -1].numpy(), atol=1e-5)
        raw_last = torch.from_numpy(acts[i, -1])
        assert not torch.allclose(raw_last, hs[-1][0, -1], atol=1e-2)  # hidden_states[-1] is normed
        with torch.no_grad():
            normed = adapter.final_norm(raw_last)
        np.testing.assert_allclose(normed.numpy(), hs[-1][0, -1].numpy(), atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_normed_last_layer_is_hidden_states_minus_one(models, tok, data, family) -> None:
    """last_layer='normed' reads every layer as output_hidden_states[1:] does: raw block outputs,
    the last after the final norm; the raw collection differs there and only there."""
    model, adapter = models[family]
    prompts, _ = data
    sink = ArraySink()
    spec = collect(model, tok, adapter, prompts, batch_size=5, last_layer="normed", sink=sink)
    normed, raw = sink.array, run(model, tok, adapter, prompts, batch_size=5)
    assert spec.last_layer == "normed"
    for i, text in enumerate(prompts):
        hs = reference(model, tok, text)[1:]
        want = torch.stack([h[0, -1] for h in hs]).numpy()
        np.testing.assert_allclose(normed[i], want, atol=1e-5)
    np.testing.assert_allclose(normed[:, :-1], raw[:, :-1], atol=1e-6)
    assert not np.allclose(normed[:, -1], raw[:, -1], atol=1e-2)
    np.testing.assert_allclose(final_normed(adapter, raw[:, -1]), normed[:, -1], atol=1e-5)
    early = run(model, tok, adapter, prompts, layers=[0, 1], last_layer="normed")
    np.testing.assert_allclose(early, raw[:, :2], atol=1e-6)  # no last layer read: no norm


def test_normed_last_layer_needs_block_outputs(models, tok, data) -> None:
    model, adapter = models["llama"]
    sink = ArraySink()
    with pytest.raises(ValueError, match="needs site='block_out'"):
        collect(model, tok, adapter, data[0], site="block_in", last_layer="normed", sink=sink)
    assert sink.spec is None  # refused before any sink started
    with pytest.raises(ValueError, match="last_layer must be one of"):
        collect(model, tok, adapter, data[0], last_layer="post", sink=sink)  # type: ignore[arg-type]


def test_normed_collections_have_their_own_cache_key(models, tok, data) -> None:
    model, adapter = models["llama"]
    loaded = LoadedModel(model=model, tokenizer=tok, adapter=adapter, source="x", fingerprint="f")
    raw = activation_key(loaded, data[0])
    assert activation_key(loaded, data[0], last_layer="raw") == raw
    assert activation_key(loaded, data[0], last_layer="normed") != raw


@pytest.mark.parametrize("family", FAMILIES)
def test_block_in_is_the_previous_residual(models, tok, data, family) -> None:
    """block_in at layer l equals hidden_states[l] (the embedding output for l = 0)."""
    model, adapter = models[family]
    prompts, _ = data
    acts = run(model, tok, adapter, prompts[:4], site="block_in", layers=[0, 2])
    for i, text in enumerate(prompts[:4]):
        hs = reference(model, tok, text)
        np.testing.assert_allclose(acts[i, 0], hs[0][0, -1].numpy(), atol=1e-5)
        np.testing.assert_allclose(acts[i, 1], hs[2][0, -1].numpy(), atol=1e-5)


def test_padding_side_and_batch_size_do_not_matter(models, tok, data) -> None:
    """Right-padding tokenizers, batch 1 vs 7, and a manual right-padded pass all agree."""
    model, adapter = models["llama"]
    prompts, _ = data
    seen: list[int] = []
    base = run(model, tok, adapter, prompts, batch_size=7, progress=seen.append)
    assert seen == [7, len(prompts)]
    single = run(model, tok, adapter, prompts, batch_size=1)
    np.testing.assert_allclose(base, single, atol=1e-5)
    right_tok = copy.deepcopy(tok)
    right_tok.padding_side = "right"
    right = run(model, right_tok, ModelAdapter(model, right_tok), prompts, batch_size=7)
    np.testing.assert_allclose(base, right, atol=1e-5)
    batch = right_tok(prompts, padding=True, add_special_tokens=False, return_tensors="pt")
    with torch.no_grad():
        hs = model(**batch, output_hidden_states=True).hidden_states
    last = batch["attention_mask"].sum(1) - 1
    manual = torch.stack([hs[j + 1][torch.arange(len(prompts)), last] for j in range(2)], dim=1)
    np.testing.assert_allclose(base[:, :2], manual.numpy(), atol=1e-5)


def test_chat_format_post_instruction_and_template_tokenizer(models, tok, data) -> None:
    """Post-instruction reads P template tokens (last = -1); a base tokenizer without a
    template gets the aligned template through `template_tokenizer`."""
    model, adapter = models["llama"]
    prompts, _ = data
    post = run(model, tok, adapter, prompts, fmt="chat", positions="post_instruction")
    n_post = len(adapter.post_instruction_tokens())
    assert post.shape == (len(prompts), n_post, adapter.num_layers, adapter.hidden_size)
    last = run(model, tok, adapter, prompts, fmt="chat")
    np.testing.assert_allclose(post[:, -1], last, atol=1e-6)
    explicit = run(model, tok, adapter, prompts, fmt="chat", positions=[-2, -1])
    np.testing.assert_allclose(explicit, post, atol=1e-6)
    base_tok = copy.deepcopy(tok)
    base_tok.chat_template = None
    base_adapter = ModelAdapter(model, base_tok)
    sink = ArraySink()
    spec = collect(
        model, base_tok, base_adapter, prompts, fmt="chat", template_tokenizer=tok, sink=sink
    )
    np.testing.assert_allclose(sink.array, last, atol=1e-6)
    assert spec.template is not None and not spec.template.endswith("#fallback")
    assert not np.allclose(run(model, tok, adapter, prompts, fmt="raw"), last, atol=1e-3)


def test_streaming_moments_equal_numpy_on_stored_rows(models, tok, data, tmp_path) -> None:
    """Per-class and pooled means, variances, second moments and covariances match numpy."""
    model, adapter = models["gpt2"]
    prompts, labels = data
    stats = StreamingStats(full_covariance=True)
    writer = ActivationWriter(tmp_path / "acts")
    collect(model, tok, adapter, prompts, labels=labels, batch_size=5, sink=[stats, writer])
    rows = ActivationStore(tmp_path / "acts").array().astype(np.float64)
    for label in ("harmful", "harmless", None):
        x = rows if label is None else rows[np.array(labels) == label]
        assert stats.n(label) == len(x)
        np.testing.assert_allclose(stats.mean(label), x.mean(0), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(stats.variance(label), x.var(0, ddof=1), rtol=1e-10)
        np.testing.assert_allclose(stats.second_moment(label), (x**2).mean(0), rtol=1e-10)
        cov = np.stack([np.cov(x[:, j].T) for j in range(x.shape[1])])
        np.testing.assert_allclose(stats.covariance(label), cov, rtol=1e-10, atol=1e-12)
    assert stats.labels == ["harmful", "harmless"]


def test_covariance_only_when_asked(models, tok, data) -> None:
    """Without full_covariance only the diagonal is kept, and covariance() says so."""
    model, adapter = models["llama"]
    stats = StreamingStats()
    collect(model, tok, adapter, data[0], labels=data[1], sink=stats)
    assert stats.nbytes == 2 * 2 * adapter.num_layers * adapter.hidden_size * 8
    with pytest.raises(ValueError, match="full_covariance=True"):
        stats.covariance("harmful")


def test_forward_stops_after_the_last_requested_layer(models, tok, data) -> None:
    """Later blocks, the final norm and the LM head never run."""
    model, adapter = models["llama"]
    calls = {"block2": 0, "norm": 0, "head": 0}

    def counter(name: str):
        return lambda *_: calls.__setitem__(name, calls[name] + 1)

    handles = [
        adapter.layers[2].register_forward_hook(counter("block2")),
        adapter.final_norm.register_forward_hook(counter("norm")),
        adapter.lm_head.register_forward_hook(counter("head")),
    ]
    try:
        run(model, tok, adapter, data[0], layers=[0, 1])
        assert calls == {"block2": 0, "norm": 0, "head": 0}
        run(model, tok, adapter, data[0], layers=None)
        assert calls["block2"] > 0 and calls["norm"] == 0 and calls["head"] == 0
    finally:
        for handle in handles:
            handle.remove()


def test_hooks_are_removed_even_on_error(models) -> None:
    """record_activations leaves no hook behind when the body raises."""
    model, adapter = models["gpt2"]

    def hooks() -> list[int]:  # transformers keeps its own output-capturing hooks on blocks
        return [len(b._forward_hooks) + len(b._forward_pre_hooks) for b in adapter.layers]

    before = hooks()
    with pytest.raises(RuntimeError, match="boom"), record_activations(model, adapter, [0, 1]):
        assert hooks() != before
        raise RuntimeError("boom")
    assert hooks() == before
    ids = torch.tensor([[5, 6, 7]])
    with (
        torch.no_grad(),
        record_activations(model, adapter, [1], "block_in", stop_early=True) as rec,
    ):
        assert run_forward(model, input_ids=ids) is None
    assert rec[1][0].shape == (1, 3, adapter.hidden_size)
    assert hooks() == before


def test_store_keeps_prompt_order_across_shards(models, tok, data, tmp_path, monkeypatch) -> None:
    """Length-sorted batches written to several shards come back in prompt order."""
    model, adapter = models["llama"]
    prompts, labels = data
    monkeypatch.setattr(store_module, "DEFAULT_SHARD_BYTES", 1)  # one shard per batch
    expected = run(model, tok, adapter, prompts, layers=[0, 2], batch_size=3)
    collect(
        model, tok, adapter, prompts, labels=labels, layers=[0, 2], batch_size=3,
        sink=ActivationWriter(tmp_path / "s"),
    )  # fmt: skip
    store = ActivationStore(tmp_path / "s")
    assert len(list((tmp_path / "s").glob("shard-*.safetensors"))) == 4
    assert store.prompts == prompts and store.labels == labels and store.layers == (0, 2)
    np.testing.assert_array_equal(store.array(), expected)
    np.testing.assert_array_equal(store.layer(2), expected[:, 1])
    assert store.mask("harmful").sum() == 6
    assert store.spec.last_layer == "raw"
    with pytest.raises(KeyError, match="stored layers"):
        store.layer(1)


def test_cache_hit_and_crash_safety(models, tok, data, tmp_path, monkeypatch) -> None:
    """A rerun reads the cache without a forward pass; a crash mid-write leaves nothing."""
    model, adapter = models["gpt2"]
    loaded = LoadedModel(model, tok, adapter, source="tiny-gpt2", fingerprint="f00d")
    prompts, labels = data
    monkeypatch.setattr(store_module, "DEFAULT_SHARD_BYTES", 1)  # a shard per batch
    calls: list[int] = []

    def crash(*_: object) -> None:
        calls.append(1)
        if len(calls) == 2:  # the first batch's shard is already on disk
            raise RuntimeError("killed")

    handle = model.register_forward_pre_hook(crash)
    try:
        with pytest.raises(RuntimeError, match="killed"):
            cached_collect(loaded, prompts, labels, batch_size=4, root=tmp_path)
    finally:
        handle.remove()
    assert list(tmp_path.iterdir()) == []  # neither the entry nor its temporary folder
    calls.clear()
    handle = model.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        first = cached_collect(loaded, prompts, labels, batch_size=4, root=tmp_path)
        assert len(calls) == 3
        again = cached_collect(loaded, prompts, labels, batch_size=4, root=tmp_path)
        assert len(calls) == 3  # cache hit: no forward pass
    finally:
        handle.remove()
    assert again.path == first.path and len(list(tmp_path.iterdir())) == 1
    np.testing.assert_array_equal(again.array(), first.array())
    np.testing.assert_allclose(first.array(), run(model, tok, adapter, prompts), atol=1e-6)
    other = cached_collect(loaded, prompts, labels, fmt="chat", root=tmp_path)
    assert other.path != first.path


def test_bad_settings_are_explained(models, tok, data) -> None:
    """Positions, layers and labels are validated with clear messages."""
    model, adapter = models["llama"]
    prompts = data[0]
    with pytest.raises(ValueError, match="needs fmt='chat'"):
        run(model, tok, adapter, prompts, positions="post_instruction")
    with pytest.raises(ValueError, match="negative offsets"):
        run(model, tok, adapter, prompts, positions=[0])
    with pytest.raises(ValueError, match="before the start"):
        run(model, tok, adapter, prompts, positions=[-50])
    with pytest.raises(ValueError, match="out of range"):
        run(model, tok, adapter, prompts, layers=[3])
    with pytest.raises(ValueError, match="one per prompt"):
        run(model, tok, adapter, prompts, labels=[0])
    with pytest.raises(ValueError, match="site"):
        run(model, tok, adapter, prompts, site="mlp")


def test_writer_refuses_a_used_folder_and_store_an_unfinished_one(tmp_path: Path) -> None:
    """A non-empty output folder and a folder without metadata are rejected."""
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "junk").write_text("1")
    with pytest.raises(FileExistsError):
        ActivationWriter(tmp_path / "x").begin(None, [], [])  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError, match="unfinished"):
        ActivationStore(tmp_path / "x")


def test_tokenizer_fingerprint_sees_the_whole_pipeline(tok) -> None:
    """Same vocabulary, another normaliser: another fingerprint (so no stale cache hit)."""
    import copy

    from tokenizers import normalizers

    from skindeep.activations.cached import tokenizer_fingerprint

    other = copy.deepcopy(tok)
    assert tokenizer_fingerprint(other) == tokenizer_fingerprint(tok)
    other.backend_tokenizer.normalizer = normalizers.Sequence(
        [normalizers.NFKC(), normalizers.Lowercase(), normalizers.Replace("a", "b")]
    )
    assert other.get_vocab() == tok.get_vocab()
    assert other("a cat").input_ids != tok("a cat").input_ids  # it really encodes differently
    assert tokenizer_fingerprint(other) != tokenizer_fingerprint(tok)
