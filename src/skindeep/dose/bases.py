"""Ablation bases: ordered orthonormal directions, and reading them from safetensors files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from skindeep.errors import SkindeepError
from skindeep.interventions.basis import orthonormal_basis

if TYPE_CHECKING:
    from skindeep.selection import DirectionSelection


class BasisError(SkindeepError):
    """A direction file, key, layer or dimension k that cannot give the basis asked for."""


@dataclass(frozen=True, eq=False)
class NamedBasis:
    """Ordered orthonormal directions to ablate; dose k removes the first k columns."""

    name: str
    basis: np.ndarray
    """[d, k_max] float64 orthonormal columns, most important first."""
    source: str
    """Where the directions came from, for reports."""
    layer: int | None = None
    """The layer they were computed at (None when not layer-specific)."""
    selection: DirectionSelection | None = None
    """Arditi's selection that found the direction (its candidates, and in affine form the
    reference it was scored against); None for other bases."""

    @property
    def k_max(self) -> int:
        """Number of directions available."""
        return int(self.basis.shape[1])

    def first(self, k: int) -> np.ndarray:
        """The [d, k] leading columns; BasisError when k exceeds what is available."""
        if not 1 <= k <= self.k_max:
            raise BasisError(
                f"k={k} is larger than the {self.k_max} direction(s) available from {self.name} "
                f"({self.source})"
            )
        return self.basis[:, :k]


def named_basis(name: str, matrix: Any, source: str, layer: int | None = None) -> NamedBasis:
    """Orthonormalise [d] or [d, k] directions in order (Gram-Schmidt keeps column 1's span).

    >>> b = named_basis("x", np.array([[3.0, 1.0], [0.0, 2.0]]), "example")
    >>> b.k_max, np.allclose(b.basis.T @ b.basis, np.eye(2)), np.abs(b.basis[:, 0]).tolist()
    (2, True, [1.0, 0.0])
    """
    try:
        q = orthonormal_basis(matrix).numpy()
    except ValueError as exc:
        raise BasisError(f"{name} ({source}): {exc}") from exc
    return NamedBasis(name, q, source, layer)


def load_basis(
    path: str | Path,
    hidden_size: int,
    key: str | None = None,
    layer: int | None = None,
) -> NamedBasis:
    """Directions from a safetensors file: a [d] vector, [d, k] columns, or [L, d] / [L, d, k]
    per layer with `layer`. Without `key`, the file's only tensor (or `direction`) is used."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise BasisError(f"direction file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as fh:  # numpy cannot read bfloat16
            keys = list(fh.keys())
            if key is None:
                if len(keys) != 1 and "direction" not in keys:
                    raise BasisError(
                        f"{path} holds {len(keys)} tensors; pick one with --key: {', '.join(keys)}"
                    )
                key = keys[0] if len(keys) == 1 else "direction"
            if key not in keys:
                raise BasisError(f"{path} has no tensor {key!r}; keys: {', '.join(keys) or '-'}")
            tensor = fh.get_tensor(key).to(torch.float64).numpy()
    except SafetensorError as exc:
        raise BasisError(f"{path} is not a readable safetensors file: {exc}") from exc
    matrix = _pick_layer(tensor, hidden_size, layer, f"{path}[{key}]")
    source = f"{path}#{key}" + (f"@layer{layer}" if layer is not None else "")
    return named_basis(key, matrix, source, layer)


def _pick_layer(t: np.ndarray, d: int, layer: int | None, where: str) -> np.ndarray:
    """[d] or [d, k] as is; [L, d] or [L, d, k] at `layer`; else a BasisError saying why."""
    shape = tuple(t.shape)
    per_layer = (t.ndim == 2 and shape[1] == d) or (t.ndim == 3 and shape[1] == d)
    if layer is not None:
        if not per_layer:
            raise BasisError(f"{where} has shape {shape}; --layer needs [L, {d}] or [L, {d}, k]")
        if not -shape[0] <= layer < shape[0]:
            raise BasisError(f"layer {layer} out of range for {where} with {shape[0]} layers")
        return t[layer]
    if t.ndim == 1 and shape[0] == d:
        return t
    if t.ndim == 2 and shape[0] == d:
        return t
    if per_layer:
        raise BasisError(f"{where} has shape {shape}, one row per layer: choose one with --layer")
    raise BasisError(
        f"{where} has shape {shape}; expected [{d}], [{d}, k], [L, {d}] or [L, {d}, k] "
        f"(the model's hidden size is {d})"
    )
