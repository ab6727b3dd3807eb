"""Load a causal LM from a hub id, a checkpoint folder or a .gguf file, with a content fingerprint.

Every failure a user can fix (missing path, no config.json, unknown hub id while offline, GGUF
without the `gguf` package) becomes a `ModelLoadError` that says what was expected.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from skindeep.artifacts import atomic_write_text
from skindeep.cache import cache_root, content_hash
from skindeep.errors import ModelLoadError
from skindeep.models.adapter import (
    _HIDDEN_SIZE_KEYS,
    _LAYER_COUNT_KEYS,
    ModelAdapter,
    _config_value,
)
from skindeep.models.loaded import DeferredModel, LoadedModel, ModelFacts

DTYPES: dict[str, torch.dtype | str] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "auto": "auto",
}
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
_BLOB_NAME = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
_EXPECTED = (
    "expected a Hugging Face hub id (org/name), a checkpoint folder with config.json and "
    "weights, or a .gguf file"
)
_digest_memo: dict[tuple[str, int, int], str] = {}
_DIGEST_MEMO_BYTES = 16 << 20  # files from this size on have their digest remembered on disk


@dataclass(frozen=True)
class _Resolved:
    location: str  # what from_pretrained gets: a folder or a hub id
    gguf_file: str | None
    folder: Path  # local files to fingerprint (a hub-cache snapshot for hub ids)
    local_files_only: bool = False


def _gguf_available() -> bool:
    """Whether the `gguf` package (needed by transformers to read .gguf files) is installed."""
    return importlib.util.find_spec("gguf") is not None


def hub_offline() -> bool:
    """HF_HUB_OFFLINE, read now (huggingface_hub reads it once at import)."""
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}
    return env or bool(constants.HF_HUB_OFFLINE)


def hub_reachable(timeout: float = 3.0) -> bool:
    """A quick TCP probe of the hub endpoint, so that no network fails fast instead of retrying."""
    from huggingface_hub import constants

    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # cannot probe through a proxy; let the hub client report
    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def _file_digest(path: Path) -> str:
    """sha256 of a file; hub-cache blobs are named by their hash, so those are not read."""
    target = path.resolve()
    if path.is_symlink() and _BLOB_NAME.match(target.name):
        return target.name
    stat = target.stat()
    key = (str(target), stat.st_size, stat.st_mtime_ns)
    if key not in _digest_memo:
        _digest_memo[key] = _stored_digest(key, target)
    return _digest_memo[key]


def _stored_digest(key: tuple[str, int, int], target: Path) -> str:
    """sha256 of a large file, remembered on disk by (path, size, mtime): a rerun (a warm audit)
    does not read half a gigabyte of weights again to name them. Small files are just hashed."""
    memo = None
    if key[1] >= _DIGEST_MEMO_BYTES:
        memo = cache_root() / "digests" / f"{content_hash(list(key), 24)}.sha256"
        if memo.is_file():
            text = memo.read_text().strip()
            if re.fullmatch(r"[0-9a-f]{64}", text):
                return text
    sha = hashlib.sha256()
    with target.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 23), b""):
            sha.update(chunk)
    digest = sha.hexdigest()
    if memo is not None:
        try:
            memo.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(memo, digest)
        except OSError:
            pass  # a read-only cache only costs the rehash next time
    return digest


def fingerprint_checkpoint(folder: Path, gguf_file: str | None = None) -> str:
    """Content hash of a checkpoint: config.json plus weight files, or the one .gguf file.

    Independent of the folder's location, so copies share cache entries.
    """
    folder = Path(folder)
    if gguf_file:
        files = [folder / gguf_file]
    else:
        weights = {p for pattern in WEIGHT_PATTERNS for p in folder.glob(pattern)}
        files = [folder / "config.json", *sorted(weights)]
    return content_hash({p.name: _file_digest(p) for p in files if p.is_file()})


def _looks_like_path(source: str) -> bool:
    return (
        source.startswith(("/", "./", "../", "~", "\\"))
        or source.endswith(".gguf")
        or not _HUB_ID.match(source)
    )


def _resolve_local(path: Path, gguf_file: str | None) -> _Resolved:
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ModelLoadError(f"{path} is a file but not a .gguf file; {_EXPECTED}")
        if gguf_file and gguf_file != path.name:
            raise ModelLoadError(f"gguf_file={gguf_file!r} contradicts the .gguf path {path}")
        return _Resolved(str(path.parent), path.name, path.parent)
    ggufs = sorted(p.name for p in path.glob("*.gguf"))
    if gguf_file:
        if not (path / gguf_file).is_file():
            found = f"; .gguf files there: {', '.join(ggufs)}" if ggufs else ""
            raise ModelLoadError(f"GGUF file {gguf_file!r} not found in {path}{found}")
        return _Resolved(str(path), gguf_file, path)
    if not (path / "config.json").is_file():
        hint = (
            f" (it has .gguf files: choose one with --gguf-file, gguf_file= in Python: "
            f"{', '.join(ggufs)})"
            if ggufs
            else ""
        )
        raise ModelLoadError(f"{path} has no config.json{hint}; {_EXPECTED}")
    return _Resolved(str(path), None, path)


def _resolve_hub(repo_id: str, gguf_file: str | None) -> _Resolved:
    """Use the local hub cache when offline or unreachable; otherwise check the id exists first."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError, RepositoryNotFoundError

    filename = gguf_file or "config.json"
    try:
        cached = try_to_load_from_cache(repo_id, filename)
    except HFValidationError as exc:
        raise ModelLoadError(
            f"{repo_id!r} is not a local path and not a valid hub id ({_describe(exc)}); "
            f"{_EXPECTED}"
        ) from exc
    snapshot = Path(cached).parent if isinstance(cached, str) else None
    offline = hub_offline() or not hub_reachable()
    if offline:
        if snapshot is None:
            raise ModelLoadError(
                f"{repo_id!r} is not a local path and not in the Hugging Face cache, and the hub "
                f"is {'disabled (HF_HUB_OFFLINE)' if hub_offline() else 'unreachable'}; "
                f"{_EXPECTED}, or download it first"
            )
        return _Resolved(repo_id, gguf_file, snapshot, local_files_only=True)
    try:
        snapshot = Path(hf_hub_download(repo_id, filename)).parent
    except RepositoryNotFoundError as exc:
        raise ModelLoadError(
            f"no model {repo_id!r} on the hub (or it is private); {_EXPECTED}"
        ) from exc
    except Exception as exc:  # HTTP, network (httpx errors are not OSError) and file errors
        raise ModelLoadError(
            f"could not fetch {filename} of {repo_id!r} from the hub: {_describe(exc)}"
        ) from exc
    return _Resolved(repo_id, gguf_file, snapshot)


