"""fast-plaid driver: index the shared vectors, search them one query at a time and batched; prints JSON.

    $PEER_VENVS/fastplaid/bin/python benchmarks/peers/fastplaid_driver.py VECTORS_DIR INDEX_DIR [--nbits 2]

``--serve``: emit the build's figures after one warm-up pass, then answer requests on standard input until
``quit`` (``_common.serve``): ``pass`` (one timed pass over the queries, one per call, at the default settings) and
``extras`` (the batched timing at the default settings and the ``--variants``, timed as without ``--serve``).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import THREADS, dir_bytes, emit, load, peak_rss_mib, serve, time_one_at_a_time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(THREADS)
from fast_plaid.search import FastPlaid  # noqa: E402


def ranked(results: list) -> list[list[int]]:
    """fast-plaid's results (per query a list of (document number, score)) -> document numbers per query."""
    return [[int(d) for d, _ in r] for r in results]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("vectors")
    p.add_argument("index")
    p.add_argument("--nbits", type=int, default=2)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--serve", action="store_true", help="after the build, answer 'pass' requests on stdin")
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

    def search_kw(n_ivf_probe: int, n_full_scores: int) -> dict:
        return dict(top_k=a.k, n_ivf_probe=n_ivf_probe, n_full_scores=n_full_scores, show_progress=False)

    def one_at_a_time(kw: dict):
        def one(q: torch.Tensor) -> list:
            """One query (n_tokens, dim) per call: its [(document number, score)] list."""
            return idx.search(queries_embeddings=q.unsqueeze(0), **kw)[0]
        return one

    def batched(kw: dict) -> tuple[float, list]:
        """All queries in one call (after a warm-up of the joblib threads): (ms per query, results)."""
        idx.search(queries_embeddings=qs[:12], **kw)
        t = time.perf_counter()
        res = idx.search(queries_embeddings=qs, **kw)
        return 1000 * (time.perf_counter() - t) / len(qs), res

    def variants() -> list[dict]:
        out = []
        for v in a.variants:
            nprobe, nfull = (int(x) for x in v.split(":"))
            kw = search_kw(nprobe, nfull)
            vq, vres = time_one_at_a_time(one_at_a_time(kw), qs, a.repeats)
            vb, _ = batched(kw)
            out.append({"settings": f"nbits={a.nbits}, n_ivf_probe={nprobe}, n_full_scores={nfull} (tuned down, "
                                    f"same index)", "per_query_ms": vq, "batched_ms_per_q": vb,
                        "topk": ranked(vres)})
        return out

    defaults = search_kw(a.n_ivf_probe, a.n_full_scores)
    one = one_at_a_time(defaults)
    import importlib.metadata as md
    common = {"system": f"fast-plaid {md.version('fast-plaid')} (torch {torch.__version__})",
              "build_s": build_s, "index_bytes": dir_bytes(a.index), "n_vectors": int(offsets[-1]),
              "settings": f"nbits={a.nbits}, n_ivf_probe={a.n_ivf_probe}, n_full_scores={a.n_full_scores} (defaults "
                          f"but nbits), kmeans_niters=4, max_points_per_centroid=256; batched = search(list) with "
                          f"joblib threads={min(len(qs) // 10, os.cpu_count() or 1) if len(qs) > 10 else 1}",
              "threads": torch.get_num_threads()}
    if a.serve:
        for q in qs:  # warm-up: page cache, allocator
            one(q)
        emit({**common, "peak_rss_mib": peak_rss_mib()})

        def extras() -> dict:
            b, bres = batched(defaults)
            return {"batched_ms_per_q": b, "topk_batched": ranked(bres), "extra": variants()}
        serve(one, qs, lambda ms, res: emit({"per_query_ms": ms, "topk": ranked(res)}), extras=extras)
        return
    per_q, res = time_one_at_a_time(one, qs, a.repeats)
    b, bres = batched(defaults)
    emit({**common, "per_query_ms": per_q, "batched_ms_per_q": b, "topk": ranked(res), "topk_batched": ranked(bres),
          "extra": variants()})


if __name__ == "__main__":
    main()
