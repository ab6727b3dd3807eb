"""The form of a directional ablation, as small strategy objects (after steering-vectors).

`Projection()` removes a subspace: h <- h - U U^T h (Arditi et al. 2024). `Affine(reference)`
moves activations to a reference point's coordinates along it instead of zero:
h <- h - U U^T (h - mu_l), mu_l the mean harmless activation at the hooked site of layer l
(affine concept editing, Marshall et al. 2024). The hooks (`interventions.ablate`), the
selection's vectorised scoring and the dose runner all take one of these objects, so the form
and its reference travel together and are never restated.

>>> import numpy as np
>>> Projection().name, Affine(np.zeros((2, 3))).name
('projection', 'affine')
>>> ablation_form("affine", np.ones(3)).reference.shape
(3,)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
from numpy.typing import ArrayLike

if TYPE_CHECKING:  # torch loads on first use: configs naming a form stay light to import
    import torch

AblationForm = Literal["projection", "affine"]
"""The name of an ablation form, as configs and the CLI spell it."""
ABLATION_FORMS: tuple[str, ...] = ("projection", "affine")


@dataclass(frozen=True)
class Projection:
    """Remove span(U): h <- h - U U^T h at every hooked site."""

    name: AblationForm = field(default="projection", init=False)
    note: str | None = field(default=None, init=False)

    def shifts(self, U: torch.Tensor, num_layers: int) -> list[torch.Tensor | None]:
        """Per layer, what is added back after projecting: nothing."""
        return [None] * num_layers


@dataclass(frozen=True, eq=False)
class Affine:
    """Move span(U)-coordinates to the reference's: h <- h - U U^T (h - mu_l).

    `reference` is [d] (every layer) or [L, d] (one mean per layer), the mean harmless
    activation at the hooked site: block inputs for all-layer ablation, block outputs for a
    band. `note` says how it was computed, for reports.
    """

    reference: np.ndarray
    note: str | None = None
    name: AblationForm = field(default="affine", init=False)

    def __post_init__(self) -> None:
        ref = np.asarray(self.reference, dtype=np.float64)
        if ref.ndim not in (1, 2) or not np.isfinite(ref).all():
            raise ValueError(
                f"reference must be [d] or [L, d] finite values, got shape {ref.shape}"
            )
        object.__setattr__(self, "reference", ref)

    def shifts(self, U: torch.Tensor, num_layers: int) -> list[torch.Tensor | None]:
        """Per layer, U U^T mu_l: the reference's component in span(U) (float64, CPU)."""
        return reference_shifts(U, self.reference, num_layers)


Ablation = Projection | Affine
"""An ablation form: `Projection()` or `Affine(reference)`."""


def ablation_form(
    form: AblationForm, reference: ArrayLike | None = None, note: str | None = None
) -> Ablation:
    """The strategy named `form`; affine needs its `reference`, projection takes none."""
    if form == "projection":
        if reference is not None:
            raise ValueError("projection ablation takes no reference (use 'affine')")
        return Projection()
    if form == "affine":
        if reference is None:
            raise ValueError("affine ablation needs a reference: the mean harmless activations")
        return Affine(np.asarray(reference, dtype=np.float64), note)
    raise ValueError(f"ablation must be one of {ABLATION_FORMS}, got {form!r}")


def reference_shifts(
    U: torch.Tensor, reference: ArrayLike | torch.Tensor, num_layers: int
) -> list[torch.Tensor | None]:
    """Per layer, U U^T mu_l for a reference [d] (every layer) or [L, d]."""
    import torch

    ref = torch.as_tensor(np.asarray(reference, dtype=np.float64))
    d = U.shape[0]
    if ref.ndim == 1:
        ref = ref.expand(num_layers, -1)
    if ref.shape != (num_layers, d) or not torch.isfinite(ref).all():
        raise ValueError(
            f"reference must be [{d}] or [{num_layers}, {d}] finite values (one mean per layer), "
            f"got shape {tuple(ref.shape)}"
        )
    U = U.to(torch.float64)
    return [U @ (U.T @ ref[i]) for i in range(num_layers)]
