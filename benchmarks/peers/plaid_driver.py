"""Stanford ColBERT / PLAID (colbert-ai) driver on precomputed vectors; prints JSON.

colbert-ai encodes text with its own checkpoint; to index EXACTLY our vectors we pass the passages as their index
("0", "1", ...) and replace ``CollectionEncoder.encode_passages`` by a lookup into the shared vectors (its
``Checkpoint`` is replaced by a stub, so no model is loaded). The "checkpoint" is a folder holding only
``artifact.metadata`` (dim 384, doc_maxlen 180, query_maxlen 32), which colbert-ai reads for the config. Search
calls ``Searcher.dense_search(Q, k)`` with our query vectors (what ``Searcher.search`` does after encoding), so
PLAID's defaults for k <= 10 apply: ncells=1, centroid_score_threshold=0.5, ndocs=256, with its C++ CPU kernels
(filter_pids, decompress_residuals; JIT-compiled with ninja at first use).

    $PEER_VENVS/plaid/bin/python benchmarks/peers/plaid_driver.py VECTORS_DIR WORK_DIR [--nbits 2]

``--reuse``: search the index a previous run built in ``WORK_DIR`` (its build figures come from ``build.json``, written
beside it), so that a long build (80 min at 100,000 documents) can run on its own and the timed searches later.

``--resume``: continue a build that was interrupted in ``WORK_DIR`` (colbert-ai's ``overwrite="resume"``: its saved
plan, k-means codec and finished chunks are kept); ``build_s`` in ``build.json`` is then the earlier part, from the
checkpoint stub's file time to the codec's (``earlier_s``), plus this run's (``resumed_s``).

``--serve``: emit the build's figures after one warm-up pass, then answer ``pass`` requests on standard input (one
timed pass over the queries each, ``_common.serve``) and ``extras`` (the ``--variants``, timed as without
``--serve``) until ``quit``: ``bench_scale.py`` and ``bench_peers.py`` interleave these passes with their own.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # colbert-ai first asks the Hub for the checkpoint's metadata
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import THREADS, dir_bytes, emit, load, peak_rss_mib, serve, time_one_at_a_time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(THREADS)

_TORCH_QUANTILE = torch.Tensor.quantile


def _quantile(self, q, *args, **kwargs):
    """``Tensor.quantile``, by numpy (the same linear interpolation) for inputs above the 2**24 elements torch refuses:
    colbert-ai takes quantiles of its held-out residuals, 50,000 vectors x dim values, which at 384-d (19.2M) fails
    with "quantile() input tensor is too large" from 100,000 documents up (ColBERT's own 128-d: 6.4M)."""
    if self.numel() <= 2 ** 24 or args or kwargs:
        return _TORCH_QUANTILE(self, q, *args, **kwargs)
    qs = q.detach().cpu().numpy() if torch.is_tensor(q) else q
    return torch.from_numpy(np.asarray(np.quantile(self.detach().cpu().numpy().ravel(), qs))).to(self.dtype)


torch.Tensor.quantile = _quantile

import colbert.indexing.collection_indexer as ci  # noqa: E402
import colbert.searcher as cs  # noqa: E402
from colbert import Indexer, Searcher  # noqa: E402
from colbert.infra import ColBERTConfig, Run, RunConfig  # noqa: E402

VECTORS = OFFSETS = None


class _NoCheckpoint:
    def __init__(self, *args, **kwargs):
        pass


class _SearchCheckpoint(_NoCheckpoint):
    def __init__(self, *args, **kwargs):
        # what the real Checkpoint (a ColBERT model) does on construction: load the segmented_maxsim C++ kernel
        from colbert.modeling.colbert import ColBERT
        ColBERT.try_load_torch_extensions(use_gpu=False)


def _encode_passages(self, passages):
    """Our vectors for passages named by their index: (float32 (sum of lengths, dim), doclens)."""
    if len(passages) == 0:
        return None, None
    ids = [int(p) for p in passages]
    doclens = [int(OFFSETS[i + 1] - OFFSETS[i]) for i in ids]
    embs = np.concatenate([VECTORS[OFFSETS[i]:OFFSETS[i + 1]] for i in ids])
    return torch.from_numpy(np.ascontiguousarray(embs, dtype=np.float32)), doclens


def _earlier_seconds(ckpt: Path, work: Path) -> dict:
    """How long the interrupted build ran before it saved its k-means codec: seconds from the checkpoint stub (written
    just before ``Indexer.index``) to the newest codec file, by their modification times; chunks written after the
    codec are not counted (a resumed build redoes nothing they hold, so the figure is a lower bound)."""
    codec = list(work.rglob("avg_residual.pt")) + list(work.rglob("buckets.pt"))
    if not codec:
        raise SystemExit(f"--resume: no k-means codec under {work}; nothing to resume: build without --resume")
    start = (ckpt / "artifact.metadata").stat().st_mtime
    end = max(f.stat().st_mtime for f in codec)
    return {"earlier_s": end - start, "resumed_from": "codec (plan + k-means centroids) of an interrupted build"}


def main() -> None:
    global VECTORS, OFFSETS
    p = argparse.ArgumentParser()
    p.add_argument("vectors")
    p.add_argument("work")
    p.add_argument("--nbits", type=int, default=2)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--serve", action="store_true", help="after the build, answer 'pass' requests on stdin")
    p.add_argument("--reuse", action="store_true", help="search the index an earlier run built in WORK (build.json)")
    p.add_argument("--build-only", action="store_true", help="build, write build.json, exit")
    p.add_argument("--resume", action="store_true", help="continue an interrupted build in WORK (plan, codec, chunks)")
    p.add_argument("--variants", nargs="*", default=["2:0.45:1024", "4:0.4:4096"],
                   help="more search settings on the same index, NCELLS:CENTROID_SCORE_THRESHOLD:NDOCS (the "
                        "defaults are colbert-ai's own for k <= 100 and for k > 100)")
    a = p.parse_args()
    VECTORS, OFFSETS, queries = load(a.vectors)
    dim = VECTORS.shape[1]
    work = Path(a.work)
    saved = work / "build.json"  # written after a complete build: build_s, index_dir, n_vectors
    reuse = a.reuse and saved.exists() and json.loads(saved.read_text())["n_vectors"] == int(OFFSETS[-1])
    ckpt = work / "checkpoint"
    resume = a.resume and not reuse and (ckpt / "artifact.metadata").exists()
    if not reuse and not resume:
        shutil.rmtree(work, ignore_errors=True)
        ckpt.mkdir(parents=True)
        (ckpt / "artifact.metadata").write_text(json.dumps({"dim": dim, "doc_maxlen": 180, "query_maxlen": 32}))
    ci.Checkpoint = _NoCheckpoint
    ci.CollectionEncoder.encode_passages = _encode_passages
    cs.Checkpoint = _SearchCheckpoint
    collection = [str(i) for i in range(len(OFFSETS) - 1)]

    with Run().context(RunConfig(nranks=1, experiment="peers", root=str(work / "experiments"),
                                 avoid_fork_if_possible=True)):
        config = ColBERTConfig(nbits=a.nbits, dim=dim, doc_maxlen=180, query_maxlen=32,
                               index_root=str(work / "indexes"))
        if reuse:  # the build's figures are those of the run that built it
            built = json.loads(saved.read_text())
            index_dir, build_s, build_peak = built["index_dir"], built["build_s"], built["peak_rss_mib"]
        else:
            earlier = _earlier_seconds(ckpt, work) if resume else {}
            t = time.perf_counter()
            index_dir = Indexer(checkpoint=str(ckpt), config=config, verbose=1).index(
                name="vaswani", collection=collection, overwrite="resume" if resume else True)
            build_s = time.perf_counter() - t
            if resume:
                earlier["resumed_s"] = build_s
                build_s += earlier["earlier_s"]
            saved.write_text(json.dumps({"build_s": build_s, "index_dir": str(index_dir),
                                         "n_vectors": int(OFFSETS[-1]), "peak_rss_mib": peak_rss_mib(), **earlier}))
        if a.build_only:
            emit({"build_s": build_s, "index_dir": str(index_dir), "reused": reuse})
            return
        t = time.perf_counter()
        searcher = Searcher(index=str(index_dir), collection=collection, config=config, verbose=1)
        load_s = time.perf_counter() - t  # includes the JIT compilation of the C++ kernels on a first run

        def one(q):
            pids, _, _ = searcher.dense_search(torch.from_numpy(np.ascontiguousarray(q)).unsqueeze(0), k=a.k)
            return pids
        # None: colbert-ai chooses them by k at the first search (ncells=1, centroid_score_threshold=0.5, ndocs=256 for
        # k <= 10); variants() restores this state
        defaults = (searcher.config.ncells, searcher.config.centroid_score_threshold, searcher.config.ndocs)

        def variants() -> list[dict]:
            """The ``--variants`` on the same index, each timed by ``time_one_at_a_time``; defaults restored."""
            extra = []
            for v in a.variants:
                ncells, thr, ndocs = v.split(":")
                searcher.configure(ncells=int(ncells), centroid_score_threshold=float(thr), ndocs=int(ndocs))
                vq, vres = time_one_at_a_time(one, queries, a.repeats)
                extra.append({"settings": f"nbits={a.nbits}, ncells={ncells}, centroid_score_threshold={thr}, "
                                          f"ndocs={ndocs} (tuned up, same index)", "per_query_ms": vq,
                              "batched_ms_per_q": None, "topk": [[int(d) for d in r] for r in vres]})
            searcher.configure(ncells=defaults[0], centroid_score_threshold=defaults[1], ndocs=defaults[2])
            return extra
        import importlib.metadata as md
        system = f"PLAID colbert-ai {md.version('colbert-ai')} (torch {torch.__version__})"

        def settings() -> str:
            """The search settings in force (after a first search, which sets colbert-ai's defaults for k)."""
            c = searcher.config
            return (f"nbits={a.nbits}, kmeans_niters=4 (default), its 16*sqrt(n) centroid heuristic, defaults for "
                    f"k={a.k}: ncells={c.ncells}, centroid_score_threshold={c.centroid_score_threshold}, "
                    f"ndocs={c.ndocs}; no batched API (search_all loops over queries)")
        if a.serve:
            for q in queries:  # warm-up: JIT-compiled kernels, page cache
                one(q)
            emit({"system": system, "build_s": build_s, "searcher_load_s": load_s,
                  "index_bytes": dir_bytes(index_dir), "n_vectors": int(OFFSETS[-1]),
                  "peak_rss_mib": build_peak if reuse else peak_rss_mib(), "build_reused": reuse,
                  "settings": settings(), "threads": torch.get_num_threads()})
            serve(one, queries, lambda ms, res: emit({"per_query_ms": ms,
                                                      "topk": [[int(d) for d in r] for r in res]}),
                  extras=lambda: {"batched_ms_per_q": None, "extra": variants()})
            return
        per_q, res = time_one_at_a_time(one, queries, a.repeats)
        setting = settings()
        extra = variants()
    emit({"system": system, "build_s": build_s, "searcher_load_s": load_s, "index_bytes": dir_bytes(index_dir),
          "n_vectors": int(OFFSETS[-1]), "per_query_ms": per_q, "batched_ms_per_q": None,
          "topk": [[int(d) for d in r] for r in res], "settings": setting,
          "threads": torch.get_num_threads(), "extra": extra})


if __name__ == "__main__":
    main()
