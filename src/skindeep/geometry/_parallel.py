"""Layers are independent: run them on as many threads as BLAS may use, one BLAS thread each.

Threads suffice (the heavy work is BLAS/LAPACK, which releases the GIL), so nothing is
pickled or copied. The result is the same list, in layer order, as a plain loop gives.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from threadpoolctl import threadpool_info, threadpool_limits

T = TypeVar("T")


def blas_threads() -> int:
    """Threads the BLAS libraries may use now (1 when none is found)."""
    counts = [int(info["num_threads"]) for info in threadpool_info() if info["user_api"] == "blas"]
    return max(counts, default=1)


def map_layers(work: Callable[[int], T], n_layers: int) -> list[T]:
    """[work(0), ..., work(n_layers - 1)], layers spread over `blas_threads()` workers."""
    workers = min(n_layers, blas_threads())
    if workers <= 1:
        return [work(i) for i in range(n_layers)]
    with threadpool_limits(limits=1), ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(work, range(n_layers)))
