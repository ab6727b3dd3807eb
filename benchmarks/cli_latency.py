"""How fast the CLI answers: `--help`, every `COMMAND --help`, and usage errors.

Each row runs `python -m skindeep ARGS` in a fresh process (with this checkout's src first on
the path) `--rounds` times and reports the median and maximum wall time, the median CPU time
(user + system: what the command costs on an idle core, far less sensitive to load), the exit
code, and whether torch, transformers or peft were imported (a separate probe process runs
the same command in-process and inspects sys.modules). The target of issue 16: every
row under 1 s on 2 cores. Wall times depend on the machine's load: the table's header prints
the load average so that figures from a busy machine read as such.

Usage: python benchmarks/cli_latency.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

ROWS: list[tuple[str, ...]] = [
    ("--help",),
    ("organisms", "build", "--help"),
    ("organisms", "list", "--help"),
    ("model", "info", "--help"),
    ("audit", "--help"),
    ("audit-compare", "--help"),
    ("refusal", "--help"),
    ("ablate", "--help"),
    ("retention", "--help"),
    ("study", "run", "--help"),
    ("audit", "--aligned", "x"),  # missing option
    ("audit", "-a", "x", "-b", "y", "--harmful", "h", "--harmless", "l", "--n-prompts", "0"),
    ("refusal", "--model", "x", "--prompts", "p", "--bogus"),  # unknown option
    ("ablate", "--model", "x", "--directions", "select", "--kl-threshold", "nan"),
    ("retention", "--model", "x", "--out", "/proc/x"),  # unwritable --out
]

PROBE = """
import json, sys
from skindeep.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
heavy = sorted(m for m in ("torch", "transformers", "peft") if m in sys.modules)
print(json.dumps(heavy), file=sys.__stderr__)
"""


def _env() -> dict[str, str]:
    path = os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "HF_HUB_OFFLINE": "1"}


def _child_cpu() -> float:
    """CPU seconds (user + system) of this process's finished children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_once(args: tuple[str, ...]) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds and exit code of one `python -m skindeep ARGS`."""
    cpu, start = _child_cpu(), time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "skindeep", *args], env=_env(), capture_output=True, check=False
    )
    return time.perf_counter() - start, _child_cpu() - cpu, done.returncode


def heavy_imports(args: tuple[str, ...]) -> list[str]:
    """The ML libraries that running ARGS imported (empty: answered without them)."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args], env=_env(), capture_output=True, text=True
    )
    return json.loads(done.stderr.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    rounds = parser.parse_args().rounds
    time_once(("--help",))  # warm the disk cache
    python = [subprocess_seconds([sys.executable, "-c", "pass"]) for _ in range(rounds)]
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, {rounds} rounds;")
    print(f"bare `python -c pass`: median {statistics.median(python):.2f} s wall\n")
    print("| command | wall median s | wall max s | CPU median s | exit | ML imports |")
    print("|---|---:|---:|---:|---:|---|")
    for args in ROWS:
        runs = [time_once(args) for _ in range(rounds)]
        wall = [w for w, _, _ in runs]
        cpu = [c for _, c, _ in runs]
        codes = ",".join(str(c) for c in sorted({code for _, _, code in runs}))
        print(
            f"| `{' '.join(args)}` | {statistics.median(wall):.2f} | {max(wall):.2f} | "
            f"{statistics.median(cpu):.2f} | {codes} | {' '.join(heavy_imports(args)) or 'none'} |"
        )


def subprocess_seconds(command: list[str]) -> float:
    """Wall seconds of one process."""
    start = time.perf_counter()
    subprocess.run(command, check=False)
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
