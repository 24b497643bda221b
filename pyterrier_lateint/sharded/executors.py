"""Where the work of a sharded index runs: in this process (``"local"``) or on a Ray cluster (``"ray"``).

Two kinds of work:

- **build tasks** (:meth:`run`): training the shared codec, then one task per shard. Each task is idempotent (a
  shard already complete under the current plan returns at once), so a task that fails is simply run again:
  ``max_retries`` times for errors that may pass (a worker process or machine lost, ``OSError``, ``RuntimeError``
  such as CUDA running out of memory, ``MemoryError``); errors of the input (``ValueError``, ``TypeError``,
  ``KeyError``) fail at once. Finished shards are never redone. On Ray each task asks for ``cpus_per_worker`` CPUs
  and ``gpus_per_worker`` GPUs (default: one when the cluster has GPUs), at most ``workers`` at a time.
- **search pools** (:meth:`search_pool`): searchers holding the shards, :class:`LocalSearchPool` (one in this
  process, its threads spread over (shard, query) pairs) or :class:`RaySearchPool` (Ray actors, ``workers`` of
  them, each holding every ``workers``-th shard).
"""
from __future__ import annotations

import inspect
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np

from ..index.search import SearchParams
from ..settings import THREADS_ENV
from .search import Candidates, Results, ShardSearcher

logger = logging.getLogger(__name__)

RETRIED = (OSError, RuntimeError, MemoryError)  # errors a second try may not meet; input errors are not retried
EXECUTORS = ("local", "ray")
ACTOR_START_TIMEOUT = 120  # seconds for shard searchers to start before the cluster is deemed too small
INLINE_BYTES = 100_000  # query batches up to this size travel inside each actor call


class LocalExecutor:
    """Runs build tasks one after the other in this process, and searches with threads in this process.

    The default executor (``executor="local"``).

    Args:
        max_retries: retries of a task that failed with an error that may pass (``OSError``, ``RuntimeError``,
            ``MemoryError``); input errors fail at once. Default 2.

    Example:
        .. code-block:: python

            from pyterrier_lateint.sharded import LocalExecutor

            index.indexer(n_shards=4, executor=LocalExecutor(max_retries=0)).index(docs)
    """

    name = "local"

    def __init__(self, max_retries: int = 2):
        self.max_retries = max_retries
        self.workers = 1

    def __repr__(self) -> str:
        return f"LocalExecutor(max_retries={self.max_retries})"

    def run(self, fn: Callable[..., Any], calls: Sequence[tuple], desc: str = "tasks") -> list[Any]:
        """Run ``fn(*args)`` for each of ``calls``, one after the other, retrying errors that may pass.

        Args:
            fn: the task.
            calls: the arguments of each call.
            desc: what the tasks are, for the retry warnings.

        Returns:
            list: each call's result, in the order of ``calls``.

        Raises:
            Exception: a task's error, at once for input errors, after ``max_retries`` retries for the others.
        """
        out = []
        for i, args in enumerate(calls):
            for attempt in range(self.max_retries + 1):
                try:
                    out.append(fn(*args))
                    break
                except RETRIED as e:
                    if attempt == self.max_retries:
                        raise
                    logger.warning("%s task %d of %d failed (%s: %s); retrying (%d of %d)", desc, i + 1, len(calls),
                                   type(e).__name__, e, attempt + 1, self.max_retries)
        return out

    def search_pool(self, paths: Sequence[Path], bases: Sequence[int]) -> "LocalSearchPool":
        """One shard searcher over every shard, in this process.

        Args:
            paths: the shard index folders, in global id order.
            bases: the first global doc id of each shard.

        Returns:
            LocalSearchPool: the pool.
        """
        return LocalSearchPool(paths, bases)


