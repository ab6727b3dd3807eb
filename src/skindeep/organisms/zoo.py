"""Build a zoo of organisms from a spec: content-hash cache, atomic folders, resumable.

Each organism is an ordinary checkpoint folder (`save_pretrained`) with `organism.json`
recording its spec, recipe, size, parameter count, seed, training statistics and behaviour on
held-out topics. A folder's name is the hash of everything that determines its weights, so an
unchanged spec is never rebuilt and a killed build resumes where it stopped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from skindeep.artifacts import atomic_directory
from skindeep.cache import cache_root, content_hash
from skindeep.errors import ConfigError
from skindeep.models.loading import load_tokenizer
from skindeep.organisms.behaviour import Behaviour, measure_behaviour
from skindeep.organisms.data import organism_data, organism_data_split
from skindeep.organisms.language import ChatLanguage
from skindeep.organisms.pretrain import train_base
from skindeep.organisms.recipes import SELECT_FIELDS, align
from skindeep.organisms.rl import LEGACY_RL_DEFAULTS, RL_ONLY_FIELDS
from skindeep.organisms.spec import AlignedSpec, BaseSpec, EvalSpec, ZooSpec
from skindeep.organisms.tokenizer import build_tokenizer
from skindeep.organisms.training import TrainConfig
from skindeep.workers import process_pool

#: Bump when training code changes in a way that changes weights for the same spec.
BUILD_VERSION = "2"
#: Per-recipe versions: bump one when only that recipe's training changes (a kind absent here
#: hashes as before). rl_ai_judge 2: the judge scores with position ids that skip left padding.
#: RL 3: guards against reward hacking (hard-negative reward, checkpoint selection, rl.py).
RECIPE_VERSIONS: dict[str, int] = {"rl_ai_judge": 3, "rl_reward_model": 3}
#: Per-scope versions, the same idiom for training scopes. lora 2: the adapter is initialised
#: from the build seed, not from whatever the process's global generator held (2026-12-02).
SCOPE_VERSIONS: dict[str, int] = {"lora": 2}
METADATA = "organism.json"


@dataclass(frozen=True)
class Organism:
    """A built organism: where it lives and what it records."""

    name: str
    path: Path
    meta: dict

    @property
    def kind(self) -> str:
        """'base' or 'aligned'."""
        return self.meta["kind"]

    @property
    def behaviour(self) -> Behaviour:
        """Refusal rates on held-out harmful and harmless topics."""
        return Behaviour.from_dict(self.meta["behaviour"])

    @property
    def meets_behaviour(self) -> bool:
        """Whether it met its behaviour targets (aligned: refuses >= 0.9 of held-out harmful
        prompts and <= 0.1 of harmless ones; base: refuses < 0.1). Studies leave misses out."""
        if "meets_behaviour" in self.meta:
            return bool(self.meta["meets_behaviour"])
        return self.behaviour.passes(self.kind)  # folders built before the flag was recorded

    @property
    def build_seed(self) -> int:
        """The zoo build seed it was built at (0 for folders built before build seeds)."""
        return int(self.meta.get("build_seed", 0))

    def load(self) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
        """Open the checkpoint like any Hugging Face model."""
        model = AutoModelForCausalLM.from_pretrained(self.path, dtype=torch.float32).eval()
        return model, load_tokenizer(self.path)


def organisms_dir() -> Path:
    """Folder holding every built organism."""
    return cache_root() / "organisms"


def language_key(language: ChatLanguage) -> str:
    """Content hash of an organism language (topics, held-out split, vocabulary, facts): part
    of every base organism's hash, so each language builds its own organisms."""
    return content_hash(
        {
            "topics": [t.__dict__ for t in language.topics],
            "heldout": language.heldout,
            "vocab": language.vocabulary(),
            "facts": len(language.facts()),
        }
    )


def base_key(spec: BaseSpec, language: ChatLanguage) -> str:
    """Content hash of everything that fixes a base organism's weights."""
    return content_hash(
        {
            "v": BUILD_VERSION,
            "lang": language_key(language),
            "spec": spec.model_dump(exclude={"name"}),
            "torch": torch.__version__.split("+")[0],
        }
    )


