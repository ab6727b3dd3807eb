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
    """Where cached artifacts live: $SKINDEEP_CACHE, else ~/.cache/skindeep."""
    env = os.environ.get("SKINDEEP_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "skindeep"


def content_hash(obj: Any, length: int = 16) -> str:
    """Stable hash of a JSON-serialisable object (keys sorted)."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]