def _resolve_source(source: str | Path, gguf_file: str | None = None) -> _Resolved:
    """Decide whether `source` is a local folder, a .gguf file or a hub id, and check it exists."""
    path = Path(source).expanduser()
    if path.exists():
        return _resolve_local(path, gguf_file)
    text = str(source)
    if isinstance(source, Path) or _looks_like_path(text):
        raise ModelLoadError(f"path {text} does not exist; {_EXPECTED}")
    return _resolve_hub(text, gguf_file)


def _describe(exc: BaseException) -> str:
    """An exception as one line: its message with whitespace collapsed, else its type name."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _torch_dtype(dtype: str) -> torch.dtype | str:
    try:
        return DTYPES[dtype]
    except KeyError:
        raise ModelLoadError(
            f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}"
        ) from None


def _check_device(device: str) -> None:
    try:
        kind = torch.device(device).type
    except RuntimeError as exc:
        raise ModelLoadError(
            f"unknown device {device!r}; expected cpu, cuda, cuda:N or mps"
        ) from exc
    if kind == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"device {device!r} asked for, but CUDA is not available here")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise ModelLoadError(f"device {device!r} asked for, but MPS is not available here")


#: Generic classes meaning "the tokenizer.json is the tokenizer": nothing model-specific to rebuild.
GENERIC_TOKENIZER_CLASSES = frozenset({"TokenizersBackend", "PreTrainedTokenizerFast"})


def load_tokenizer(location: str | Path, **kwargs: Any) -> Any:
    """AutoTokenizer, except that a folder declaring a generic fast tokenizer gets exactly that.

    transformers 5 rebuilds the tokenizer of some model types (qwen2, phi3) from their registered
    class even when the folder says otherwise, which mangles custom tokenizers such as the
    organisms' word-level one; a local folder's own declaration is honoured here.
    """
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    config_file = Path(location) / "tokenizer_config.json"
    if config_file.is_file() and (Path(location) / "tokenizer.json").is_file():
        declared = json.loads(config_file.read_text()).get("tokenizer_class")
        if declared in GENERIC_TOKENIZER_CLASSES:
            return PreTrainedTokenizerFast.from_pretrained(location, **kwargs)
    return AutoTokenizer.from_pretrained(location, **kwargs)


def load_model(
    source: str | Path,
    *,
    gguf_file: str | None = None,
    dtype: str = "float32",
    device: str = "cpu",
    device_map: str | None = None,
    trust_remote_code: bool = False,
    lazy: bool = False,
) -> LoadedModel:
    """Load model + tokenizer in eval mode, with the adapter and a weights fingerprint.

    If the tokenizer has no pad token, it is set to the EOS token (and the model's generation
    config follows), so that batches can be padded; padding side is left as the tokenizer has it.
    `device_map` (e.g. "auto") is passed to transformers and then `device` is ignored;
    `device="auto"` means `device_map="auto"` (models larger than one device). `lazy=True`
    returns a `DeferredModel` (weights read on first use of `.model`/`.adapter`) where the
    config alone says what the model is (a folder or hub id, a fixed dtype, no remote code);
    otherwise, and for .gguf files, the weights load now.
    """
    torch_dtype = _torch_dtype(dtype)
    if device == "auto" and device_map is None:
        device_map = "auto"  # accelerate spreads the layers over every visible device
    if device_map is None:
        _check_device(device)
    resolved = _resolve_source(source, gguf_file)
    if resolved.gguf_file and not _gguf_available():
        raise ModelLoadError(
            "reading a .gguf file needs the `gguf` package: pip install gguf (or skindeep[gguf])"
        )
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if resolved.gguf_file:
        kwargs["gguf_file"] = resolved.gguf_file
    if resolved.local_files_only:
        kwargs["local_files_only"] = True
    model_kwargs = dict(kwargs, dtype=torch_dtype)
    if device_map is not None:
        model_kwargs["device_map"] = device_map

    def weights() -> Any:
        model = _load_weights(source, resolved, model_kwargs)
        if device_map is None:
            model.to(device)
        return model.eval()

    facts = None
    if lazy and not resolved.gguf_file and not trust_remote_code and dtype != "auto":
        facts = _config_facts(resolved.location, kwargs, str(torch_dtype).removeprefix("torch."))
    model = None if facts is not None else weights()
    try:
        tokenizer = load_tokenizer(resolved.location, **kwargs)
    except Exception as exc:
        raise ModelLoadError(
            f"could not load the tokenizer of {source}: {_describe(exc)}; expected tokenizer "
            "files next to the weights"
        ) from exc
    _ensure_pad_token(model, tokenizer)
    fingerprint = fingerprint_checkpoint(resolved.folder, resolved.gguf_file)
    if model is None:
        assert facts is not None

        def deferred() -> Any:
            loaded = weights()
            _ensure_pad_token(loaded, tokenizer)
            return loaded

        return DeferredModel(
            tokenizer=tokenizer, source=str(source), fingerprint=fingerprint, facts=facts,
            load=deferred,
        )  # fmt: skip
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        adapter=ModelAdapter(model, tokenizer),
        source=str(source),
        fingerprint=fingerprint,
        gguf_file=resolved.gguf_file,
    )


def _load_weights(source: str | Path, resolved: _Resolved, model_kwargs: dict[str, Any]) -> Any:
    """AutoModelForCausalLM.from_pretrained, every failure a ModelLoadError."""
    from transformers import AutoModelForCausalLM

    # transformers, gguf and huggingface_hub raise many types (struct.error on a truncated
    # .gguf, StrictDataclassClassValidationError on an inconsistent config.json): all mean "this
    # checkpoint cannot be loaded". KeyboardInterrupt is a BaseException and passes through.
    try:
        return AutoModelForCausalLM.from_pretrained(resolved.location, **model_kwargs)
    except Exception as exc:
        hint = " (is the .gguf file complete and not corrupt?)" if resolved.gguf_file else ""
        raise ModelLoadError(
            f"could not load a causal LM from {source}{hint}: {_describe(exc)}"
        ) from exc


def _config_facts(location: str, kwargs: dict[str, Any], dtype: str) -> ModelFacts | None:
    """What the config says the model is, or None when it does not say enough (load instead)."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    try:
        config = AutoConfig.from_pretrained(location, **kwargs)
    except Exception:
        return None  # loading the weights reports the problem properly
    architecture = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(getattr(config, "model_type", ""))
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    layers = _config_value(text, _LAYER_COUNT_KEYS)
    width = _config_value(text, _HIDDEN_SIZE_KEYS)
    if not isinstance(architecture, str) or layers is None or width is None:
        return None
    return ModelFacts(dtype, architecture, layers, width, str(getattr(text, "model_type", "?")))


def _ensure_pad_token(model: Any | None, tokenizer: Any) -> None:
    """Pad with EOS when the tokenizer defines no pad token (the usual choice for causal LMs);
    the model's generation config (when a model is given) pads with the same id."""
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    generation = getattr(model, "generation_config", None)
    if generation is not None and generation.pad_token_id is None:
        generation.pad_token_id = tokenizer.pad_token_id
