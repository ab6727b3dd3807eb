"""The effective-rank calibration task on a small MLP (SPEC section 3), in plain torch.

A 20 -> 128 -> 128 -> 128 ReLU network (plus a linear read-out) learns y = 1[x4 x5 - x6 x7 > 0]
(the base), then is aligned: inside a "safety region" x1, x2, x3 > 1 the label is forced to 0.
Alignment is regularised by lambda * sum_l [stable-rank loss + column-orthogonality loss] of the
modification matrix M_l = h_aligned,l(x) - h_base,l(x) over the region inputs of each batch
(columns), so lambda controls how spread out the safety change is (target "weights" shapes
each hidden weight matrix instead, the other reading of SPEC's "sum over layers").

Inputs are standard normal except x1..x3, shifted by REGION_SHIFT so that the region holds 30%
of them (under N(0, 1) the region x1, x2, x3 > 1 would hold 0.4%; the SPEC says about 30%).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from itertools import pairwise
from statistics import NormalDist
from typing import Literal

import numpy as np
import torch
from torch import nn

N_FEATURES = 20
WIDTH = 128
DEPTH = 3
STABLE_RANK_TARGET = 64.0
REGION_SHARE = 0.3
REGION_SHIFT = 1.0 + NormalDist().inv_cdf(REGION_SHARE ** (1 / 3))
"""Mean of x1..x3 that puts REGION_SHARE of inputs in x1, x2, x3 > 1 (about 1.44)."""


@dataclass(frozen=True)
class Batch:
    """Inputs and their labels: the task label, the region mask and the aligned label."""

    x: torch.Tensor
    task: torch.Tensor
    region: torch.Tensor
    y: torch.Tensor
    """Aligned label: the task label outside the region, 0 inside."""


def make_data(n: int, generator: torch.Generator) -> Batch:
    """n inputs of the calibration task (float32), drawn with `generator`."""
    x = torch.randn(n, N_FEATURES, generator=generator)
    x[:, :3] += REGION_SHIFT
    task = (x[:, 3] * x[:, 4] - x[:, 5] * x[:, 6] > 0).float()
    region = (x[:, :3] > 1).all(dim=1)
    return Batch(x, task, region, torch.where(region, torch.zeros_like(task), task))


Ablation = list[tuple[torch.Tensor, torch.Tensor] | None]
"""Per hidden layer, (U [128, k], reference [128] or [n, 128]) or None (layer untouched)."""

Target = Literal["weights", "modification"]
"""What the regulariser shapes: each hidden layer's weight matrix W_l [out, in] (columns =
input units), or the modification matrix M_l = (h_aligned - h_base)^T on the batch's region
inputs (columns = inputs)."""


class MLP(nn.Module):
    """20 -> 128 -> 128 -> 128 (ReLU) and a linear logit; `forward` can ablate hidden layers."""

    def __init__(self) -> None:
        super().__init__()
        sizes = [N_FEATURES] + [WIDTH] * DEPTH
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in pairwise(sizes))
        self.head = nn.Linear(WIDTH, 1)

    def forward(
        self, x: torch.Tensor, ablate: Ablation | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits [n] and the hidden activations [n, 128] per layer. `ablate[l]` = (U, ref), U a
        [128, k] orthonormal basis and ref a [128] or per-input [n, 128] reference, edits layer
        l's output affinely, h <- h - U U^T (h - ref): along U inputs get ref's coordinates."""
        hs = []
        h = x
        for i, layer in enumerate(self.hidden):
            h = torch.relu(layer(h))
            if ablate is not None and ablate[i] is not None:
                u, mu = ablate[i]
                h = h - ((h - mu) @ u) @ u.T
            hs.append(h)
        return self.head(h).squeeze(-1), hs


def stable_rank_loss(m: torch.Tensor) -> torch.Tensor:
    """max(0, 64 - ||M||_F^2 / ||M||_2^2)^2 / 64^2 (zero once the stable rank reaches 64)."""
    fro2 = (m**2).sum()
    spec2 = torch.linalg.matrix_norm(m, ord=2) ** 2
    gap = torch.clamp(STABLE_RANK_TARGET - fro2 / (spec2 + 1e-12), min=0.0)
    return gap**2 / STABLE_RANK_TARGET**2


def column_orthogonality_loss(m: torch.Tensor) -> torch.Tensor:
    """||M^T M - (||M||_F^2 / n) I||_F^2 / ||M||_F^4 for M [d, n]: orthogonal, equal columns."""
    n = m.shape[1]
    gram = m.T @ m
    fro2 = (m**2).sum()
    target = fro2 / n * torch.eye(n, dtype=m.dtype, device=m.device)
    return ((gram - target) ** 2).sum() / (fro2**2 + 1e-12)


def regulariser(matrices: list[torch.Tensor]) -> torch.Tensor:
    """Sum over layers of the stable-rank and column-orthogonality losses of each M [d, n]."""
    total = torch.zeros(())
    for m in matrices:
        if m.shape[1] < 2 or not torch.any(m != 0):
            continue
        total = total + stable_rank_loss(m) + column_orthogonality_loss(m)
    return total


def _train(
    model: MLP, labels: str, steps: int, gen: torch.Generator, lam: float = 0.0,
    base: MLP | None = None, target: Target = "modification", batch: int = 256, lr: float = 1e-3,
) -> MLP:  # fmt: skip
    """Adam on BCE against `labels` ('task' or 'y'), plus lam * regulariser when `base` is set."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    bce = nn.BCEWithLogitsLoss()
    for _ in range(steps):
        data = make_data(batch, gen)
        logits, hs = model(data.x)
        loss = bce(logits, getattr(data, labels))
        if base is not None and lam > 0:
            if target == "weights":
                matrices = [layer.weight for layer in model.hidden]
            else:
                with torch.no_grad():
                    _, hs_base = base(data.x[data.region])
                matrices = [(h[data.region] - b).T for h, b in zip(hs, hs_base, strict=True)]
            loss = loss + lam * regulariser(matrices)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def train_base(seed: int, steps: int = 1200) -> MLP:
    """The base network: the task alone, no safety region."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    return _train(MLP(), "task", steps, gen).eval()


def align(
    base: MLP, lam: float, seed: int, steps: int = 600, target: Target = "modification"
) -> MLP:
    """A copy of `base` fine-tuned on the aligned labels with lam * regulariser."""
    gen = torch.Generator().manual_seed(10_000 + seed)
    model = copy.deepcopy(base).train()
    return _train(model, "y", steps, gen, lam=lam, base=base, target=target).eval()


def hidden_states(model: MLP, x: torch.Tensor) -> list[np.ndarray]:
    """Per hidden layer, activations [n, 128] as float64 numpy."""
    with torch.no_grad():
        _, hs = model(x)
    return [h.double().numpy() for h in hs]


def accuracy(model: MLP, data: Batch, ablate: Ablation | None = None) -> tuple[float, float]:
    """(safety accuracy: share of region inputs predicted 0, task accuracy outside the region)."""
    with torch.no_grad():
        logits, _ = model(data.x, ablate)
    pred = (logits > 0).float()
    safety = float((pred[data.region] == 0).float().mean())
    outside = ~data.region
    task = float((pred[outside] == data.task[outside]).float().mean())
    return safety, task
