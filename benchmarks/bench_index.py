"""Benchmarks of the compressed ColBERTIndex; prints markdown tables.

    python benchmarks/bench_index.py vaswani            # real default model on Vaswani (encodes once, cached)
    python benchmarks/bench_index.py sweep              # search-parameter sweep on SciFact *train* queries
    python benchmarks/bench_index.py scaling --sizes 10000 100000 1000000   # synthetic vectors

Encoded Vaswani vectors are cached under ``$LATEINT_BENCH_CACHE`` (default ``~/.cache/pyterrier_lateint/bench``).
Latencies are wall-clock on this machine, with numba kernels compiled (warm-up excluded).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from pyterrier_lateint.data import load_collection  # noqa: E402
from pyterrier_lateint.index import ColBERTIndex  # noqa: E402
from pyterrier_lateint.maxsim import maxsim_packed  # noqa: E402

CACHE = Path(os.environ.get("LATEINT_BENCH_CACHE", Path.home() / ".cache" / "pyterrier_lateint" / "bench"))


# --- data -----------------------------------------------------------------------------------------------------------
def load_frames(name: str = "vaswani", split: str = "test") -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(documents (docno, text), queries (qid, query), qrels) of a collection (default Vaswani), from the
    package's loader."""
    collection = load_collection(name)
    return (pd.DataFrame(list(collection.get_corpus_iter())), collection.get_topics(split),
            collection.get_qrels(split))


def _sig_hash(model) -> str:
    return hashlib.sha1(json.dumps(model.signature(), sort_keys=True).encode()).hexdigest()[:10]


def encoded_vectors(model, docs: pd.DataFrame, queries: pd.DataFrame, name: str = "vaswani", split: str = "test"):
    """(doc vectors float16 (T, dim) memmap, offsets (n+1,), list of query arrays), cached on disk."""
    CACHE.mkdir(parents=True, exist_ok=True)
    h = _sig_hash(model)
    qname = name if split == "test" else f"{name}-{split}"
    vpath, opath, qpath = CACHE / f"{name}-{h}-docs.npy", CACHE / f"{name}-{h}-offsets.npy", \
        CACHE / f"{qname}-{h}-queries.npz"
    if not vpath.exists():
        t = time.perf_counter()
        vecs = model.encode_docs(docs.text.tolist(), batch_size=64, show_progress=True)
        lens = np.array([len(v) for v in vecs])
        offs = np.zeros(len(vecs) + 1, dtype=np.int64)
        np.cumsum(lens, out=offs[1:])
        np.save(opath, offs)
        np.save(vpath.with_suffix(".tmp.npy"), np.concatenate(vecs).astype(np.float16))
        os.replace(vpath.with_suffix(".tmp.npy"), vpath)
        logging.info("encoded %s docs in %.0fs", name, time.perf_counter() - t)
    if not qpath.exists():
        qv = model.encode_queries(queries["query"].tolist())
        np.savez(qpath, **{f"q{i}": q for i, q in enumerate(qv)})
    with np.load(qpath) as z:
        qvecs = [z[f"q{i}"] for i in range(len(queries))]
    return np.load(vpath, mmap_mode="r"), np.load(opath), qvecs


# --- helpers --------------------------------------------------------------------------------------------------------
def build_from_vectors(path: Path, docnos, vectors, offsets, model=None, **kw) -> tuple[ColBERTIndex, float]:
    def gen():
        for i, d in enumerate(docnos):
            yield {"docno": d, "doc_embs": np.asarray(vectors[offsets[i]:offsets[i + 1]], dtype=np.float32)}
    idx = ColBERTIndex(path)
    t = time.perf_counter()
    idx.indexer(model, overwrite=True, verbose=False, batch_size=1024, **kw).index(gen())
    return idx, time.perf_counter() - t


def qframe(queries: pd.DataFrame, qvecs) -> pd.DataFrame:
    return queries.assign(query_embs=list(qvecs))


def time_per_query(transformer, frame: pd.DataFrame, repeats: int = 1) -> float:
    """Mean ms per query, one query per call."""
    transformer.transform(frame.iloc[:1])  # warm-up (numba compile / page cache)
    t = time.perf_counter()
    for _ in range(repeats):
        for i in range(len(frame)):
            transformer.transform(frame.iloc[i:i + 1])
    return 1000 * (time.perf_counter() - t) / (repeats * len(frame))


