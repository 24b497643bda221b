"""The exact stage's cascade of cheaper first passes (``exact_top_k``) against a baseline stage 3.

End-to-end search at the index's defaults, one query at a time (2 threads), over a kept rung of the scale ladder
(``bench_scale.py --keep``) and its 200 real queries. Two systems in one process, differing only in stage 3:

- the baseline, ``--baseline float16`` (default): the cascade without its int8 pass (float16 tables first, then
  float32 for the survivors: ``exact_top_k`` before the int8 pass); ``--baseline float32``: every candidate scored
  with the float32 tables (``top_k(exact_padded(...))``, the stage before the float16 pass);
- ``int8 first``: ``search.exact_top_k``, the default (int8 tables, then float16 when many survive, then float32).

Whole passes interleaved (baseline, int8 first, baseline, ...), so that every query finds its documents' bytes out
of the caches, as a user's query does (a query touches ~6.7 MB of the 100,000-document index; 200 queries, far
more than the 32 MB L3 cache). Prints per pass the median and p95 ms of each and their ratio, then the median of the
passes' ratios, and checks that both return the same documents with the same scores.

    python benchmarks/bench_exact_stage.py --size 100000 --passes 5
    python benchmarks/bench_exact_stage.py --size 100000 --passes 5 --baseline float32
    python benchmarks/bench_exact_stage.py --size 100000 --stages     # where a query's time goes, stage by stage

``--stages``: each stage of the default search timed on its own, query by query (3 passes, the first 20 queries of
a warm-up excluded): padding, centroid scores, probe choice, inverted-file walk, candidate cut, centroid
interaction, second cut, and the exact stage (``exact_top_k``, tables included), medians and p95 in ms.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("LATEINT_NUM_THREADS", "2")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, os.environ.get("LATEINT_SRC", str(HERE.parent)))

from ab_search import add_rung_args, compare, rung  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_rung_args(p)
    p.add_argument("--stages", action="store_true", help="time each stage of the default search instead")
    p.add_argument("--baseline", choices=["float16", "float32"], default="float16",
                   help="stage 3 to compare the default with: the cascade without its int8 pass, or float32 only")
    a = p.parse_args()

    import torch

    from pyterrier_lateint.index import search
    from pyterrier_lateint.index.ranking import top_k
    torch.set_num_threads(2)
    path, reader, queries = rung(a)
    if a.stages:
        stage_times(reader, queries, a.k)
        return

    cascade, int8_min = search.exact_top_k, search.INT8_MIN_DOCS

    def all_float32(rd, Qp, ids, k, St=None, parallel=True):
        return top_k(ids, search.exact_padded(rd, Qp, ids, St, parallel), k)

    def float16_first(*args, **kwargs):
        search.INT8_MIN_DOCS = 2 ** 62  # no int8 pass
        try:
            return cascade(*args, **kwargs)
        finally:
            search.INT8_MIN_DOCS = int8_min
    baseline = {"float32": all_float32, "float16": float16_first}[a.baseline]
    name = {"float32": "float32", "float16": "float16 first"}[a.baseline]
    print(f"{path}: {reader.n_docs:,} documents, {len(queries)} queries, defaults "
          f"{search.SearchParams().for_k(a.k, reader.n_live)}")
    results = compare(reader, queries, a.k, "exact_top_k", {name: baseline, "int8 first": cascade}, a.passes)
    same = all(np.array_equal(x[0], y[0]) and np.array_equal(x[1], y[1])
               for x, y in zip(results[name], results["int8 first"]))
    print(f"Same documents and scores for every query: {same}.")


def stage_times(reader, queries: list, k: int) -> None:
    """Print each stage's median and p95 ms over 3 passes of ``queries``, one query at a time, as
    ``search.search_plaid`` runs them."""
    import time

    from pyterrier_lateint.index import search
    from pyterrier_lateint.index.ranking import select_top, select_top_positions
    p = search.SearchParams().for_k(k, reader.n_live)
    names = ["pad_queries", "centroid scores", "probe choice", "inverted-file walk", "candidate cut",
             "centroid interaction", "second cut", "exact stage"]

    def one(q) -> np.ndarray:
        t = [time.perf_counter()]
        Q, _, lens = search.pad_queries([q], reader.codec)
        t.append(time.perf_counter())
        St = search.centroid_scores(reader, Q)
        t.append(time.perf_counter())
        probes = search._top_probes(St, int(lens[0]), p.nprobe)
        t.append(time.perf_counter())
        acc, mark = search._scratch(reader.n_docs)
        ids, approx = search._probe_candidates(St, int(lens[0]), probes, p.nprobe, reader.ivf_offsets,
                                               reader.ivf_docs, reader.n_docs, getattr(reader, "deleted", None),
                                               acc, mark)
        t.append(time.perf_counter())
        if len(ids) > p.ncandidates:
            ids = ids[select_top_positions(ids, approx, p.ncandidates)]
        t.append(time.perf_counter())
        scores = search.stage_interaction(reader, St, ids)
        t.append(time.perf_counter())
        c = np.sort(select_top(ids, scores, p.nexact))
        t.append(time.perf_counter())
        search.exact_top_k(reader, Q, c, k, St)
        t.append(time.perf_counter())
        return 1000 * np.diff(t)
    for q in queries[:20]:
        one(q)
    ms = np.array([one(q) for _ in range(3) for q in queries])
    total = ms.sum(axis=1)
    print(f"{reader.n_docs:,} documents, {len(queries)} queries x 3 passes, {p}")
    print("| stage | median ms | p95 ms |")
    print("|---|---|---|")
    for i, n in enumerate(names):
        print(f"| {n} | {np.median(ms[:, i]):.2f} | {np.percentile(ms[:, i], 95):.2f} |")
    print(f"| total | {np.median(total):.2f} | {np.percentile(total, 95):.2f} |")


if __name__ == "__main__":
    main()
