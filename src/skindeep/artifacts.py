"""Writing artifacts: the one atomic writer, and the one JSON cleaner.

Every file skindeep writes goes through `staged_file` (or a helper built on it): a temporary
sibling renamed over the target on success, deleted on failure, so a killed run never leaves a
half-written artifact. Every artifact gets the same mode, `0o666 & ~umask` for files and
`0o777 & ~umask` for folders (mkstemp/mkdtemp would leave 0600/0700, owner-only).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode every artifact file gets: what `open()` would give (0o666 minus the umask)."""
    return 0o666 & ~_umask()


def dir_mode() -> int:
    """The mode every artifact folder gets: what `mkdir` would give (0o777 minus the umask)."""
    return 0o777 & ~_umask()


@contextmanager
def staged_file(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it to `path`, else delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        os.chmod(tmp, file_mode())
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write text atomically (UTF-8) with the artifact file mode."""
    with staged_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: Path, obj: Any) -> None:
    """Atomically write an object as indented JSON (keys sorted; unknown types as str)."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def save_figure(fig: Figure, path: Path, dpi: int = 120) -> Path:
    """Write a matplotlib figure as PNG, atomically, with the artifact file mode."""
    with staged_file(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    return Path(path)


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
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphans(final)
    prefix = f".{final.name}.{os.getpid()}."
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=prefix, suffix=".tmp"))
    tmp.chmod(dir_mode())  # mkdtemp makes 0700 folders; results are meant to be shared
    try:
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def json_ready(value: Any) -> Any:
    """JSON-ready: arrays to lists, numpy scalars to Python, NaN/inf to None (recursively).

    >>> json_ready({"rate": float("nan"), "d": np.array([0.5, np.inf]), "n": np.int64(3)})
    {'rate': None, 'd': [0.5, None], 'n': 3}
    """
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist())
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if isinstance(value, np.generic):
        return json_ready(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
