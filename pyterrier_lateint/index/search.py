"""Candidate generation and exact re-scoring over a ColBERTIndex (CPU: numpy BLAS + numba kernels).

End-to-end search of a query ``Q`` ``(nq, dim)`` runs in three stages:

1. **Probe** (WARP-style): ``S = Q @ centroids.T``; each query token keeps its ``nprobe`` best centroids. Walking
   the inverted file, each document gets, per token, the score of the best probed centroid it holds; a token that
   found nothing is imputed with that token's ``nprobe``-th centroid score (the largest similarity it could have
   missed). Summing gives an approximate score; the best ``ncandidates`` documents go on. Cost: postings read only.
2. **Centroid interaction** (PLAID): for each candidate, ``sum_i max_j S[i, code_j]`` over *all* its vectors' codes,
   no decompression; the best ``nexact`` go on.
3. **Exact**: decompress those documents and compute MaxSim with one matrix product; these are the scores returned,
   so every returned score is the exact MaxSim over the stored vectors (the same number ``index.scorer()`` gives).

``nexact`` and ``ncandidates`` are raised to at least ``num_results`` and ``4 * nexact`` (:meth:`SearchParams.for_k`).

Defaults (``nprobe=4, ncandidates=512, nexact=128``) come from a sweep on Vaswani with the default 384-d model
(``benchmarks/bench_index.py sweep``): R@10 against exhaustive search 0.997; ``nexact=64`` drops it to 0.987 and
``nexact=32`` to 0.91, while ``nprobe`` beyond 4 and ``ncandidates`` beyond 512 change it by < 0.002.
"""
from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from ..maxsim import EMPTY_DOC_SCORE, maxsim_packed
from ._threads import n_threads, pmap
from .layout import IndexReader


@dataclass(frozen=True)
class SearchParams:
    """Knobs of the end-to-end search (defaults chosen on Vaswani, see ``benchmarks/bench_index.py --sweep``).

    - ``nprobe``: centroids probed per query token (stage 1).
    - ``ncandidates``: documents kept by stage 1 for centroid interaction.
    - ``nexact``: documents kept by stage 2 for decompression and exact MaxSim.
    """
    nprobe: int = 4
    ncandidates: int = 512
    nexact: int = 128

    def for_k(self, k: int) -> "SearchParams":
        """Settings for a top-``k`` search: ``nexact >= k``, ``ncandidates >= 4 * nexact``.

        Deep rankings lose recall in stage 2: on Vaswani, k=1000 gives R@1000 = 0.84 against exhaustive search;
        ``nexact=2000`` (``nprobe=8``) gives 0.98 at about 3x the time."""
        nexact = max(self.nexact, k)
        return SearchParams(self.nprobe, max(self.ncandidates, 4 * nexact), nexact)


