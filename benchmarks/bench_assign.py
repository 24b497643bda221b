"""Nearest-centroid assignment, the largest phase of a large build: float32, the bfloat16 shortlist, and the
two-level (coarse) assignment of ``pyterrier_lateint/index/coarse.py``.

One process runs one method (``--method fp32``, ``bf16`` or ``coarse``) over ``--vectors`` real token vectors (from
the scale ladder's pool, :mod:`scale_corpus`; the first synthetic documents, so they are near but not equal to pool
vectors) and ``--centroids`` centroids (k-means on another sample of the pool, as a build makes them), and prints
one JSON line: seconds of the assignment alone (for ``coarse``, the grouping of the centroids apart), and, with
``--check``, how often it agrees with the other exact method (``coarse``: with float32) and how much farther the
chosen centroid is when they do not. Time whole processes side by side, interleaved::

    python benchmarks/bench_assign.py --method coarse --centroids 32768 --check   # agreement, excess distance
    # interleaved timing of two methods, five runs each (any harness that alternates whole commands):
    for i in 1 2 3 4 5; do python benchmarks/bench_assign.py --method fp32; python benchmarks/bench_assign.py --method bf16; done
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.environ.get("LATEINT_SRC", str(Path(__file__).resolve().parents[1])))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def data(n_vectors: int, k: int, cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(vectors (n_vectors, dim), centroids (k, dim))`` float32; the centroids are cached under ``cache``."""
    from scale_corpus import Pool, SyntheticCorpus, build_pool

    from pyterrier_lateint.index.kmeans import kmeans
    pool = Pool.load(build_pool())
    corpus = SyntheticCorpus(pool, 10 ** 6, seed=1)
    parts, n = [], 0
    for c in range(10 ** 6):
        v = corpus.chunk(c)[1]
        parts.append(v)
        n += len(v)
        if n >= n_vectors:
            break
    x = np.concatenate(parts)[:n_vectors]
    path = cache / f"assign-centroids-{k}.npy"
    if not path.exists():
        rng = np.random.default_rng(0)
        sample = np.asarray(pool.vectors[np.sort(rng.choice(len(pool.vectors), 32 * k, replace=False))],
                            dtype=np.float32)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, kmeans(sample, k, iters=4, use_faiss=False))
    return x, np.load(path)


def main() -> None:
    from scale_corpus import cache_root
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", choices=["fp32", "bf16", "coarse"], required=True)
    p.add_argument("--probes", type=int, default=None, help="coarse: groups probed per vector (default: the build's)")
    p.add_argument("--vectors", type=int, default=65536)
    p.add_argument("--centroids", type=int, default=16384)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--check", action="store_true", help="also run the other method and compare the assignments")
    a = p.parse_args()
    import torch

    from pyterrier_lateint.index.coarse import GROUP_PROBES, CoarseAssigner
    from pyterrier_lateint.index.kmeans import assign_nearest
    torch.set_num_threads(a.threads)
    x, c = data(a.vectors, a.centroids, cache_root())
    out = {"method": a.method, "vectors": len(x), "centroids": len(c)}
    if a.method == "coarse":
        t = time.perf_counter()
        assigner = CoarseAssigner(c, probes=a.probes or GROUP_PROBES)
        out.update(seconds_grouping=time.perf_counter() - t, probes=assigner.probes, groups=len(assigner.members))
        run = assigner.assign
    else:
        def run(v):
            return assign_nearest(v, c, bf16=a.method == "bf16")
    run(x[:4096])  # warm-up: numba compilation, oneDNN kernels
    t = time.perf_counter()
    got = run(x)
    out["seconds"] = time.perf_counter() - t
    if a.check:
        other = assign_nearest(x, c, bf16=a.method == "fp32")
        d_got = ((x - c[got]) ** 2).sum(1)
        d_other = ((x - c[other]) ** 2).sum(1)
        differ = got != other
        out.update(agree=float(np.mean(~differ)), differ=int(differ.sum()),
                   max_excess_sq_distance=float(np.abs(d_got - d_other).max()),
                   median_excess_sq_distance_where_differ=float(np.median((d_got - d_other)[differ])) if differ.any()
                   else 0.0, total_sq_distance_ratio=float(d_got.sum() / d_other.sum()))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
