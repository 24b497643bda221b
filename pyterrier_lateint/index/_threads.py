"""One shared thread pool for the numba kernels (compiled ``nogil=True``, so Python threads run them in parallel).

Threads rather than numba's OpenMP ``prange``: OpenMP workers spin while waiting and steal the cores from the BLAS
threads of the next matrix product (measured 10x slower single-query latency on 2 busy cores).
The number of threads is ``$LATEINT_NUM_THREADS``, else the number of CPUs this process may use.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, TypeVar

T = TypeVar("T")
R = TypeVar("R")
_POOL: ThreadPoolExecutor | None = None


def n_threads() -> int:
    env = os.environ.get("LATEINT_NUM_THREADS")
    if env:
        return max(1, int(env))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def pmap(fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """``[fn(x) for x in items]``, on the shared pool when there is more than one item and thread."""
    global _POOL
    items = list(items)
    if len(items) <= 1 or n_threads() == 1:
        return [fn(x) for x in items]
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=n_threads(), thread_name_prefix="lateint")
    return list(_POOL.map(fn, items))