def centroid_scores(reader: IndexReader, queries: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Concatenate ``queries`` and score them against the centroids.

    Returns ``(Q (T, dim) float32, q_offsets (n_queries + 1,) int64, S (T, K) float32)``.
    """
    lens = np.array([len(q) for q in queries], dtype=np.int64)
    q_off = np.zeros(len(queries) + 1, dtype=np.int64)
    np.cumsum(lens, out=q_off[1:])
    Q = np.ascontiguousarray(np.concatenate(queries), dtype=np.float32) if len(queries) else \
        np.zeros((0, reader.dim), dtype=np.float32)
    C = reader.codec.centroids
    S = np.empty((len(Q), len(C)), dtype=np.float32)
    bounds = np.linspace(0, len(C), n_threads() + 1).astype(np.int64)
    pmap(lambda j: _matmul_nt(Q, C, S, bounds[j], bounds[j + 1]), range(len(bounds) - 1))
    return Q, q_off, S


@numba.njit(cache=True, nogil=True, fastmath=True)
def _matmul_nt(A, B, out, b0, b1):
    """``out[:, b0:b1] = A @ B[b0:b1].T`` (single-threaded; small products beat multi-threaded BLAS on busy cores)."""
    n, dim = A.shape
    for k in range(b0, b1):
        for t in range(n):
            s = np.float32(0.0)
            for x in range(dim):
                s += A[t, x] * B[k, x]
            out[t, k] = s


@numba.njit(cache=True, nogil=True, fastmath=True)
def _exact_packed(S, Q, doc_ids, offsets, codes, packed, lut, out):
    """Fused decompress + MaxSim: ``out[i] = sum_t max_j (S[t, code_j] + <Q[t], residual_j>)`` over the vectors
    ``j`` of ``doc_ids[i]`` (``S = Q @ centroids.T``); ``-inf`` for empty documents. Never materialises the
    decompressed documents."""
    nq, dim = Q.shape
    nbytes = packed.shape[1]
    per = lut.shape[2]
    buf = np.empty(dim, dtype=np.float32)
    best = np.empty(nq, dtype=np.float32)
    for i in range(len(doc_ids)):
        d = doc_ids[i]
        v0 = offsets[d]
        v1 = offsets[d + 1]
        if v1 == v0:
            out[i] = -np.inf
            continue
        best[:] = -np.inf
        for v in range(v0, v1):
            for p in range(nbytes):
                b = packed[v, p]
                for k in range(per):
                    buf[p * per + k] = lut[p, b, k]
            c = codes[v]
            for t in range(nq):
                s = S[t, c]
                for x in range(dim):
                    s += Q[t, x] * buf[x]
                if s > best[t]:
                    best[t] = s
        total = np.float32(0.0)
        for t in range(nq):
            total += best[t]
        out[i] = total


def top_probes(S: np.ndarray, nprobe: int) -> np.ndarray:
    """The ``nprobe`` best centroids of each row of ``S`` ``(T, K)``, best first; int32 ``(T, nprobe)``."""
    K = S.shape[1]
    nprobe = min(nprobe, K)
    if nprobe < K:
        part = np.argpartition(S, K - nprobe, axis=1)[:, K - nprobe:]
    else:
        part = np.broadcast_to(np.arange(K), S.shape)
    vals = np.take_along_axis(S, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    return np.ascontiguousarray(np.take_along_axis(part, order, axis=1), dtype=np.int32)


@numba.njit(cache=True, nogil=True)
def _probe_candidates(S, t0, t1, probes, ivf_offsets, ivf_docs, n_docs, ncand):
    """Stage 1 for the query owning rows ``t0:t1`` of ``S``; returns up to ``ncand`` doc ids (int64)."""
    nprobe = probes.shape[1]
    acc = np.zeros(n_docs, dtype=np.float32)
    mark = np.full(n_docs, -1, dtype=np.int32)
    total = 0
    for t in range(t0, t1):
        for p in range(nprobe):
            c = probes[t, p]
            total += ivf_offsets[c + 1] - ivf_offsets[c]
    touched = np.empty(min(total, n_docs), dtype=np.int64)
    n_touched = 0
    for t in range(t0, t1):
        thr = S[t, probes[t, nprobe - 1]]
        for p in range(nprobe):
            c = probes[t, p]
            gain = S[t, c] - thr
            for x in range(ivf_offsets[c], ivf_offsets[c + 1]):
                d = ivf_docs[x]
                m = mark[d]
                if m != t:  # first (= best) probed centroid of token t holding document d
                    if m == -1:
                        touched[n_touched] = d
                        n_touched += 1
                    mark[d] = t
                    acc[d] += gain
    if n_touched <= ncand:
        return touched[:n_touched].copy()
    vals = np.empty(n_touched, dtype=np.float32)
    for j in range(n_touched):
        vals[j] = -acc[touched[j]]
    sel = np.argpartition(vals, ncand - 1)[:ncand]
    return touched[sel]


@numba.njit(cache=True, nogil=True)
def _centroid_interaction(S, t0, t1, cands, offsets, codes):
    """Stage 2: ``sum_t max_j S[t, codes[j]]`` over all vectors ``j`` of each candidate; float32 ``(n,)``."""
    out = np.empty(len(cands), dtype=np.float32)
    for j in range(len(cands)):
        d = cands[j]
        v0 = offsets[d]
        v1 = offsets[d + 1]
        total = np.float32(0.0)
        for t in range(t0, t1):
            best = np.float32(-np.inf)
            for v in range(v0, v1):
                s = S[t, codes[v]]
                if s > best:
                    best = s
            total += best
        out[j] = total
    return out


def exact_maxsim(reader: IndexReader, query: np.ndarray, doc_ids: np.ndarray, S: np.ndarray | None = None,
                 parallel: bool = True) -> np.ndarray:
    """Exact MaxSim of ``query`` ``(nq, dim)`` against decompressed documents ``doc_ids``; float32 ``(n,)``.

    Empty documents score ``-inf`` (see :mod:`pyterrier_lateint.maxsim`). ``S``: ``query @ centroids.T`` if
    already computed. ``parallel``: split the documents over the thread pool.
    """
    query = np.ascontiguousarray(query, dtype=np.float32)
    doc_ids = np.ascontiguousarray(doc_ids, dtype=np.int64)
    if reader.nbits == 16 or len(query) == 0:  # (numba has no float16) decompress, then one matrix product
        vectors, offs = reader.decompress_docs(doc_ids, parallel=parallel)
        return maxsim_packed(query, vectors, offs)
    if S is None:
        C = reader.codec.centroids
        S = np.empty((len(query), len(C)), dtype=np.float32)
        _matmul_nt(query, C, S, 0, len(C))
    out = np.empty(len(doc_ids), dtype=np.float32)
    n_par = n_threads() if parallel and len(doc_ids) >= 16 else 1
    bounds = np.linspace(0, len(doc_ids), n_par + 1).astype(np.int64)
    lut, codes, packed, offsets = reader.codec.lut, reader.codes, reader.residuals, reader.offsets

    def run(j: int) -> None:
        a, b = bounds[j], bounds[j + 1]
        _exact_packed(S, query, doc_ids[a:b], offsets, codes, packed, lut, out[a:b])
    pmap(run, range(n_par))
    return out


def _topk(ids: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best ``(ids, scores)``, best first (ties by id), dropping ``-inf`` (empty documents)."""
    keep = scores > EMPTY_DOC_SCORE
    ids, scores = ids[keep], scores[keep]
    if len(ids) > k:
        sel = np.argpartition(-scores, k - 1)[:k]
        ids, scores = ids[sel], scores[sel]
    order = np.lexsort((ids, -scores))
    return ids[order], scores[order]


def search_plaid(reader: IndexReader, queries: list[np.ndarray], k: int,
                 params: SearchParams = SearchParams()) -> list[tuple[np.ndarray, np.ndarray]]:
    """End-to-end search of a batch of queries; returns per query ``(doc_ids int64, scores float32)``, best first.

    Scores are exact MaxSim over the decompressed stored vectors (no score divisor applied).
    """
    p = params.for_k(k)
    Q, q_off, S = centroid_scores(reader, queries)  # one matrix product for the batch
    n_q = len(queries)
    if n_q == 0:
        return []
    probes = top_probes(S, p.nprobe)
    ivf_offsets, ivf_docs, offsets, codes = reader.ivf_offsets, reader.ivf_docs, reader.offsets, reader.codes

    def stages_1_2(qi: int) -> np.ndarray:
        t0, t1 = int(q_off[qi]), int(q_off[qi + 1])
        c = _probe_candidates(S, t0, t1, probes, ivf_offsets, ivf_docs, reader.n_docs, p.ncandidates)
        if len(c) > p.nexact:
            a = _centroid_interaction(S, t0, t1, c, offsets, codes)
            c = c[np.argpartition(-a, p.nexact - 1)[:p.nexact]]
        return np.sort(c)  # sequential reads of the memory-mapped vectors

    cands = pmap(stages_1_2, range(n_q))
    if n_q == 1:
        scores = [exact_maxsim(reader, Q, cands[0], S=S)]
    else:
        scores = pmap(lambda qi: exact_maxsim(reader, Q[q_off[qi]:q_off[qi + 1]], cands[qi],
                                              S=S[q_off[qi]:q_off[qi + 1]], parallel=False), range(n_q))
    return [_topk(cands[qi], scores[qi], k) for qi in range(n_q)]


def search_exhaustive(reader: IndexReader, queries: list[np.ndarray], k: int,
                      chunk_vectors: int = 2 ** 16) -> list[tuple[np.ndarray, np.ndarray]]:
    """Brute-force exact MaxSim of every query against every (decompressed) document; same output as
    :func:`search_plaid`. Decompresses each chunk once for the whole batch."""
    n_q = len(queries)
    best = [(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)) for _ in range(n_q)]
    if n_q == 0:
        return best
    offsets = np.asarray(reader.offsets)
    Q = np.ascontiguousarray(np.concatenate(queries), dtype=np.float32)
    q_off = np.zeros(n_q + 1, dtype=np.int64)
    np.cumsum([len(q) for q in queries], out=q_off[1:])
    n_docs = reader.n_docs
    d0 = 0
    while d0 < n_docs:
        d1 = int(np.searchsorted(offsets, offsets[d0] + chunk_vectors, side="right")) - 1
        d1 = min(max(d1, d0 + 1), n_docs)
        ids = np.arange(d0, d1, dtype=np.int64)
        vectors, offs = reader.decompress_docs(ids)
        lens = np.diff(offs)
        nonempty = lens > 0
        if nonempty.any():
            sims = Q @ vectors.T  # (T, n_vec)
            per_tok = np.maximum.reduceat(sims, offs[:-1][nonempty], axis=1)  # (T, n_nonempty)
            for qi in range(n_q):
                s = np.full(len(ids), EMPTY_DOC_SCORE, dtype=np.float32)
                s[nonempty] = per_tok[q_off[qi]:q_off[qi + 1]].sum(axis=0)
                prev_ids, prev_scores = best[qi]
                best[qi] = _topk(np.concatenate([prev_ids, ids]), np.concatenate([prev_scores, s]), k)
        d0 = d1
    return best