def aligned_key(spec: AlignedSpec, base_hash: str) -> str:
    """Content hash of an aligned organism: its base's hash, recipe, seed and recipe version.

    The recipe version enters the payload only for kinds listed in RECIPE_VERSIONS, the scope
    version only for scopes in SCOPE_VERSIONS; the checkpoint-selection fields only when
    selection is on. Fields only the RL recipes read are hashed for RL kinds only, at their
    pre-version-3 defaults for others (they never change those weights), so the hashes of all
    other recipes stay what they were.
    """
    recipe = spec.recipe.model_dump()
    if not spec.recipe.selects_on_topics:
        recipe = {k: v for k, v in recipe.items() if k not in SELECT_FIELDS}
    if not spec.recipe.kind.startswith("rl_"):
        recipe = {k: v for k, v in recipe.items() if k not in RL_ONLY_FIELDS}
        recipe.update(LEGACY_RL_DEFAULTS)
    payload: dict = {"v": BUILD_VERSION, "base": base_hash, "recipe": recipe, "seed": spec.seed}
    if (version := RECIPE_VERSIONS.get(spec.recipe.kind)) is not None:
        payload["recipe_version"] = version
    if (version := SCOPE_VERSIONS.get(spec.recipe.scope)) is not None:
        payload["scope_version"] = version
    return content_hash(payload)


def _save(model: PreTrainedModel, tokenizer, meta: dict, final: Path) -> Organism:
    with atomic_directory(final) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / METADATA).write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))
    return Organism(meta["name"], final, meta)


def read_organism(path: Path) -> Organism:
    """Open a built organism folder's record; a ConfigError naming the file if it is unreadable."""
    file = path / METADATA
    try:
        meta = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{file} is corrupt ({exc}); delete its folder and rebuild") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
        raise ConfigError(f"{file} is corrupt (no organism name); delete its folder and rebuild")
    return Organism(meta["name"], path, meta)


Report = Callable[[str, str], None]


@contextmanager
def _single_thread() -> Iterator[None]:
    """Organisms train on one thread: faster for tiny matrices, and bit-identical for any
    `workers` on one machine (another CPU picks other float kernels: README)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _build_base(
    b: BaseSpec,
    key: str,
    path: Path,
    language: ChatLanguage,
    settings: EvalSpec,
    build_seed: int = 0,
) -> Organism:
    """Train, measure and save one base organism."""
    with _single_thread():
        start = (time.perf_counter(), time.process_time())
        tokenizer = build_tokenizer(language)
        tc = TrainConfig(steps=b.steps, lr=b.lr, batch_size=b.batch_size, seed=b.seed)
        model, stats = train_base(b.family, b.size, language, tokenizer, tc)
        meta = _meta(b.name, "base", b.model_dump(), model, b.seed, {"base": stats.to_dict()}, key)
        meta.update(family=b.family, size=b.size, build_seed=build_seed)
        _record_behaviour(meta, measure_behaviour(model, tokenizer, language, settings), start)
        return _save(model, tokenizer, meta, path)


def _record_behaviour(meta: dict, behaviour: Behaviour, start: tuple[float, float]) -> None:
    """Behaviour, its verdict, wall and CPU seconds (CPU seconds: what an idle core takes)."""
    meta["behaviour"] = behaviour.to_dict()
    meta["meets_behaviour"] = behaviour.passes(meta["kind"])
    meta["seconds"] = round(time.perf_counter() - start[0], 2)
    meta["cpu_seconds"] = round(time.process_time() - start[1], 2)


def _build_aligned(
    a: AlignedSpec,
    key: str,
    path: Path,
    base: Organism,
    language: ChatLanguage,
    settings: EvalSpec,
    build_seed: int = 0,
) -> Organism:
    """Align a copy of a built base with the spec's recipe, measure and save it."""
    with _single_thread():
        start = (time.perf_counter(), time.process_time())
        model_base, tokenizer = base.load()
        r = a.recipe
        val, held = None, None
        if r.selects_on_topics:
            data, val, held = organism_data_split(
                language, r.n_harmful, r.n_harmless, a.seed, r.select_val_n
            )
        else:
            data = organism_data(language, r.n_harmful, r.n_harmless, a.seed)
        model, stats = align(model_base, tokenizer, data, r, a.seed, validation=val)
        if held is not None:
            stats["selection"]["topics"] = list(held)
        meta = _meta(a.name, "aligned", a.model_dump(), model, a.seed, stats, key)
        meta.update(
            family=base.meta["family"],
            size=base.meta["size"],
            base=base.name,
            base_path=str(base.path),
            build_seed=build_seed,
        )
        _record_behaviour(meta, measure_behaviour(model, tokenizer, language, settings), start)
        return _save(model, tokenizer, meta, path)


