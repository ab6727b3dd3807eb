"""Shared fixtures: the micro zoo (built once per session), the organism tokenizer, real data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: The shared prompt files (AdvBench, JailbreakBench, Alpaca) live beside the repository.
DATA = REPO.parent / "shared" / "data"

# Organisms and activations are cached by content hash; keep the tests' cache in the repo so a
# second local run reuses it (CI starts from a clean clone and builds it once).
os.environ.setdefault("SKINDEEP_CACHE", str(REPO / ".skindeep-cache"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """Folder of the shared real prompt files."""
    if not DATA.is_dir():
        pytest.fail(f"shared prompt data not found at {DATA}")
    return DATA


@pytest.fixture(scope="session")
def organism_tokenizer():
    """The organism language's tokenizer (a Hugging Face fast tokenizer with chat template)."""
    from skindeep.organisms.language import DEFAULT_LANGUAGE
    from skindeep.organisms.tokenizer import build_tokenizer

    return build_tokenizer(DEFAULT_LANGUAGE)


@pytest.fixture(scope="session")
def micro_zoo():
    """The micro zoo (a Llama base and three aligned organisms), built or read from the cache."""
    from skindeep.organisms.spec import load_zoo_spec
    from skindeep.organisms.zoo import build_zoo

    return build_zoo(load_zoo_spec("micro"))


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tiny models run fastest single-threaded; two threads on a shared 2-core box spin-wait."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def run_cli(args: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    """Run `skindeep ARGS` through the real entry point; return exit code, stdout, stderr."""
    import sys

    from skindeep.cli import main

    monkeypatch.setattr(sys, "argv", ["skindeep", *args])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err
