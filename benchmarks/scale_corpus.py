"""A ladder of synthetic collections made of REAL token vectors, for ``bench_scale.py`` (issue 22).

**The pool.** Every shared collection (Vaswani, CACM, MED, SciFact: ~20k documents, ~1.8M vectors) is encoded once
with the default model at fp32 and cached as float16 ``pool/docs.f16`` ``(n_vectors, dim)`` with ``offsets.npy``
``(n_docs + 1,)``, plus the real queries (SciFact's *train* queries, never its test queries) as ``queries.npz``.

**The generator.** Synthetic document ``i`` copies the token vectors of a pool document chosen uniformly at random
(so the document-length distribution is the pool's), adds isotropic Gaussian noise of standard deviation
``noise / sqrt(dim)`` per dimension to every vector (an expected cosine of ``1 / sqrt(1 + noise**2)`` to the source
vector) and re-normalises to unit length. No two documents are equal (the noise is continuous), clusters and
document lengths follow the real ones, and the real queries find near-copies of the documents they match in the
pool. Documents are made in chunks of ``CHUNK`` documents, chunk ``c`` from ``numpy.random.default_rng([seed, c])``:
the stream is reproducible, never held whole in memory, and any chunk can be made on its own.

    python benchmarks/scale_corpus.py pool                  # encode the pool once (~9 min on 2 cores)
    python benchmarks/scale_corpus.py check --size 20000 --vectors 100000   # nearest-neighbour, cluster-size checks
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

sys.path.insert(0, os.environ.get("LATEINT_SRC", str(Path(__file__).resolve().parents[1])))
from pyterrier_lateint.index.vectorfile import VectorFile  # noqa: E402

logger = logging.getLogger("scale_corpus")
COLLECTIONS = (("vaswani", "test"), ("cacm", "test"), ("med", "test"), ("scifact", "train"))
CHUNK = 1024  # documents per generated chunk (one seed each)
DEFAULT_NOISE = 0.12  # per-vector noise norm relative to the unit vector (expected cosine to the source 0.993)


def cache_root() -> Path:
    from pyterrier_lateint.settings import cache_dir
    return Path(os.environ.get("LATEINT_BENCH_CACHE", cache_dir() / "bench")) / "scale"


def _model_hash(model) -> str:
    return hashlib.sha1(json.dumps(model.signature(), sort_keys=True).encode()).hexdigest()[:10]


def build_pool(out: Path | None = None, batch_size: int = 64) -> Path:
    """Encode the shared collections into the pool folder (skipped when complete); returns the folder."""
    import torch

    from pyterrier_lateint import ColBERT
    from pyterrier_lateint.data import load_collection
    model = ColBERT.from_pretrained(precision="fp32")
    out = out or cache_root() / f"pool-{_model_hash(model)}"
    if (out / "pool.json").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(os.cpu_count() or 1)
    sources, lens, queries, qsrc = [], [], [], []
    with open(out / "docs.f16.tmp", "wb") as f:
        for name, split in COLLECTIONS:
            coll = load_collection(name)
            texts = [d["text"] for d in coll.get_corpus_iter()]
            t = time.perf_counter()
            for s in range(0, len(texts), 1024):
                for v in model.encode_docs(texts[s:s + 1024], batch_size=batch_size):
                    f.write(np.ascontiguousarray(v, dtype=np.float16).tobytes())
                    lens.append(len(v))
                logger.info("%s: %d/%d documents encoded", name, min(s + 1024, len(texts)), len(texts))
            sources.append({"collection": name, "docs": len(texts), "encode_s": round(time.perf_counter() - t, 1)})
            topics = coll.get_topics(split)
            queries.extend(model.encode_queries(topics["query"].tolist()))
            qsrc.extend(f"{name}:{q}" for q in topics["qid"])
    os.replace(out / "docs.f16.tmp", out / "docs.f16")
    offsets = np.zeros(len(lens) + 1, dtype=np.int64)
    np.cumsum(lens, out=offsets[1:])
    np.save(out / "offsets.npy", offsets)
    np.savez(out / "queries.npz", **{f"q{i}": q.astype(np.float32) for i, q in enumerate(queries)})
    (out / "pool.json").write_text(json.dumps({"model": model.signature(), "dim": model.dim, "sources": sources,
                                               "n_docs": len(lens), "n_vectors": int(offsets[-1]),
                                               "qids": qsrc}, indent=1))
    return out


@dataclass
class Pool:
    """The encoded shared collections: ``vectors`` float16 ``(n_vectors, dim)`` (a ``VectorFile``), ``offsets``
    ``(n_docs + 1,)``, ``queries`` (float32 ``(n_tokens, dim)`` arrays) and their ``qids`` (``collection:qid``)."""
    vectors: np.ndarray
    offsets: np.ndarray
    queries: list
    qids: list
    meta: dict

    @classmethod
    def load(cls, folder: Path) -> "Pool":
        meta = json.loads((folder / "pool.json").read_text())
        offsets = np.load(folder / "offsets.npy")
        # explicit reads, not a memory map: the pool's pages would count in a build's resident memory
        vectors = VectorFile(folder / "docs.f16", int(offsets[-1]), meta["dim"])
        with np.load(folder / "queries.npz") as z:
            queries = [z[f"q{i}"] for i in range(len(meta["qids"]))]
        return cls(vectors, offsets, queries, meta["qids"], meta)

    @property
    def n_docs(self) -> int:
        return len(self.offsets) - 1

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])


class SyntheticCorpus:
    """``n_docs`` synthetic documents made from ``pool`` (see the module docstring); docnos ``s0``, ``s1``, ...."""

    def __init__(self, pool: Pool, n_docs: int, noise: float = DEFAULT_NOISE, seed: int = 0):
        self.pool, self.n_docs, self.noise, self.seed = pool, int(n_docs), float(noise), int(seed)
        self._lens = np.diff(pool.offsets)

    def sources(self, c: int) -> np.ndarray:
        """Pool document of each document of chunk ``c`` (int64 ``(<= CHUNK,)``)."""
        n = min(CHUNK, self.n_docs - c * CHUNK)
        return np.random.default_rng([self.seed, c, 0]).integers(0, self.pool.n_docs, n)

    def doclens(self) -> np.ndarray:
        """Vectors per document, int64 ``(n_docs,)`` (cheap: no vectors are made)."""
        n_chunks = -(-self.n_docs // CHUNK)
        return np.concatenate([self._lens[self.sources(c)] for c in range(n_chunks)]) if n_chunks else \
            np.zeros(0, dtype=np.int64)

    def chunk(self, c: int) -> tuple[list, np.ndarray, np.ndarray]:
        """Chunk ``c``: (docnos, float32 unit vectors ``(n_vectors, dim)``, offsets ``(n + 1,)``)."""
        src = self.sources(c)
        rng = np.random.default_rng([self.seed, c, 1])
        starts, lens = self.pool.offsets[src], self._lens[src]
        offsets = np.zeros(len(src) + 1, dtype=np.int64)
        np.cumsum(lens, out=offsets[1:])
        rows = np.repeat(starts - offsets[:-1], lens) + np.arange(offsets[-1])  # pool row of each vector
        order = np.argsort(rows, kind="stable")
        v = np.empty((len(rows), self.pool.dim), dtype=np.float32)
        v[order] = self.pool.vectors[rows[order]]
        v += rng.standard_normal(v.shape, dtype=np.float32) * np.float32(self.noise / np.sqrt(self.pool.dim))
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        docnos = [f"s{c * CHUNK + j}" for j in range(len(src))]
        return docnos, v, offsets

    def chunks(self) -> Iterator[tuple[list, np.ndarray, np.ndarray]]:
        for c in range(-(-self.n_docs // CHUNK)):
            yield self.chunk(c)

    def documents(self) -> Iterator[dict]:
        """``{"docno", "doc_embs"}`` dicts, as an indexer takes them."""
        for docnos, v, offs in self.chunks():
            for j, d in enumerate(docnos):
                yield {"docno": d, "doc_embs": v[offs[j]:offs[j + 1]]}


def nn_similarity(probe: np.ndarray, base: np.ndarray, exclude_self: bool = False, chunk: int = 2 ** 16) -> np.ndarray:
    """Cosine of each ``probe`` vector to its nearest neighbour in ``base`` (float32 ``(n_probe,)``);
    ``exclude_self``: ``probe`` is ``base[:len(probe)]`` and a vector is not its own neighbour."""
    import torch
    p = torch.from_numpy(np.ascontiguousarray(probe, dtype=np.float32))
    best = torch.full((len(p),), -2.0)
    for s in range(0, len(base), chunk):
        b = torch.from_numpy(np.ascontiguousarray(base[s:s + chunk], dtype=np.float32))
        sims = p @ b.T
        if exclude_self and s < len(p):
            idx = torch.arange(s, min(s + chunk, len(p)))
            sims[idx, idx - s] = -2.0
        best = torch.maximum(best, sims.max(1).values)
    return best.numpy()


def check(pool: Pool, n_docs: int, noise: float, n_vectors: int = 200_000, n_probe: int = 2000,
          n_clusters: int = 1024, seed: int = 0) -> dict:
    """Compare the synthetic vectors with the real ones: (a) nearest-neighbour cosine of ``n_probe`` vectors within
    ``n_vectors`` vectors of each set (the first documents of the synthetic collection; random pool documents);
    (b) cluster sizes when the vectors of each set are assigned to the same ``n_clusters`` k-means centroids
    (trained on a third sample, of other pool documents). Returns quantiles of both."""
    from pyterrier_lateint.index.kmeans import assign_nearest, kmeans
    rng = np.random.default_rng(seed)
    syn, got = [], 0
    for _, v, _ in SyntheticCorpus(pool, n_docs, noise, seed).chunks():
        syn.append(v)
        got += len(v)
        if got >= n_vectors:
            break
    syn = np.concatenate(syn)[:n_vectors]
    docs = iter(rng.permutation(pool.n_docs))

    def real_sample() -> np.ndarray:  # vectors of pool documents not taken before
        out, got = [], 0
        for d in docs:
            out.append(np.asarray(pool.vectors[pool.offsets[d]:pool.offsets[d + 1]], dtype=np.float32))
            got += len(out[-1])
            if got >= n_vectors:
                break
        return np.concatenate(out)[:n_vectors]
    real, held_out = real_sample(), real_sample()  # compared; trains the centroids of the cluster-size check
    n = min(len(syn), len(real), len(held_out))
    syn, real, held_out = syn[:n], real[:n], held_out[:n]
    q = np.linspace(0, 1, 11)
    out = {"n_vectors": n, "quantiles": [round(float(x), 1) for x in q]}
    for name, x in (("real", real), ("synthetic", syn)):
        probe_idx = rng.choice(n, min(n_probe, n), replace=False)
        order = np.concatenate([probe_idx, np.setdiff1d(np.arange(n), probe_idx)])
        xs = x[order]
        out[f"nn_cos_{name}"] = np.round(np.quantile(nn_similarity(xs[:len(probe_idx)], xs, True), q), 4).tolist()
    cents = kmeans(held_out, n_clusters, iters=8, seed=seed)
    for name, x in (("real", real), ("synthetic", syn)):
        sizes = np.bincount(assign_nearest(x, cents), minlength=n_clusters)
        out[f"cluster_size_{name}"] = np.quantile(sizes, q).round(1).tolist()
    lens_syn = SyntheticCorpus(pool, n_docs, noise, seed).doclens()
    out["doclen_quantiles_real"] = np.quantile(np.diff(pool.offsets), q).tolist()
    out["doclen_quantiles_synthetic"] = np.quantile(lens_syn, q).tolist()
    return out


def check_table(res: dict, size: int, noise: float) -> str:
    """Markdown of :func:`check`'s result: deciles of each distribution, real against synthetic."""
    q = res["quantiles"]
    head = "| distribution | " + " | ".join(f"q{x:.1f}" for x in q) + " |"
    lines = [f"Generator check, printed by `python benchmarks/scale_corpus.py check --size {size} --noise {noise} "
             f"--vectors {res['n_vectors']} --out ...`: {res['n_vectors']:,} vectors of random pool documents against "
             f"the same number from the first documents of the {size:,}-document synthetic collection.", "",
             head, "|---|" + "---|" * len(q)]
    rows = [("nearest-neighbour cosine, real", "nn_cos_real"), ("nearest-neighbour cosine, synthetic",
                                                                 "nn_cos_synthetic"),
            ("vectors per k-means cluster (1,024 trained on other pool documents), real", "cluster_size_real"),
            ("vectors per k-means cluster, synthetic", "cluster_size_synthetic"),
            ("vectors per document, pool", "doclen_quantiles_real"),
            ("vectors per document, synthetic collection", "doclen_quantiles_synthetic")]
    for name, key in rows:
        lines.append(f"| {name} | " + " | ".join(f"{x:g}" for x in res[key]) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("pool", help="encode the shared collections into the pool")
    c = sub.add_parser("check", help="compare synthetic and real vectors")
    c.add_argument("--size", type=int, default=100_000)
    c.add_argument("--noise", type=float, default=DEFAULT_NOISE)
    c.add_argument("--vectors", type=int, default=200_000)
    c.add_argument("--out", type=Path, help="write the markdown table here")
    a = p.parse_args()
    folder = build_pool()
    if a.cmd == "check":
        res = check(Pool.load(folder), a.size, a.noise, a.vectors)
        text = check_table(res, a.size, a.noise)
        print(text)
        if a.out:
            a.out.write_text(text)
    else:
        print(folder)


if __name__ == "__main__":
    main()
