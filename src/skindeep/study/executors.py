"""Where model pipelines run: a local process pool (default) or a Ray cluster.

Both take the same jobs and return the same records, in job order; every step is cached on
disk by the pipeline, so an executor that dies loses only the step in progress. Ray is an
optional extra (`pip install skindeep[distributed]`): each model's pipeline is one task asking
for one CPU, and one GPU when the study's device is not the CPU.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import as_completed
from pathlib import Path
from typing import Literal

from skindeep.cache import cache_root
from skindeep.errors import ConfigError
from skindeep.study.config import StudyConfig
from skindeep.study.pipeline import ModelJob, cached_record, run_pipeline
from skindeep.workers import process_pool

Executor = Literal["local", "ray"]
#: Called with (job name, finished count, total) after each model.
Report = Callable[[str, int, int], None]


def _die_with_parent() -> None:
    """Linux: the kernel kills this worker when the study process dies (even by SIGKILL), so
    no orphan keeps training after an interrupted study. Elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        return
    if os.getppid() == 1:  # the parent died before the line above took effect
        os._exit(1)


def _quiet_worker() -> None:
    """A worker process: one torch thread, no transformers progress bars or notices."""
    import torch
    from transformers.utils import logging as hf_logging

    torch.set_num_threads(1)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _pool_worker() -> None:
    """Initializer of a local pool worker."""
    _die_with_parent()
    _quiet_worker()


def _cached(
    jobs: Sequence[ModelJob], config: StudyConfig, root: Path | None, report: Report | None
) -> tuple[list[dict | None], list[int]]:
    """Records of the jobs whose every step is cached (reported at once), and the others' indices.

    Decided here, in the parent, so a warm study starts no worker (each imports torch anew).
    """
    results: list[dict | None] = [cached_record(job, config, root) for job in jobs]
    done = 0
    for job, record in zip(jobs, results, strict=True):
        if record is not None and report:
            done += 1
            report(job.name, done, len(jobs))
    return results, [i for i, r in enumerate(results) if r is None]


def run_local(
    jobs: Sequence[ModelJob],
    config: StudyConfig,
    workers: int = 1,
    root: Path | None = None,
    report: Report | None = None,
) -> list[dict]:
    """Run the missing pipelines in up to `workers` spawned processes (in this process when
    one worker or one missing model suffices; no process at all when everything is cached)."""
    results, missing = _cached(jobs, config, root, report)
    done = len(jobs) - len(missing)
    if workers <= 1 or len(missing) <= 1:
        if missing:
            _quiet_worker()
        for i in missing:
            results[i] = run_pipeline(jobs[i], config, root)
            done += 1
            if report:
                report(jobs[i].name, done, len(jobs))
        return [r for r in results if r is not None]
    with process_pool(min(workers, len(missing)), _pool_worker) as pool:
        futures = {pool.submit(run_pipeline, jobs[i], config, root): i for i in missing}
        for fut in as_completed(futures):
            i = futures[fut]
            results[i] = fut.result()
            done += 1
            if report:
                report(jobs[i].name, done, len(jobs))
    return [r for r in results if r is not None]


def run_ray(
    jobs: Sequence[ModelJob],
    config: StudyConfig,
    address: str | None = None,
    root: Path | None = None,
    report: Report | None = None,
) -> list[dict]:
    """Run each pipeline as a Ray task on the cluster at `address` (None: start a local one)."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray needs ray: pip install 'skindeep[distributed]'") from None
    results, missing = _cached(jobs, config, root, report)
    if not missing:  # everything cached: no cluster needed
        return [r for r in results if r is not None]
    started = not ray.is_initialized()
    if started:  # workers find the same organisms, activations and step records
        env = {"env_vars": {"SKINDEEP_CACHE": str(cache_root())}}
        ray.init(address=address, runtime_env=env, log_to_driver=False,
                 include_dashboard=False)  # fmt: skip
    try:
        gpus = 0 if config.device == "cpu" else 1
        task = ray.remote(num_cpus=1, num_gpus=gpus)(_ray_pipeline)
        refs = [task.remote(jobs[i], config, root) for i in missing]
        index = {ref: i for ref, i in zip(refs, missing, strict=True)}
        pending, done = list(refs), len(jobs) - len(missing)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            i = index[ready[0]]
            results[i] = ray.get(ready[0])
            done += 1
            if report:
                report(jobs[i].name, done, len(jobs))
        return [r for r in results if r is not None]
    finally:
        if started:
            ray.shutdown()


def _ray_pipeline(job: ModelJob, config: StudyConfig, root: Path | None) -> dict:
    """A Ray task: the quiet single-thread worker set-up, then the pipeline."""
    _quiet_worker()
    return run_pipeline(job, config, root)


def default_workers() -> int:
    """Local workers: the CPUs this process may use (at least 1)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)
