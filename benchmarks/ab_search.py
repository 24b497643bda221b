"""Two variants of one step of the end-to-end search, timed over a kept rung of the scale ladder in whole passes,
interleaved (A, B, A, B, ...): the shared part of ``bench_exact_stage.py`` and ``bench_centroid_scores.py``.

Each variant replaces one function of :mod:`pyterrier_lateint.index.search` for a whole pass over the rung's 200
real queries, searched one at a time at the index's defaults; every query then finds its documents' bytes out of
the caches, as a user's query does.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Callable

import numpy as np

from scale_corpus import Pool, build_pool, cache_root


def add_rung_args(p: argparse.ArgumentParser) -> None:
    """The options that choose the rung, its queries and the passes."""
    p.add_argument("--size", type=int, default=100_000, help="the ladder rung (documents)")
    p.add_argument("--index", type=Path, help="an index (default: the rung's, kept by bench_scale.py --keep)")
    p.add_argument("--passes", type=int, default=5)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--k", type=int, default=10)


def rung(a: argparse.Namespace) -> tuple[Path, object, list[np.ndarray]]:
    """``(index path, its reader, the query vectors)``: bench_scale.py's seeded sample of the pool's queries."""
    from pyterrier_lateint.index import ColBERTIndex
    pool = Pool.load(build_pool())
    qidx = np.sort(np.random.default_rng(a.seed).choice(len(pool.queries), min(a.queries, len(pool.queries)),
                                                        replace=False))
    path = a.index or cache_root() / "runs" / f"n{a.size}" / "ours.lateint"
    if not ColBERTIndex(path).built():
        raise SystemExit(f"no index at {path}: run bench_scale.py --sizes {a.size} --keep first, or pass --index")
    return path, ColBERTIndex(path).reader(), [pool.queries[i] for i in qidx]


def compare(reader, queries: list[np.ndarray], k: int, attr: str, systems: dict[str, Callable],
            passes: int) -> dict[str, list]:
    """Time ``systems`` (two: name -> the function to put in ``search.<attr>``) in ``passes`` interleaved whole
    passes after one warm-up pass each; print a row per pass (median / p95 ms of each, their ratio, the first over
    the second) and the median of the passes' ratios. Returns each system's results of its last pass (per query
    ``(doc ids, scores)``)."""
    from pyterrier_lateint.index import search
    original = getattr(search, attr)
    (a_name, _), (b_name, _) = systems.items()

    def one_pass(name: str) -> tuple[list, list]:
        setattr(search, attr, systems[name])
        ms, out = [], []
        try:
            for q in queries:
                t = time.perf_counter()
                out.append(search.search_plaid(reader, [q], k)[0])
                ms.append(1000 * (time.perf_counter() - t))
        finally:
            setattr(search, attr, original)
        return ms, out

    for name in systems:  # warm-up: numba compilation, page cache
        one_pass(name)
    print(f"| pass | {a_name} median / p95 ms | {b_name} median / p95 ms | ratio median; p95 |")
    print("|---|---|---|---|")
    ratios, results = [], {}
    for i in range(passes):
        row = {}
        for name in systems:
            ms, results[name] = one_pass(name)
            row[name] = (float(np.median(ms)), float(np.percentile(ms, 95)))
        (am, ap), (bm, bp) = row[a_name], row[b_name]
        ratios.append((am / bm, ap / bp))
        print(f"| {i} | {am:.2f} / {ap:.2f} | {bm:.2f} / {bp:.2f} | {am / bm:.2f}; {ap / bp:.2f} |", flush=True)
    r = np.array(ratios)
    print(f"\nmedian of the passes' ratios: {np.median(r[:, 0]):.2f}x; {np.median(r[:, 1]):.2f}x (median; p95).")
    return results
