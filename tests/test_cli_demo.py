"""`skindeep demo --config micro`: the demo's stages end to end on the micro zoo; the
report and the headline come out, and a second run recomputes nothing the first finished."""

from __future__ import annotations

import json

from conftest import run_cli
from skindeep.cache import cache_root


def _step_files() -> dict[str, int]:
    """Modification times of every cached study step of the micro models."""
    root = cache_root() / "study"
    return {str(p): p.stat().st_mtime_ns for p in root.glob("micro-*/**/*") if p.is_file()}


def test_demo_twice(micro_zoo, tmp_path, monkeypatch, capsys) -> None:
    out = tmp_path / "demo"
    args = ["demo", "--config", "micro", "--out", str(out), "--workers", "1"]
    code, stdout, err = run_cli(args, monkeypatch, capsys)
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    assert stdout.splitlines()[0] == report["numbers"]["verdict"]
    assert stdout.splitlines()[-1] == f"report: {(out / 'report.html').resolve()}"
    assert "1/3 zoo" in err and "2/3 study" in err and "3/3 report" in err
    first = _step_files()
    assert first
    code, again, _ = run_cli(args, monkeypatch, capsys)
    assert code == 0 and again == stdout
    assert _step_files() == first  # every step read back from the cache, none rewritten
