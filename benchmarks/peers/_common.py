"""Helpers shared by the peer drivers (run inside the peers' venvs: only numpy and the standard library)."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

THREADS = int(os.environ.get("BENCH_THREADS", "2"))


def load(folder: str):
    """(doc vectors float32 (T, dim), offsets (n_docs+1,), list of query arrays (n_i, dim))."""
    folder = Path(folder)
    vectors = np.load(folder / "docs.npy")
    offsets = np.load(folder / "offsets.npy")
    Q, qoff = np.load(folder / "queries.npy"), np.load(folder / "qoffsets.npy")
    return vectors, offsets, [Q[qoff[i]:qoff[i + 1]] for i in range(len(qoff) - 1)]


def dir_bytes(path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def time_one_at_a_time(search_one, queries, repeats: int = 3):
    """Warm-up pass over all queries, then ``repeats`` timed passes; per query the median over the passes (ms),
    and the result of the last pass."""
    for q in queries:
        search_one(q)
    times = np.zeros((repeats, len(queries)))
    results = [None] * len(queries)
    for r in range(repeats):
        for i, q in enumerate(queries):
            t = time.perf_counter()
            results[i] = search_one(q)
            times[r, i] = 1000 * (time.perf_counter() - t)
    return np.median(times, axis=0).tolist(), results


def emit(obj: dict) -> None:
    """The driver's result: one JSON line after a marker, so library chatter on stdout does not break parsing."""
    sys.stdout.write("\n@@RESULT@@" + json.dumps(obj) + "\n")
    sys.stdout.flush()
