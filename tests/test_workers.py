"""Ctrl-C on a process pool: the parent stops at once, workers print nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from interrupts import default_sigint

SRC = Path(__file__).resolve().parents[1] / "src"

SCRIPT = """
import sys, time
from concurrent.futures import FIRST_COMPLETED, wait
from skindeep.workers import process_pool

def work(seconds):
    time.sleep(seconds)
    return seconds

if __name__ == "__main__":
    try:
        with process_pool(2) as pool:
            running = {pool.submit(work, 120), pool.submit(work, 0.1)}
            while running:
                done, running = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    print("finished", future.result(), flush=True)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(130)
"""


def test_ctrl_c_stops_a_pool_at_once_without_worker_tracebacks(tmp_path: Path) -> None:
    script = tmp_path / "pool.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    process = subprocess.Popen(
        [sys.executable, str(script)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
        preexec_fn=default_sigint,  # and Ctrl-C's default action, even if the suite runs as `cmd &`
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "finished 0.1"  # both workers are up
    start = time.monotonic()
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C does: the whole group
    rest, _ = process.communicate(timeout=60)
    assert process.returncode == 130, rest
    assert "Traceback" not in rest and "KeyboardInterrupt" not in rest, rest
    assert rest.strip() == "interrupted"
    assert time.monotonic() - start < 30  # not after the 120 s job in flight