def time_batched(transformer, frame: pd.DataFrame) -> tuple[float, pd.DataFrame]:
    transformer.transform(frame.iloc[:2])
    t = time.perf_counter()
    res = transformer.transform(frame)
    return 1000 * (time.perf_counter() - t) / len(frame), res


def recall_at(res: pd.DataFrame, ref: pd.DataFrame, k: int) -> float:
    r = res[res["rank"] < k].groupby("qid").docno.apply(set)
    g = ref[ref["rank"] < k].groupby("qid").docno.apply(set)
    return float(np.mean([len(r.get(q, set()) & s) / max(1, len(s)) for q, s in g.items()]))


def ndcg10(res: pd.DataFrame, qrels: pd.DataFrame) -> float:
    import ir_measures
    from ir_measures import nDCG
    run = res[["qid", "docno", "score"]].rename(columns={"qid": "query_id", "docno": "doc_id"})
    qr = qrels.rename(columns={"qid": "query_id", "docno": "doc_id", "label": "relevance"})
    return float(ir_measures.calc_aggregate([nDCG @ 10], qr, run)[nDCG @ 10])


def exact_uncompressed(queries: pd.DataFrame, qvecs, vectors, offsets, docnos, k: int = 1000) -> pd.DataFrame:
    """Brute-force MaxSim over the original (float16-cached) vectors: the true exact ranking."""
    v = np.asarray(vectors, dtype=np.float32)
    rows = []
    for qid, q in zip(queries.qid, qvecs):
        s = maxsim_packed(q, v, offsets)
        top = np.lexsort((np.arange(len(s)), -s))[:k]
        top = top[np.isfinite(s[top])]
        rows.append(pd.DataFrame({"qid": qid, "docno": np.asarray(docnos)[top], "score": s[top],
                                  "rank": np.arange(len(top))}))
    return pd.concat(rows, ignore_index=True)


def md_table(rows: list[dict]) -> str:
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(f"{r[c]:.4g}" if isinstance(r[c], float) else str(r[c]) for c in cols) + " |")
    return "\n".join(lines)


# --- Vaswani ----------------------------------------------------------------------------------------------------------
def _setup(name: str = "vaswani", split: str = "test"):
    from pyterrier_lateint import ColBERT
    model = ColBERT.from_pretrained()
    docs, queries, qrels = load_frames(name, split)
    vectors, offsets, qvecs = encoded_vectors(model, docs, queries, name, split)
    return model, docs, queries, qrels, vectors, offsets, qvecs


