"""The ablation experiment behind `skindeep ablate`: find bases, then refusal against k.

Directions are found on one harmful/harmless pair and measured on a disjoint evaluation pair:
refusal (refused, complied and degenerate counted apart) on the evaluation harmful prompts,
and the next-token KL on the evaluation harmless prompts (held-out, unlike the selection's
validation KL). Diagnostic only: nothing here saves an ablated model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from skindeep.artifacts import atomic_write_json
from skindeep.dose.bases import NamedBasis
from skindeep.dose.options import DEFAULT_KS, AblateConfig, DoseOptions
from skindeep.dose.registry import BASE_USERS, BasisRequest, build_bases, builder_name
from skindeep.dose.result import DoseResponse
from skindeep.dose.runner import dose_response, harmless_reference
from skindeep.dose.weights import weight_check
from skindeep.errors import ConfigError
from skindeep.interventions import Affine, Projection, bands, writer_paths
from skindeep.models.loading import LoadedModel
from skindeep.prompts import PromptSet, check_disjoint, check_pair
from skindeep.runtime import ProgressLike
from skindeep.selection import DirectionSelection


@dataclass(frozen=True)
class AblationRun:
    """The bases found, their dose-response and the weight checks."""

    bases: tuple[NamedBasis, ...]
    dose: DoseResponse
    weight_checks: dict[str, dict[int, float]] = field(default_factory=dict)
    """Per basis and k, max |logit difference| of hooks vs orthogonalised weights."""

    @property
    def selection(self) -> DirectionSelection | None:
        """Arditi's selection, when one of the bases came from it."""
        return next((b.selection for b in self.bases if b.selection is not None), None)

    def save(self, folder: str | Path) -> list[Path]:
        """Write dose.json, dose.png (selection.json and direction.safetensors when a basis came
        from Arditi's selection, weight_check.json when weights were checked) into `folder`;
        return the paths."""
        folder = Path(folder)
        paths = list(self.dose.save(folder))
        if self.selection is not None:
            self.selection.save(folder)  # the same files `ablate(out=...)` wrote, if it did
            paths += [folder / "selection.json", folder / "direction.safetensors"]
        if self.weight_checks:
            path = folder / "weight_check.json"
            atomic_write_json(path, {"max_abs_logit_diff": self.weight_checks})
            paths.append(path)
        return paths


def _as_set(prompts: PromptSet | Sequence[str], name: str) -> PromptSet:
    """A PromptSet (validated: non-empty, distinct) from a set or a list of texts."""
    if isinstance(prompts, PromptSet):
        return prompts
    return PromptSet(name, tuple(prompts), "given")


def _disjoint(find: PromptSet, evaluate: PromptSet) -> None:
    """Held-out evaluation prompts must not be among those used to find directions."""
    check_disjoint(
        evaluate,
        find,
        f"evaluation prompt(s) of {evaluate.source} are also used to find directions "
        f"({find.source})",
        "use disjoint sets",
    )


def check_inputs(
    harmful: PromptSet | Sequence[str],
    harmless: PromptSet | Sequence[str],
    eval_harmful: PromptSet | Sequence[str],
    eval_harmless: PromptSet | Sequence[str],
    config: AblateConfig,
    with_base: bool = False,
) -> dict[str, PromptSet]:
    """Validate `ablate`'s inputs before any model is loaded; the four prompt sets by name.

    Both pairs are valid, the evaluation prompts are disjoint from the direction-finding ones,
    every direction names a builder, and a base model is only given to bases that use one.
    """
    sets = {
        name: _as_set(p, name)
        for name, p in (
            ("harmful", harmful),
            ("harmless", harmless),
            ("eval_harmful", eval_harmful),
            ("eval_harmless", eval_harmless),
        )
    }
    check_pair(sets["harmful"], sets["harmless"])
    check_pair(sets["eval_harmful"], sets["eval_harmless"])
    _disjoint(sets["harmful"], sets["eval_harmful"])
    _disjoint(sets["harmless"], sets["eval_harmless"])
    kinds = [builder_name(spec) for spec in config.directions]
    if with_base and not set(kinds) & set(BASE_USERS):
        raise ConfigError("a base model is only used by directions pca, cpca, svd or svd-did")
    return sets


