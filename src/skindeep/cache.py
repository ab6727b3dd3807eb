"""The content-hash cache: where cached artifacts live and how their keys are hashed.

Writes into the cache go through `skindeep.artifacts` (atomic, one file mode).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any


def cache_root() -> Path:
    """Where cached artifacts live: $SKINDEEP_CACHE, else ~/.cache/skindeep.

    A $SKINDEEP_CACHE that is a file (or lies under one) is a ConfigError, not an empty cache.
    """
    env = os.environ.get("SKINDEEP_CACHE")
    root = Path(env).expanduser() if env else Path.home() / ".cache" / "skindeep"
    existing = next((p for p in (root, *root.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        from skindeep.errors import ConfigError

        where = "is a file" if existing == root else f"lies under the file {existing}"
        raise ConfigError(f"the cache folder {root} ($SKINDEEP_CACHE) {where}, not a folder")
    return root


def content_hash(obj: Any, length: int = 16) -> str:
    """Stable hash of a JSON-serialisable object (keys sorted)."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]
