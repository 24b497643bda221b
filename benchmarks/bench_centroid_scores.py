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

from scale_corpus import Pool, build_pool, cache_root  # noqa: E402


def torch_float32(reader, Q: np.ndarray) -> np.ndarray:
    """``St`` as computed before the float16 blocks: torch's float32 product, into an aligned ``(K, T)`` array."""
    import torch

    from pyterrier_lateint.index.simd import aligned_empty
    St = aligned_empty((reader.codec.n_centroids, len(Q)))
    torch.mm(torch.from_numpy(reader.codec.centroids), torch.from_numpy(np.ascontiguousarray(Q)).T,
             out=torch.from_numpy(St))
    return St


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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=100_000, help="the ladder rung (documents)")
    p.add_argument("--index", type=Path, help="an index (default: the rung's, kept by bench_scale.py --keep)")
    p.add_argument("--passes", type=int, default=5)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--kernel", action="store_true", help="time St alone instead")
    a = p.parse_args()

    import torch
    torch.set_num_threads(2)
    if a.kernel:
        kernel_only()
        return

    from pyterrier_lateint.index import ColBERTIndex, search
    pool = Pool.load(build_pool())
    qidx = np.sort(np.random.default_rng(a.seed).choice(len(pool.queries), min(a.queries, len(pool.queries)),
                                                        replace=False))  # bench_scale.py's queries
    queries = [pool.queries[i] for i in qidx]
    path = a.index or cache_root() / "runs" / f"n{a.size}" / "ours.lateint"
    if not ColBERTIndex(path).built():
        raise SystemExit(f"no index at {path}: run bench_scale.py --sizes {a.size} --keep first, or pass --index")
    reader = ColBERTIndex(path).reader()
    if reader.codec.centroid_blocks is None:
        raise SystemExit(f"{path}: its centroids are not float16 values (a scalar codec): nothing to compare")
    blocks = search.centroid_scores
    systems = {"torch float32": torch_float32, "float16 blocks": blocks}

    def one_pass(name: str) -> tuple[list, list]:
        search.centroid_scores = systems[name]
        ms, out = [], []
        try:
            for q in queries:
                t = time.perf_counter()
                out.append(search.search_plaid(reader, [q], a.k)[0])
                ms.append(1000 * (time.perf_counter() - t))
        finally:
            search.centroid_scores = blocks
        return ms, out

    for name in systems:  # warm-up: numba compilation, page cache
        one_pass(name)
    print(f"{path}: {reader.n_docs:,} documents, {reader.codec.n_centroids:,} centroids, {len(queries)} queries, "
          f"defaults {search.SearchParams().for_k(a.k, reader.n_live)}")
    print("| pass | torch float32 median / p95 ms | float16 blocks median / p95 ms | ratio median; p95 |")
    print("|---|---|---|---|")
    ratios, results = [], {}
    for i in range(a.passes):
        row = {}
        for name in systems:
            ms, results[name] = one_pass(name)
            row[name] = (float(np.median(ms)), float(np.percentile(ms, 95)))
        (om, op), (nm, np95) = row["torch float32"], row["float16 blocks"]
        ratios.append((om / nm, op / np95))
        print(f"| {i} | {om:.2f} / {op:.2f} | {nm:.2f} / {np95:.2f} | {om / nm:.2f}; {op / np95:.2f} |", flush=True)
    r = np.array(ratios)
    pairs = list(zip(results["torch float32"], results["float16 blocks"]))
    same_order = sum(np.array_equal(x[0], y[0]) for x, y in pairs)
    diff = max((float(np.abs(x[1] - y[1]).max()) for x, y in pairs if np.array_equal(x[0], y[0]) and len(x[0])),
               default=0.0)
    print(f"\nmedian of the passes' ratios: {np.median(r[:, 0]):.2f}x; {np.median(r[:, 1]):.2f}x (median; p95). "
          f"Same documents in the same order: {same_order} of {len(pairs)} queries; largest score difference "
          f"there {diff:.2g}.")


if __name__ == "__main__":
    main()
