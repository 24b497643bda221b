"""One shared thread pool for the numba kernels (compiled ``nogil=True``, so Python threads run them in parallel).

Threads rather than numba's OpenMP ``prange``: OpenMP workers spin while waiting and steal the cores from the BLAS
threads of the next matrix product (measured 10x slower single-query latency on 2 busy cores).
The number of threads is :func:`pyterrier_lateint.settings.n_threads` (``$LATEINT_NUM_THREADS``, else the CPUs this
process may use).
"""
from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Generic, Iterable, TypeVar

from ..settings import n_threads

T = TypeVar("T")
R = TypeVar("R")
_POOL: ThreadPoolExecutor | None = None
_PREFIX = "lateint-pool"


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=n_threads() - 1, thread_name_prefix=_PREFIX)
    return _POOL


class Pending(Generic[R]):
    """The result of :func:`spawn`: ``result()`` waits for it (or computes it, when no worker took it)."""

    def __init__(self, fn: Callable[[], R], future: Future | None):
        self._fn, self._future = fn, future

    def result(self) -> R:
        if self._future is None:
            self._future = Future()
            self._future.set_result(self._fn())
        return self._future.result()  # re-raises the worker's exception


def spawn(fn: Callable[[], R]) -> Pending[R]:
    """``fn()`` started on a worker of the shared pool while the calling thread goes on (run by ``result()`` instead
    when the pool has no worker or the caller is one). A :func:`pmap` called meanwhile finds the worker busy and
    does its items on the calling thread until the worker is free."""
    if n_threads() < 2 or threading.current_thread().name.startswith(_PREFIX):
        return Pending(fn, None)
    return Pending(fn, _pool().submit(fn))


def pmap(fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """``[fn(x) for x in items]``, spread over the calling thread and the shared pool's workers, each taking the
    next unprocessed item until none is left. The calling thread works too (one thread wake-up fewer, and its
    caches are warm)."""
    items = list(items)
    n_workers = min(n_threads(), len(items)) - 1
    if n_workers <= 0 or threading.current_thread().name.startswith(_PREFIX):
        return [fn(x) for x in items]  # (called from a worker: its items would wait for the worker itself)
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

    futures = [_pool().submit(drain) for _ in range(n_workers)]
    try:
        drain()
    finally:
        for f in futures:
            f.result()  # re-raises a worker's exception
    return results