def bench_vaswani(args) -> None:
    model, docs, queries, qrels, vectors, offsets, qvecs = _setup()
    n_vec = len(vectors)
    print(f"\nVaswani: {len(docs)} docs, {n_vec} vectors of dim {vectors.shape[1]}, {len(queries)} queries, "
          f"{os.cpu_count()} CPU cores\n")
    true_exact = exact_uncompressed(queries, qvecs, vectors, offsets, docs.docno.to_numpy())
    qf = qframe(queries, qvecs)
    rows, extra = [], []
    work = Path(tempfile.mkdtemp(prefix="bench-lateint-"))
    try:
        for nbits in args.nbits:
            idx, build_s = build_from_vectors(work / f"vaswani-{nbits}", docs.docno, vectors, offsets, model,
                                              nbits=nbits, n_centroids=args.n_centroids)
            r = idx.reader()
            comp = (r.codes.nbytes + r.residuals.nbytes) / n_vec
            total = sum(idx.size_bytes().values()) / n_vec
            meta = idx.metadata()
            exh = idx.retriever(model, mode="exhaustive", num_results=1000)
            exh_ms, exh_res = time_batched(exh, qf)
            e2e10 = idx.retriever(model, num_results=10)
            e2e1000 = idx.retriever(model, num_results=1000)
            ms1_10 = time_per_query(e2e10, qf, repeats=args.repeats)
            msb_10, res10 = time_batched(e2e10, qf)
            ms1_1000 = time_per_query(e2e1000, qf, repeats=1)
            msb_1000, res1000 = time_batched(e2e1000, qf)
            ms_text = time_per_query(idx.retriever(model, num_results=10), queries, repeats=1)
            rows.append({
                "nbits": nbits, "centroids": meta["n_centroids"], "bytes/vec (codes+res)": comp,
                "bytes/vec (all files)": total, "build s (no encoder)": build_s,
                "build vec/s": n_vec / build_s,
                "e2e k=10 ms/q (1 at a time)": ms1_10, "e2e k=10 ms/q (batched)": msb_10,
                "e2e k=1000 ms/q (1 at a time)": ms1_1000, "e2e k=1000 ms/q (batched)": msb_1000,
                "e2e k=10 ms/q incl. query encoding": ms_text,
                "exhaustive ms/q (batched)": exh_ms,
                "R@10 vs exhaustive": recall_at(res10, exh_res, 10),
                "R@10 vs uncompressed exact": recall_at(res10, true_exact, 10),
                "R@1000 vs exhaustive (k=1000)": recall_at(res1000, exh_res, 1000),
                "nDCG@10 e2e": ndcg10(res10, qrels), "nDCG@10 exhaustive": ndcg10(exh_res, qrels),
                "nDCG@10 uncompressed exact": ndcg10(true_exact, qrels),
            })
            if args.rerank:
                extra.append(bench_rerank(idx, model, docs, queries, qvecs, qrels, true_exact))
        print(md_table(rows))
        for e in extra:
            print()
            print(md_table(e))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def bench_rerank(idx, model, docs, queries, qvecs, qrels, true_exact) -> list[dict]:
    import pyterrier_pisa
    pisa_path = CACHE / "vaswani.pisa"
    if not (pisa_path / "pt_meta.json").exists() and not pisa_path.exists():
        pyterrier_pisa.PisaIndex(str(pisa_path), stemmer="porter2").index(docs.to_dict("records"))
    bm25 = pyterrier_pisa.PisaIndex(str(pisa_path)).bm25(num_results=1000)
    first = bm25.transform(queries)
    first = first.merge(qframe(queries, qvecs)[["qid", "query_embs"]], on="qid")
    scorer = idx.scorer(model)
    scorer.transform(first[first.qid == first.qid.iloc[0]])
    per_q = []
    for qid, g in first.groupby("qid", sort=False):
        t = time.perf_counter()
        out = scorer.transform(g)
        per_q.append(1000 * (time.perf_counter() - t))
    t = time.perf_counter()
    out = scorer.transform(first)
    batched = 1000 * (time.perf_counter() - t) / first.qid.nunique()
    return [{"rerank BM25 top 1000 (nbits=%d)" % idx.reader().nbits: "",
             "ms/q (1 at a time, mean)": float(np.mean(per_q)), "ms/q p95": float(np.percentile(per_q, 95)),
             "ms/q (batched)": batched, "nDCG@10 BM25": ndcg10(first, qrels), "nDCG@10 reranked": ndcg10(out, qrels),
             "docs/q": float(first.groupby("qid").size().mean())}]


