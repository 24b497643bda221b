"""Product-quantisation encoding of residuals, the quantise phase of a build: one code version per process.

Times :func:`pyterrier_lateint.index.pq.encode` on ``--vectors`` residuals of real token vectors (the scale
ladder's synthetic documents, :mod:`scale_corpus`, minus their nearest of ``--centroids`` k-means centroids) with
2-bit codebooks (96 sub-vectors of 4 dimensions, 256 codewords each) trained on them. The residuals and codebooks are
made once and cached, so two versions of the code encode exactly the same input; ``$LATEINT_SRC`` picks the code
(e.g. a ``git archive`` of an older commit). Prints one JSON line: seconds of the encoding alone and a checksum of the
codes (equal checksums: equal codes). Time whole processes side by side, interleaved::

    git archive BASE | tar -x -C /tmp/base-src
    for i in 1 2 3 4 5; do LATEINT_SRC=/tmp/base-src python benchmarks/bench_pq_encode.py; \\
        python benchmarks/bench_pq_encode.py; done
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.environ.get("LATEINT_SRC", str(Path(__file__).resolve().parents[1])))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def data(n_vectors: int, k: int, cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(residuals (n_vectors, 384) float32, codebooks (96, 256, 4) float32)``, cached under ``cache``."""
    path = cache / f"pq-encode-{n_vectors}-{k}.npz"
    if not path.exists():
        from bench_assign import data as assign_data

        from pyterrier_lateint.index.kmeans import assign_nearest
        from pyterrier_lateint.index.pq import train_codebooks
        x, c = assign_data(n_vectors, k, cache)
        res = x - c[assign_nearest(x, c)]
        books = train_codebooks(res, 4, seed=0)
        np.savez(path, res=res, books=books)
    with np.load(path) as z:
        return z["res"], z["books"]


def main() -> None:
    from scale_corpus import cache_root
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vectors", type=int, default=131072)
    p.add_argument("--centroids", type=int, default=4096)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    os.environ["LATEINT_NUM_THREADS"] = str(a.threads)
    res, books = data(a.vectors, a.centroids, cache_root())
    from pyterrier_lateint.index import pq
    pq.encode(res[:512], books)  # warm-up: numba compilation or cache load
    t = time.perf_counter()
    codes = pq.encode(res, books)
    seconds = time.perf_counter() - t
    print(json.dumps({"vectors": len(res), "seconds": seconds, "us_per_vector": 1e6 * seconds / len(res),
                      "codes_sha1": hashlib.sha1(codes.tobytes()).hexdigest()[:12]}))


if __name__ == "__main__":
    main()
