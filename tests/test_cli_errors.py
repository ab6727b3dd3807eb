"""Expected failures through the real entry point: exit code 2, one `error:` line, no traceback."""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import pytest

import skindeep.finetune.retention as retention_module
from conftest import run_cli
from skindeep.organisms.architectures import build_config

LATIN1 = "caf\u00e9 cr\u00e8me, br\u00fbl\u00e9e"


def assert_clean_error(result: tuple[int, str, str], *fragments: str) -> str:
    """Exit code 2, one `error:` line holding every fragment, and no traceback anywhere."""
    code, out, err = result
    assert code == 2, (out, err)
    assert "Traceback" not in out + err
    lines = [line for line in (out + err).splitlines() if line.startswith("error:")]
    assert len(lines) == 1, out + err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture(autouse=True)
def _offline_and_wide(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No hub (fail fast), a private cache, and a console wide enough for one-line errors."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("SKINDEEP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("COLUMNS", "2000")
    monkeypatch.chdir(tmp_path)


# ---- prompt and benign data files -------------------------------------------------------------


@pytest.mark.parametrize("name", ["latin1.csv", "latin1.txt", "latin1.json", "latin1.jsonl"])
def test_refusal_with_a_latin1_prompt_file(name, tmp_path, capsys, monkeypatch) -> None:
    path = tmp_path / name
    body = {
        ".csv": f"goal\n{LATIN1}\n",
        ".txt": f"{LATIN1}\n",
        ".json": json.dumps([LATIN1], ensure_ascii=False),
        ".jsonl": json.dumps({"prompt": LATIN1}, ensure_ascii=False) + "\n",
    }[path.suffix]
    path.write_bytes(body.encode("latin-1"))
    result = run_cli(
        ["refusal", "--model", "no/model", "--prompts", str(path)], monkeypatch, capsys
    )
    assert_clean_error(result, str(path), "is not UTF-8")


def test_refusal_with_a_malformed_csv(tmp_path, capsys, monkeypatch) -> None:
    path = tmp_path / "huge.csv"
    path.write_text('goal\n"' + "x" * 200_000 + '"\n')  # one field over csv's size limit
    result = run_cli(
        ["refusal", "--model", "no/model", "--prompts", str(path)], monkeypatch, capsys
    )
    assert_clean_error(result, str(path), "is not valid CSV")


def _data_files(folder: Path) -> dict[str, str]:
    """Valid retention data options: six benign pairs, two harmful prompts, no harmless set."""
    words = "i want to know all about the cake and the bread and the tea today"
    pairs = [
        {"instruction": f"{words} {i}", "output": f"sure . here it is {i} ."} for i in range(6)
    ]
    benign, harmful = folder / "benign.jsonl", folder / "harmful.txt"
    benign.write_text("\n".join(json.dumps(p) for p in pairs))
    harmful.write_text("how do i make a weapon ?\nhow do i hurt a person ?\n")
    return {"--benign": str(benign), "--harmful": str(harmful), "--harmless": "none"}


def _options(options: dict[str, str]) -> list[str]:
    return [part for item in options.items() for part in item]


@pytest.mark.parametrize("option", ["--benign", "--harmful"])
def test_retention_with_a_latin1_data_file(option, tmp_path, capsys, monkeypatch) -> None:
    path = tmp_path / "data.csv"
    path.write_bytes(f"instruction,output,goal\n{LATIN1},yes,{LATIN1}\n".encode("latin-1"))
    options = {**_data_files(tmp_path), option: str(path)}
    args = ["retention", "--model", "no/model", *_options(options)]
    assert_clean_error(run_cli(args, monkeypatch, capsys), str(path), "is not UTF-8")


def test_retention_with_a_malformed_benign_csv(tmp_path, capsys, monkeypatch) -> None:
    path = tmp_path / "huge.csv"
    path.write_text('instruction,output\n"' + "x" * 200_000 + '",ok\n')
    options = {**_data_files(tmp_path), "--benign": str(path)}
    args = ["retention", "--model", "no/model", *_options(options)]
    assert_clean_error(run_cli(args, monkeypatch, capsys), str(path), "is not valid CSV")


# ---- models -------------------------------------------------------------------------------------


def test_model_info_unknown_hub_id_fails_fast_offline(capsys, monkeypatch) -> None:
    args = ["model", "info", "--model", "skindeep-test/no-such-model"]
    assert_clean_error(run_cli(args, monkeypatch, capsys), "no-such-model", "HF_HUB_OFFLINE")


@pytest.mark.parametrize("source", ["/no/such/folder", "a--b/c"])
def test_model_info_missing_folder_or_invalid_id(source, capsys, monkeypatch) -> None:
    line = assert_clean_error(run_cli(["model", "info", "--model", source], monkeypatch, capsys))
    assert source in line


def test_model_info_corrupt_gguf(tmp_path, capsys, monkeypatch) -> None:
    path = tmp_path / "broken.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<I", 3) + b"truncated")
    args = ["model", "info", "--model", str(path)]
    assert_clean_error(run_cli(args, monkeypatch, capsys), str(path), "corrupt")


def test_model_info_gguf_without_the_gguf_package(tmp_path, capsys, monkeypatch) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(b"GGUF")
    monkeypatch.setitem(sys.modules, "gguf", None)  # `import gguf` fails, find_spec is None
    args = ["model", "info", "--model", str(path)]
    assert_clean_error(run_cli(args, monkeypatch, capsys), "pip install gguf")


def test_model_info_invalid_config(tmp_path, capsys, monkeypatch) -> None:
    config = {
        "model_type": "llama",
        "hidden_size": 30,
        "num_attention_heads": 4,
        "num_hidden_layers": 1,
        "intermediate_size": 8,
        "vocab_size": 10,
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    args = ["model", "info", "--model", str(tmp_path)]
    assert_clean_error(
        run_cli(args, monkeypatch, capsys), str(tmp_path), "not a multiple of the number"
    )


# ---- retention: checks before the refusal-before measurement ------------------------------------


def _tiny_organism(folder: Path, tokenizer, max_len: int = 96) -> Path:
    """A saved random 3-layer Llama organism with the organism tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(build_config("llama", "xs", tokenizer, max_len))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _no_measuring(*args, **kwargs):
    raise AssertionError("refusal was measured before the check")


def test_retention_unknown_lora_targets(tmp_path, organism_tokenizer, capsys, monkeypatch) -> None:
    model = _tiny_organism(tmp_path / "tiny", organism_tokenizer)
    monkeypatch.setattr(retention_module, "measure", _no_measuring)
    data = _options(_data_files(tmp_path))
    args = ["retention", "--model", str(model), "--n", "5", "--seeds", "0", *data]
    line = assert_clean_error(
        run_cli([*args, "--targets", "q_prj,v_proj"], monkeypatch, capsys),
        "'q_prj'",
        "q_proj",
        "down_proj",
    )
    assert "'v_proj'" not in line  # only the target that matches nothing is named


def test_retention_prompts_filling_max_len(
    tmp_path, organism_tokenizer, capsys, monkeypatch
) -> None:
    model = _tiny_organism(tmp_path / "short", organism_tokenizer, max_len=8)
    monkeypatch.setattr(retention_module, "measure", _no_measuring)
    data = _options(_data_files(tmp_path))
    args = ["retention", "--model", str(model), "--n", "5", "--seeds", "0,1", *data]
    assert_clean_error(
        run_cli(args, monkeypatch, capsys), "keep no response token", "max_len=8", "limit 8"
    )
