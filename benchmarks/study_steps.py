"""Benchmark: CPU and wall seconds of study steps per organism, cold (a fresh step folder).

Runs the chosen pipeline steps (`dose`, `retention`, ...) of a packaged study config for a few
of its organisms, single-threaded, in a temporary folder (nothing read from the step cache),
and prints a table: model load, each step's CPU-s and wall-s, and retention's CPU-s per
fine-tuning seed. The organisms come from $SKINDEEP_CACHE (built when missing).

    SKINDEEP_CACHE=/work/cache OMP_NUM_THREADS=1 python benchmarks/study_steps.py \\
        --config demo --steps dose --models 3
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers.utils import logging as hf_logging

from skindeep.study.config import load_study_config
from skindeep.study.jobs import model_jobs
from skindeep.study.pipeline import STEPS, _Models


def _timed(fn: Callable[..., Any], *args: Any) -> tuple[Any, float, float]:
    """fn(*args), its CPU seconds (this process) and wall seconds."""
    cpu, wall = time.process_time(), time.perf_counter()
    out = fn(*args)
    return out, time.process_time() - cpu, time.perf_counter() - wall


def main() -> None:
    """Time each chosen step of the first `--models` organisms (or `--only` ones)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default="demo")
    parser.add_argument("--steps", default="dose", help="comma-separated step names")
    parser.add_argument("--models", type=int, default=3)
    parser.add_argument("--only", default="", help="comma-separated organism names")
    args = parser.parse_args()
    torch.set_num_threads(1)
    hf_logging.set_verbosity_error()
    config = load_study_config(args.config)
    jobs = [j for j in model_jobs(config) if j.meets_behaviour]
    only = args.only.split(",") if args.only else None
    jobs = [j for j in jobs if j.name in only] if only else jobs[: args.models]
    steps = args.steps.split(",")
    print(f"load average {os.getloadavg()[0]:.1f}, torch threads 1, config {args.config}")
    print(f"{'model':28} {'load cpu':>8} " + " ".join(f"{s + ' cpu':>14} {s + ' wall':>14}"
                                                   for s in steps) + "  per-seed cpu")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for job in jobs:
            models = _Models(job, config.device)
            _, load_cpu, _ = _timed(lambda m: (m.get("aligned"), m.get("base")), models)
            cells, per_seed = [], ""
            done: dict = {}
            for step in steps:
                folder = Path(tmp) / job.name / step
                rec, cpu, wall = _timed(STEPS[step], models, config, folder, done)
                done[step] = rec
                cells.append(f"{cpu:14.1f} {wall:14.1f}")
                if step == "retention":
                    per_seed = " ".join(f"{s['seconds']:.1f}" for s in rec["seeds"]) + " (wall)"
            print(f"{job.name:28} {load_cpu:8.1f} " + " ".join(cells) + "  " + per_seed)


if __name__ == "__main__":
    main()
