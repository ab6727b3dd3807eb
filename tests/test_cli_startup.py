"""The CLI answers at once: help and usage errors of every command load no ML library."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

#: Run in a fresh interpreter: every command's --help and a usage error, then the loaded modules.
PROBE = """
import json, sys, typer.main
from skindeep.cli import app, main

def walk(command, prefix):
    yield prefix
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from walk(sub, [*prefix, name])

codes = {}
for path in walk(typer.main.get_command(app), []):
    for extra in (["--help"], ["--no-such-option"]):
        try:
            main([*path, *extra])
        except SystemExit as exc:
            codes[" ".join([*path, *extra])] = exc.code
heavy = sorted(m for m in ("torch", "transformers", "peft") if m in sys.modules)
print(json.dumps({"codes": codes, "heavy": heavy}))
"""


def test_help_and_usage_errors_of_every_command_load_no_ml_library() -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    codes = report["codes"]
    assert {"--help", "audit --help", "organisms build --help", "retention --help"} <= set(codes)
    helps = {k: v for k, v in codes.items() if k.endswith("--help")}
    usage = {k: v for k, v in codes.items() if k.endswith("--no-such-option")}
    assert set(helps.values()) == {0}, helps
    assert set(usage.values()) == {2}, usage
    assert report["heavy"] == [], f"`skindeep ... --help` imported {report['heavy']}"


def test_importing_the_cli_loads_no_ml_library() -> None:
    code = (
        "import sys, skindeep.cli; "
        "print(sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