def ablate(
    model: LoadedModel | str | Path,
    harmful: PromptSet | Sequence[str],
    harmless: PromptSet | Sequence[str],
    eval_harmful: PromptSet | Sequence[str],
    eval_harmless: PromptSet | Sequence[str],
    config: AblateConfig | None = None,
    *,
    base: LoadedModel | str | Path | None = None,
    out: str | Path | None = None,
    progress: ProgressLike = None,
) -> AblationRun:
    """Find each basis of `config.directions` on harmful/harmless, then measure refusal
    against k on the disjoint evaluation prompts, with random nulls and the evaluation KL.

    With `out`, selection.json is written there as soon as the selection ends (before a
    failure); call `.save(out)` on the result for dose.json and dose.png.

    >>> find = organism_prompts(True, "train", n=32), organism_prompts(False, "train", n=32)
    >>> held = organism_prompts(True, "heldout", n=8), organism_prompts(False, "heldout", n=8)
    >>> run = ablate(micro_dpo, *find, *held, AblateConfig(ablation="affine", max_new_tokens=8))
    >>> run.dose.curves[0].name, run.selection.best.passed, run.dose.ablation
    ('arditi', True, 'affine')
    >>> test = run.dose.causal_test("arditi")  # degenerate outputs count against it
    >>> test.total, test.kl is not None
    (8, True)
    """
    from skindeep.models import load_model

    cfg = config or AblateConfig()
    sets = check_inputs(harmful, harmless, eval_harmful, eval_harmless, cfg, base is not None)
    lm = model if isinstance(model, LoadedModel) else load_model(str(model))
    if cfg.check_weights:
        writer_paths(lm.adapter)  # fail before the dose-response run, not after it
    base_lm = base if base is None or isinstance(base, LoadedModel) else load_model(str(base))
    request = BasisRequest(
        aligned=lm,
        harmful=sets["harmful"],
        harmless=sets["harmless"],
        base=base_lm,
        k_max=max(cfg.ks or DEFAULT_KS),
        layer=cfg.layer,
        key=cfg.key,
        alpha=cfg.alpha,
        batch_size=cfg.batch_size,
        selection=cfg.selection.model_copy(update={"batch_size": cfg.batch_size}),
        val_fraction=cfg.val_fraction,
        seed=cfg.seed,
        out=None if out is None else Path(out),
        progress=progress,
    )
    found = build_bases(cfg.directions, request)
    ks = cfg.ks or tuple(x for x in DEFAULT_KS if x <= min(b.k_max for b in found))
    options = DoseOptions(
        ks=ks,
        mode=cfg.mode,
        layers=tuple(getattr(bands(lm.adapter.num_layers), cfg.band))
        if cfg.mode == "band"
        else None,
        n_random=cfg.n_random,
        seed=cfg.seed,
        max_new_tokens=cfg.max_new_tokens,
        batch_size=cfg.batch_size,
        flagged=cfg.flagged,
    )
    ablation = _ablation_form(cfg, lm, found, sets["harmless"])
    result = dose_response(
        lm,
        found,
        list(sets["eval_harmful"]),
        list(sets["eval_harmless"]),
        options,
        progress=progress,
        ablation=ablation,
    )
    checks: dict[str, dict[int, float]] = {}
    if cfg.check_weights:
        for b in found:
            checks[b.name] = {
                k: weight_check(
                    lm.model,
                    lm.tokenizer,
                    lm.adapter,
                    b.first(k),
                    list(sets["eval_harmful"]),
                    batch_size=cfg.batch_size,
                )
                for k in ks
            }
    return AblationRun(tuple(found), result, checks)


def _ablation_form(
    cfg: AblateConfig, lm: LoadedModel, found: list[NamedBasis], harmless: PromptSet
) -> Affine | Projection:
    """One form for every basis and null: with a selected direction (all layers) its own
    reference (the harmless means its candidates were scored against), else the mean block
    inputs (outputs in a band) of the harmless prompts at the last token."""
    if cfg.ablation == "projection":
        return Projection()
    selected = next((b.selection for b in found if b.selection is not None), None)
    if selected is not None and cfg.mode == "all_layers":
        form = selected.ablation
        assert isinstance(form, Affine)
        return form
    site = "block inputs" if cfg.mode == "all_layers" else "block outputs"
    reference = harmless_reference(lm, list(harmless), cfg.mode, batch_size=cfg.batch_size)
    note = f"mean {site} of the {len(harmless)} direction-finding harmless prompts, last token"
    return Affine(reference, note)
