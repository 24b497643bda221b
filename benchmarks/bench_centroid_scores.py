"""Centroid scores (``St = centroids @ Q.T``, the first step of every search) from float16 centroid blocks
(``search.centroid_scores``, the default for pq codecs) against torch's float32 product (the path before).

End-to-end search at the index's defaults, one query at a time (2 threads), over a kept rung of the scale ladder
(``bench_scale.py --keep``) and its 200 real queries. Two systems in one process, differing only in how ``St`` is
computed:

- ``torch float32``: ``torch.mm`` of the float32 centroids (MKL, its OpenMP threads);
- ``float16 blocks``: ``search.centroid_scores``: the centroids read as float16 (half the bytes), multiplied and
  summed in float32 by a numba kernel on the search's own thread pool.

Whole passes interleaved (torch float32, float16 blocks, torch float32, ...); prints per pass the median and p95 ms
of each and their ratio, then the median of the passes' ratios, and how the results compare (the same documents in
the same order; scores within float32 rounding: the sums run in another order).

    python benchmarks/bench_centroid_scores.py --size 100000 --passes 5
    python benchmarks/bench_centroid_scores.py --kernel      # St alone, at the ladder's centroid counts
    python benchmarks/bench_centroid_scores.py --size 100000 --batched   # all 200 queries in one call per pass
    python benchmarks/bench_centroid_scores.py --size 100000 --passes 5 --baseline padded

``--baseline padded``: the baseline is the float16 blocks computing every column of ``St``, the zero rows that pad a
query to whole SIMD lanes included (the kernel before it skipped them: a query of 18 tokens is padded to 32);
the results must then be the same bits.

``--kernel``: ``St`` alone for random float16-valued centroids (16,384 and 65,536: the 100,000 and 1,000,000
document rungs) and 16 / 32 query tokens, the two systems interleaved call by call, 50 calls each.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("LATEINT_NUM_THREADS", "2")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, os.environ.get("LATEINT_SRC", str(HERE.parent)))

from ab_search import add_rung_args, compare, rung  # noqa: E402


def torch_float32(reader, Q: np.ndarray) -> np.ndarray:
    """``St`` as computed before the float16 blocks: torch's float32 product."""
    from pyterrier_lateint.index.search import torch_centroid_scores
    return torch_centroid_scores(reader.codec.centroids, Q)


