"""Atomic result folders: all-or-nothing writes, and leftovers of killed runs cleaned up."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from skindeep.cache import atomic_directory


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
