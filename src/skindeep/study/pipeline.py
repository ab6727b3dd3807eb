"""One model's pipeline: info, audit, ablation and tracked retention, each a cached step.

A step's record is a JSON file named by a content hash of the step's settings and the models'
fingerprints, written atomically; retention also writes one file per fine-tuning seed. So a
pipeline killed at any moment and run again recomputes nothing finished, and models are loaded
only when some step is missing. Steps call the public API of the stages (audit_pair,
select_direction, track_refusal); this module only wires them and reads their figures out.
"""

from __future__ import annotations

import fcntl
import json
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from skindeep.artifacts import atomic_write_json
from skindeep.cache import cache_root, content_hash
from skindeep.errors import SkindeepError
from skindeep.finetune.data import load_pairs, organism_pairs
from skindeep.finetune.tracking import VERSION as TRACKING_VERSION
from skindeep.finetune.tracking import track_refusal
from skindeep.models.loading import LoadedModel, fingerprint_checkpoint, load_model
from skindeep.prompts import resolve_prompt_spec, split_prompts
from skindeep.study.config import StudyConfig
from skindeep.study.dose_step import dose_settings, run_dose
from skindeep.study.sweep_steps import run_sweep, run_sweep_last_layer

#: Bump a step's version when its record changes for the same inputs (the others stay cached).
VERSIONS: dict[str, str] = {
    "info": "1", "audit": "2", "ablation": "1", "retention": "1", "rank": "1", "sweep": "1",
    "dose": "1", "sweep_last_layer": "1",
}  # fmt: skip


@dataclass(frozen=True)
class ModelJob:
    """One aligned model of a study and its base: what the pipeline needs (picklable)."""

    name: str
    aligned: str
    base: str
    recipe: str
    scope: str
    architecture: str
    size: str
    build_seed: int | None
    meets_behaviour: bool
    miss_reason: str | None = None
    setting: str | None = None
    """Replicates of one design (same zoo, base and recipe, other seeds) share it."""


def _fingerprint(source: str) -> str:
    """Content hash of a local checkpoint folder, else of the loaded model (hub id)."""
    path = Path(source).expanduser()
    if path.is_dir() and (path / "config.json").is_file():
        return fingerprint_checkpoint(path)
    return load_model(source).fingerprint


class _Models:
    """The pair, loaded on first need and kept for the remaining steps."""

    def __init__(self, job: ModelJob, device: str) -> None:
        self.job, self.device = job, device
        self._cache: dict[str, LoadedModel] = {}

    def get(self, which: str) -> LoadedModel:
        if which not in self._cache:
            self._cache[which] = load_model(getattr(self.job, which), device=self.device)
        return self._cache[which]


def _weight_change(aligned: Any, base: Any) -> float:
    """||theta_aligned - theta_base|| / ||theta_base|| over the parameters both share."""
    b = dict(base.named_parameters())
    num = den = 0.0
    for name, p in aligned.named_parameters():
        q = b.get(name)
        if q is None or q.shape != p.shape:
            continue
        num += float((p.detach().double() - q.detach().double()).pow(2).sum())
        den += float(q.detach().double().pow(2).sum())
    return math.sqrt(num / den) if den > 0 else math.nan


def _info(models: _Models, config: StudyConfig, folder: Path, done: dict) -> dict:
    aligned, base = models.get("aligned"), models.get("base")
    params = sum(p.numel() for p in aligned.model.parameters())
    return {
        "params": params,
        "log_params": math.log(params),
        "weight_change": _weight_change(aligned.model, base.model),
        "architecture": type(aligned.model).__name__.removesuffix("ForCausalLM").lower(),
        "num_layers": aligned.adapter.num_layers,
        "hidden_size": aligned.adapter.hidden_size,
    }