def padded_blocks(reader, Q: np.ndarray) -> np.ndarray:
    """``St`` from the float16 blocks with every column computed, padding (zero rows of ``Q``) included."""
    from pyterrier_lateint.index import search
    from pyterrier_lateint.index.simd import LANES, aligned_empty
    blocks = reader.codec.centroid_blocks
    St = aligned_empty((len(blocks) * LANES, len(Q)))
    Q = np.ascontiguousarray(Q, dtype=np.float32)
    n_par = max(1, min(search.n_threads(), len(blocks) * len(Q) // search.BLOCK_SCORES_MIN_WORK))
    bounds = np.linspace(0, len(blocks), n_par + 1).astype(np.int64)
    Qt, cols, none = np.ascontiguousarray(Q.T), np.arange(len(Q)), np.zeros(0, dtype=np.int64)
    search.pmap(lambda j: search._block_scores(blocks, Qt, St, bounds[j], bounds[j + 1], cols, none), range(n_par))
    return St[:reader.codec.n_centroids]


def kernel_only(calls: int = 50) -> None:
    """Print median / p95 ms of ``St`` alone, both systems interleaved call by call."""
    from pyterrier_lateint.index import search
    from pyterrier_lateint.index.codec import ResidualCodec

    class Reader:
        def __init__(self, codec):
            self.codec = codec
    rng = np.random.default_rng(0)
    print("| centroids | query tokens | torch float32 median / p95 ms | float16 blocks median / p95 ms | ratio |")
    print("|---|---|---|---|---|")
    for K in (16_384, 65_536):
        C = rng.normal(size=(K, 384)).astype(np.float16).astype(np.float32)
        C /= np.linalg.norm(C, axis=1, keepdims=True)
        codec = ResidualCodec(C.astype(np.float16).astype(np.float32), 16)
        reader = Reader(codec)
        for T in (16, 32):
            Q = rng.normal(size=(T, 384)).astype(np.float32)
            times = {"torch": [], "blocks": []}
            for fn in (torch_float32, search.centroid_scores):  # warm-up: compilation, the float16 blocks
                fn(reader, Q)
            for _ in range(calls):
                for name, fn in (("torch", torch_float32), ("blocks", search.centroid_scores)):
                    t = time.perf_counter()
                    fn(reader, Q)
                    times[name].append(1000 * (time.perf_counter() - t))
            (tm, tp), (bm, bp) = ((np.median(times[n]), np.percentile(times[n], 95)) for n in ("torch", "blocks"))
            print(f"| {K:,} | {T} | {tm:.2f} / {tp:.2f} | {bm:.2f} / {bp:.2f} | {tm / bm:.2f}x |", flush=True)


def batched(reader, queries: list[np.ndarray], k: int, systems: dict, passes: int) -> None:
    """Print ms per query of one ``search_plaid`` call over all ``queries`` per pass, the systems interleaved."""
    from pyterrier_lateint.index import search
    original = search.centroid_scores
    times = {name: [] for name in systems}
    try:
        for i in range(passes + 1):  # the first pass of each: warm-up
            for name, fn in systems.items():
                search.centroid_scores = fn
                t = time.perf_counter()
                search.search_plaid(reader, queries, k)
                if i:
                    times[name].append(1000 * (time.perf_counter() - t) / len(queries))
    finally:
        search.centroid_scores = original
    (a_name, a_ms), (b_name, b_ms) = times.items()
    print(f"batched, ms per query, per pass: {a_name} " + ", ".join(f"{x:.2f}" for x in a_ms) + f"; {b_name} "
          + ", ".join(f"{x:.2f}" for x in b_ms) + f"; ratio of the medians {np.median(a_ms) / np.median(b_ms):.2f}x")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_rung_args(p)
    p.add_argument("--kernel", action="store_true", help="time St alone instead")
    p.add_argument("--batched", action="store_true", help="search all the queries in one call per pass instead")
    p.add_argument("--baseline", choices=["torch", "padded"], default="torch",
                   help="torch's float32 product, or the float16 blocks computing the padding columns too")
    a = p.parse_args()

    import torch
    torch.set_num_threads(2)
    if a.kernel:
        kernel_only()
        return

    from pyterrier_lateint.index import search
    path, reader, queries = rung(a)
    if reader.codec.centroid_blocks is None:
        raise SystemExit(f"{path}: its centroids are not float16 values (a scalar codec): nothing to compare")
    print(f"{path}: {reader.n_docs:,} documents, {reader.codec.n_centroids:,} centroids, {len(queries)} queries, "
          f"defaults {search.SearchParams().for_k(a.k, reader.n_live)}")
    base = {"torch": "torch float32", "padded": "padded blocks"}[a.baseline]
    systems = {base: {"torch": torch_float32, "padded": padded_blocks}[a.baseline],
               "float16 blocks": search.centroid_scores}
    if a.batched:
        batched(reader, queries, a.k, systems, a.passes)
        return
    results = compare(reader, queries, a.k, "centroid_scores", systems, a.passes)
    pairs = list(zip(results[base], results["float16 blocks"]))
    same_order = sum(np.array_equal(x[0], y[0]) for x, y in pairs)
    diff = max((float(np.abs(x[1] - y[1]).max()) for x, y in pairs if np.array_equal(x[0], y[0]) and len(x[0])),
               default=0.0)
    print(f"Same documents in the same order: {same_order} of {len(pairs)} queries; largest score difference "
          f"there {diff:.2g}.")


if __name__ == "__main__":
    main()
