"""Per-prompt activations on disk: safetensors shards written batch-group by batch-group.

safetensors cannot append, so `ActivationWriter` buffers batches up to a byte budget and writes
each group as one shard (a [rows, d] or [rows, P, d] tensor per layer plus the rows' prompt
indices); `metadata.json` (spec, prompts, labels, shard list) is written last, so a folder
without it is an unfinished write. `ActivationStore` reads shards memory-mapped and returns
rows in the original prompt order, whatever order the length-sorted batches came in.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from skindeep.activations.spec import CollectionSpec, Label
from skindeep.artifacts import atomic_write_json

STORE_FORMAT = 1
"""Version of the on-disk layout; part of cache keys."""
METADATA = "metadata.json"
DEFAULT_SHARD_BYTES = 64 << 20


def _key(layer: int) -> str:
    return f"layer.{layer}"


class ActivationWriter:
    """A `collect` sink writing per-prompt float32 activations as safetensors shards to a folder.

    A shard is written each time the buffered batches reach `shard_bytes` (default 64 MiB). The
    folder must be new or empty. For all-or-nothing writes, point it at the folder yielded
    by `skindeep.artifacts.atomic_directory`.
    """

    def __init__(self, path: str | Path, shard_bytes: int | None = None, extra: Any = None) -> None:
        self.path = Path(path)
        self.shard_bytes = shard_bytes or DEFAULT_SHARD_BYTES
        self.extra = extra
        self.spec: CollectionSpec | None = None
        self._prompts: list[str] = []
        self._labels: list[Label] = []
        self._buffer: list[tuple[list[int], np.ndarray]] = []
        self._buffered = 0
        self._shards: list[dict[str, Any]] = []

    def begin(self, spec: CollectionSpec, prompts: Sequence[str], labels: Sequence[Label]) -> None:
        """Check the folder and remember what to write into the metadata."""
        self.path.mkdir(parents=True, exist_ok=True)
        if any(self.path.iterdir()):
            raise FileExistsError(f"{self.path} is not empty; activations need a fresh folder")
        self.spec, self._prompts, self._labels = spec, list(prompts), list(labels)

    def add(self, indices: Sequence[int], labels: Sequence[Label], acts: np.ndarray) -> None:
        """Buffer one batch; write a shard once the buffer reaches the byte budget."""
        self._buffer.append((list(indices), np.ascontiguousarray(acts, dtype=np.float32)))
        self._buffered += acts.nbytes
        if self._buffered >= self.shard_bytes:
            self._flush()

    def _flush(self) -> None:
        """Write the buffered rows as one shard file."""
        if not self._buffer:
            return
        assert self.spec is not None, "begin() was not called"
        rows = np.concatenate([a for _, a in self._buffer])
        index = np.concatenate([np.asarray(i, dtype=np.int64) for i, _ in self._buffer])
        tensors = {"index": index}
        for pos, layer in enumerate(self.spec.layers):
            tensors[_key(layer)] = np.ascontiguousarray(rows[..., pos, :])
        name = f"shard-{len(self._shards):05d}.safetensors"
        save_file(tensors, str(self.path / name))
        self._shards.append({"file": name, "rows": len(index)})
        self._buffer, self._buffered = [], 0

    def end(self) -> None:
        """Write the last shard, then the metadata that marks the folder complete."""
        self._flush()
        assert self.spec is not None, "begin() was not called"
        written = sum(s["rows"] for s in self._shards)
        if written != len(self._prompts):
            raise RuntimeError(f"wrote {written} rows for {len(self._prompts)} prompts")
        metadata = {
            "format": STORE_FORMAT,
            "spec": self.spec.to_json(),
            "prompts": self._prompts,
            "labels": self._labels,
            "shards": self._shards,
            "extra": self.extra,
        }
        atomic_write_json(self.path / METADATA, metadata)


class ActivationStore:
    """Read-only view of a folder written by `ActivationWriter`; rows in prompt order."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        meta_path = self.path / METADATA
        if not meta_path.is_file():
            raise FileNotFoundError(
                f"no activations at {self.path} ({METADATA} missing: not written or unfinished)"
            )
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != STORE_FORMAT:
            raise ValueError(
                f"{self.path}: store format {meta.get('format')}, expected {STORE_FORMAT}"
            )
        self.spec = CollectionSpec.from_json(meta["spec"])
        self.prompts: list[str] = meta["prompts"]
        self.labels: list[Label] = meta["labels"]
        self.extra: Any = meta.get("extra")
        self._shards: list[str] = [s["file"] for s in meta["shards"]]
        self._orders = [self._read(f, "index") for f in self._shards]

    def _read(self, shard: str, key: str) -> np.ndarray:
        """One tensor of one shard (memory-mapped read)."""
        with safe_open(str(self.path / shard), framework="numpy") as fh:
            return fh.get_tensor(key)

    def __len__(self) -> int:
        """Number of prompts."""
        return len(self.prompts)

    @property
    def layers(self) -> tuple[int, ...]:
        """Model layer indices stored, ascending."""
        return self.spec.layers

    def layer(self, layer: int) -> np.ndarray:
        """Activations at one model layer: [n, d] (or [n, P, d]) float32, in prompt order."""
        if layer not in self.spec.layers:
            raise KeyError(f"layer {layer} not stored; stored layers: {list(self.spec.layers)}")
        shape = (len(self), *self.spec.row_shape)
        out = np.empty(shape[:-2] + shape[-1:], dtype=np.float32)
        for shard, order in zip(self._shards, self._orders, strict=True):
            out[order] = self._read(shard, _key(layer))
        return out

    def array(self) -> np.ndarray:
        """All stored layers: [n, L, d] (or [n, P, L, d]) float32, in prompt order."""
        return np.stack([self.layer(layer) for layer in self.spec.layers], axis=-2)

    def mask(self, label: Label) -> np.ndarray:
        """Boolean [n] mask of the prompts with this label."""
        if label not in self.labels:
            raise KeyError(
                f"no prompts labelled {label!r}; labels: {sorted(set(map(str, self.labels)))}"
            )
        return np.array([lab == label for lab in self.labels])