def _audit(models: _Models, config: StudyConfig, folder: Path, done: dict) -> dict:
    from skindeep.scores import audit_pair

    p = config.prompts
    harmful = resolve_prompt_spec(p.audit_harmful, harmful=True)
    harmless = resolve_prompt_spec(p.audit_harmless, harmful=False)
    res = audit_pair(models.get("aligned"), models.get("base"), harmful, harmless, config.audit)
    audit_json = folder / "audit.json"
    atomic_write_json(audit_json, res.to_json())  # per-layer profiles for the report
    g = res.geometry
    code = g.gfs["code"]
    i = int(code.peak_layer)  # row of argmax d (code variant) in the per-layer arrays
    return {
        "gfs_code": float(g.gfs["code"].gfs),
        "gfs_paper": float(g.gfs["paper"].gfs),
        "d_peak": float(code.d[i]),
        "c_peak": float(code.c[i]),
        "arditi_d_peak": float(g.arditi_d[i]),
        "peak_layer": int(g.layers[i]),
        "stores": res.stores,
        "audit_json": str(audit_json),
    }


def _ablation(models: _Models, config: StudyConfig, folder: Path, done: dict) -> dict:
    from skindeep.selection import SelectionError, SelectionOptions, select_direction

    p = config.prompts
    harmful = split_prompts(resolve_prompt_spec(p.direction_harmful, harmful=True), (0.5, 0.5))
    harmless = split_prompts(resolve_prompt_spec(p.direction_harmless, harmful=False), (0.5, 0.5))
    lm = models.get("aligned")
    opts = SelectionOptions(
        ablation=config.ablation_form,
        steering_threshold=config.steering_threshold,
        degenerate_check=config.degenerate_check,
    )
    sel = select_direction(
        lm, list(harmful[0]), list(harmless[0]), list(harmful[1]), list(harmless[1]), opts
    )
    try:
        best = sel.best
    except SelectionError as exc:
        return {"ablation_drop": None, "ablation_kl": None, "reason": str(exc)}
    return {
        "ablation_drop": float(sel.baseline_harmful - best.ablation_score),
        "ablation_kl": float(best.kl),
        "layer": int(best.layer),
        "position": int(best.position),
        "baseline_harmful": float(sel.baseline_harmful),
        "degenerate": best.degenerate,  # None unless the degenerate check generated from it
        "reason": None,
    }


def _retention(models: _Models, config: StudyConfig, folder: Path, done: dict) -> dict:
    """Tracked benign fine-tuning; `folder` holds the start and one file per seed."""
    p = config.prompts
    benign = organism_pairs() if p.benign == "organism" else load_pairs(p.benign)
    harmful = list(resolve_prompt_spec(p.eval_harmful, harmful=True))

    def load() -> tuple[Any, Any]:
        lm = models.get("aligned")
        return lm.model, lm.tokenizer

    start, runs = track_refusal(load, benign, harmful, config.tracking, folder)
    return {
        "start": {"scores": start.scores, "refusal": asdict(start.refusal)},
        "seeds": [asdict(r) for r in runs],
    }


def _rank(models: _Models, config: StudyConfig, folder: Path, done: dict) -> dict:
    """The effective-rank audit's scalar figures (no ablation, no neutral contrasts)."""
    from skindeep.scores.rank_audit import pair_rank_predictors
    from skindeep.scores.rank_config import RankAuditConfig

    p = config.prompts
    got = pair_rank_predictors(
        models.get("aligned"), models.get("base"),
        resolve_prompt_spec(p.audit_harmful, harmful=True),
        resolve_prompt_spec(p.audit_harmless, harmful=False),
        config=RankAuditConfig(batch_size=config.audit.batch_size),
    )  # fmt: skip
    return {k: float(v) for k, v in got.items()}


#: Each step: (models, config, its own folder for side files, earlier records) -> its record.
STEPS: dict[str, Callable[[_Models, StudyConfig, Path, dict], dict]] = {
    "info": _info, "audit": _audit, "ablation": _ablation, "retention": _retention,
    "rank": _rank, "sweep": run_sweep, "sweep_last_layer": run_sweep_last_layer,
    "dose": run_dose,
}  # fmt: skip


