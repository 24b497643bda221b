"""Helpers shared by the peer drivers (run inside the peers' venvs: only numpy and the standard library)."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

THREADS = int(os.environ.get("BENCH_THREADS", "2"))


def load(folder: str):
    """(doc vectors (T, dim), memory-mapped, float32 or float16; offsets (n_docs+1,); list of float32 query arrays
    (n_i, dim))."""
    folder = Path(folder)
    vectors = np.load(folder / "docs.npy", mmap_mode="r")
    offsets = np.load(folder / "offsets.npy")
    Q, qoff = np.load(folder / "queries.npy"), np.load(folder / "qoffsets.npy")
    return vectors, offsets, [Q[qoff[i]:qoff[i + 1]] for i in range(len(qoff) - 1)]


def proc_status_kb(*names: str) -> dict[str, int]:
    """The kB fields ``names`` (``"VmHWM"``, ``"RssAnon"``, ...) of ``/proc/self/status``: those it has; none
    where there is no ``/proc``."""
    out: dict[str, int] = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name in names:
                    out[name] = int(value.split()[0])
    except OSError:
        pass
    return out


def peak_rss_mib() -> float:
    """This process's own peak resident memory, MiB: ``VmHWM`` of ``/proc/self/status`` (anonymous and file-backed
    pages). Not ``getrusage``'s ``ru_maxrss``: a process started by (v)fork + exec keeps its parent's peak there, so
    a benchmark's child reported the benchmark's own memory when that was larger (2 GB of a parent's arrays showed as
    a child's 1.9 GiB ``ru_maxrss`` against its own 13 MiB ``VmHWM``)."""
    hwm = proc_status_kb("VmHWM").get("VmHWM")
    if hwm is not None:
        return hwm / 1024
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # no /proc: the best there is


def dir_bytes(path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def timed_pass(search_one, queries) -> tuple[list, list]:
    """One pass over ``queries``, one call each: (ms per query, result per query)."""
    ms, results = [], []
    for q in queries:
        t = time.perf_counter()
        results.append(search_one(q))
        ms.append(1000 * (time.perf_counter() - t))
    return ms, results


def time_one_at_a_time(search_one, queries, repeats: int = 3):
    """Warm-up pass over all queries, then ``repeats`` timed passes; per query the median over the passes (ms),
    and the result of the last pass."""
    timed_pass(search_one, queries)
    passes = [timed_pass(search_one, queries) for _ in range(repeats)]
    return np.median(np.array([ms for ms, _ in passes]), axis=0).tolist(), passes[-1][1]


def serve(search_one: Callable[[Any], Any], queries: Sequence, emit_pass: Callable[[list, list], None],
          extras: Callable[[], dict] | None = None) -> None:
    """Answer requests on standard input, one per line, until ``quit`` (or the end of the input):

    - ``pass``: one :func:`timed_pass` over ``queries`` (no warm-up), emitted through ``emit_pass(ms, results)``;
    - ``extras``: ``extras()``, emitted as one result: what the driver measures besides the interleaved passes
      (batched timing, variant settings); ``{}`` when the driver has none;
    - anything else: a result ``{"error": ...}``, so that a caller waiting for a result is never left hanging.
    """
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "quit":
            return
        if cmd == "pass":
            emit_pass(*timed_pass(search_one, queries))
        elif cmd == "extras":
            emit(extras() if extras is not None else {})
        elif cmd:
            emit({"error": f"unknown request {cmd!r} (expected pass, extras or quit)"})


def emit(obj: dict) -> None:
    """The driver's result: one JSON line after a marker, so library chatter on stdout does not break parsing."""
    sys.stdout.write("\n@@RESULT@@" + json.dumps(obj) + "\n")
    sys.stdout.flush()