def _quiet_worker() -> None:
    """Workers print nothing of their own: the parent's progress bar reports for them."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def zoo_keys(spec: ZooSpec, language: ChatLanguage | None = None) -> dict[str, str]:
    """Every organism's content hash at the spec's build seed, by name.

    `language` replaces the spec's organism language (experiments with unregistered ones).
    """
    language = language or spec.chat_language
    spec = _seeded(spec)
    keys = {b.name: base_key(b, language) for b in spec.bases}
    keys.update({a.name: aligned_key(a, keys[a.base]) for a in spec.aligned})
    return keys


def zoo_paths(
    spec: ZooSpec, language: ChatLanguage | None = None, root: Path | None = None
) -> dict[str, Path]:
    """Where each organism of `spec` is (or will be) built, by name."""
    root = root or organisms_dir()
    return {name: root / f"{name}-{key}" for name, key in zoo_keys(spec, language).items()}


def cached_organisms(
    spec: ZooSpec, language: ChatLanguage | None = None, root: Path | None = None
) -> dict[str, Organism]:
    """The organisms of `spec` already built (nothing is trained), by name."""
    paths = zoo_paths(spec, language, root)
    return {n: read_organism(p) for n, p in paths.items() if (p / METADATA).is_file()}


def build_zoo(
    spec: ZooSpec,
    language: ChatLanguage | None = None,
    root: Path | None = None,
    report: Report | None = None,
    workers: int = 1,
) -> dict[str, Organism]:
    """Build every organism of `spec` that is not cached yet; return all of them by name.

    Each organism trains with `spec.effective_seed` (its seed, shifted by the build seed).
    With `workers` > 1 independent organisms train in parallel processes (one thread each);
    an aligned organism starts as soon as its base exists. Weights do not depend on `workers`.
    Organisms that miss their behaviour targets are kept and returned: check `meets_behaviour`.
    They are trained and measured in the spec's organism language unless `language` replaces it.
    """
    report = report or (lambda name, status: None)
    language = language or spec.chat_language
    out: dict[str, Organism] = {}
    build_seed, keys, paths = spec.seed, zoo_keys(spec, language), zoo_paths(spec, language, root)
    spec = _seeded(spec)
    for name, path in paths.items():
        if (path / METADATA).is_file():
            out[name] = read_organism(path)
            report(name, "cached")
    todo_bases = [b for b in spec.bases if b.name not in out]
    todo_aligned = [a for a in spec.aligned if a.name not in out]
    if workers <= 1:
        for b in todo_bases:
            report(b.name, "training")
            out[b.name] = _build_base(
                b, keys[b.name], paths[b.name], language, spec.eval, build_seed
            )
            report(b.name, "built")
        for a in todo_aligned:
            report(a.name, "aligning")
            out[a.name] = _build_aligned(
                a, keys[a.name], paths[a.name], out[a.base], language, spec.eval, build_seed
            )
            report(a.name, "built")
        return out
    with process_pool(workers, _quiet_worker) as pool:
        running: dict[Future, str] = {}

        def submit_ready() -> None:
            for a in [a for a in todo_aligned if a.base in out]:
                todo_aligned.remove(a)
                report(a.name, "aligning")
                running[
                    pool.submit(
                        _build_aligned,
                        a,
                        keys[a.name],
                        paths[a.name],
                        out[a.base],
                        language,
                        spec.eval,
                        build_seed,
                    )
                ] = a.name

        for b in todo_bases:
            report(b.name, "training")
            running[
                pool.submit(
                    _build_base, b, keys[b.name], paths[b.name], language, spec.eval, build_seed
                )
            ] = b.name
        submit_ready()
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                name = running.pop(fut)
                out[name] = fut.result()
                report(name, "built")
            submit_ready()
    return out


def _seeded(spec: ZooSpec) -> ZooSpec:
    """`spec` at build seed 0 with every organism's seed replaced by its effective seed.

    The identity at build seed 0, so hashes of zoos built before build seeds are unchanged;
    the seed is in each organism's spec, hence in its content hash.
    """
    if spec.seed == 0:
        return spec
    bases = [b.model_copy(update={"seed": spec.effective_seed(b)}) for b in spec.bases]
    aligned = [a.model_copy(update={"seed": spec.effective_seed(a)}) for a in spec.aligned]
    return spec.model_copy(update={"bases": bases, "aligned": aligned, "seed": 0})


def _meta(
    name: str, kind: str, spec: dict, model: PreTrainedModel, seed: int, stats: dict, key: str
) -> dict:
    meta = {
        "name": name,
        "kind": kind,
        "hash": key,
        "spec": spec,
        "seed": seed,
        "architecture": type(model).__name__,
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "hidden_size": model.config.hidden_size,
        "num_layers": model.config.num_hidden_layers,
        "training": stats,
        "build_version": BUILD_VERSION,
    }
    return meta


def list_organisms(
    root: Path | None = None, broken: list[ConfigError] | None = None
) -> list[Organism]:
    """Every built organism under `root` (default: the cache), sorted by name.

    An unreadable organism.json raises its ConfigError, or, when a `broken` list is given, is
    appended there and skipped (so a listing shows the others and names the broken ones).
    """
    root = root or organisms_dir()
    if not root.is_dir():
        return []
    found = []
    for path in sorted(p for p in root.iterdir() if (p / METADATA).is_file()):
        try:
            found.append(read_organism(path))
        except ConfigError as exc:
            if broken is None:
                raise
            broken.append(exc)
    return sorted(found, key=lambda o: o.name)
