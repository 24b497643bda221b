"""Where one-query latency's tail comes from (issue 15): each stage of the numba search timed per query.

Indexes a collection's cached fp32 vectors (``bench_peers.prepare``) with the default codec, or opens ``--index``,
then runs the stages of :func:`pyterrier_lateint.index.search.search_plaid` one query at a time, timing each:
the centroid scores ``St``, stage 1 (probe: postings walked), stage 2 (centroid interaction) and stage 3 (exact
scoring from the bytes). Prints the median and p95 of each, and the same split by the query's SIMD lane groups
(query tokens are padded to multiples of 16: a 17-token query does twice the exact-stage work of a 16-token one).

    python benchmarks/bench_tail.py                    # Vaswani, 5 passes over the 93 queries
    python benchmarks/bench_tail.py --index PATH --collection vaswani
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("LATEINT_NUM_THREADS", "2")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_peers import load_vectors, md_table, prepare  # noqa: E402

from pyterrier_lateint.index import ColBERTIndex  # noqa: E402
from pyterrier_lateint.index.search import (SearchParams, _centroid_interaction, _exact_padded,  # noqa: E402
                                            _probe_candidates, _top_probes, centroid_scores, pad_queries,
                                            select_top)
from pyterrier_lateint.index.simd import LANES  # noqa: E402

COLUMNS = ("St ms", "stage 1 ms", "stage 2 ms", "stage 3 ms", "total ms")


def time_stages(index: ColBERTIndex, queries: list[np.ndarray], passes: int) -> np.ndarray:
    """Per (pass, query): ``[tokens, postings walked, vectors scored exactly, St, s1, s2, s3, total]`` (ms)."""
    r = index.reader()
    p = SearchParams().for_k(10, r.n_live)
    rows = []
    for rep in range(passes + 1):  # the first pass warms up (numba compilation, page cache)
        for q in queries:
            t0 = time.perf_counter()
            Q, _, lens = pad_queries([q], r.codec)
            St = centroid_scores(r, Q)
            t1 = time.perf_counter()
            nq = int(lens[0])
            probes = _top_probes(St, nq, p.nprobe)
            c, approx = _probe_candidates(St, nq, probes, p.nprobe, r.ivf_offsets, r.ivf_docs, r.n_docs)
            c = select_top(c, approx, p.ncandidates)
            t2 = time.perf_counter()
            if len(c) > p.nexact:
                c = select_top(c, _centroid_interaction(St, c, r.offsets, r.codes), p.nexact)
            t3 = time.perf_counter()
            c = np.sort(c)
            _exact_padded(r, Q, c, St, True)
            t4 = time.perf_counter()
            if rep:
                ivf = r.ivf_offsets
                postings = int(sum(int(ivf[probes[t, :p.nprobe] + 1].sum() - ivf[probes[t, :p.nprobe]].sum())
                                   for t in range(nq)))
                n_exact = int((r.offsets[c + 1] - r.offsets[c]).sum())
                rows.append([nq, postings, n_exact, *(1000 * np.diff([t0, t1, t2, t3, t4])), 1000 * (t4 - t0)])
    return np.asarray(rows, dtype=np.float64)


def summary(a: np.ndarray, label: str) -> dict:
    row = {"queries": label, "n": len(a), "tokens median": float(np.median(a[:, 0])),
           "postings median": float(np.median(a[:, 1])), "exact vectors median": float(np.median(a[:, 2]))}
    for j, name in enumerate(COLUMNS):
        row[f"{name} median"] = float(np.median(a[:, 3 + j]))
        row[f"{name} p95"] = float(np.percentile(a[:, 3 + j], 95))
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--collection", default="vaswani")
    ap.add_argument("--index", type=Path, help="an existing index of the collection (default: built from vectors)")
    ap.add_argument("--passes", type=int, default=5)
    args = ap.parse_args()
    import torch
    torch.set_num_threads(2)
    folder = prepare(args.collection)
    vectors, offsets, queries = load_vectors(folder, mmap=True)
    with tempfile.TemporaryDirectory(prefix="bench-tail-") as tmp:
        index = ColBERTIndex(args.index) if args.index else ColBERTIndex(Path(tmp) / "i")
        if not args.index:
            docs = ({"docno": str(i), "doc_embs": vectors[offsets[i]:offsets[i + 1]]} for i in range(len(offsets) - 1))
            index.indexer(None, verbose=False, batch_size=1024).index(docs)
        a = time_stages(index, queries, args.passes)
    groups = np.maximum(1, np.ceil(a[:, 0] / LANES))
    rows = [summary(a, "all")]
    for g in np.unique(groups):
        rows.append(summary(a[groups == g], f"{int(g)} lane group(s): {int(LANES * (g - 1)) + 1}-{int(LANES * g)} tokens"))
    print(f"\n{args.collection}: {len(queries)} queries x {args.passes} passes, one at a time, default settings, "
          f"2 threads\n")
    print(md_table(rows))
    total = a[:, -1]
    print(f"\ncorrelation of total time with: tokens {np.corrcoef(total, a[:, 0])[0, 1]:.2f}, postings walked "
          f"{np.corrcoef(total, a[:, 1])[0, 1]:.2f}, vectors scored exactly {np.corrcoef(total, a[:, 2])[0, 1]:.2f}")


if __name__ == "__main__":
    main()
