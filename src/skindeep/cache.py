"""Content-hash cache folder and atomic writes: reruns reuse results, kills corrupt nothing."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
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


def atomic_write_text(path: Path, text: str) -> None:
    """Write text via a temporary file in the same folder and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    """Atomically write an object as indented JSON."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def _pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (on this machine)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return pid <= 2**31  # exists but is not ours / an impossible id
    return True


def _remove_orphans(final: Path) -> None:
    """Delete temporary siblings of `final` left by killed runs (their process is gone)."""
    for tmp in final.parent.glob(f".{final.name}.*.tmp"):
        parts = tmp.name[len(final.name) + 2 :].split(".")
        if tmp.is_dir() and parts and parts[0].isdigit() and not _pid_alive(int(parts[0])):
            shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def atomic_directory(final: Path) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it is renamed to `final` in one step.

    A killed run leaves only a hidden temporary folder (named with its process id), never a
    half-written `final`; the next write of `final` removes such folders whose process is gone.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphans(final)
    prefix = f".{final.name}.{os.getpid()}."
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=prefix, suffix=".tmp"))
    tmp.chmod(0o755)  # mkdtemp makes 0700 folders; results are meant to be shared
    try:
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def finite_or_none(value: Any) -> Any:
    """NaN and infinities become None, so the JSON stays standard; other values pass through.

    >>> finite_or_none(float("nan")), finite_or_none(0.5)
    (None, 0.5)
    """
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