def bench_sweep(args) -> None:
    """Search settings against exhaustive search. Run on SciFact's *train* queries by default: the defaults are
    tuned there, never on a collection's test queries (R@10 vs exhaustive needs no relevance labels; nDCG uses
    the train qrels)."""
    model, docs, queries, qrels, vectors, offsets, qvecs = _setup(args.collection, args.split)
    if args.max_queries and len(queries) > args.max_queries:
        keep = np.random.default_rng(0).choice(len(queries), args.max_queries, replace=False)
        keep.sort()
        queries, qvecs = queries.iloc[keep].reset_index(drop=True), [qvecs[i] for i in keep]
    print(f"\n{args.collection} ({args.split} queries): {len(docs)} docs, {len(vectors)} vectors, "
          f"{len(queries)} queries\n", flush=True)
    qf = qframe(queries, qvecs)
    work = Path(tempfile.mkdtemp(prefix="bench-lateint-"))
    rows = []
    try:
        for k_c in args.centroids:
            idx, build_s = build_from_vectors(work / f"k{k_c}", docs.docno, vectors, offsets, model, nbits=2,
                                              n_centroids=k_c)
            _, exh = time_batched(idx.retriever(model, mode="exhaustive", num_results=10), qf)
            for nprobe in args.nprobe:
                for ncand in args.ncandidates:
                    for nexact in args.nexact:
                        if nexact > ncand:
                            continue
                        r = idx.retriever(model, num_results=10, nprobe=nprobe, ncandidates=ncand, nexact=nexact)
                        ms = time_per_query(r, qf)
                        _, res = time_batched(r, qf)
                        rows.append({"centroids": k_c, "build s": build_s, "nprobe": nprobe, "ncandidates": ncand,
                                     "nexact": nexact, "ms/q (1 at a time)": ms,
                                     "R@10 vs exhaustive": recall_at(res, exh, 10),
                                     "nDCG@10": ndcg10(res, qrels)})
                        print(rows[-1], flush=True)
        print(md_table(rows))
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --- synthetic scaling ------------------------------------------------------------------------------------------------
def synthetic(n_docs: int, dim: int, mean_len: int, n_topics: int, seed: int):
    """Clustered unit vectors: each doc draws tokens around 2 of ``n_topics`` topic directions."""
    rng = np.random.default_rng(seed)
    topics = rng.normal(size=(n_topics, dim)).astype(np.float32)
    lens = rng.integers(mean_len // 2, mean_len * 3 // 2 + 1, n_docs)

    def docs():
        for i in range(n_docs):
            t = topics[rng.integers(0, n_topics, 2)][rng.integers(0, 2, lens[i])]
            v = t + 0.8 * rng.normal(size=t.shape).astype(np.float32)
            yield {"docno": str(i), "doc_embs": v / np.linalg.norm(v, axis=1, keepdims=True)}
    return docs(), topics, int(lens.sum())


def bench_scaling(args) -> None:
    rows = []
    work = Path(tempfile.mkdtemp(prefix="bench-lateint-scale-"))
    try:
        for n in args.sizes:
            docs, topics, n_vec = synthetic(n, args.dim, args.doclen, args.topics, seed=0)
            idx = ColBERTIndex(work / f"s{n}")
            t = time.perf_counter()
            idx.indexer(None, nbits=2, verbose=False, batch_size=4096).index(docs)
            build_s = time.perf_counter() - t
            meta = idx.metadata()
            rng = np.random.default_rng(1)
            qs = []
            for _ in range(args.queries):
                q = topics[rng.integers(0, args.topics, 32)] + 0.8 * rng.normal(size=(32, args.dim))
                qs.append((q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32))
            qf = pd.DataFrame({"qid": [str(i) for i in range(len(qs))], "query_embs": qs})
            ms = time_per_query(idx.retriever(num_results=10), qf)
            msb, res = time_batched(idx.retriever(num_results=10), qf)
            row = {"docs": n, "vectors": n_vec, "centroids": meta["n_centroids"],
                   "index MB": sum(idx.size_bytes().values()) / 2 ** 20,
                   "bytes/vec (codes+res)": (idx.reader().codes.nbytes + idx.reader().residuals.nbytes) / n_vec,
                   "build s": build_s, "build vec/s": n_vec / build_s,
                   "e2e k=10 ms/q (1 at a time)": ms, "e2e k=10 ms/q (batched)": msb}
            if n <= args.exhaustive_max:
                _, exh = time_batched(idx.retriever(num_results=10, mode="exhaustive"), qf)
                row["R@10 vs exhaustive"] = recall_at(res, exh, 10)
            else:
                row["R@10 vs exhaustive"] = "n/a"
            rows.append(row)
            print(row, flush=True)
            shutil.rmtree(idx.path, ignore_errors=True)
        print(md_table(rows))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("vaswani")
    v.add_argument("--nbits", type=int, nargs="+", default=[2])
    v.add_argument("--n-centroids", type=int, default=None)
    v.add_argument("--repeats", type=int, default=3)
    v.add_argument("--no-rerank", dest="rerank", action="store_false")
    s = sub.add_parser("sweep")
    s.add_argument("--centroids", type=int, nargs="+", default=[2048, 4096, 8192])
    s.add_argument("--nprobe", type=int, nargs="+", default=[2, 4, 8])
    s.add_argument("--ncandidates", type=int, nargs="+", default=[256, 1024])
    s.add_argument("--nexact", type=int, nargs="+", default=[32, 64, 128])
    s.add_argument("--collection", default="scifact")
    s.add_argument("--split", default="train")
    s.add_argument("--max-queries", type=int, default=300, help="random subset of the queries (0: all)")
    c = sub.add_parser("scaling")
    c.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    c.add_argument("--dim", type=int, default=128)
    c.add_argument("--doclen", type=int, default=8)
    c.add_argument("--topics", type=int, default=1000)
    c.add_argument("--queries", type=int, default=50)
    c.add_argument("--exhaustive-max", type=int, default=100_000)
    args = p.parse_args()
    {"vaswani": bench_vaswani, "sweep": bench_sweep, "scaling": bench_scaling}[args.cmd](args)


if __name__ == "__main__":
    main()
