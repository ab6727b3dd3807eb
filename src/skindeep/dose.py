"""Dose-response of refusal to directional ablation: refusal against k for each basis.

A basis is an ordered [d, k_max] set of orthonormal directions (the selected Arditi direction,
PCA or cPCA of aligned-vs-base differences, the SVD of a modification matrix, or a tensor from
a safetensors file); ablating its first k columns is dose k. Each dose is measured by the
keyword judge on greedy generations and by the refusal score, against random orthonormal nulls
of the same k (the min/max/mean band over draws) and, when harmless prompts are given, with the
next-token KL on them. Diagnostic only: nothing here saves an ablated or orthogonalised model.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from skindeep.activations.collect import collect, format_texts, formatting_adapter
from skindeep.activations.spec import ArraySink
from skindeep.cache import atomic_write_json
from skindeep.errors import SkindeepError
from skindeep.evaluation.generation import (
    ProgressLike,
    PromptFormat,
    generate,
    progress_callback,
)
from skindeep.evaluation.judges import Judge, KeywordJudge
from skindeep.evaluation.logits import (
    kl_divergence,
    last_token_logits,
    next_token_logprobs,
    refusal_score,
    refusal_tokens,
)
from skindeep.evaluation.rates import FlaggedPolicy, RefusalRate, refusal_rate
from skindeep.geometry.directions import cohens_d, cpca_subspace, pca_subspace
from skindeep.interventions import ablate, orthogonalize_weights, orthonormal_basis, random_nulls
from skindeep.interventions.hooks import AblationMode
from skindeep.models.adapter import ModelAdapter
from skindeep.models.loading import LoadedModel
from skindeep.selection import ABLATION_FORMS, AblationForm

MIN_NULL_DRAWS = 3
"""Fewest random null bases per dose (SPEC: at least 3 draws)."""


class BasisError(SkindeepError):
    """A direction file, key, layer or dimension k that cannot give the basis asked for."""


@dataclass(frozen=True)
class NamedBasis:
    """Ordered orthonormal directions to ablate; dose k removes the first k columns."""

    name: str
    basis: np.ndarray
    """[d, k_max] float64 orthonormal columns, most important first."""
    source: str
    """Where the directions came from, for reports."""
    layer: int | None = None
    """The layer they were computed at (None when not layer-specific)."""

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
    """Orthonormalise [d] or [d, k] directions in order (Gram-Schmidt keeps column 1's span)."""
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


# ---- bases from activations -----------------------------------------------------------------

BasisKind = Literal["pca", "cpca", "svd", "svd-did"]
BASIS_KINDS: tuple[str, ...] = ("pca", "cpca", "svd", "svd-did")


def _activations(
    lm: LoadedModel, prompts: list[str], fmt: PromptFormat, template: Any, batch_size: int
) -> np.ndarray:
    """[n, L, d] block outputs at the last prompt token, every layer."""
    sink = ArraySink()
    collect(
        lm.model,
        lm.tokenizer,
        lm.adapter,
        prompts,
        fmt=fmt,
        template_tokenizer=template,
        batch_size=batch_size,
        sink=sink,
    )
    return sink.array


def _layer_basis(
    kind: str, a: np.ndarray, b: np.ndarray, harmful: np.ndarray, k: int, alpha: float
) -> np.ndarray:
    """[d, <=k] directions at one layer from aligned rows `a` and reference rows `b` [n, d]."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    if kind == "pca":
        diff = a - b  # centered: at most n - 1 directions carry variance
        return pca_subspace(diff, min(k, diff.shape[0] - 1, diff.shape[1])).basis
    if kind == "cpca":
        rank = cpca_subspace(a, b, alpha, 1).spectrum.size
        return cpca_subspace(a, b, alpha, min(k, rank)).basis
    M = (a - b)[harmful]
    if kind == "svd-did":  # M_DiD: harmful columns minus the mean harmless column
        M = M - (a - b)[~harmful].mean(axis=0)
    u, s, _ = np.linalg.svd(M.T, full_matrices=False)
    keep = int(np.sum(s > s[0] * 1e-10)) if s.size and s[0] > 0 else 0
    if keep == 0:
        raise BasisError("the modification matrix is zero at this layer")
    return u[:, : min(k, keep)]


def activation_basis(
    kind: BasisKind,
    aligned: LoadedModel,
    harmful: Sequence[str],
    harmless: Sequence[str],
    base: LoadedModel | None = None,
    layer: int | None = None,
    k_max: int = 8,
    alpha: float = 100.0,
    batch_size: int = 16,
) -> NamedBasis:
    """PCA, cPCA or SVD directions of the aligned model's last-token block outputs (chat format).

    pca: PCA of D_l = H_aligned - H_base over all prompts (Skin-Deep, released code); cpca: top
    eigenvectors of cov(H_aligned) - alpha cov(H_base) (Skin-Deep, paper); svd: left singular
    vectors of M_template = H_aligned - H_base on harmful prompts (the audit's headline matrix),
    or without a base of M_aligned = H_aligned(chat) - H_aligned(raw); svd-did: of M_DiD, those
    harmful columns minus the mean harmless column (the effective-rank audit's difference in
    differences, which cancels what alignment changed on every prompt). The base is fed the aligned
    chat template. `layer` defaults to the Skin-Deep peak layer: the largest |Cohen's d|, harmful
    vs harmless, of the projection onto the layer's first direction (of D_l for pca, as in the
    released code; of the aligned activations for cpca, as in the paper, and for svd).
    """
    if kind not in BASIS_KINDS:
        raise BasisError(f"unknown basis kind {kind!r}; choose one of {', '.join(BASIS_KINDS)}")
    if base is None and kind not in ("svd", "svd-did"):
        raise BasisError(f"{kind} directions are aligned-vs-base differences: pass a base model")
    prompts = [*harmful, *harmless]
    mask = np.array([True] * len(harmful) + [False] * len(harmless))
    h_aligned = _activations(aligned, prompts, "chat", None, batch_size)
    if base is not None:
        h_ref = _activations(base, prompts, "chat", aligned.tokenizer, batch_size)
        reference = f"base {base.source}"
    else:
        h_ref = _activations(aligned, prompts, "raw", None, batch_size)
        reference = "aligned model on raw prompts"
    if h_ref.shape != h_aligned.shape:
        raise BasisError(
            f"aligned and base activations differ in shape: {h_ref.shape} vs "
            f"{h_aligned.shape} (not a version-matched pair)"
        )
    n_layers = h_aligned.shape[1]
    if layer is None:
        effect = []
        for lay in range(n_layers):
            v = _layer_basis(kind, h_aligned[:, lay], h_ref[:, lay], mask, 1, alpha)[:, 0]
            rows = h_aligned[:, lay].astype(np.float64)
            if kind == "pca":  # the released code's d_l projects D_l = H_aligned - H_base
                rows = rows - h_ref[:, lay].astype(np.float64)
            proj = rows @ v
            effect.append(abs(cohens_d(proj[mask], proj[~mask])))
        layer = int(np.nanargmax(effect))
    elif not -n_layers <= layer < n_layers:
        raise BasisError(f"layer {layer} out of range for a model with {n_layers} layers")
    layer %= n_layers
    matrix = _layer_basis(kind, h_aligned[:, layer], h_ref[:, layer], mask, k_max, alpha)
    source = f"{kind} of {aligned.source} vs {reference}, layer {layer}"
    return named_basis(kind, matrix, source, layer)


# ---- dose-response ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DoseOptions:
    """What a dose-response run ablates and how it generates."""

    ks: tuple[int, ...] = (1, 2, 4)
    """Doses: numbers of leading basis directions ablated."""
    mode: AblationMode = "all_layers"
    """`all_layers` (Arditi's directional ablation) or `band` (block outputs of `layers`)."""
    layers: tuple[int, ...] | None = None
    """Layers ablated in `band` mode."""
    n_random: int = 3
    """Random orthonormal null bases per k (at least MIN_NULL_DRAWS)."""
    seed: int = 0
    max_new_tokens: int = 64
    batch_size: int = 16
    fmt: PromptFormat = "chat"
    flagged: FlaggedPolicy = "exclude"
    """Where empty/degenerate generations go in the rate (see `refusal_rate`)."""
    ablation: AblationForm = "projection"
    """'projection' (h - U U^T h) or 'affine' (h - U U^T (h - mu_l), mu_l the `reference` means)."""


@dataclass(frozen=True)
class DosePoint:
    """Refusal on the harmful prompts (and KL on the harmless ones) at one dose."""

    k: int
    refusal: RefusalRate
    score: float
    """Mean refusal log-odds at the last prompt token."""
    kl: float | None
    """Mean KL(original || ablated) on harmless prompts; None without harmless prompts."""
    example: str
    """The response to the first harmful prompt."""

    def to_json(self) -> dict[str, Any]:
        """JSON-ready (NaN becomes null)."""
        rate = {k: _clean(v) for k, v in asdict(self.refusal).items()}
        return {
            "k": self.k,
            "refusal": rate,
            "score": _clean(self.score),
            "kl": _clean(self.kl),
            "example": self.example,
        }


@dataclass(frozen=True)
class DoseCurve:
    """One basis: a point per k."""

    name: str
    source: str
    layer: int | None
    points: tuple[DosePoint, ...]


@dataclass(frozen=True)
class NullBand:
    """Random orthonormal nulls of one k: every draw, and the band over draws."""

    k: int
    draws: tuple[DosePoint, ...]

    def band(self, field: Literal["rate", "score", "kl"]) -> dict[str, float | None]:
        """min, max and mean over draws of the refusal rate, the score or the KL."""
        values = [_value(p, field) for p in self.draws]
        finite = [v for v in values if v is not None and math.isfinite(v)]
        if not finite:
            return {"min": None, "max": None, "mean": None}
        return {"min": min(finite), "max": max(finite), "mean": float(np.mean(finite))}


def _value(point: DosePoint, field: str) -> float | None:
    """A DosePoint's rate, score or KL."""
    return {"rate": point.refusal.rate, "score": point.score, "kl": point.kl}[field]


def _clean(value: Any) -> Any:
    """NaN and infinities become None, so the JSON stays standard."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass(frozen=True)
class DoseResponse:
    """Baseline, one curve per basis, the null band per k, and how they were measured."""

    baseline: DosePoint
    curves: tuple[DoseCurve, ...]
    nulls: tuple[NullBand, ...]
    options: DoseOptions
    n_harmful: int
    n_harmless: int
    reference: str | None = None
    """How the affine reference points were computed (None for projection)."""

    def curve(self, name: str) -> DoseCurve:
        """The curve of the basis called `name`."""
        for c in self.curves:
            if c.name == name:
                return c
        raise KeyError(f"no basis {name!r}; bases: {[c.name for c in self.curves]}")

    def null(self, k: int) -> NullBand:
        """The null band at dose k."""
        return next(n for n in self.nulls if n.k == k)

    def to_json(self) -> dict[str, Any]:
        """The curve data, JSON-ready."""
        return {
            "options": asdict(self.options),
            "reference": self.reference,
            "n_harmful": self.n_harmful,
            "n_harmless": self.n_harmless,
            "baseline": self.baseline.to_json(),
            "curves": [
                {
                    "name": c.name,
                    "source": c.source,
                    "layer": c.layer,
                    "points": [p.to_json() for p in c.points],
                }
                for c in self.curves
            ],
            "nulls": [
                {
                    "k": n.k,
                    "rate": n.band("rate"),
                    "score": n.band("score"),
                    "kl": n.band("kl"),
                    "draws": [p.to_json() for p in n.draws],
                }
                for n in self.nulls
            ],
        }

    def save(self, folder: str | Path) -> tuple[Path, Path]:
        """Write dose.json and dose.png into `folder`; return both paths."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        data, figure = folder / "dose.json", folder / "dose.png"
        atomic_write_json(data, self.to_json())
        save_figure(dose_figure(self), figure)
        return data, figure


@dataclass(frozen=True)
class _Inputs:
    """What every dose is measured on: plain and formatted prompts, baseline, refusal ids."""

    harmful: list[str]
    harmful_texts: list[str]
    harmless_texts: list[str] | None
    baseline_logp: torch.Tensor | None
    refusal_ids: list[int]


def _measure(
    model: Any, tokenizer: Any, x: _Inputs, k: int, judge: Judge, opts: DoseOptions
) -> DosePoint:
    """One dose under whatever intervention is active: generations, score and KL."""
    responses = generate(
        model,
        tokenizer,
        x.harmful_texts,
        max_new_tokens=opts.max_new_tokens,
        batch_size=opts.batch_size,
    )
    rate = refusal_rate(judge.judge(x.harmful, responses), flagged=opts.flagged)
    scores = refusal_score(model, tokenizer, x.harmful_texts, x.refusal_ids, opts.batch_size)
    kl = None
    if x.harmless_texts and x.baseline_logp is not None:
        logp = next_token_logprobs(model, tokenizer, x.harmless_texts, opts.batch_size)
        kl = float(kl_divergence(x.baseline_logp, logp).mean())
    return DosePoint(k, rate, float(scores.mean()), kl, responses[0])


def dose_response(
    model: Any,
    tokenizer: Any,
    adapter: ModelAdapter,
    bases: Sequence[NamedBasis],
    harmful: Sequence[str],
    harmless: Sequence[str] | None = None,
    options: DoseOptions | None = None,
    judge: Judge | None = None,
    progress: ProgressLike = None,
    reference: np.ndarray | None = None,
    reference_note: str = "mean harmless activations per layer",
) -> DoseResponse:
    """Refusal against k for every basis and for `n_random` random nulls of each k.

    Prompts are plain texts, formatted per `options.fmt`; `judge` defaults to the keyword judge.
    Every k must be available from every basis (BasisError otherwise). Affine ablation needs
    `reference` [L, d], the mean harmless activations at the hooked site (`harmless_reference`);
    bases and random nulls are ablated against the same reference, described by `reference_note`
    in the result.
    """
    opts = options or DoseOptions()
    if not opts.ks or min(opts.ks) < 1:
        raise BasisError(f"doses k must be positive integers, got {list(opts.ks)}")
    if opts.n_random < MIN_NULL_DRAWS:
        raise BasisError(f"n_random must be >= {MIN_NULL_DRAWS} null draws, got {opts.n_random}")
    if opts.mode not in ("all_layers", "band") or (opts.mode == "band" and not opts.layers):
        raise BasisError(f"mode must be all_layers, or band with layers; got {opts.mode!r}")
    if opts.ablation not in ABLATION_FORMS:
        raise BasisError(f"ablation must be one of {ABLATION_FORMS}, got {opts.ablation!r}")
    if (opts.ablation == "affine") != (reference is not None):
        raise BasisError(
            "affine ablation needs the harmless reference means (and projection takes none)"
        )
    for b in bases:
        b.first(max(opts.ks))  # fail before any generation
    judge = judge or KeywordJudge()
    fmt_adapter = formatting_adapter(adapter, tokenizer, None)
    controls = format_texts(fmt_adapter, harmless, opts.fmt) if harmless else None
    x = _Inputs(
        harmful=list(harmful),
        harmful_texts=format_texts(fmt_adapter, harmful, opts.fmt),
        harmless_texts=controls,
        baseline_logp=next_token_logprobs(model, tokenizer, controls, opts.batch_size)
        if controls
        else None,
        refusal_ids=refusal_tokens(tokenizer),
    )

    total = 1 + len(opts.ks) * (len(bases) + opts.n_random)
    tick = progress_callback(progress, total, "dose-response")
    done = 0

    def point(basis: np.ndarray | None, k: int) -> DosePoint:
        nonlocal done
        where = {**_where(opts), "reference": reference}
        ctx = nullcontext() if basis is None else ablate(model, adapter, basis, **where)
        with ctx:
            measured = _measure(model, tokenizer, x, k, judge, opts)
        done += 1
        tick(done)
        return measured

    baseline = point(None, 0)
    curves = tuple(
        DoseCurve(b.name, b.source, b.layer, tuple(point(b.first(k), k) for k in opts.ks))
        for b in bases
    )
    d = adapter.hidden_size
    nulls = tuple(
        NullBand(k, tuple(point(U, k) for U in random_nulls(d, k, opts.n_random, opts.seed + k)))
        for k in opts.ks
    )
    note = reference_note if reference is not None else None
    return DoseResponse(baseline, curves, nulls, opts, len(harmful), len(harmless or ()), note)


def harmless_reference(
    lm: LoadedModel,
    harmless: Sequence[str],
    mode: AblationMode = "all_layers",
    fmt: PromptFormat = "chat",
    batch_size: int = 16,
) -> np.ndarray:
    """[L, d] mean harmless activations at the last prompt token: block inputs for "all_layers"
    ablation, block outputs for "band" (the reference points of affine ablation)."""
    sink = ArraySink()
    collect(
        lm.model,
        lm.tokenizer,
        lm.adapter,
        list(harmless),
        site="block_in" if mode == "all_layers" else "block_out",
        fmt=fmt,
        batch_size=batch_size,
        sink=sink,
    )
    return sink.array.astype(np.float64).mean(axis=0)


def _where(opts: DoseOptions) -> dict[str, Any]:
    """The `ablate` keyword arguments for the options' mode."""
    if opts.mode == "band":
        return {"mode": "band", "layers": list(opts.layers or ())}
    return {"mode": opts.mode}


# ---- weight check ----------------------------------------------------------------------------


def weight_check(
    model: Any,
    tokenizer: Any,
    adapter: ModelAdapter,
    basis: np.ndarray,
    prompts: Sequence[str],
    fmt: PromptFormat = "chat",
    batch_size: int = 16,
) -> float:
    """Max |logit difference| at the last token between hook ablation (all layers) and an
    in-memory copy with orthogonalised weights; the copy is dropped before returning."""
    texts = format_texts(formatting_adapter(adapter, tokenizer, None), prompts, fmt)
    with ablate(model, adapter, basis):
        hooked = last_token_logits(model, tokenizer, texts, batch_size)
    edited = orthogonalize_weights(model, adapter, basis)
    try:
        weighted = last_token_logits(edited, tokenizer, texts, batch_size)
    finally:
        del edited
    return float((hooked - weighted).abs().max())


# ---- figure ----------------------------------------------------------------------------------


def dose_figure(result: DoseResponse) -> Figure:
    """Two panels against k: keyword refusal rate and refusal score, null band shaded."""
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    ks = [n.k for n in result.nulls]
    for ax, field, label in (
        (axes[0], "rate", "refusal rate (keyword judge)"),
        (axes[1], "score", "refusal score (log-odds)"),
    ):
        bands = [n.band(field) for n in result.nulls]
        lo = [np.nan if b["min"] is None else b["min"] for b in bands]
        hi = [np.nan if b["max"] is None else b["max"] for b in bands]
        mean = [np.nan if b["mean"] is None else b["mean"] for b in bands]
        ax.fill_between(
            ks, lo, hi, color="0.85", label=f"random nulls (n={result.options.n_random})"
        )
        ax.plot(ks, mean, color="0.5", ls="--", lw=1)
        base = _value(result.baseline, field)
        if base is not None:
            ax.axhline(base, color="k", ls=":", lw=1, label="no ablation")
        for c in result.curves:
            ax.plot(
                [p.k for p in c.points],
                [_value(p, field) for p in c.points],
                marker="o",
                label=c.name,
            )
        if max(ks) >= 4 * min(ks):
            ax.set_xscale("log", base=2)
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.set_xlabel("k (directions ablated)")
        ax.set_ylabel(label)
    axes[0].set_ylim(-0.03, 1.03)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"dose-response ({result.options.mode}), {result.n_harmful} harmful prompts")
    return fig


def save_figure(fig: Figure, path: Path) -> Path:
    """Write a PNG through a temporary file and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=120, format="png")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
