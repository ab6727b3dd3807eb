"""Build a zoo of organisms from a spec: content-hash cache, atomic folders, resumable.

Each organism is an ordinary checkpoint folder (`save_pretrained`) with `organism.json`
recording its spec, recipe, size, parameter count, seed, training statistics and behaviour on
held-out topics. A folder's name is the hash of everything that determines its weights, so an
unchanged spec is never rebuilt and a killed build resumes where it stopped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from skindeep.cache import atomic_directory, cache_root, content_hash
from skindeep.organisms.behaviour import Behaviour, measure_behaviour
from skindeep.organisms.data import organism_data
from skindeep.organisms.language import DEFAULT_LANGUAGE, ChatLanguage
from skindeep.organisms.pretrain import train_base
from skindeep.organisms.recipes import align
from skindeep.organisms.spec import AlignedSpec, BaseSpec, ZooSpec
from skindeep.organisms.tokenizer import build_tokenizer
from skindeep.organisms.training import TrainConfig

#: Bump when training code changes in a way that changes weights for the same spec.
BUILD_VERSION = "1"
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

    def load(self) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
        """Open the checkpoint like any Hugging Face model."""
        model = AutoModelForCausalLM.from_pretrained(self.path, dtype=torch.float32).eval()
        return model, AutoTokenizer.from_pretrained(self.path)


def organisms_dir() -> Path:
    """Folder holding every built organism."""
    return cache_root() / "organisms"


def _language_key(language: ChatLanguage) -> str:
    return content_hash(
        {"topics": [t.__dict__ for t in language.topics], "heldout": language.heldout,
         "vocab": language.vocabulary(), "facts": len(language.facts())}
    )


def base_key(spec: BaseSpec, language: ChatLanguage) -> str:
    """Content hash of everything that fixes a base organism's weights."""
    return content_hash(
        {"v": BUILD_VERSION, "lang": _language_key(language), "spec": spec.model_dump(exclude={"name"}),
         "torch": torch.__version__.split("+")[0]}
    )


def aligned_key(spec: AlignedSpec, base_hash: str) -> str:
    """Content hash of an aligned organism: its base's hash, recipe and seed."""
    return content_hash(
        {"v": BUILD_VERSION, "base": base_hash, "recipe": spec.recipe.model_dump(), "seed": spec.seed}
    )


def _save(model: PreTrainedModel, tokenizer, meta: dict, final: Path) -> Organism:
    with atomic_directory(final) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / METADATA).write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))
    return Organism(meta["name"], final, meta)


def read_organism(path: Path) -> Organism:
    """Open a built organism folder's record."""
    meta = json.loads((path / METADATA).read_text())
    return Organism(meta["name"], path, meta)


Report = Callable[[str, str], None]


def build_zoo(
    spec: ZooSpec,
    language: ChatLanguage = DEFAULT_LANGUAGE,
    root: Path | None = None,
    report: Report | None = None,
) -> dict[str, Organism]:
    """Build every organism of `spec` that is not cached yet; return all of them by name."""
    root = root or organisms_dir()
    report = report or (lambda name, status: None)
    tokenizer = build_tokenizer(language)
    out: dict[str, Organism] = {}
    models: dict[str, PreTrainedModel] = {}
    base_hashes: dict[str, str] = {}
    for b in spec.bases:
        key = base_key(b, language)
        base_hashes[b.name] = key
        path = root / f"{b.name}-{key}"
        if (path / METADATA).is_file():
            out[b.name] = read_organism(path)
            report(b.name, "cached")
            continue
        report(b.name, "training")
        start = time.perf_counter()
        tc = TrainConfig(steps=b.steps, lr=b.lr, batch_size=b.batch_size, seed=b.seed)
        model, stats = train_base(b.family, b.size, language, tokenizer, tc)
        models[b.name] = model
        meta = _meta(b.name, "base", b.model_dump(), model, b.seed, {"base": stats.to_dict()}, key)
        meta["behaviour"] = measure_behaviour(model, tokenizer, language, spec.eval).to_dict()
        meta["seconds"] = round(time.perf_counter() - start, 2)
        out[b.name] = _save(model, tokenizer, meta, path)
        report(b.name, "built")
    for a in spec.aligned:
        key = aligned_key(a, base_hashes[a.base])
        path = root / f"{a.name}-{key}"
        if (path / METADATA).is_file():
            out[a.name] = read_organism(path)
            report(a.name, "cached")
            continue
        report(a.name, "aligning")
        start = time.perf_counter()
        if a.base not in models:
            models[a.base] = out[a.base].load()[0]
        data = organism_data(language, a.recipe.n_harmful, a.recipe.n_harmless, a.seed)
        model, stats = align(models[a.base], tokenizer, data, a.recipe, a.seed)
        base_spec = spec.base(a.base)
        meta = _meta(a.name, "aligned", a.model_dump(), model, a.seed, stats, key)
        meta.update(family=base_spec.family, size=base_spec.size, base=a.base,
                    base_path=str(out[a.base].path))
        meta["behaviour"] = measure_behaviour(model, tokenizer, language, spec.eval).to_dict()
        meta["seconds"] = round(time.perf_counter() - start, 2)
        out[a.name] = _save(model, tokenizer, meta, path)
        report(a.name, "built")
    return out


def _meta(name: str, kind: str, spec: dict, model: PreTrainedModel, seed: int, stats: dict, key: str) -> dict:
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
    if kind == "base":
        meta.update(family=spec["family"], size=spec["size"])
    return meta


def list_organisms(root: Path | None = None) -> list[Organism]:
    """Every built organism under `root` (default: the cache), sorted by name."""
    root = root or organisms_dir()
    if not root.is_dir():
        return []
    found = [read_organism(p) for p in root.iterdir() if (p / METADATA).is_file()]
    return sorted(found, key=lambda o: o.name)