class RayExecutor:
    """Build tasks and shard searchers on Ray.

    ``ray.init()`` is called with ``address`` when Ray is not yet initialised: ``None`` starts a local cluster of
    this machine's CPUs, ``"auto"`` joins a running one. Every node must see the index folder.

    Args:
        workers: tasks (or search actors) at a time; default the cluster's CPUs over ``cpus_per_worker``.
        cpus_per_worker: CPUs per task or actor (default 1); also the threads each one uses.
        gpus_per_worker: GPUs per build task; default one when the cluster has GPUs, else none.
        max_retries: retries of a task that failed with an error that may pass (default 2).
        address: the Ray cluster to join (``ray.init(address=...)``); default ``None``.

    Raises:
        ImportError: when Ray is not installed.

    Example:
        .. code-block:: python

            from pyterrier_lateint.sharded import RayExecutor

            ray_exec = RayExecutor(workers=4, cpus_per_worker=2, address="auto")
            index.indexer(n_shards=8, executor=ray_exec).index(docs)
            retriever = index.retriever(executor="ray", workers=4, cpus_per_worker=2)
    """

    name = "ray"

    def __init__(self, workers: Optional[int] = None, cpus_per_worker: float = 1, gpus_per_worker: Optional[float] = None,
                 max_retries: int = 2, address: Optional[str] = None):
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ImportError("executor='ray' needs Ray: pip install 'pyterrier-lateint[ray]' (or pip install ray)") \
                from None
        self.address = address
        self._workers = workers
        self.cpus_per_worker = cpus_per_worker
        self.gpus_per_worker = gpus_per_worker
        self.max_retries = max_retries

    def __repr__(self) -> str:
        return f"RayExecutor(workers={self._workers}, cpus_per_worker={self.cpus_per_worker})"

    def _ray(self):
        import ray
        if not ray.is_initialized():
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False)
        return ray

    @property
    def workers(self) -> int:
        """Tasks (or search actors) at a time: given, else the cluster's CPUs over ``cpus_per_worker``."""
        if self._workers is not None:
            return self._workers
        cpus = self._ray().cluster_resources().get("CPU", 1)
        return max(1, int(cpus // self.cpus_per_worker))

    def _gpus(self) -> float:
        if self.gpus_per_worker is not None:
            return self.gpus_per_worker
        return 1.0 if self._ray().cluster_resources().get("GPU", 0) >= 1 else 0.0

    def _env(self) -> dict:
        threads = str(max(1, int(self.cpus_per_worker)))
        return {"env_vars": {THREADS_ENV: threads, "OMP_NUM_THREADS": threads, "TOKENIZERS_PARALLELISM": "false"}}

    def run(self, fn: Callable[..., Any], calls: Sequence[tuple], desc: str = "tasks") -> list[Any]:
        """Run ``fn(*args)`` for each of ``calls`` as Ray tasks, at most :attr:`workers` at a time.

        Models among the arguments go to the object store once. Errors that may pass are retried by Ray
        (``max_retries``).

        Args:
            fn: the task.
            calls: the arguments of each call.
            desc: what the tasks are (unused by Ray; kept for the executor interface).

        Returns:
            list: each call's result, in the order of ``calls``.

        Raises:
            Exception: a task's error, after its retries.
        """
        ray = self._ray()
        remote = ray.remote(fn).options(num_cpus=self.cpus_per_worker, num_gpus=self._gpus(),
                                        max_retries=self.max_retries, retry_exceptions=list(RETRIED),
                                        runtime_env=self._env())
        shared = {}
        out: list[Any] = [None] * len(calls)
        pending: dict[Any, int] = {}
        queue = list(enumerate(calls))
        limit = self.workers
        while queue or pending:
            while queue and len(pending) < limit:
                i, args = queue.pop(0)
                args = tuple(_put(ray, a, shared) for a in args)
                pending[remote.remote(*args)] = i
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                out[pending.pop(ref)] = ray.get(ref)  # raises the task's error after its retries
        return out

    def search_pool(self, paths: Sequence[Path], bases: Sequence[int]) -> "RaySearchPool":
        """Shard searchers as Ray actors: :attr:`workers` of them, actor ``w`` holding shards ``w, w + workers, ...``.

        Args:
            paths: the shard index folders, in global id order.
            bases: the first global doc id of each shard.

        Returns:
            RaySearchPool: the pool (its actors live until it is closed).

        Raises:
            RuntimeError: when the actors do not start within 120 s (too few free CPUs).
        """
        return RaySearchPool(self, paths, bases)


def _put(ray, arg: Any, shared: dict) -> Any:
    """Large arguments (the model) go to the object store once and travel by reference."""
    if hasattr(arg, "encode_docs"):
        key = id(arg)
        if key not in shared:
            shared[key] = ray.put(arg)
        return shared[key]
    return arg


def check_executor_settings(executor: Union[str, LocalExecutor, RayExecutor, None], settings: dict) -> None:
    """Refuse, where a transformer is made, settings that :func:`make_executor` would reject at the first search.

    Args:
        executor: ``"local"``, ``"ray"``, ``None`` or an executor object.
        settings: the keyword settings meant for it.

    Raises:
        TypeError: naming the unknown settings and those the executor takes (an executor object takes none).
        ValueError: when ``executor`` is neither a known name nor an executor object.
    """
    if isinstance(executor, (LocalExecutor, RayExecutor)):
        if settings:
            raise TypeError(f"settings {sorted(settings)} are for an executor made by name; the executor object "
                            f"{executor!r} is already configured: set them when making it")
        return
    if executor not in (None, "local", "ray"):
        raise ValueError(f"executor must be one of {EXECUTORS} or an executor object, not {executor!r}")
    known = set(inspect.signature(RayExecutor.__init__).parameters) | set(inspect.signature(LocalExecutor.__init__).parameters)
    unknown = sorted(set(settings) - known - {"self"})
    if unknown:
        raise TypeError(f"unknown setting(s) {unknown} for executor={executor!r}: the executors take "
                        f"{sorted(known - {'self'})}")


def make_executor(executor: Union[str, LocalExecutor, RayExecutor, None] = "local", **kwargs: Any):
    """An executor from a name (``"local"`` or ``"ray"``, with ``kwargs``) or an executor itself."""
    if isinstance(executor, (LocalExecutor, RayExecutor)):
        return executor
    if executor in (None, "local"):
        kwargs.pop("workers", None), kwargs.pop("cpus_per_worker", None), kwargs.pop("gpus_per_worker", None)
        kwargs.pop("address", None)
        return LocalExecutor(**kwargs)
    if executor == "ray":
        return RayExecutor(**kwargs)
    raise ValueError(f"executor must be one of {EXECUTORS} or an executor object, not {executor!r}")


class LocalSearchPool:
    """One :class:`ShardSearcher` over every shard, in this process."""

    def __init__(self, paths: Sequence[Path], bases: Sequence[int]):
        self.searcher = ShardSearcher(paths, bases)
        self.owner_bases = np.asarray([bases[0]], dtype=np.int64)  # one searcher owns every id
        self.n = 1

    def candidates(self, Q, q_off, lens, p: SearchParams) -> list[list[Candidates]]:
        return [self.searcher.candidates(Q, q_off, lens, p)]

    def exact(self, Q, q_off, ids_per_worker: list[list[np.ndarray]]) -> list[list[np.ndarray]]:
        return [self.searcher.exact(Q, q_off, ids_per_worker[0])]

    def exhaustive(self, queries, k) -> list[Results]:
        return [self.searcher.exhaustive(queries, k)]

    def owners(self, ids: np.ndarray) -> np.ndarray:
        return np.zeros(len(ids), dtype=np.int64)

    def close(self) -> None:
        pass


class _ShardActor:
    """The Ray actor around a :class:`ShardSearcher` (one per worker process)."""

    def __init__(self, paths, bases):
        self.searcher = ShardSearcher(paths, bases)

    def candidates(self, Q, q_off, lens, p):
        return self.searcher.candidates(Q, q_off, lens, p)

    def exact(self, Q, q_off, ids):
        return self.searcher.exact(Q, q_off, ids)

    def exhaustive(self, queries, k):
        return self.searcher.exhaustive(queries, k)

    def ready(self) -> int:
        return os.getpid()


class RaySearchPool:
    """``workers`` Ray actors; actor ``w`` holds shards ``w, w + workers, ...``. The query batch goes to the object
    store once per round; each round is one call per actor, all in flight together."""

    def __init__(self, executor: RayExecutor, paths: Sequence[Path], bases: Sequence[int]):
        ray = executor._ray()
        self.ray = ray
        self.n = min(executor.workers, len(paths))
        actor = ray.remote(_ShardActor).options(num_cpus=executor.cpus_per_worker, runtime_env=executor._env())
        self.groups = [list(range(w, len(paths), self.n)) for w in range(self.n)]
        t0 = time.perf_counter()
        self.actors = [actor.remote([str(Path(paths[s]).absolute()) for s in g], [int(bases[s]) for s in g])
                       for g in self.groups]  # absolute: actors run in processes of their own
        try:
            ray.get([a.ready.remote() for a in self.actors], timeout=ACTOR_START_TIMEOUT)
        except ray.exceptions.GetTimeoutError:
            self.close()
            raise RuntimeError(
                f"{self.n} shard searchers of {executor.cpus_per_worker:g} CPU(s) each did not start within "
                f"{ACTOR_START_TIMEOUT} s: the Ray cluster has {ray.available_resources().get('CPU', 0):g} CPUs free "
                f"of {ray.cluster_resources().get('CPU', 0):g} (searchers keep theirs while they live); ask for fewer "
                f"workers or cpus_per_worker, or close() other indexes' searchers") from None
        logger.info("%d shard searchers ready in %.1fs", self.n, time.perf_counter() - t0)
        self.shard_owner = np.zeros(len(paths), dtype=np.int64)
        for w, g in enumerate(self.groups):
            self.shard_owner[g] = w
        self.bases = np.asarray(bases, dtype=np.int64)

    def _all(self, method: str, *args, per_worker: Optional[list] = None) -> list:
        """Call ``method`` on every actor at once; the batch travels inline with each call when small (Ray copies
        arguments under ~100 kB into the call), through the object store once when larger."""
        size = sum(getattr(a, "nbytes", 0) for a in args) + sum(getattr(q, "nbytes", 0) for a in args
                                                                 if isinstance(a, list) for q in a)
        if size > INLINE_BYTES and len(self.actors) > 1:
            args = tuple(self.ray.put(a) for a in args)
        calls = [getattr(a, method).remote(*args, *([per_worker[w]] if per_worker is not None else []))
                 for w, a in enumerate(self.actors)]
        return self.ray.get(calls)

    def candidates(self, Q, q_off, lens, p: SearchParams) -> list[list[Candidates]]:
        return self._all("candidates", Q, q_off, lens, p)

    def exact(self, Q, q_off, ids_per_worker: list[list[np.ndarray]]) -> list[list[np.ndarray]]:
        return self._all("exact", Q, q_off, per_worker=ids_per_worker)

    def exhaustive(self, queries, k) -> list[Results]:
        return self._all("exhaustive", queries, k)

    def owners(self, ids: np.ndarray) -> np.ndarray:
        return self.shard_owner[np.searchsorted(self.bases, ids, side="right") - 1]

    def close(self) -> None:
        for a in self.actors:
            self.ray.kill(a)
        self.actors = []
