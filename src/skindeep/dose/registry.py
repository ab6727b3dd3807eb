"""A registry of basis builders: `--directions NAME` -> how that basis is found.

Each builder takes a `BasisRequest` (the models, the prompts that find directions and the
settings) and returns a `NamedBasis`. Names: `select` (Arditi's selection on a train/validation
split), `pca`, `cpca`, `svd`, `svd-did` (activation bases) and `file` (a safetensors file; any
existing path means `file`). Add a builder with `BASIS_BUILDERS[name] = builder`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from skindeep.dose.activation import activation_basis
from skindeep.dose.bases import BasisError, NamedBasis, load_basis, named_basis
from skindeep.models.loading import LoadedModel
from skindeep.prompts import PromptSet, split_prompts
from skindeep.runtime import ProgressLike
from skindeep.selection import SelectionError, SelectionOptions, select_direction


@dataclass(frozen=True)
class BasisRequest:
    """What a builder may use: models, the direction-finding prompts and the settings."""

    aligned: LoadedModel
    harmful: PromptSet
    harmless: PromptSet
    base: LoadedModel | None = None
    k_max: int = 4
    """Directions wanted (activation bases)."""
    layer: int | None = None
    """Layer of activation bases (None: the peak), or row of an [L, d] file tensor."""
    key: str | None = None
    """Tensor name inside a directions file."""
    alpha: float = 100.0
    """cPCA contrast weight."""
    batch_size: int = 16
    selection: SelectionOptions = field(default_factory=SelectionOptions)
    val_fraction: float = 0.2
    """Validation share of the selection's split."""
    seed: int = 0
    """Seed of the selection's split."""
    out: Path | None = None
    """Folder for selection.json and direction.safetensors (written before any failure)."""
    progress: ProgressLike = None


BasisBuilder = Callable[[str, BasisRequest], NamedBasis]


def select_basis(spec: str, req: BasisRequest) -> NamedBasis:
    """Arditi's selection on a train/validation split of the request's prompts.

    The result's `selection` holds every candidate (and the affine reference); with `req.out`
    selection.json is written before a SelectionError (no candidate passed) is raised.
    """
    val = req.val_fraction
    h_train, h_val = split_prompts(req.harmful, (1 - val, val), req.seed)
    l_train, l_val = split_prompts(req.harmless, (1 - val, val), req.seed)
    selection = select_direction(
        req.aligned,
        h_train,
        l_train,
        h_val,
        l_val,
        req.selection,
        progress=req.progress,
    )
    where = ""
    if req.out is not None:
        where = f" in {selection.save(req.out)}"
    try:
        best = selection.best
    except SelectionError as exc:
        raise SelectionError(f"{exc}{where}") from None
    source = f"Arditi selection: layer {best.layer}, position {best.position}"
    found = named_basis("arditi", selection.direction, source, best.layer)
    return replace(found, selection=selection)


def activation_builder(spec: str, req: BasisRequest) -> NamedBasis:
    """PCA, cPCA or SVD directions of the aligned model's activations (see `activation_basis`)."""
    return activation_basis(
        spec,  # type: ignore[arg-type]
        req.aligned,
        list(req.harmful),
        list(req.harmless),
        req.base,
        req.layer,
        req.k_max,
        req.alpha,
        req.batch_size,
    )


def file_builder(spec: str, req: BasisRequest) -> NamedBasis:
    """Directions from a safetensors file ([d], [d, k], or [L, d] / [L, d, k] with a layer)."""
    return load_basis(spec, req.aligned.adapter.hidden_size, req.key, req.layer)


BASIS_BUILDERS: dict[str, BasisBuilder] = {
    "select": select_basis,
    "pca": activation_builder,
    "cpca": activation_builder,
    "svd": activation_builder,
    "svd-did": activation_builder,
    "file": file_builder,
}
#: Builders that compare the aligned model with a base model (or, for svd, may).
BASE_USERS: tuple[str, ...] = ("pca", "cpca", "svd", "svd-did")


def builder_name(spec: str) -> str:
    """The registry name of a `--directions` entry: itself, or `file` for an existing path."""
    if spec in BASIS_BUILDERS and spec != "file":
        return spec
    if Path(spec).is_file():
        return "file"
    names = ", ".join(n for n in BASIS_BUILDERS if n != "file")
    raise BasisError(f"--directions {spec!r}: not one of {names}, and no such file exists")


def build_bases(specs: list[str] | tuple[str, ...], req: BasisRequest) -> list[NamedBasis]:
    """One NamedBasis per spec, in order, names made unique (`name#i` on a repeat)."""
    found: list[NamedBasis] = []
    for spec in specs:
        basis = BASIS_BUILDERS[builder_name(spec)](spec, req)
        if basis.name in [b.name for b in found]:
            basis = replace(basis, name=f"{basis.name}#{len(found) + 1}")
        found.append(basis)
    return found
