"""Peer comparison (issue 3): our ColBERTIndex against fast-plaid and Stanford PLAID (colbert-ai) on Vaswani.

Every system indexes and searches EXACTLY the same vectors: Vaswani encoded once with our default model
(``ColBERT.from_pretrained(precision="fp32")``, cached as fp32 .npy under
``~/.cache/pyterrier_lateint/bench/peers/``). Query encoding is excluded everywhere (precomputed query vectors).
Each peer runs in its own virtual environment through a driver script (``benchmarks/peers/*_driver.py``) that
prints JSON; this script runs our index in-process, then the peers, one after the other, and prints a markdown
table. Threads: 2 for everyone (``OMP_NUM_THREADS=2``, ``torch.set_num_threads(2)``, our numba pool = 2).

    flock /tmp/heavy.lock python benchmarks/bench_peers.py               # all systems
    python benchmarks/bench_peers.py --systems ours fast-plaid            # a subset
    python benchmarks/bench_peers.py --prepare-only                       # encode + exact ranking only

Peer installation (also in ``benchmarks/peers/setup.sh``; venvs live outside the repo, in ``$PEER_VENVS``, default
``~/.cache/pyterrier_lateint/peer-venvs``, or the folder given by ``--venvs``):

    # fast-plaid (the engine of PyLate's PLAID index); the version suffix names the torch it was built for
    python3 -m venv $PEER_VENVS/fastplaid
    $PEER_VENVS/fastplaid/bin/pip install --upgrade pip
    $PEER_VENVS/fastplaid/bin/pip install fast-plaid==1.7.0.2110 torch==2.11.0 numpy
    #   (torch 2.11.0 from PyPI is a CUDA build, ~3 GB with its nvidia-* wheels; it runs on CPU)

    # Stanford ColBERT / PLAID (colbert-ai); JIT-compiles its C++ CPU kernels with ninja + gcc at first search
    python3 -m venv $PEER_VENVS/plaid
    $PEER_VENVS/plaid/bin/pip install --upgrade pip
    $PEER_VENVS/plaid/bin/pip install torch==2.13.0+cpu colbert-ai==0.2.22 faiss-cpu "transformers<4.45" \\
        numpy ninja setuptools            # (a CPU torch wheel)

    # pyterrier_colbert: not installed; needs faiss-gpu (CUDA) and Java/Terrier (see the report in the output).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("MKL_NUM_THREADS", "2")
os.environ.setdefault("LATEINT_NUM_THREADS", "2")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

# $LATEINT_SRC: import pyterrier_lateint from another checkout (e.g. a `git archive HEAD` snapshot while the working
# tree is being edited); default: this repository.
sys.path.insert(0, os.environ.get("LATEINT_SRC", str(Path(__file__).resolve().parents[1])))

CACHE = Path(os.environ.get("LATEINT_BENCH_CACHE", Path.home() / ".cache" / "pyterrier_lateint" / "bench")) / "peers"
PEERS = Path(__file__).resolve().parent / "peers"
DEFAULT_VENVS = Path(os.environ.get("PEER_VENVS") or Path.home() / ".cache" / "pyterrier_lateint" / "peer-venvs")
THREADS = 2
K = 10


# --- shared vectors -------------------------------------------------------------------------------------------------
def prepare(collection: str = "vaswani") -> Path:
    """Encode the collection once (fp32) and cache vectors, offsets, query vectors, ids and the exact ranking.

    Files in the returned folder: ``docs.npy`` float32 (T, dim), ``offsets.npy`` int64 (n_docs+1,),
    ``queries.npy`` float32 (Tq, dim), ``qoffsets.npy`` int64 (n_queries+1,), ``meta.json`` (docnos, qids,
    texts of the queries, model signature, timings), ``exact.npz`` (top-1000 doc indices/scores per query of
    brute-force MaxSim over the fp32 vectors)."""
    import torch

    from pyterrier_lateint import ColBERT
    from pyterrier_lateint.data import load_collection
    torch.set_num_threads(THREADS)
    model = ColBERT.from_pretrained(precision="fp32")
    sig = hashlib.sha1(json.dumps(model.signature(), sort_keys=True).encode()).hexdigest()[:10]
    out = CACHE / f"{collection}-{sig}-fp32"
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "meta.json").exists():
        coll = load_collection(collection)
        docs = list(coll.get_corpus_iter())
        topics = coll.get_topics()
        t = time.perf_counter()
        vecs = model.encode_docs([d["text"] for d in docs], batch_size=64, show_progress=True)
        enc_docs_s = time.perf_counter() - t
        offs = np.zeros(len(vecs) + 1, dtype=np.int64)
        np.cumsum([len(v) for v in vecs], out=offs[1:])
        np.save(out / "docs.npy", np.concatenate(vecs).astype(np.float32))
        np.save(out / "offsets.npy", offs)
        t = time.perf_counter()
        qv = model.encode_queries(topics["query"].tolist())
        enc_q_s = time.perf_counter() - t
        qoffs = np.zeros(len(qv) + 1, dtype=np.int64)
        np.cumsum([len(q) for q in qv], out=qoffs[1:])
        np.save(out / "queries.npy", np.concatenate(qv).astype(np.float32))
        np.save(out / "qoffsets.npy", qoffs)
        meta = {"collection": collection, "signature": model.signature(), "precision": "fp32",
                "docnos": [d["docno"] for d in docs], "qids": topics["qid"].tolist(),
                "queries": topics["query"].tolist(), "encode_docs_s": enc_docs_s, "encode_queries_s": enc_q_s}
        (out / "meta.json").write_text(json.dumps(meta))
    if not (out / "exact.npz").exists():
        from pyterrier_lateint.maxsim import maxsim_packed
        vectors, offsets, qvecs = load_vectors(out)
        idx, sc = [], []
        for q in qvecs:
            s = maxsim_packed(q, vectors, offsets)
            top = np.lexsort((np.arange(len(s)), -s))[:1000]
            idx.append(top)
            sc.append(s[top])
        np.savez(out / "exact.npz", idx=np.stack(idx), scores=np.stack(sc))
    return out


def load_vectors(folder: Path, mmap: bool = False):
    vectors = np.load(folder / "docs.npy", mmap_mode="r" if mmap else None)
    offsets = np.load(folder / "offsets.npy")
    Q, qoff = np.load(folder / "queries.npy"), np.load(folder / "qoffsets.npy")
    return vectors, offsets, [Q[qoff[i]:qoff[i + 1]] for i in range(len(qoff) - 1)]



# --- systems --------------------------------------------------------------------------------------------------------
def run_ours(folder: Path, work: Path, nbits: int, repeats: int, codec: str = "pq", **indexer_kw) -> dict:
    """Our ColBERTIndex, in this process: fed ``doc_embs``; ``retriever(mode="plaid")`` on the numba CPU path.
    ``codec`` and ``indexer_kw`` go to ``index.indexer``."""
    import torch

    from pyterrier_lateint.index import ColBERTIndex
    torch.set_num_threads(THREADS)
    meta = json.loads((folder / "meta.json").read_text())
    vectors, offsets, qvecs = load_vectors(folder)
    docnos = meta["docnos"]

    def gen():
        for i, d in enumerate(docnos):
            yield {"docno": d, "doc_embs": vectors[offsets[i]:offsets[i + 1]]}
    idx = ColBERTIndex(work / "ours")
    t = time.perf_counter()
    idx.indexer(None, nbits=nbits, overwrite=True, verbose=False, batch_size=1024, codec=codec,
                **indexer_kw).index(gen())
    build_s = time.perf_counter() - t
    retr = idx.retriever(num_results=K, mode="plaid", backend="numba")
    qf = pd.DataFrame({"qid": meta["qids"], "query": meta["queries"], "query_embs": qvecs})
    rows = [qf.iloc[i:i + 1] for i in range(len(qf))]
    for r in rows:  # warm-up: numba compilation, page cache
        retr.transform(r)
    times = np.zeros((repeats, len(rows)))
    for rep in range(repeats):
        for i, r in enumerate(rows):
            t = time.perf_counter()
            retr.transform(r)
            times[rep, i] = 1000 * (time.perf_counter() - t)
    retr.transform(qf.iloc[:12])
    t = time.perf_counter()
    res = retr.transform(qf)
    batched = 1000 * (time.perf_counter() - t) / len(qf)
    pos = {d: i for i, d in enumerate(docnos)}
    res = res.sort_values(["qid", "rank"])
    by_q = {q: [pos[d] for d in g.docno] for q, g in res.groupby("qid", sort=False)}
    r = idx._reader()
    exhaustive = idx.retriever(num_results=K, mode="exhaustive", backend="numba").transform(qf)
    by_q_ex = {q: [pos[d] for d in g.sort_values("rank").docno] for q, g in exhaustive.groupby("qid", sort=False)}
    from pyterrier_lateint.index.search import SearchParams
    sp = SearchParams().for_k(K, r.n_live)
    return {"system": "ours: ColBERTIndex (numba CPU)", "build_s": build_s,
            "index_bytes": int(sum(idx.size_bytes().values())), "n_vectors": int(offsets[-1]),
            "per_query_ms": np.median(times, axis=0).tolist(), "batched_ms_per_q": batched,
            "topk": [by_q.get(q, []) for q in meta["qids"]],
            "topk_exhaustive": [by_q_ex.get(q, []) for q in meta["qids"]],
            "settings": f"{r.codec.describe()}, centroids={r.meta.get('n_centroids')}, nprobe={sp.nprobe}, "
                        f"ncandidates={sp.ncandidates}, nexact={sp.nexact} (defaults)",
            "threads": f"numba pool {os.environ.get('LATEINT_NUM_THREADS')}, torch {torch.get_num_threads()}"}


def run_peer(name: str, folder: Path, work: Path, nbits: int, repeats: int, venvs: Path = DEFAULT_VENVS,
             timeout: int = 3000) -> dict:
    python = venvs / {"fast-plaid": "fastplaid", "plaid": "plaid"}[name] / "bin" / "python"
    driver = PEERS / {"fast-plaid": "fastplaid_driver.py", "plaid": "plaid_driver.py"}[name]
    if not python.exists():
        return {"system": name, "error": f"{python} missing: run benchmarks/peers/setup.sh"}
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS), "MKL_NUM_THREADS": str(THREADS),
           "RAYON_NUM_THREADS": str(THREADS), "BENCH_THREADS": str(THREADS), "PYTHONPATH": ""}
    cmd = [str(python), str(driver), str(folder), str(work / name), "--nbits", str(nbits), "--repeats", str(repeats)]
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t
    if proc.returncode != 0 or "@@RESULT@@" not in proc.stdout:
        tail = (proc.stdout[-1500:] + "\n" + proc.stderr[-3000:]).strip()
        return {"system": name, "error": f"exit {proc.returncode} after {wall:.0f}s:\n{tail}"}
    out = json.loads(proc.stdout.rsplit("@@RESULT@@", 1)[1].strip().splitlines()[0])
    out["driver_wall_s"] = wall
    return out


# --- metrics and report ---------------------------------------------------------------------------------------------
def recall(topk: list[list[int]], exact_idx: np.ndarray, k: int = K) -> float:
    return float(np.mean([len(set(r[:k]) & set(e[:k].tolist())) / k for r, e in zip(topk, exact_idx)]))


def ndcg(topk: list[list[int]], folder: Path, k: int = K) -> float:
    import ir_measures
    from ir_measures import nDCG

    from pyterrier_lateint.data import load_collection
    meta = json.loads((folder / "meta.json").read_text())
    docnos = meta["docnos"]
    run = pd.DataFrame([{"query_id": q, "doc_id": docnos[d], "score": float(k - rank)}
                        for q, r in zip(meta["qids"], topk) for rank, d in enumerate(r[:k])])
    qrels = load_collection(meta["collection"]).get_qrels().rename(
        columns={"qid": "query_id", "docno": "doc_id", "label": "relevance"})
    return float(ir_measures.calc_aggregate([nDCG @ k], qrels, run)[nDCG @ k])


def md_table(rows: list[dict]) -> str:
    cols = list(dict.fromkeys(c for r in rows for c in r))
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c, "")
            cells.append(f"{v:.3g}" if isinstance(v, float) else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--systems", nargs="+", default=["ours", "fast-plaid", "plaid"],
                   choices=["ours", "fast-plaid", "plaid"])
    p.add_argument("--nbits", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3, help="timed passes over the queries (median per query)")
    p.add_argument("--prepare-only", action="store_true")
    p.add_argument("--keep", action="store_true", help="keep the indices (printed work folder)")
    p.add_argument("--json", type=Path, help="also write all raw results here")
    p.add_argument("--venvs", type=Path, default=DEFAULT_VENVS,
                   help="folder of the peers' virtual environments (benchmarks/peers/setup.sh; default: %(default)s)")
    a = p.parse_args()
    t0 = time.perf_counter()
    folder = prepare()
    print(f"vectors: {folder} (prepared in {time.perf_counter() - t0:.0f}s)", flush=True)
    if a.prepare_only:
        return
    meta = json.loads((folder / "meta.json").read_text())
    exact = np.load(folder / "exact.npz")["idx"]
    work = Path(tempfile.mkdtemp(prefix="bench-peers-"))
    results = []
    try:
        for s in a.systems:
            t = time.perf_counter()
            r = run_ours(folder, work, a.nbits, a.repeats) if s == "ours" else \
                run_peer(s, folder, work, a.nbits, a.repeats, a.venvs)
            r.setdefault("wall_s", time.perf_counter() - t)
            print(f"{s}: done in {time.perf_counter() - t:.0f}s" + (f" -- FAILED: {r['error']}" if "error" in r else ""),
                  flush=True)
            results.append(r)
            for e in r.pop("extra", []):  # more search settings on the same index
                results.append({**r, "system": r["system"] + " (variant)", **e})
    finally:
        if a.keep:
            print(f"indices kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    if a.json:
        a.json.write_text(json.dumps(results))
    ours = next((r for r in results if r["system"].startswith("ours") and "error" not in r), None)
    exact_topk = [e[:K].tolist() for e in exact]
    rows = []
    for r in results:
        if "error" in r:
            rows.append({"system": r["system"], "settings": "FAILED (see above)"})
            continue
        pq = np.asarray(r["per_query_ms"])
        row = {"system": r["system"], "settings": r["settings"], "build s": r["build_s"],
               "bytes/vec (index files)": r["index_bytes"] / r["n_vectors"],
               "ms/q median (1 at a time)": float(np.median(pq)), "ms/q p95": float(np.percentile(pq, 95)),
               "ms/q batched": r["batched_ms_per_q"] if r["batched_ms_per_q"] is not None else "n/a"}
        if ours is not None:
            ref = np.asarray(ours["per_query_ms"])
            row["median / ours"] = float(np.median(pq) / np.median(ref))
            row["p95 / ours"] = float(np.percentile(pq, 95) / np.percentile(ref, 95))
            row["batched / ours"] = (r["batched_ms_per_q"] / ours["batched_ms_per_q"]) \
                if r["batched_ms_per_q"] is not None else "n/a"
        row["R@10 vs exact fp32"] = recall(r["topk"], exact)
        row["nDCG@10"] = ndcg(r["topk"], folder)
        rows.append(row)
    rows.append({"system": "exact MaxSim (brute force, fp32, numpy)", "settings": "reference",
                 "R@10 vs exact fp32": 1.0, "nDCG@10": ndcg(exact_topk, folder)})
    print(f"\n{meta['collection']}: {len(meta['docnos'])} docs, {int(np.load(folder / 'offsets.npy')[-1])} vectors of "
          f"dim 384 (our default model, fp32), {len(meta['qids'])} queries, top-{K}, {THREADS} threads each, "
          f"{os.cpu_count()} CPU cores; query encoding excluded (same precomputed query vectors for all)\n")
    print(md_table(rows))
    print()
    print("- pyterrier_colbert: not run. It is not on PyPI; its requirements.txt pins "
          "`git+https://github.com/cmacdonald/ColBERT.git@v0.2` (GitHub is unreachable here), and its dense "
          "retrieval needs faiss-gpu (CUDA) plus Java/Terrier.")
    for r in results:
        if "error" in r:
            print(f"- {r['system']} failed: {r['error']}")


if __name__ == "__main__":
    main()
