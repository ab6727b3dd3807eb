"""Zoo spec files (TOML or YAML), validated with pydantic: which organisms to build."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from skindeep.config_files import read_config
from skindeep.errors import ConfigError
from skindeep.organisms.architectures import FAMILIES, SIZES
from skindeep.organisms.language import (
    DEFAULT_LANGUAGE_NAME,
    LANGUAGES,
    ChatLanguage,
    known_language,
)
from skindeep.organisms.recipes import RecipeConfig


class BaseSpec(BaseModel):
    """A base organism: architecture family and size, trained from scratch to answer everything."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    family: str
    size: str
    steps: int = Field(300, ge=1)
    lr: float = Field(3e-3, gt=0)
    batch_size: int = Field(32, ge=1)
    seed: int = 0

    @model_validator(mode="after")
    def _known(self) -> BaseSpec:
        if self.family not in FAMILIES:
            raise ValueError(f"family {self.family!r} is not one of {FAMILIES}")
        if self.size not in SIZES:
            raise ValueError(f"size {self.size!r} is not one of {tuple(SIZES)}")
        return self


class AlignedSpec(BaseModel):
    """An aligned organism: a base plus a recipe and its hyperparameters."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    base: str
    recipe: RecipeConfig
    seed: int = 0


class EvalSpec(BaseModel):
    """How the behaviour table is measured (held-out topics, greedy decoding, keyword judge)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_prompts: int = Field(100, ge=2, description="held-out prompts per class")
    max_new_tokens: int = Field(24, ge=1)
    seed: int = 12345


#: Build seed n trains each organism with its own seed + SEED_STRIDE * n, so the seeds an organism
#: spec sets (0, 1, ... for training-seed replicates) never collide across build seeds.
SEED_STRIDE = 1000


class ZooSpec(BaseModel):
    """A whole zoo: bases, aligned organisms, the evaluation settings and the build seed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "zoo"
    seed: int = Field(
        0, ge=0, description="build seed: each organism trains with its seed + 1000 * this"
    )
    language: str = Field(
        DEFAULT_LANGUAGE_NAME,
        description="organism language (organisms.language.LANGUAGES): 'core' or 'wide'",
    )
    bases: list[BaseSpec]
    aligned: list[AlignedSpec] = Field(default_factory=list)
    eval: EvalSpec = Field(default_factory=EvalSpec)

    @model_validator(mode="after")
    def _consistent(self) -> ZooSpec:
        known_language(self.language)
        names = [b.name for b in self.bases] + [a.name for a in self.aligned]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"organism names must be unique; repeated: {dupes}")
        bases = {b.name for b in self.bases}
        for a in self.aligned:
            if a.base not in bases:
                raise ValueError(f"aligned organism {a.name!r} names unknown base {a.base!r}")
        return self

    def base(self, name: str) -> BaseSpec:
        """The base spec called `name`."""
        return next(b for b in self.bases if b.name == name)

    @property
    def chat_language(self) -> ChatLanguage:
        """The organism language the zoo trains and measures its organisms in."""
        return LANGUAGES[self.language]

    def with_seed(self, seed: int) -> ZooSpec:
        """The same zoo at another build seed (organism names stay; weights and hashes change)."""
        return ZooSpec.model_validate({**self.model_dump(), "seed": seed})

    def with_language(self, language: str) -> ZooSpec:
        """The same zoo in another organism language (every organism is another build)."""
        return ZooSpec.model_validate({**self.model_dump(), "language": language})

    def effective_seed(self, organism: BaseSpec | AlignedSpec) -> int:
        """The seed `organism` trains with at this zoo's build seed (its own seed at seed 0)."""
        return organism.seed + SEED_STRIDE * self.seed


#: Zoos shipped with the package (src/skindeep/organisms/zoos/NAME.toml).
PACKAGED_ZOOS: tuple[str, ...] = ("default", "micro", "study")


def load_zoo_spec(
    source: str | Path, seed: int | None = None, language: str | None = None
) -> ZooSpec:
    """Read a packaged zoo ('default', 'micro', 'study') or a TOML/YAML file into a ZooSpec.

    `seed` overrides the file's build seed (see `ZooSpec.with_seed`), `language` its organism
    language (`ZooSpec.with_language`).
    """
    spec = _read_zoo_spec(source)
    if seed is not None:
        if seed < 0:
            raise ConfigError(f"build seed must be >= 0, got {seed}")
        spec = spec.with_seed(seed)
    if language is not None:
        try:
            spec = spec.with_language(known_language(language))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    return spec


def _read_zoo_spec(source: str | Path) -> ZooSpec:
    return read_config(source, ZooSpec, "zoo spec", "organisms/zoos", PACKAGED_ZOOS)
