"""Lazy package attributes: `package.name` imports its submodule on first use (PEP 562).

Keeps `import skindeep` and the command-line help free of torch: a package lists which
submodule defines each public name, and only the submodule asked for is imported.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """`__getattr__`, `__dir__` and `__all__` for `package`, whose name N lives in the
    submodule `exports[N]` (relative to the package, e.g. ".runner")."""

    def module_getattr(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name], package), name)
        globals_of(package)[name] = value  # cache: the next lookup is a plain attribute
        return value

    def module_dir() -> list[str]:
        return sorted({*globals_of(package), *exports})

    return module_getattr, module_dir, sorted(exports)


def globals_of(package: str) -> dict[str, Any]:
    """The namespace of an imported package."""
    import sys

    return vars(sys.modules[package])
