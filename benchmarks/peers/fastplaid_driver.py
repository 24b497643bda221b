"""fast-plaid driver: index the shared vectors, search them one query at a time and batched; prints JSON.

    $PEER_VENVS/fastplaid/bin/python benchmarks/peers/fastplaid_driver.py VECTORS_DIR INDEX_DIR [--nbits 2]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import THREADS, dir_bytes, emit, load, time_one_at_a_time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(THREADS)
from fast_plaid.search import FastPlaid  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("vectors")
    p.add_argument("index")
    p.add_argument("--nbits", type=int, default=2)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--n-ivf-probe", type=int, default=8)       # fast-plaid's defaults
    p.add_argument("--n-full-scores", type=int, default=4096)
    p.add_argument("--variants", nargs="*", default=["4:256"],
                   help="extra search settings n_ivf_probe:n_full_scores timed on the same index")
    a = p.parse_args()
    vectors, offsets, queries = load(a.vectors)
    docs = [torch.from_numpy(vectors[offsets[i]:offsets[i + 1]]) for i in range(len(offsets) - 1)]
    qs = [torch.from_numpy(np.ascontiguousarray(q)) for q in queries]
    shutil.rmtree(a.index, ignore_errors=True)
    idx = FastPlaid(index=a.index, device="cpu")
    t = time.perf_counter()
    idx.create(documents_embeddings=docs, nbits=a.nbits)
    build_s = time.perf_counter() - t
    del docs

    def measure(n_ivf_probe, n_full_scores):
        kw = dict(top_k=a.k, n_ivf_probe=n_ivf_probe, n_full_scores=n_full_scores, show_progress=False)

        def one(q):
            return idx.search(queries_embeddings=q.unsqueeze(0), **kw)[0]
        per_q, res = time_one_at_a_time(one, qs, a.repeats)
        idx.search(queries_embeddings=qs[:12], **kw)  # warm-up of the batched (joblib threads) path
        t = time.perf_counter()
        bres = idx.search(queries_embeddings=qs, **kw)
        return per_q, res, 1000 * (time.perf_counter() - t) / len(qs), bres
    per_q, res, batched, bres = measure(a.n_ivf_probe, a.n_full_scores)
    extra = []
    for v in a.variants:
        nprobe, nfull = (int(x) for x in v.split(":"))
        vq, vres, vb, _ = measure(nprobe, nfull)
        extra.append({"settings": f"nbits={a.nbits}, n_ivf_probe={nprobe}, n_full_scores={nfull} (tuned down, "
                                  f"same index)", "per_query_ms": vq, "batched_ms_per_q": vb,
                      "topk": [[int(d) for d, _ in r] for r in vres]})
    import importlib.metadata as md
    emit({"system": f"fast-plaid {md.version('fast-plaid')} (torch {torch.__version__})",
          "build_s": build_s, "index_bytes": dir_bytes(a.index), "n_vectors": int(offsets[-1]),
          "per_query_ms": per_q, "batched_ms_per_q": batched,
          "topk": [[int(d) for d, _ in r] for r in res], "topk_batched": [[int(d) for d, _ in r] for r in bres],
          "settings": f"nbits={a.nbits}, n_ivf_probe={a.n_ivf_probe}, n_full_scores={a.n_full_scores} (defaults but "
                      f"nbits), kmeans_niters=4, max_points_per_centroid=256; batched = search(list) with joblib "
                      f"threads={min(len(qs) // 10, os.cpu_count() or 1) if len(qs) > 10 else 1}",
          "threads": torch.get_num_threads(), "extra": extra})


if __name__ == "__main__":
    main()
