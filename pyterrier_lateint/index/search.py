"""Candidate generation and exact re-scoring over a ColBERTIndex (CPU: numpy BLAS + numba kernels).

End-to-end search of a query ``Q`` ``(nq, dim)`` runs in three stages:

1. **Probe** (WARP-style): ``S = Q @ centroids.T``; each query token keeps its ``nprobe`` best centroids. Walking
   the inverted file, each document gets, per token, the score of the best probed centroid it holds; a token that
   found nothing is imputed with that token's best *unprobed* centroid score (the ``nprobe + 1``-th: an upper bound
   of what it could have missed, and strictly below a probed hit, so even ``nprobe=1`` ranks documents by how many
   tokens they match and how well). Summing gives an approximate score; the best ``ncandidates`` documents go on.
   Cost: postings read only.
2. **Centroid interaction** (PLAID): for each candidate, ``sum_i max_j S[i, code_j]`` over *all* its vectors' codes,
   no decompression; the best ``nexact`` go on.
3. **Exact**: MaxSim of those documents over their stored vectors, scored straight from the compressed bytes: a
   per-query table ``L[byte position, byte value, query token]`` turns each residual byte into one lookup-add per
   query token (asymmetric distance computation), so the vectors are never decompressed. These are the scores
   returned: every returned score is the exact MaxSim over the stored vectors (the number ``index.scorer()`` gives).
   To cut the cost (:func:`exact_top_k`), every document is first scored with the table quantised to int8, one
   step per query token (:func:`int8_tables`: a 32-token table is 768 kB and stays in the L2 cache; sums are exact
   int16 additions, 32 tokens per 512-bit add), each score within a computed bound ``B`` of the exact one
   (:func:`int8_error_bound`); only documents within ``2B`` of the ``k``-th best can be in the top ``k``, and only
   they (a median of 21 of 384 at 100,000 documents) go on, to the table rounded to float16 when more than 64 are left
   (:func:`half_tables`, :func:`half_error_bound`: a bound ~10x tighter) and then to the float32 table: the same
   ranking and scores as scoring all of them with it. The tables depend on the query alone: for one query,
   :func:`search_plaid` has a worker thread build them (:func:`prepare_tables`) while stages 1-2 run.

Query tokens are mapped into the codec's query space and zero-padded to whole SIMD lanes (:func:`pad_queries`, the
torch backend's too; a zero vector adds 0 to MaxSim), and every kernel reads the centroid scores as
``St = centroids @ Q.T`` ``(K, T)``, so the inner loops run over contiguous query tokens; :func:`centroid_scores`
computes it from the centroids stored as float16 (pq codecs: exactly their values, half the bytes every query
reads), in float32 on the search's own threads. Cuts and orderings follow one rule, score descending then lower id
(:mod:`.ranking`).

``nexact`` and ``ncandidates`` are raised to at least ``num_results`` and ``4 * nexact`` (:meth:`SearchParams.for_k`).

Defaults (``nprobe`` by the collection's size, :func:`default_nprobe`: 8 up to 100,000 documents, 15 at 300,000, 32
at 1M; ``nexact`` by size, :func:`default_nexact`: 256 up to 10,000 documents, 384 at 100,000, 576 at 1M;
``ncandidates = 4 * nexact``; the default ``8 sqrt(n)`` centroids) come from the scale ladder
(``benchmarks/bench_scale.py``: synthetic collections of real token vectors, real queries, never a collection's test
queries) and the shared collections (``tests/test_default_recall.py``), where the goal is R@10 >= 0.99 against
exhaustive search over the same index. R@10 at 10,000 / 100,000 documents: ``nprobe=4, 1024, 256`` (the defaults
of the first scale run) 0.990 / 0.987; ``8, 1024, 256`` 0.993 / 0.989; ``8, 1536, 384`` - / 0.9995, at 1.0x / 1.2x the
median latency of ``4, 1024, 256`` (noisy; interleaved passes). At 1M documents ``8, 2304, 576`` gave 0.954, ``16, 4096,
1024`` 0.995, ``24, 2304, 576`` 0.9915 and ``32, 2304, 576`` 0.995 at 1.25x the median latency of ``8, 2304, 576``:
probing, not the exact stage, is what a larger collection needs. Before issue 22: ``4, 512, 128`` with ``4 sqrt(n)``
centroids: 0.954 at 10,000 documents (0.985 on the first 3,000 Vaswani documents).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numba
import numpy as np

from ..base import check_int
from ..maxsim import EMPTY_DOC_SCORE, maxsim_packed
from .chunks import doc_chunks
from .codec import ResidualCodec
from .layout import IndexReader
from .ranking import select_top, select_top_positions, top_k
from .simd import (LANES, aligned_empty, centroid_block_scores, doc_adc8_maxsim, doc_adc8_maxsim_scaled,
                   doc_adc_maxsim, doc_adc_maxsim_scaled, doc_centroid_maxsim, quantise_columns, round_to_half)
from .threads import Pending, n_threads, pmap, spawn


# Table rows to add (vectors x residual bytes x lane groups) below which one query's exact stage stays on one thread:
# about 3 ms of work. Below it, handing half to a second thread measured ~6% slower on Vaswani (the per-query table
# must travel to the other core); deep rankings (k=1000) and long documents are split.
PARALLEL_MIN_WORK = 3_000_000
# The same after an int8 pass: its tables have evicted the float32 ones from the L2 cache, so a second core reads
# them from the L3 cache as the first does; splitting the last pass from this much work measured 1.06x faster
# searches at 100,000 documents (a median of 21 documents left, ~1.2M rows)
PARALLEL_MIN_WORK_COLD = 300_000


NEXACT_BASE = 256  # default nexact up to NEXACT_BASE_DOCS documents
NEXACT_BASE_DOCS = 10_000
NEXACT_GROWTH = 0.18  # default nexact grows as documents ** NEXACT_GROWTH beyond NEXACT_BASE_DOCS
NPROBE_BASE = 8  # default nprobe up to NPROBE_BASE_DOCS documents
NPROBE_BASE_DOCS = 100_000
NPROBE_GROWTH = 0.6  # default nprobe grows as documents ** NPROBE_GROWTH beyond NPROBE_BASE_DOCS


def default_nprobe(n_docs: int) -> int:
    """Default ``nprobe`` for a collection of ``n_docs`` documents: 8 up to 100,000 documents, then
    ``8 * (n_docs / 100,000) ** 0.6`` rounded (15 at 300,000; 32 at 1M; 118 at 8.8M, extrapolated).

    Measured on the scale ladder (``benchmarks/bench_scale.py``, 200 real queries, R@10 against exhaustive search
    over the same index): ``nprobe=8`` holds 0.9975 at 100,000 documents and 0.9995 at 300,000, but 0.954 at 1M
    (65,536 centroids: a document's tokens spread over more, finer cells); at 1M ``nprobe=24`` gives 0.9915, 32 gives
    0.995 (``nexact=576`` both), at 1.17x / 1.25x the median latency of 8."""
    if n_docs <= NPROBE_BASE_DOCS:
        return NPROBE_BASE
    return int(round(NPROBE_BASE * (n_docs / NPROBE_BASE_DOCS) ** NPROBE_GROWTH))


def default_nexact(n_docs: int) -> int:
    """Default ``nexact`` for a collection of ``n_docs`` documents: 256 up to 10,000 documents, then
    ``256 * (n_docs / 10,000) ** 0.18`` rounded to a multiple of 32 (384 at 100,000; 576 at 1M, extrapolated).

    Measured on the scale ladder (``benchmarks/bench_scale.py``, 200 real queries, R@10 against exhaustive search
    over the same index, ``nprobe=8``, ``ncandidates = 4 * nexact``): 10,000 documents, ``nexact=256``: 0.993;
    100,000 documents, 256: 0.989, 384: 0.9995. Stage 2 ranks candidates by centroids alone, so the exact
    stage must look a little deeper as more documents crowd the same centroids."""
    if n_docs <= NEXACT_BASE_DOCS:
        return NEXACT_BASE
    return int(32 * round(NEXACT_BASE * (n_docs / NEXACT_BASE_DOCS) ** NEXACT_GROWTH / 32))


@dataclass(frozen=True)
class SearchParams:
    """Knobs of the end-to-end search (defaults chosen on the scale ladder, ``benchmarks/bench_scale.py``; see the
    module docstring).

    A frozen dataclass; :meth:`ColBERTIndex.retriever` takes the same three settings.

    Args:
        nprobe: centroids probed per query token (stage 1); ``None`` (default): by the collection's size,
            :func:`default_nprobe` (8 up to 100,000 documents).
        ncandidates: documents kept by stage 1 for centroid interaction; ``None`` (default): ``4 * nexact``.
        nexact: documents kept by stage 2 for exact MaxSim (scored from the compressed bytes); ``None`` (default):
            by the collection's size, :func:`default_nexact`.

    Raises:
        TypeError: when a setting is not an int.
        ValueError: when a setting is below 1.

    Example:
        .. code-block:: python

            from pyterrier_lateint.index import SearchParams

            params = SearchParams(nprobe=4, nexact=128)
            params.describe()                     # 'nprobe=4, ncandidates=auto, nexact=128'
            params.for_k(10, n_docs=11_429)       # SearchParams(nprobe=4, ncandidates=512, nexact=128)
    """
    nprobe: int | None = None
    ncandidates: int | None = None
    nexact: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "nprobe", check_int("nprobe", self.nprobe, optional=True))
        object.__setattr__(self, "ncandidates", check_int("ncandidates", self.ncandidates, optional=True))
        object.__setattr__(self, "nexact", check_int("nexact", self.nexact, optional=True))

    def describe(self) -> str:
        """The settings as text, e.g. ``nprobe=auto, ncandidates=auto, nexact=128``.

        Returns:
            str: each setting, ``auto`` for those chosen by the collection's size.
        """
        def show(v):
            return "auto" if v is None else v
        return f"nprobe={show(self.nprobe)}, ncandidates={show(self.ncandidates)}, nexact={show(self.nexact)}"

    def for_k(self, k: int, n_docs: int = NEXACT_BASE_DOCS) -> "SearchParams":
        """Concrete settings for a top-``k`` search over ``n_docs`` documents.

        Defaults filled in, ``nexact >= k``, ``ncandidates >= 4 * nexact``. Deep rankings lose recall in stage 2:
        on Vaswani, k=1000 gives R@1000 = 0.84 against exhaustive search; ``nexact=2000`` (``nprobe=8``) gives 0.98
        at about 3x the time.

        Args:
            k: results per query.
            n_docs: documents in the collection (sets the default ``nprobe`` and ``nexact``; default 10,000).

        Returns:
            SearchParams: settings with no ``None`` left.
        """
        nexact = max(default_nexact(n_docs) if self.nexact is None else self.nexact, k)
        ncandidates = 4 * nexact if self.ncandidates is None else max(self.ncandidates, 4 * nexact)
        nprobe = default_nprobe(n_docs) if self.nprobe is None else self.nprobe
        return SearchParams(nprobe, ncandidates, nexact)


def pad_queries(queries: list[np.ndarray], codec: ResidualCodec, rows: int | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The queries of a batch, mapped into the codec's query space and stacked, each zero-padded: the query input
    of every kernel of every backend (numba, torch, the shard searchers).

    Each query's real rows go through ``codec.query_space`` (the space of ``centroids`` and ``lut``; see
    :mod:`.codec`), then are padded with zero rows, which score 0 against every document vector and so leave
    MaxSim unchanged: by default to a multiple of ``LANES`` rows (at least ``LANES``: the numba kernels run over
    whole SIMD lanes); with ``rows``, to exactly ``rows`` (the torch batch ``(B, rows, dim)``; every query at most
    that long).

    Args:
        queries: float ``(nq_i, dim)`` per query.
        codec: the index's codec (its ``dim`` and ``query_space``).
        rows: padded rows per query (default: per query, a multiple of ``LANES``).

    Returns:
        tuple: ``(Q (T_pad, dim) float32, q_off (n + 1,) int64 padded row offsets, lens (n,) int64 real lengths)``.
    """
    lens = np.array([len(q) for q in queries], dtype=np.int64)
    padded = np.maximum(LANES, -(-lens // LANES) * LANES) if rows is None else np.full(len(queries), rows)
    q_off = np.zeros(len(queries) + 1, dtype=np.int64)
    np.cumsum(padded, out=q_off[1:])
    Q = np.zeros((int(q_off[-1]), codec.dim), dtype=np.float32)
    for i, q in enumerate(queries):
        if lens[i]:
            Q[q_off[i]:q_off[i] + lens[i]] = codec.query_space(np.asarray(q, dtype=np.float32))
    return Q, q_off, lens


def centroid_scores(reader: IndexReader, Q: np.ndarray) -> np.ndarray:
    """``St = centroids @ Q.T``: float32 ``(K, T)``, one row per centroid (the layout every kernel reads),
    cache-line aligned.

    Centroids that are float16 values (pq codecs, the default) are read as float16
    (:attr:`ResidualCodec.centroid_blocks`: half the bytes that every query reads, 12.6 MB at 16,384 centroids of
    384-d) and scored by :func:`_block_scores` in float32, the centroid blocks split over the thread pool:
    searches of pre-encoded queries at 100,000 documents ran 1.41x faster than with torch's float32 product, more
    than the product alone gains (1.31x), as the stages after it no longer run beside torch's woken OpenMP workers
    (``benchmarks/bench_centroid_scores.py``). Other centroids (and ``Q`` whose rows are not a multiple of
    ``LANES``) go through torch's float32 product rather than numpy's: with the query encoder (torch) and numpy's
    OpenBLAS in one process, each library's worker threads spin after their own products and steal the cores from
    the other's; measured on Vaswani, one query's encoding plus search went from 18-35 ms to 11-14 ms."""
    blocks = reader.codec.centroid_blocks
    K = reader.codec.n_centroids
    Q = np.ascontiguousarray(Q, dtype=np.float32)
    if blocks is not None and len(Q) % LANES == 0:
        n_blocks = len(blocks)
        St = aligned_empty((n_blocks * LANES, len(Q)))
        live = np.any(Q != 0, axis=1)  # zero rows (padding) score 0: not computed
        cols, zero_cols = np.flatnonzero(live), np.flatnonzero(~live)
        n_par = max(1, min(n_threads(), n_blocks * len(cols) // BLOCK_SCORES_MIN_WORK))
        bounds = np.linspace(0, n_blocks, n_par + 1).astype(np.int64)
        Qt = np.ascontiguousarray(Q[cols].T)
        pmap(lambda j: _block_scores(blocks, Qt, St, bounds[j], bounds[j + 1], cols, zero_cols), range(n_par))
        return St[:K]
    return torch_centroid_scores(reader.codec.centroids, Q)


def torch_centroid_scores(centroids: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """``centroids @ Q.T`` by torch's float32 product (MKL): float32 ``(K, T)``, cache-line aligned; what
    :func:`centroid_scores` falls back to (and computed for every index before the float16 blocks)."""
    import torch
    St = aligned_empty((len(centroids), len(Q)))
    torch.mm(torch.from_numpy(centroids), torch.from_numpy(np.ascontiguousarray(Q, dtype=np.float32)).T,
             out=torch.from_numpy(St))
    return St


# Centroid blocks x query tokens below which centroid_scores stays on one thread (about 0.2 ms of work: 16
# centroids x 384 dimensions x 1 token each, ~0.35 us here)
BLOCK_SCORES_MIN_WORK = 512


@numba.njit(cache=True, nogil=True)
def _block_scores(blocks, Qt, St, b0, b1, cols, zero_cols):
    """Rows ``16 b0 : 16 b1`` of ``St``: columns ``cols`` = float16 centroid blocks ``b0:b1`` times ``Qt`` (float32
    sums), columns ``zero_cols`` 0 (:func:`~.simd.centroid_block_scores`)."""
    centroid_block_scores(blocks, Qt, St, b0, b1, cols, zero_cols)


@numba.njit(cache=True, nogil=True)
def _top_probes(St, nq, nprobe):
    """The ``nprobe`` best centroids of each of the first ``nq`` columns of ``St`` ``(K, T)``, best first (ties:
    lower id first), plus the best unprobed one (the imputation of stage 1) when ``K > nprobe``; int32
    ``(nq, min(nprobe + 1, K))``. One pass over ``St`` with an insertion-sorted shortlist per token; a centroid
    that enters no token's full shortlist (most of them) is passed over after one vectorised test of its row."""
    K = St.shape[0]
    width = min(nprobe + 1, K)
    ids = np.empty((nq, width), dtype=np.int32)
    vals = np.full((nq, width), -np.inf, dtype=np.float32)
    filled = np.zeros(nq, dtype=np.int64)
    floor = np.full(nq, np.nan, dtype=np.float32)  # a full shortlist's last value; NaN: not full (all enter)
    for c in range(K):
        enters = False
        for t in range(nq):
            enters |= not St[c, t] <= floor[t]
        if not enters:
            continue
        for t in range(nq):
            s = St[c, t]
            n = filled[t]
            if n == width and s <= vals[t, width - 1]:
                continue
            j = n if n < width else width - 1
            while j > 0 and vals[t, j - 1] < s:
                vals[t, j] = vals[t, j - 1]
                ids[t, j] = ids[t, j - 1]
                j -= 1
            vals[t, j] = s
            ids[t, j] = c
            if n < width:
                filled[t] = n + 1
            if filled[t] == width:
                floor[t] = vals[t, width - 1]
    return ids


@numba.njit(cache=True, nogil=True)
def _probe_candidates(St, nq, probes, nprobe, ivf_offsets, ivf_docs, n_docs, deleted=None, acc=None, mark=None):
    """Stage 1 for one query (``St`` its ``(K, T_pad)`` centroid scores, ``nq`` real tokens, ``probes`` from
    :func:`_top_probes`: ``nprobe`` probed centroids per token, then the imputed one if any); returns the touched
    doc ids (int64) and their approximate scores above the all-miss baseline (float32). ``deleted``: bool
    ``(n_docs,)`` tombstones (or None): deleted documents are never candidates, so search after deletes ranks the
    live documents as an index of only them would. ``acc`` (float32) / ``mark`` (int32): zeroed ``(n_docs,)``
    scratch arrays, left zeroed again (only the touched entries are reset: no O(n_docs) work per query); fresh
    ones when None."""
    nprobe = min(nprobe, probes.shape[1])
    if acc is None or mark is None:
        acc = np.zeros(n_docs, dtype=np.float32)
        mark = np.zeros(n_docs, dtype=np.int32)  # 1 + last token that touched the document; 0 = untouched
    total = 0
    for t in range(nq):
        for p in range(nprobe):
            c = probes[t, p]
            total += ivf_offsets[c + 1] - ivf_offsets[c]
    touched = np.empty(min(total, n_docs), dtype=np.int64)
    n_touched = 0
    for t in range(nq):
        thr = St[probes[t, probes.shape[1] - 1], t]  # imputed score of a miss (all probed: no miss)
        for p in range(nprobe):
            c = probes[t, p]
            gain = St[c, t] - thr
            for x in range(ivf_offsets[c], ivf_offsets[c + 1]):
                d = ivf_docs[x]
                if deleted is not None and deleted[d]:
                    continue
                m = mark[d]
                if m != t + 1:  # first (= best) probed centroid of token t holding document d
                    if m == 0:
                        touched[n_touched] = d
                        n_touched += 1
                    mark[d] = t + 1
                    acc[d] += gain
    ids = touched[:n_touched].copy()
    vals = np.empty(n_touched, dtype=np.float32)
    for j in range(n_touched):
        d = ids[j]
        vals[j] = acc[d]
        acc[d] = 0.0
        mark[d] = 0
    return ids, vals


@numba.njit(cache=True, nogil=True)
def _centroid_interaction(St, cands, offsets, codes):
    """Stage 2: ``sum_t max_j St[codes[j], t]`` over all vectors ``j`` of each candidate; float32 ``(n,)``."""
    out = np.empty(len(cands), dtype=np.float32)
    for j in range(len(cands)):
        d = cands[j]
        v0 = offsets[d]
        v1 = offsets[d + 1]
        out[j] = doc_centroid_maxsim(St, codes, v0, v1) if v1 > v0 else -np.inf
    return out


def adc_table(Q: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Per-byte score table of a zero-padded query ``Q`` ``(T, dim)``: ``L[p, b, t] = sum_k lut[p, b, k] *
    Q[t, p * per + k]``, float32 ``(n_bytes, 256, T)``, cache-line aligned.

    ``lut`` ``(n_bytes, 256, per)``: the reconstruction values of the ``per`` dimensions a residual byte packs.
    Then ``<Q[t], residual> = sum_p L[p, byte_p, t]`` (asymmetric distance computation: never decoded).
    """
    nbytes, nvals, per = lut.shape
    L = aligned_empty((nbytes, nvals, len(Q)))
    np.matmul(lut, np.ascontiguousarray(Q.T).reshape(nbytes, per, len(Q)), out=L)
    return L


@numba.njit(cache=True, nogil=True)
def _exact_adc(St, L, doc_ids, offsets, codes, packed, out, scale=None):
    """Exact MaxSim over compressed vectors: ``out[i] = sum_t max_j (St[code_j, t] + sum_p L[p, byte_jp, t])``
    for the vectors ``j`` of ``doc_ids[i]`` -- the same number as decompressing ``j`` and taking dot products,
    without decompressing (zero-padded query tokens add 0); ``-inf`` for empty documents. ``scale`` (float32
    ``(256,)``, codecs with scale bytes): each vector's sum is multiplied by ``scale[its scale byte]``."""
    for i in range(len(doc_ids)):
        d = doc_ids[i]
        v0 = offsets[d]
        v1 = offsets[d + 1]
        if v1 <= v0:
            out[i] = -np.inf
        elif scale is None:
            out[i] = doc_adc_maxsim(St, L, codes, packed, v0, v1)
        else:
            out[i] = doc_adc_maxsim_scaled(St, L, codes, packed, v0, v1, scale)


def exact_maxsim(reader: IndexReader, query: np.ndarray, doc_ids: np.ndarray, St: np.ndarray | None = None,
                 parallel: bool = True) -> np.ndarray:
    """Exact MaxSim of ``query`` ``(nq, dim)`` against the stored vectors of ``doc_ids``; float32 ``(n,)``.

    Empty documents score ``-inf`` (see :mod:`pyterrier_lateint.maxsim`). ``St``: ``centroids @ Q_pad.T`` of the
    padded query (:func:`pad_queries`: in the codec's query space) if already computed. ``parallel``: split the
    documents over the thread pool. nbits < 16 scores bytes through a per-query table (:func:`adc_table`); nbits=16
    decompresses.
    """
    Qp, _, _ = pad_queries([np.asarray(query, dtype=np.float32)], reader.codec)
    return _exact_padded(reader, Qp, np.ascontiguousarray(doc_ids, dtype=np.int64), St, parallel)


def _exact_padded(reader: IndexReader, Qp: np.ndarray, doc_ids: np.ndarray, St: np.ndarray | None,
                  parallel: bool, tables: list | None = None) -> np.ndarray:
    """:func:`exact_maxsim` of an already padded query ``Qp`` ``(T_pad, dim)`` (:func:`pad_queries`: in the codec's
    query space; zero rows add 0 to MaxSim). ``tables``: :func:`exact_tables` of this query, when already computed
    (shards sharing a codec share them)."""
    if reader.nbits == 16:  # (numba has no float16) decompress into the query's space, then one matrix product
        vectors, offs = reader.decompress_docs(doc_ids, parallel=parallel)
        return maxsim_packed(Qp, reader.codec.query_space(vectors), offs)
    if tables is None:
        tables = exact_tables(reader, Qp, St)
    return _adc_scores(reader, doc_ids, tables, parallel)


def _adc_scores(reader: IndexReader, doc_ids: np.ndarray, tables: list, parallel: bool,
                min_work: int = PARALLEL_MIN_WORK) -> np.ndarray:
    """``sum`` over the query's token groups of :func:`_exact_adc` with ``tables`` (float32: :func:`exact_tables`,
    or float16 bits: :func:`half_tables`); float32 ``(len(doc_ids),)``, the documents split over the thread pool
    when ``parallel`` and the work (table rows to add) reaches ``min_work``."""
    out = np.zeros(len(doc_ids), dtype=np.float32)
    offsets = reader.offsets
    work = int((offsets[doc_ids + 1] - offsets[doc_ids]).sum()) * reader.residuals.shape[1] * len(tables)
    n_par = n_threads() if parallel and work >= min_work else 1
    bounds = np.linspace(0, len(doc_ids), n_par + 1).astype(np.int64)
    codes, packed = reader.codes, reader.residuals
    scale = reader.codec.scale_lut if reader.codec.scaled else None  # per-vector inverse norms (scale bytes)

    def run(j: int) -> None:
        a, b = bounds[j], bounds[j + 1]
        part = np.empty(b - a, dtype=np.float32)
        for St_g, L_g in tables:
            _exact_adc(St_g, L_g, doc_ids[a:b], offsets, codes, packed, part, scale)
            out[a:b] += part  # -inf (empty documents) stays -inf
    pmap(run, range(n_par))
    return out


def half_tables(tables: list[tuple[np.ndarray, np.ndarray]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """The :func:`exact_tables` with each ADC table rounded to float16 (stored as its ``uint16`` bits, cache-line
    aligned): what :func:`exact_top_k` ranks its documents with before the exact rescoring. Half the bytes per
    lookup: a 16-token table of a 384-d, 2-bit codec is 768 kB, inside a 1 MB L2 cache (float32: 1.5 MB, not)."""
    out = []
    for St_g, L_g in tables:
        if L_g.shape[-1] % LANES or not L_g.flags.c_contiguous:
            raise ValueError(f"ADC tables are C-contiguous (n_bytes, 256, T) with T a multiple of {LANES}, "
                             f"not {L_g.shape}: build them with exact_tables()")
        H = aligned_empty(L_g.shape, np.uint16)
        _round_to_half(L_g, H)
        out.append((St_g, H))
    return out


@numba.njit(cache=True, nogil=True)
def _round_to_half(src, dst):
    round_to_half(src, dst)


def _bound_terms(codec: ResidualCodec, Qp: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Shared terms of the error bounds: ``(e, magnitude, s)``. ``e`` float64 ``(T_pad,)``: per token, a bound of
    ``sum_p |L[p, b_p, t]|`` over any bytes (``|L[p, b, t]| <= r[p] |q_tp|``, :attr:`ResidualCodec.norm_bounds`);
    ``magnitude``: a bound of the sum over tokens of ``|St[c, t]| + sum_p |L[p, b_p, t]|`` (``|St[c, t]| <= c |q_t|``);
    ``s``: the largest per-vector scale (1 without scale bytes)."""
    n_bytes, _, per = codec.lut.shape
    c, r = codec.norm_bounds
    Q3 = Qp.reshape(len(Qp), n_bytes, per)
    e = np.sqrt(np.einsum("tpk,tpk->tp", Q3, Q3)) @ r
    magnitude = c * float(np.sqrt(np.einsum("td,td->t", Qp, Qp)).sum()) + float(e.sum())
    return e, magnitude, float(codec.scale_lut.max()) if codec.scaled else 1.0


def half_error_bound(codec: ResidualCodec, Qp: np.ndarray) -> float:
    """An upper bound of ``|MaxSim with half_tables - MaxSim with exact_tables|`` of the padded query ``Qp``
    ``(T_pad, dim)`` against ANY document (float, in score units).

    Per token ``t`` and byte ``p``, every table entry satisfies ``|L[p, b, t]| <= r[p] |q_tp|``
    (:attr:`ResidualCodec.norm_bounds`), and float16 rounds it within ``2**-11`` of its size plus ``2**-25``
    (subnormals); a vector's sum moves by at most ``E_t = 2**-11 sum_p r[p] |q_tp| + n_bytes 2**-25``, its max over
    vectors too, times the largest scale byte. Added: the float32 rounding of both sums (``n_bytes + T_pad + 8``
    additions, each within ``2**-24`` of a magnitude at most ``|q_t| c + sum_p r[p] |q_tp|``, both kernels)."""
    n_bytes = codec.lut.shape[0]
    e, magnitude, s = _bound_terms(codec, Qp)
    rounding = 2.0 ** -11 * float(e.sum()) + n_bytes * 2.0 ** -25 * int(np.count_nonzero(e))
    return (1 + 1e-5) * s * (rounding + 2 * (n_bytes + len(Qp) + 8) * 2.0 ** -24 * magnitude)  # 1e-5: these sums


def int8_error_bound(codec: ResidualCodec, Qp: np.ndarray, err: np.ndarray) -> float:
    """An upper bound of ``|MaxSim with int8_tables - MaxSim with exact_tables|`` of the padded query ``Qp``
    ``(T_pad, dim)`` against ANY document (float, in score units). ``err`` float64 ``(T_pad,)``: per token, a bound of
    the quantisation error of a vector's sum of ``n_bytes`` entries (:func:`int8_tables`: ``n_bytes`` times one
    entry's, half a step plus the quotient's rounding).

    Per vector and token: that error, plus the float16 rounding of ``St[c, t]`` (within ``2**-11 c |q_t| +
    2**-25``); times the largest scale byte, summed over tokens (the max over vectors moves by no more). Added: the
    float32 rounding of both kernels' sums, as in :func:`half_error_bound`, over magnitudes grown by ``err``."""
    n_bytes = codec.lut.shape[0]
    c, _ = codec.norm_bounds
    _, magnitude, s = _bound_terms(codec, Qp)
    total_err = float(err.sum())
    st_rounding = 2.0 ** -11 * c * float(np.sqrt(np.einsum("td,td->t", Qp, Qp)).sum()) + len(Qp) * 2.0 ** -25
    rounding = 2 * (n_bytes + len(Qp) + 8) * 2.0 ** -24 * (magnitude + total_err)
    return (1 + 1e-5) * s * (total_err + st_rounding + rounding)


# The largest bound of |St[c, t]| (c |q_t|) for which int8_tables rounds St to float16, and of a table entry
# (sum_p r[p] |q_tp|) for which exact_top_k makes a float16 pass: float16's largest value is 65504
HALF_ST_MAX = 60_000.0


def int8_tables(codec: ResidualCodec, Qp: np.ndarray, St: np.ndarray, tables: list[tuple[np.ndarray, np.ndarray]]
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float] | None:
    """The first pass of :func:`exact_top_k`: the float32 :func:`exact_tables` of the padded query ``Qp``
    ``(T_pad, dim)`` quantised to int8, one step per token. Returns ``(St16, L8, steps, bound)``: ``St`` ``(K,
    T_pad)`` rounded to float16 (``uint16`` bits), ``L8`` int8 ``(n_bytes, 256, T_pad)`` (cache-line aligned),
    ``steps`` float32 ``(T_pad,)`` with ``L ~ steps[t] * L8``, and :func:`int8_error_bound`; ``None`` when the
    centroid scores could overflow float16 (``c |q_t| >= HALF_ST_MAX``).

    Each token's step is its largest table entry over ``qmax = min(127, 32767 // n_bytes)`` (so a vector's sum of
    ``n_bytes`` entries fits the kernel's int16 sums). A 32-token table of a 384-d, 2-bit codec is 768 kB, the size of
    one 16-token float16 table, and is read once for all 32 tokens (:func:`~.simd.doc_adc8_maxsim`)."""
    c, _ = codec.norm_bounds
    if c * float(np.sqrt(np.einsum("td,td->t", Qp, Qp)).max(initial=0.0)) >= HALF_ST_MAX:
        return None
    n_bytes = codec.lut.shape[0]
    qmax = min(127, 32767 // n_bytes)
    T = len(Qp)
    L8 = aligned_empty((n_bytes, 256, T), np.int8)
    steps = np.empty(T, dtype=np.float32)
    for g, (_, L_g) in enumerate(tables):
        _quantise_int8(L_g, g * LANES, qmax, L8, steps)
    St16 = aligned_empty(St.shape, np.uint16)
    _round_to_half(np.ascontiguousarray(St), St16)
    # each entry within step (1/2 + 2**-16); a padded (zero) token's entries are exactly 0
    err = n_bytes * steps.astype(np.float64) * (0.5 + 2.0 ** -15) * np.any(Qp != 0, axis=1)
    return St16, L8, steps, int8_error_bound(codec, Qp, err)


@numba.njit(cache=True, nogil=True)
def _quantise_int8(L, col, qmax, L8, steps):
    """Columns ``col : col + LANES`` of ``L8`` (viewed as ``(n_bytes * 256, T)``) and ``steps`` from the float32
    table ``L`` ``(n_bytes, 256, LANES)`` (:func:`~.simd.quantise_columns`)."""
    nb, nv, W = L.shape
    quantise_columns(L.reshape(nb * nv, W), qmax, L8.reshape(nb * nv, L8.shape[2]), col, steps)


HALF_MIN_DOCS = 64  # exact_top_k: fewer documents are scored with the float32 tables directly
INT8_MIN_DOCS = 128  # exact_top_k: more documents are first scored with the int8 tables
# exact_top_k's int8 pass only for codecs of at most this many bytes per vector (768-d at 2 bits): the bound grows
# with the bytes (half a step each) while scores spread less, and beyond 258 bytes the steps must shrink to keep the
# int16 sums in range; a 600-d, 4-bit codec (300 bytes) measured a bound of half the best score (tests)
INT8_MAX_BYTES = 192


def exact_top_k(reader: IndexReader, Qp: np.ndarray, doc_ids: np.ndarray, k: int, St: np.ndarray | None = None,
                parallel: bool = True, prepared: Pending | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Stage 3 of an end-to-end search: the ``k`` best of ``doc_ids`` by exact MaxSim over their stored vectors
    (ids int64, scores float32, best first; ties: lower id), for a query padded by :func:`pad_queries` (``Qp``).

    The same result as :func:`~.ranking.top_k` over :func:`exact_padded` of every document, bit for bit, for less:
    a cascade of cheaper tables, each pass scoring every remaining document within a computed bound ``B`` of its
    exact score and keeping only those within ``2B`` of the ``k``-th best (no document of the exact top ``k`` can
    fall below). More than :data:`INT8_MIN_DOCS` documents (codecs of at most :data:`INT8_MAX_BYTES` bytes per
    vector): int8 tables (:func:`int8_tables`; at 100,000 documents, 384 candidates, a median of 21 survive, at
    most 74); then, more than :data:`HALF_MIN_DOCS`: float16 tables (:func:`half_tables`); the survivors are scored
    with the float32 tables, whose scores are returned. nbits=16, short lists, and queries whose scores could
    overflow float16 (token norms ~1e4 and up) skip the passes their tables could not hold. ``prepared``: the
    query's :func:`prepare_tables`, started earlier (:func:`search_plaid` builds them on a worker thread during
    stages 1-2)."""
    doc_ids = np.ascontiguousarray(doc_ids, dtype=np.int64)
    if not _cascade(reader, len(doc_ids), k):
        return top_k(doc_ids, _exact_padded(reader, Qp, doc_ids, St, parallel), k)
    use_int8 = _int8_pass(len(doc_ids), k)
    tables, t8 = prepared.result() if prepared is not None else prepare_tables(reader, Qp, St, use_int8)
    if not use_int8:
        t8 = None
    if t8 is not None:
        doc_ids = _within_bound(doc_ids, _adc8_scores(reader, doc_ids, t8, parallel), k, t8[3])
    if len(doc_ids) > max(k, HALF_MIN_DOCS) and _bound_terms(reader.codec, Qp)[0].max() < HALF_ST_MAX:
        approx = _adc_scores(reader, doc_ids, half_tables(tables), parallel)  # (no entry can overflow float16)
        doc_ids = _within_bound(doc_ids, approx, k, half_error_bound(reader.codec, Qp))
    return top_k(doc_ids, _adc_scores(reader, doc_ids, tables, parallel,
                                      PARALLEL_MIN_WORK if t8 is None else PARALLEL_MIN_WORK_COLD), k)


def _cascade(reader: IndexReader, n_docs: int, k: int) -> bool:
    """Whether :func:`exact_top_k` scores ``n_docs`` documents through its tables' cascade (else all in float32)."""
    return reader.nbits != 16 and n_docs > max(k, HALF_MIN_DOCS)


def _int8_pass(n_docs: int, k: int) -> bool:
    """Whether :func:`exact_top_k`'s cascade over ``n_docs`` documents starts with the int8 tables."""
    return n_docs > max(k, INT8_MIN_DOCS)


def prepare_tables(reader: IndexReader, Qp: np.ndarray, St: np.ndarray | None = None, int8: bool = True
                   ) -> tuple[list[tuple[np.ndarray, np.ndarray]], tuple | None]:
    """The tables :func:`exact_top_k` reads for the padded query ``Qp``: ``(exact_tables, int8_tables)``, the latter
    None when not ``int8``, for codecs of more than :data:`INT8_MAX_BYTES` bytes per vector, or for scores beyond
    float16. ``St``: ``centroids @ Qp.T`` if known."""
    if St is None:
        St = centroid_scores(reader, Qp)
    tables = exact_tables(reader, Qp, St)
    int8 = int8 and reader.codec.lut.shape[0] <= INT8_MAX_BYTES
    return tables, int8_tables(reader.codec, Qp, St, tables) if int8 else None


def _within_bound(doc_ids: np.ndarray, approx: np.ndarray, k: int, bound: float) -> np.ndarray:
    """The documents whose approximate score (each within ``bound`` of the exact one) is within ``2 bound`` of the
    ``k``-th best: a superset of the exact top ``k`` (all of them when fewer than ``k`` are finite)."""
    finite = approx[np.isfinite(approx)]  # empty documents score -inf in every pass
    if len(finite) < k:
        return doc_ids
    kth = float(np.partition(finite, len(finite) - k)[len(finite) - k])
    # in float64: a float32 threshold would round by more than the bound's own margin; NaN (a table overflowed
    # float16 for a huge query) is kept, not compared
    return doc_ids[~(approx.astype(np.float64) < kth - 2 * bound)]


def _adc8_scores(reader: IndexReader, doc_ids: np.ndarray, t8: tuple, parallel: bool) -> np.ndarray:
    """Scores of ``doc_ids`` with :func:`int8_tables` ``t8``: float32 ``(len(doc_ids),)``, each within its bound of
    the exact score; split over the thread pool as :func:`_adc_scores` does."""
    St16, L8, steps, _ = t8
    out = np.empty(len(doc_ids), dtype=np.float32)
    offsets = reader.offsets
    work = int((offsets[doc_ids + 1] - offsets[doc_ids]).sum()) * reader.residuals.shape[1] * -(-len(steps) // 32)
    n_par = n_threads() if parallel and work >= PARALLEL_MIN_WORK else 1
    bounds = np.linspace(0, len(doc_ids), n_par + 1).astype(np.int64)
    codes, packed = reader.codes, reader.residuals
    scale = reader.codec.scale_lut if reader.codec.scaled else None
    pmap(lambda j: _exact_adc8(St16, L8, steps, doc_ids[bounds[j]:bounds[j + 1]], offsets, codes, packed,
                               out[bounds[j]:bounds[j + 1]], scale), range(n_par))
    return out


@numba.njit(cache=True, nogil=True)
def _exact_adc8(St, L8, steps, doc_ids, offsets, codes, packed, out, scale=None):
    """:func:`_exact_adc` with an int8 table ``L8`` in units of ``steps`` (:func:`int8_tables`, kernel
    :func:`~.simd.doc_adc8_maxsim`): every query token at once. (Its own function: in one shared with
    :func:`_exact_adc`, numba types every branch, and the float-table kernels refuse an int8 table.)"""
    for i in range(len(doc_ids)):
        d = doc_ids[i]
        v0 = offsets[d]
        v1 = offsets[d + 1]
        if v1 <= v0:
            out[i] = -np.inf
        elif scale is None:
            out[i] = doc_adc8_maxsim(St, L8, steps, codes, packed, v0, v1)
        else:
            out[i] = doc_adc8_maxsim_scaled(St, L8, steps, codes, packed, v0, v1, scale)


def exact_tables(reader: IndexReader, Qp: np.ndarray, St: np.ndarray | None = None
                 ) -> list[tuple[np.ndarray, np.ndarray]]:
    """The exact stage's inputs for a padded query ``Qp`` ``(T_pad, dim)``: per group of ``LANES`` query tokens,
    its centroid scores ``(K, LANES)`` and ADC table (:func:`adc_table`). ``St``: ``centroids @ Qp.T`` if known.

    One pass per group, each with its own table: MaxSim is a sum over query tokens, so the groups' sums add up to
    the whole. A 384-d, 2-bit table is 1.5 MB per group: one group's stays in a core's L2 cache (2 MB here), two
    interleaved did not, and queries of 17-32 tokens took 3.2x, not 2x, the exact-stage time of shorter ones (the
    p95 tail, benchmarks/bench_tail.py)."""
    if St is None:
        St = centroid_scores(reader, Qp)
    if St.shape[1] != len(Qp) or not St.flags.c_contiguous:
        raise ValueError(f"St must be the C-contiguous (K, {len(Qp)}) scores of the padded query")
    groups = [(g, g + LANES) for g in range(0, len(Qp), LANES)]
    return [(St if len(groups) == 1 else np.ascontiguousarray(St[:, a:b]), adc_table(Qp[a:b], reader.codec.lut))
            for a, b in groups]


def query_slice(St_all: np.ndarray, q_off: np.ndarray, qi: int) -> np.ndarray:
    """Query ``qi``'s columns of a batch's centroid scores ``St_all`` ``(K, T_batch)``, as the aligned contiguous
    ``(K, T_pad)`` array the kernels read (the array itself when the batch is that one query)."""
    if St_all.shape[1] == q_off[qi + 1] - q_off[qi]:
        return St_all
    St = aligned_empty((St_all.shape[0], int(q_off[qi + 1] - q_off[qi])))
    St[:] = St_all[:, q_off[qi]:q_off[qi + 1]]
    return St


_SCRATCH = threading.local()


def _scratch(n_docs: int) -> tuple[np.ndarray, np.ndarray]:
    """This thread's zeroed stage-1 accumulators for an index of ``n_docs`` documents (float32 and int32
    ``(n_docs,)``), kept between queries: allocating fresh ones cost every query O(n_docs) page faults (several ms
    per query for shards of millions of documents, ``benchmarks/estimate_scale.py``)."""
    cache = _SCRATCH.__dict__.setdefault("arrays", {})
    if n_docs not in cache:
        if len(cache) >= 8:  # indexes of many sizes in one thread: keep the memory bounded
            cache.clear()
        cache[n_docs] = (np.zeros(n_docs, dtype=np.float32), np.zeros(n_docs, dtype=np.int32))
    return cache[n_docs]


def stage_candidates(reader: IndexReader, St: np.ndarray, nq: int, p: SearchParams) -> tuple[np.ndarray, np.ndarray]:
    """Stages 0-1 for one query (``St`` its ``(K, T_pad)`` centroid scores, ``nq`` real tokens): probe, walk the
    inverted file, keep the ``p.ncandidates`` best documents (:func:`select_top`); returns their ids (int64,
    unordered) and approximate scores (float32). A document's score depends only on the centroids and its own codes,
    so shards sharing centroids give each document the score a single index would
    (:mod:`pyterrier_lateint.sharded`)."""
    probes = _top_probes(St, nq, p.nprobe)
    acc, mark = _scratch(reader.n_docs)
    ids, approx = _probe_candidates(St, nq, probes, p.nprobe, reader.ivf_offsets, reader.ivf_docs, reader.n_docs,
                                    getattr(reader, "deleted", None), acc, mark)
    if len(ids) <= p.ncandidates:
        return ids, approx
    keep = select_top_positions(ids, approx, p.ncandidates)
    return ids[keep], approx[keep]


# Candidates from which stage 2 of one query is split over the thread pool (stage_interaction(parallel=True)): at
# 100,000 documents (1,536 candidates) the split measured 1.07x faster searches, the worker being free by then
INTERACTION_PARALLEL_MIN = 512


def stage_interaction(reader: IndexReader, St: np.ndarray, ids: np.ndarray, parallel: bool = False) -> np.ndarray:
    """Stage 2 (centroid interaction) scores of documents ``ids`` for one query: float32 ``(len(ids),)``;
    ``parallel``: split over the thread pool from :data:`INTERACTION_PARALLEL_MIN` documents."""
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    if not parallel or len(ids) < INTERACTION_PARALLEL_MIN:
        return _centroid_interaction(St, ids, reader.offsets, reader.codes)
    out = np.empty(len(ids), dtype=np.float32)
    bounds = np.linspace(0, len(ids), n_threads() + 1).astype(np.int64)

    def run(j: int) -> None:
        out[bounds[j]:bounds[j + 1]] = _centroid_interaction(St, ids[bounds[j]:bounds[j + 1]], reader.offsets,
                                                             reader.codes)
    pmap(run, range(n_threads()))
    return out


def exact_padded(reader: IndexReader, Qp: np.ndarray, doc_ids: np.ndarray, St: np.ndarray | None = None,
                 parallel: bool = True, tables: list | None = None) -> np.ndarray:
    """Stage 3: :func:`exact_maxsim` of a query already zero-padded by :func:`pad_queries` (``Qp`` its rows);
    ``tables``: its :func:`exact_tables`, if already computed."""
    return _exact_padded(reader, Qp, np.ascontiguousarray(doc_ids, dtype=np.int64), St, parallel, tables)


def search_plaid(reader: IndexReader, queries: list[np.ndarray], k: int,
                 params: SearchParams = SearchParams()) -> list[tuple[np.ndarray, np.ndarray]]:
    """End-to-end search of a batch of queries; returns per query ``(doc_ids int64, scores float32)``, best first.

    Scores are exact MaxSim over the stored vectors (no score divisor applied).
    """
    p = params.for_k(k, reader.n_live)
    n_q = len(queries)
    if n_q == 0:
        return []
    Q, q_off, lens = pad_queries(queries, reader.codec)
    St_all = centroid_scores(reader, Q)  # one matrix product for the batch

    def search_one(qi: int, parallel: bool) -> tuple[np.ndarray, np.ndarray]:
        St = query_slice(St_all, q_off, qi)
        Qp = Q[q_off[qi]:q_off[qi + 1]]
        # the exact stage's tables depend on the query alone: one query's are built by a worker during stages 1-2
        prepared = spawn(lambda: prepare_tables(reader, Qp, St, _int8_pass(p.nexact, k))) \
            if parallel and _cascade(reader, p.nexact, k) else None
        c, approx = stage_candidates(reader, St, int(lens[qi]), p)
        if len(c) > p.nexact:
            c = select_top(c, stage_interaction(reader, St, c, parallel), p.nexact)
        c = np.sort(c)  # sequential reads of the memory-mapped vectors
        return exact_top_k(reader, Qp, c, k, St, parallel, prepared)

    if n_q == 1:  # one query: its exact stage may use the pool
        return [search_one(0, True)]
    return pmap(lambda qi: search_one(qi, False), range(n_q))


def search_exhaustive(reader: IndexReader, queries: list[np.ndarray], k: int,
                      chunk_vectors: int = 2 ** 16) -> list[tuple[np.ndarray, np.ndarray]]:
    """Brute-force exact MaxSim of every query against every (decompressed) live document; same output as
    :func:`search_plaid` (a query with no vectors gets no results). Decompresses each chunk (whole documents,
    about ``chunk_vectors`` vectors: :func:`~.chunks.doc_chunks`) once for the whole batch, into the queries' space
    (:func:`pad_queries`, without its zero rows); deleted documents are skipped."""
    n_q = len(queries)
    best = [(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)) for _ in range(n_q)]
    if n_q == 0:
        return best
    codec = reader.codec
    Qp, p_off, q_lens = pad_queries(queries, codec)
    q_off = np.zeros(n_q + 1, dtype=np.int64)  # the real rows only: padding would only add products
    np.cumsum(q_lens, out=q_off[1:])
    Q = Qp[np.repeat(p_off[:-1] - q_off[:-1], q_lens) + np.arange(q_off[-1])]
    deleted = getattr(reader, "deleted", None)
    for d0, d1 in doc_chunks(np.asarray(reader.offsets), chunk_vectors):
        ids = np.arange(d0, d1, dtype=np.int64)
        if deleted is not None:
            ids = ids[~deleted[d0:d1]]
            if len(ids) == 0:
                continue
        vectors, offs = reader.decompress_docs(ids)
        lens = np.diff(offs)
        nonempty = lens > 0
        if nonempty.any():
            sims = Q @ codec.query_space(vectors).T  # (T, n_vec)
            per_tok = np.maximum.reduceat(sims, offs[:-1][nonempty], axis=1)  # (T, n_nonempty)
            for qi in range(n_q):
                if q_off[qi] == q_off[qi + 1]:  # a query without vectors retrieves nothing, as in search_plaid
                    continue
                s = np.full(len(ids), EMPTY_DOC_SCORE, dtype=np.float32)
                s[nonempty] = per_tok[q_off[qi]:q_off[qi + 1]].sum(axis=0)
                prev_ids, prev_scores = best[qi]
                best[qi] = top_k(np.concatenate([prev_ids, ids]), np.concatenate([prev_scores, s]), k)
    return best
