"""One shared thread pool for the numba kernels (compiled ``nogil=True``, so Python threads run them in parallel).

Threads rather than numba's OpenMP ``prange``: OpenMP workers spin while waiting and steal the cores from the BLAS
threads of the next matrix product (measured 10x slower single-query latency on 2 busy cores).
The number of threads is :func:`pyterrier_lateint.settings.n_threads` (``$LATEINT_NUM_THREADS``, else the CPUs this
process may use).
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, TypeVar

from ..settings import n_threads

T = TypeVar("T")
R = TypeVar("R")
_POOL: ThreadPoolExecutor | None = None
_PREFIX = "lateint-pool"


def pmap(fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """``[fn(x) for x in items]``, spread over the calling thread and the shared pool's workers, each taking the
    next unprocessed item until none is left. The calling thread works too (one thread wake-up fewer, and its
    caches are warm)."""
    global _POOL
    items = list(items)
    n_workers = min(n_threads(), len(items)) - 1
    if n_workers <= 0 or threading.current_thread().name.startswith(_PREFIX):
        return [fn(x) for x in items]  # (called from a worker: its items would wait for the worker itself)
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=n_threads() - 1, thread_name_prefix=_PREFIX)
    results: list = [None] * len(items)
    order = iter(range(len(items)))
    lock = threading.Lock()

    def drain() -> None:
        while True:
            with lock:
                i = next(order, None)
            if i is None:
                return
            results[i] = fn(items[i])

    futures = [_POOL.submit(drain) for _ in range(n_workers)]
    try:
        drain()
    finally:
        for f in futures:
            f.result()  # re-raises a worker's exception
    return results