def _step_settings(name: str, config: StudyConfig) -> Any:
    """The part of the config a step's figures depend on."""
    p = config.prompts
    if name == "audit":
        return [config.audit.model_dump(mode="json", exclude={"cache_dir", "refresh"}),
                p.audit_harmful, p.audit_harmless]  # fmt: skip
    if name == "rank":
        return [config.audit.batch_size, p.audit_harmful, p.audit_harmless]
    if name == "ablation":
        return [config.ablation_form, config.steering_threshold, p.direction_harmful,
                p.direction_harmless, *config.degenerate_check_key]  # fmt: skip
    if name == "sweep":
        assert config.sweep is not None
        return [_step_settings("audit", config), config.sweep.model_dump(mode="json"),
                config.sweep_formats]  # fmt: skip
    if name == "dose":
        return dose_settings(config)
    if name == "sweep_last_layer":
        assert config.sweep is not None
        return [_step_settings("audit", config), config.sweep.model_dump(mode="json")]
    if name == "retention":
        t = config.tracking.model_dump(mode="json")
        t.pop("seeds")  # seeds are files inside the step folder: adding one reuses the others
        return [TRACKING_VERSION, t, p.eval_harmful, p.benign]
    return []


def step_folder(job: ModelJob, config: StudyConfig, root: Path | None = None) -> Path:
    """Where a model's step records live: $SKINDEEP_CACHE/study/<name>-<fingerprints>."""
    key = content_hash([_fingerprint(job.aligned), _fingerprint(job.base)])
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in job.name)[:60]
    return (root or cache_root()) / "study" / f"{slug}-{key}"


def enabled_steps(config: StudyConfig) -> list[str]:
    """The steps a model's pipeline runs under `config`, in order."""
    enabled = ["info"] + [s for s in ("audit", "ablation", "rank", "retention")
                          if getattr(config.steps, s)]  # fmt: skip
    if config.sweep is not None and config.steps.audit:
        enabled.append("sweep")
        if config.sweep_last_layer:
            enabled.append("sweep_last_layer")
    if config.steps.dose:
        enabled.append("dose")
    return enabled


def step_record_path(folder: Path, name: str, config: StudyConfig) -> Path:
    """The cached record of step `name` in a model's step folder (content-hash named)."""
    key = content_hash([VERSIONS[name], name, torch.__version__.split("+")[0],
                        _step_settings(name, config)])  # fmt: skip
    return folder / f"{name}-{key}.json"


def cached_record(job: ModelJob, config: StudyConfig, root: Path | None = None) -> dict | None:
    """The pipeline's record when every enabled step is cached (no model loaded), else None.

    The executors ask this first, so a warm study starts no worker process at all.
    """
    folder = step_folder(job, config, root)
    out: dict[str, Any] = {"seconds": {}, "folder": str(folder)}
    for name in enabled_steps(config):
        path = step_record_path(folder, name, config)
        if not path.is_file():
            return None
        try:
            out[name] = json.loads(path.read_text())
        except ValueError:  # unreadable: let the pipeline redo it
            return None
        out["seconds"][name] = out[name].get("seconds", 0.0)
    return out


def run_pipeline(job: ModelJob, config: StudyConfig, root: Path | None = None) -> dict:
    """Every enabled step of one model, cached; returns {step: record, 'seconds': {...}}."""
    torch.set_num_threads(1)
    folder = step_folder(job, config, root)
    models = _Models(job, config.device)
    out: dict[str, Any] = {"seconds": {}, "folder": str(folder)}
    for name in enabled_steps(config):
        path = step_record_path(folder, name, config)
        with _step_lock(folder / f".{path.stem}.lock"):  # one computer per step, any process
            if path.is_file():
                out[name] = json.loads(path.read_text())
                out["seconds"][name] = out[name].get("seconds", 0.0)
                continue
            began = time.perf_counter()
            try:
                record = STEPS[name](models, config, folder / path.stem, out)
            except SkindeepError as exc:
                out[name] = {"error": str(exc)}  # reported, not cached: a rerun tries again
                continue
            record["seconds"] = round(time.perf_counter() - began, 2)
            atomic_write_json(path, record)
        out[name] = record
        out["seconds"][name] = record["seconds"]
    return out


@contextmanager
def _step_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock (flock): two studies sharing a cache never compute the same
    step twice; the second waits and reads the first's record. The kernel releases the lock
    when its holder dies, even by SIGKILL, so a killed study never blocks the next."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
