"""Process pools that Ctrl-C stops at once and cleanly (one pool idiom for zoo and study).

In a terminal, Ctrl-C reaches every process of the group: idle pool workers would print a
KeyboardInterrupt traceback each, and leaving the pool normally waits for the jobs in flight
(minutes). Here workers ignore SIGINT; the parent alone is interrupted, cancels what has not
started, stops the workers and re-raises, so the CLI exits 130 at once. Finished results are
already written atomically; a stopped job leaves at most a hidden temporary folder that the
next write of the same artifact removes (see `skindeep.cache.atomic_directory`).
"""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager


def _worker_start(initializer: Callable[[], None] | None) -> None:
    """Run in each worker: leave Ctrl-C to the parent, then the caller's own set-up."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if initializer is not None:
        initializer()


@contextmanager
def process_pool(
    workers: int, initializer: Callable[[], None] | None = None
) -> Iterator[ProcessPoolExecutor]:
    """A spawn-context ProcessPoolExecutor whose workers ignore SIGINT (see module docstring)."""
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_worker_start,
        initargs=(initializer,),
    )
    try:
        yield pool
    except KeyboardInterrupt:
        pool.shutdown(wait=False, cancel_futures=True)
        for child in multiprocessing.active_children():
            child.terminate()
        raise
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
