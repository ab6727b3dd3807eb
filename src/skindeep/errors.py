"""Errors the user can fix: the CLI prints them as one clear message and exits non-zero."""


class SkindeepError(Exception):
    """Base class for expected, user-facing failures (bad input, missing files, mismatches)."""


class ModelLoadError(SkindeepError):
    """A model, tokenizer or checkpoint file could not be found or opened."""


class ConfigError(SkindeepError):
    """A configuration or spec file is malformed or inconsistent."""


class PromptError(SkindeepError):
    """A prompt set is empty, duplicated, or too small for the analysis asked for."""
