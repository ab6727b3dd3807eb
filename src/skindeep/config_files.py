"""One reader for the TOML/YAML config files (zoo specs, study configs): packaged or a path."""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from skindeep.errors import ConfigError

Config = TypeVar("Config", bound=BaseModel)


def read_config(
    source: str | Path, model: type[Config], what: str, folder: str, packaged: Sequence[str]
) -> Config:
    """A packaged config (skindeep/`folder`/NAME.toml, NAME in `packaged`) or a UTF-8 TOML/YAML
    file, validated into `model`; every failure is one ConfigError naming `what` and the file."""
    if str(source) in packaged:
        text = resources.files("skindeep").joinpath(f"{folder}/{source}.toml").read_text()
        suffix = ".toml"
    else:
        path = Path(source)
        if not path.is_file():
            raise ConfigError(
                f"{what} {path} not found (give one of {', '.join(packaged)} or a .toml/.yaml file)"
            )
        try:
            text, suffix = path.read_text(encoding="utf-8"), path.suffix.lower()
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"{what} {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8"
            ) from None
    try:
        if suffix == ".toml":
            raw = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            raw = yaml.safe_load(text)
        else:
            raise ConfigError(f"{what} must be .toml or .yaml, got {suffix or 'no suffix'}")
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot parse {what} {source}: {exc}") from exc
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"invalid {what} {source}:\n{exc}") from exc
