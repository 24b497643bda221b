"""Exact against two-level (coarse) nearest-centroid assignment in a whole build (issue 22;
``pyterrier_lateint/index/coarse.py``): build time and search quality.

Builds the same synthetic collection of real token vectors (the scale ladder's, :mod:`scale_corpus`) twice with
``--centroids`` centroids: once with exact assignment (k-means and compression; the build's policy forced off) and
once with the build's policy (two-level assignment from ``COARSE_MIN_CENTROIDS`` centroids up). Prints a table:
build seconds per phase, and R@10 of end-to-end search at default
settings and of exhaustive search over each index, against exact fp32 MaxSim over the uncompressed vectors (real
queries of the collections, seeded, as ``bench_scale.py`` samples them).

    python benchmarks/scale_corpus.py pool                       # once: encode the pool
    python benchmarks/bench_coarse.py --docs 10000 --centroids 16384
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("LATEINT_NUM_THREADS", "2")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_peers import md_table  # noqa: E402
from bench_scale import exact_fp32, recall  # noqa: E402
from scale_corpus import DEFAULT_NOISE, Pool, SyntheticCorpus, build_pool  # noqa: E402

K = 10


def build(path: Path, corpus: SyntheticCorpus, n_centroids: int, exact: bool) -> tuple[dict, float]:
    """Index ``corpus`` at ``path``; ``exact``: exact assignment whatever the number of centroids. Returns the
    build's timings and its wall seconds."""
    from pyterrier_lateint.index import ColBERTIndex, coarse
    saved = coarse.COARSE_MIN_CENTROIDS
    if exact:
        coarse.COARSE_MIN_CENTROIDS = 2 ** 62
    try:
        t = time.perf_counter()
        index = ColBERTIndex(path).indexer(n_centroids=n_centroids, verbose=False, batch_size=1024) \
            .index(corpus.documents())
        wall = time.perf_counter() - t
    finally:
        coarse.COARSE_MIN_CENTROIDS = saved
    return index.metadata()["build"], wall


def ranked(index, queries: list, mode: str) -> list:
    frame = pd.DataFrame({"qid": [str(i) for i in range(len(queries))], "query_embs": queries})
    res = index.retriever(num_results=K, mode=mode)(frame)
    by_q = {q: [int(d[1:]) for d in g.sort_values("rank").docno] for q, g in res.groupby("qid", sort=False)}
    return [by_q.get(str(i), []) for i in range(len(queries))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=10_000)
    ap.add_argument("--centroids", type=int, default=16_384)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    import torch
    torch.set_num_threads(2)
    from pyterrier_lateint.index import ColBERTIndex
    pool = Pool.load(build_pool())
    corpus = SyntheticCorpus(pool, a.docs, DEFAULT_NOISE, seed=a.seed)
    qidx = np.sort(np.random.default_rng(a.seed).choice(len(pool.queries), min(a.queries, len(pool.queries)),
                                                        replace=False))
    queries = [pool.queries[i] for i in qidx]
    t = time.perf_counter()
    reference = [list(r) for r in exact_fp32(corpus, queries, depth=K)]
    print(f"exact fp32 reference: {time.perf_counter() - t:.0f} s", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-coarse-") as tmp:
        for name, exact in (("exact", True), ("coarse (the build's policy)", False)):
            path = Path(tmp) / name.split()[0]
            timings, wall = build(path, corpus, a.centroids, exact)
            index = ColBERTIndex(path)
            rows.append({"assignment": name, "recorded": timings.get("assignment"), "build s": wall,
                         "k-means s": timings["seconds_kmeans"], "assign s": timings["seconds_assign"],
                         "quantise s": timings["seconds_quantise"],
                         "R@10 search vs exact fp32": recall(ranked(index, queries, "plaid"), reference, K),
                         "R@10 exhaustive vs exact fp32": recall(ranked(index, queries, "exhaustive"), reference, K)})
            print(json.dumps(rows[-1]), flush=True)
    print(f"\n{a.docs} synthetic documents ({int(corpus.doclens().sum())} vectors), {a.centroids} centroids, "
          f"{len(queries)} queries, k={K}\n")
    print(md_table(rows))
    if a.json:
        a.json.write_text(json.dumps({"rows": rows, "docs": a.docs,
                                      "centroids": a.centroids}, indent=1))


if __name__ == "__main__":
    main()
