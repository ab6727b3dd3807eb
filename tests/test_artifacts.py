"""The one atomic writer: all-or-nothing files and folders, one file mode, JSON cleaning."""

from __future__ import annotations

import json
import math
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

from skindeep.artifacts import (
    atomic_directory,
    atomic_write_json,
    atomic_write_text,
    json_ready,
    save_figure,
    staged_file,
)


@pytest.fixture(params=[0o022, 0o027, 0o077])
def umask(request) -> Iterator[int]:
    """Run the test under a given process umask, restoring the old one after."""
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_every_writer_gives_what_open_and_mkdir_would(tmp_path: Path, umask: int) -> None:
    """Files get 0o666 & ~umask and folders 0o777 & ~umask, as plain open()/mkdir() give them
    (mkstemp alone would leave 0600, unreadable for the group and others)."""
    reference = tmp_path / "plain.txt"
    reference.write_text("x")
    (tmp_path / "plain").mkdir()
    assert _mode(reference) == 0o666 & ~umask
    out = tmp_path / "out"
    atomic_write_text(out / "a.txt", "x")
    atomic_write_json(out / "a.json", {"a": 1})
    save_figure(Figure(figsize=(1, 1)), out / "a.png")
    with staged_file(out / "a.safetensors") as tmp:
        tmp.write_bytes(b"x")
    for name in ("a.txt", "a.json", "a.png", "a.safetensors"):
        assert _mode(out / name) == _mode(reference), name
    with atomic_directory(tmp_path / "folder") as tmp:
        (tmp / "b.txt").write_text("y")
    assert _mode(tmp_path / "folder") == _mode(tmp_path / "plain") == 0o777 & ~umask
    assert sorted(p.name for p in out.iterdir()) == ["a.json", "a.png", "a.safetensors", "a.txt"]


def test_staged_file_leaves_the_old_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError), staged_file(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_json_ready_turns_non_finite_into_null_recursively() -> None:
    value = {
        "a": float("nan"),
        "b": [1.0, np.float64("inf"), (np.int64(3), -math.inf)],
        "c": np.array([[0.5, np.nan]]),
        1: {"d": np.float32(0.25), "e": None, "f": "x"},
    }
    ready = json_ready(value)
    assert ready == {
        "a": None,
        "b": [1.0, None, [3, None]],
        "c": [[0.5, None]],
        "1": {"d": 0.25, "e": None, "f": "x"},
    }
    assert type(ready["b"][2][0]) is int
    json.dumps(ready, allow_nan=False)  # standard JSON


def test_success_renames_and_failure_leaves_nothing(tmp_path: Path) -> None:
    final = tmp_path / "result"
    with atomic_directory(final) as tmp:
        (tmp / "a.txt").write_text("x")
        assert not final.exists()
    assert (final / "a.txt").read_text() == "x"
    with pytest.raises(RuntimeError), atomic_directory(final) as tmp:
        (tmp / "b.txt").write_text("y")
        raise RuntimeError("killed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result"]  # old result intact
    assert not (final / "b.txt").exists()


def test_orphans_of_dead_processes_are_removed(tmp_path: Path) -> None:
    """A folder left by a process that no longer exists goes; one of a live process stays."""
    final = tmp_path / "result"
    dead = tmp_path / ".result.4194999999.abc.tmp"  # beyond any pid_max: no such process
    live = tmp_path / f".result.{os.getppid()}.def.tmp"  # our parent: alive, maybe writing
    other = tmp_path / ".other.4194999999.abc.tmp"  # another result's leftovers: not ours
    for folder in (dead, live, other):
        folder.mkdir()
    with atomic_directory(final) as tmp:
        (tmp / "a.txt").write_text("x")
    assert not dead.exists() and live.exists() and other.exists()


def test_no_other_module_stages_files_itself() -> None:
    """Every artifact goes through `skindeep.artifacts`: no other module makes temporary files
    and renames them (that is how owner-only 0600 artifacts crept in before)."""
    src = Path(__file__).resolve().parents[1] / "src" / "skindeep"
    own = {"mkstemp(", "mkdtemp(", "os.replace(", "os.rename("}
    offenders = [
        f"{path.relative_to(src)}: {needle}"
        for path in src.rglob("*.py")
        if path.name != "artifacts.py"
        for needle in own
        if needle in path.read_text(encoding="utf-8")
    ]
    assert offenders == []
