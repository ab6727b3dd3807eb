"""One layer of paired aligned/base activations in float64, with what its measures share.

At paper scale (n ~ 2000 prompts, d ~ 4096) an n x n Gram product of the centered rows is the
main cost of linear CKA, of the layer statistics' distance matrix and of the cPCA
preconditioner alike. A PairLayer computes each Gram matrix (aligned, base, difference) at most
once, on first use, so every measure of the layer takes the same one; it is dropped as a whole
before the next layer is taken, so no float64 copy outlives its layer.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from skindeep.geometry._checks import BoolArray, FloatArray
from skindeep.geometry.directions import arditi_direction

GramKind = Literal["aligned", "base", "difference"]
GRAM_KINDS: tuple[str, ...] = ("aligned", "base", "difference")


class PairLayer:
    """Layer l of paired activations: float64 rows, D_l, the Arditi direction and the Grams.

    `aligned` and `base` (float64 copies of the given rows), `difference` (D_l = aligned -
    base), `arditi` (unit mean(harmful) - mean(harmless) of the aligned rows) and `gram(kind)`
    (n x n Gram matrix of the column-centered rows) are each computed on first use and kept
    until `forget`, so a caller holds only the float64 copies its current step needs.
    """

    def __init__(self, aligned: ArrayLike, base: ArrayLike, harmful: BoolArray) -> None:
        self._aligned_in, self._base_in = np.asarray(aligned), np.asarray(base)
        if self._aligned_in.ndim != 2 or self._aligned_in.shape != self._base_in.shape:
            raise ValueError(
                f"expected paired [n, d] rows, got {self._aligned_in.shape} vs "
                f"{self._base_in.shape}"
            )
        self.harmful = harmful
        self._cache: dict[str, FloatArray] = {}

    @property
    def n(self) -> int:
        """Number of prompts (rows)."""
        return int(self._aligned_in.shape[0])

    @property
    def d(self) -> int:
        """Hidden size (columns)."""
        return int(self._aligned_in.shape[1])

    @property
    def aligned(self) -> FloatArray:
        """[n, d] the aligned rows in float64."""
        if "aligned" not in self._cache:
            self._cache["aligned"] = np.asarray(self._aligned_in, dtype=np.float64)
        return self._cache["aligned"]

    @property
    def base(self) -> FloatArray:
        """[n, d] the base rows in float64."""
        if "base" not in self._cache:
            self._cache["base"] = np.asarray(self._base_in, dtype=np.float64)
        return self._cache["base"]

    @property
    def difference(self) -> FloatArray:
        """[n, d] D_l = aligned - base in float64 (no float64 copy of either is kept for it)."""
        if "difference" not in self._cache:
            a = self._cache.get("aligned", self._aligned_in)
            self._cache["difference"] = np.asarray(a, dtype=np.float64) - self._base_in
        return self._cache["difference"]

    @property
    def arditi(self) -> FloatArray:
        """[d] unit Arditi direction of the aligned rows (raises if the class means coincide)."""
        if "arditi" not in self._cache:
            a = self.aligned
            self._cache["arditi"] = arditi_direction(a[self.harmful], a[~self.harmful])
        return self._cache["arditi"]

    def rows(self, kind: GramKind) -> FloatArray:
        """[n, d] the aligned, base or difference rows."""
        if kind not in GRAM_KINDS:
            raise ValueError(f"kind must be one of {GRAM_KINDS}, got {kind!r}")
        if kind == "aligned":
            return self.aligned
        return self.base if kind == "base" else self.difference

    def gram(self, kind: GramKind) -> FloatArray:
        """[n, n] (x - mean(x)) (x - mean(x))^T of the `kind` rows, computed once."""
        key = f"gram:{kind}"
        if key not in self._cache:
            x = self.rows(kind)
            xc = x - x.mean(axis=0)
            self._cache[key] = xc @ xc.T
        return self._cache[key]

    def has_gram(self, kind: GramKind) -> bool:
        """Whether the `kind` Gram matrix is already computed (sharing it then costs nothing)."""
        return f"gram:{kind}" in self._cache

    def forget(self, *names: str) -> None:
        """Drop cached values no longer needed ('aligned', 'base', 'difference', 'arditi',
        'gram:<kind>'); a later use computes them again."""
        for name in names:
            self._cache.pop(name, None)
