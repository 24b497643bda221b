"""ColBERT-PRF: pseudo-relevance feedback for late interaction (Wang, Macdonald, Tonellotto, Ounis; ICTIR 2021).

For each query of a result frame:

1. the stored vectors of its top ``fb_docs`` documents (decompressed from the index) are clustered by k-means into
   ``k`` centroids (seeded: deterministic);
2. each centroid takes the token id of the feedback vector nearest to it (L2), and that token's
   ``idf = log((n_docs + 1) / (df + 1))`` from the index's token statistics (:mod:`.token_stats`);
3. the ``fb_embs`` centroids of highest IDF are appended to the query vectors with weight ``beta * idf``;
4. the expanded query retrieves again from the index (``rerank=False``) or re-scores the same documents
   (``rerank=True``).

The score is MaxSim with weighted query vectors, ``sum_i w_i max_j <q_i, d_j>`` (``w = 1`` for the original query
vectors). Since ``max_j <w q, d_j> = w max_j <q, d_j>`` for ``w >= 0``, the weights are folded into the vectors
(``w_i q_i``) and every search kernel computes the weighted score unchanged; the output's ``query_embs`` column
holds those weighted vectors, so ``index.scorer()`` or ``MaxSimScorer()`` downstream score with the expanded query.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Iterator, Optional, Protocol

import numpy as np
import pandas as pd
import pyterrier as pt

from ..base import ConfigEquality, check_int, rank_results
from ..models import LateInteractionModel, check_model, model_key
from .backends import SearchBackend, select_backend
from .handle import IndexHandle
from .kmeans import assign_nearest, kmeans
from .queries import query_vectors, score_divisor, validate_results
from .retriever import search_params
from .token_stats import TokenStats, load_token_stats

# the advice when the feedback documents are not (live) documents of this index
PRF_DOCNO_FIX = ("ColBERT-PRF reads the feedback documents' vectors from its own index: put it after a retriever "
                 "of the same index (index.retriever() >> index.prf()), and re-run the retriever after deleting "
                 "documents")


logger = logging.getLogger(__name__)

# columns not carried to the output's query part (query_toks: the ids of the original query vectors only)
RESULT_ONLY = ("docno", "docid", "score", "rank", "text", "doc_embs", "doc_toks", "query_embs", "query_toks",
               "prf_toks", "prf_weights")


@contextmanager
def _one_torch_thread() -> Iterator[None]:
    """Torch on one thread for the duration: k-means over a few hundred feedback vectors is made of tiny tensor
    operations, each of which costs ~5 ms of thread-pool wake-up with 2 threads (10 us with one)."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def expansion_embeddings(fb_vecs: np.ndarray, fb_ids: np.ndarray, stats: TokenStats, *, n_clusters: int,
                         fb_embs: int, beta: float, seed: int = 42, iters: int = 20
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Steps 1-3 for one query: feedback vectors ``(n, dim)`` with their token ids ``(n,)`` -> ``(weighted
    expansion vectors (m, dim) float32, token ids (m,) int32, weights (m,) float32)``, ``m = min(fb_embs,
    n_clusters, n)``, ordered by decreasing IDF (ties: centroid order). ``n_clusters`` is lowered to ``n`` when there
    are fewer vectors."""
    fb_vecs = np.ascontiguousarray(fb_vecs, dtype=np.float32)
    n = len(fb_vecs)
    if n == 0 or fb_embs == 0:
        return np.zeros((0, fb_vecs.shape[1]), np.float32), np.zeros(0, np.int32), np.zeros(0, np.float32)
    with _one_torch_thread():
        centroids = kmeans(fb_vecs, min(n_clusters, n), iters=iters, seed=seed, use_faiss=False)
        nearest = assign_nearest(centroids, fb_vecs)  # the feedback vector nearest to each centroid
    toks = np.asarray(fb_ids, dtype=np.int64)[nearest]
    idf = stats.idf(toks)
    keep = np.lexsort((np.arange(len(idf)), -idf))[:fb_embs]
    weights = (beta * idf[keep]).astype(np.float32)
    return centroids[keep] * weights[:, None], toks[keep].astype(np.int32), weights


class FeedbackSource(Protocol):
    """What ColBERT-PRF needs of an index (a structural protocol): its dimension and token statistics, the stored
    vectors and token ids of feedback documents, and searching or exactly scoring with the expanded queries. Scores
    are raw MaxSim (not divided by the model's ``score_divisor``); ``ids`` are the source's document ids."""

    dim: int

    def token_stats(self) -> TokenStats:
        """The index's token statistics (``ValueError`` when it stores no token ids)."""

    def feedback(self, docnos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The stored vectors ``(n, dim)`` and token ids ``(n,)`` of ``docnos``, documents in id order."""

    def doc_ids(self, docnos: np.ndarray) -> np.ndarray:
        """Ids (int64) of ``docnos``; ``KeyError`` naming unknown ones."""

    def search(self, queries: list[np.ndarray], k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per query: its top ``k`` ``(docnos, raw scores)``, best first."""

    def exact(self, query: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Raw MaxSim (float32) of ``query`` against the documents ``ids`` (sorted, unique)."""


class IndexSource:
    """:class:`FeedbackSource` of one :class:`~pyterrier_lateint.ColBERTIndex` (its reader and search backend)."""

    def __init__(self, reader, backend: SearchBackend, params, mode: str):
        self.reader, self.backend, self.params, self.mode = reader, backend, params, mode
        self.dim = reader.dim

    def token_stats(self) -> TokenStats:
        return load_token_stats(self.reader, "ColBERT-PRF")

    def feedback(self, docnos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r = self.reader
        fb = np.sort(r.doc_ids(docnos, fix=PRF_DOCNO_FIX))
        vecs, _ = r.decompress_docs(fb)
        ids = np.concatenate([np.asarray(r.token_ids[r.offsets[d]:r.offsets[d + 1]]) for d in fb])
        return vecs, ids

    def doc_ids(self, docnos: np.ndarray) -> np.ndarray:
        return self.reader.doc_ids(docnos, fix=PRF_DOCNO_FIX)

    def search(self, queries: list[np.ndarray], k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        if self.mode == "exhaustive":
            res = self.backend.exhaustive(self.reader, queries, k)
        else:
            res = self.backend.plaid(self.reader, queries, k, self.params)
        return [(np.asarray(self.reader.docnos.fwd.lookup(ids)) if len(ids) else np.array([], dtype=str), sc)
                for ids, sc in res]

    def exact(self, query: np.ndarray, ids: np.ndarray) -> np.ndarray:
        return self.backend.exact(self.reader, query, ids)


DEFAULT_CLUSTERS = 24


def prf_clusters(n_clusters: Optional[int], k: Optional[int]) -> int:
    """The checked number of clusters from ``n_clusters`` and its alias ``k`` (pyterrier_colbert's name): either,
    the same value twice, or neither (:data:`DEFAULT_CLUSTERS`)."""
    if n_clusters is not None and k is not None and n_clusters != k:
        raise ValueError(f"n_clusters={n_clusters!r} and k={k!r} name the same setting (k is pyterrier_colbert's "
                         f"name for the number of clusters); give one")
    value = n_clusters if n_clusters is not None else k if k is not None else DEFAULT_CLUSTERS
    return check_int("n_clusters", value)


class ColBERTPRF(ConfigEquality, pt.Transformer):
    """Result frame (``qid``, ``docno``, ``rank`` or ``score``, and ``query`` or ``query_embs``) -> results for the
    query expanded by ColBERT-PRF (module docstring).

    ``rerank=False``: the top ``num_results`` documents of the expanded query from the index (``mode``,
    ``nprobe``, ``ncandidates``, ``nexact``, ``backend``, ``device`` as :meth:`ColBERTIndex.retriever`);
    ``rerank=True``: the input's documents re-scored by exact MaxSim of the expanded query over their stored vectors
    (the top ``num_results`` kept). Output: ``qid``, the input's query columns (``query``, ...), ``query_embs``
    (the weighted expanded query vectors), ``prf_toks`` / ``prf_weights`` (token id and weight of each expansion
    vector), ``docno``, ``score`` (divided by the model's ``score_divisor`` of the original query length), ``rank``;
    with ``rerank`` every input column is kept. ``% k`` fuses into ``num_results``. Usually made by
    :meth:`ColBERTIndex.prf <pyterrier_lateint.ColBERTIndex.prf>`.

    Args:
        index: the index (built with ``store_token_ids=True``) holding the feedback documents.
        model: encodes ``query`` when the frame has no ``query_embs``.
        fb_docs: feedback documents per query (default 3).
        fb_embs: expansion vectors, between 0 and ``n_clusters`` (default 10).
        beta: weight of the expansion vectors (>= 0; default 1.0).
        n_clusters: k-means clusters of the feedback vectors (default 24).
        rerank: re-score the input's documents instead of retrieving again (default False).
        num_results: documents per query (default 1000).
        seed: seed of the clustering (default 42).
        kmeans_iters: k-means iterations (default 20).
        mode: ``"plaid"`` (default) or ``"exhaustive"`` for the second retrieval.
        nprobe: as :meth:`ColBERTIndex.retriever <pyterrier_lateint.ColBERTIndex.retriever>`'s.
        ncandidates: as the retriever's.
        nexact: as the retriever's.
        batch_size: queries searched together (default 64).
        backend: ``"numba"``, ``"torch"`` or ``None`` (automatic).
        device: a torch device string for the torch backend.
        verbose: show a progress bar over the queries.
        k: pyterrier_colbert's name of ``n_clusters`` (``ColbertPRF(k=24)``), taken for it.

    Raises:
        TypeError: when an integer setting is not an int.
        ValueError: on a setting out of range, ``fb_embs > n_clusters``, a negative ``beta``, a bad mode or backend,
            or ``k`` and ``n_clusters`` both given and different.

    Example:
        .. code-block:: python

            prf = index.retriever(num_results=10) >> index.prf(fb_docs=3, fb_embs=10)   # a ColBERTPRF
    """

    def __init__(self, index: IndexHandle, model: Optional[LateInteractionModel] = None, *, fb_docs: int = 3,
                 fb_embs: int = 10, beta: float = 1.0, n_clusters: Optional[int] = None, rerank: bool = False,
                 num_results: int = 1000, seed: int = 42, kmeans_iters: int = 20, mode: str = "plaid",
                 nprobe: Optional[int] = None, ncandidates: Optional[int] = None, nexact: Optional[int] = None,
                 batch_size: int = 64, backend: Optional[str] = None, device: Optional[str] = None,
                 verbose: bool = False, k: Optional[int] = None):
        k = prf_clusters(n_clusters, k)
        fb_docs = check_int("fb_docs", fb_docs)
        num_results = check_int("num_results", num_results)
        fb_embs, kmeans_iters = check_int("fb_embs", fb_embs, 0), check_int("kmeans_iters", kmeans_iters)
        batch_size = check_int("batch_size", batch_size)
        if not 0 <= fb_embs <= k:
            raise ValueError(f"fb_embs ({fb_embs}) must be between 0 and the number of clusters n_clusters ({k})")
        if not beta >= 0:
            raise ValueError(f"beta must be >= 0 (it weights the expansion vectors), not {beta!r}")
        self.index = index
        self.model = check_model(model, "ColBERTPRF")
        self.fb_docs, self.fb_embs, self.beta, self.n_clusters = fb_docs, fb_embs, float(beta), k
        self.rerank, self.num_results, self.seed, self.kmeans_iters = rerank, num_results, seed, kmeans_iters
        self.mode = mode
        self.params = search_params(mode, num_results, nprobe, ncandidates, nexact)
        self.batch_size = batch_size
        self.backend: SearchBackend = select_backend(backend, device)
        self.verbose = verbose

    def _config(self) -> tuple:
        return (str(self.index.path), model_key(self.model), self.fb_docs, self.fb_embs, self.beta, self.n_clusters,
                self.rerank, self.num_results, self.seed, self.kmeans_iters, self.mode, self.params,
                self.backend.name, self.backend.device)

    def __repr__(self) -> str:
        return (f"ColBERTPRF({str(self.index.path)!r}, fb_docs={self.fb_docs}, fb_embs={self.fb_embs}, "
                f"beta={self.beta}, n_clusters={self.n_clusters}, rerank={self.rerank}, "
                f"num_results={self.num_results})")

    def _settings(self) -> dict:
        """This transformer's settings, as its constructor takes them (index and model apart)."""
        p = self.params
        return dict(fb_docs=self.fb_docs, fb_embs=self.fb_embs, beta=self.beta, n_clusters=self.n_clusters,
                    rerank=self.rerank, num_results=self.num_results, seed=self.seed, kmeans_iters=self.kmeans_iters,
                    mode=self.mode, nprobe=p.nprobe, ncandidates=p.ncandidates, nexact=p.nexact,
                    batch_size=self.batch_size, backend=self.backend.name, device=self.backend.device,
                    verbose=self.verbose)

    def fuse_rank_cutoff(self, k: int) -> Optional[pt.Transformer]:
        """``prf % k`` -> the same transformer with ``num_results=k`` (when ``k`` is smaller)."""
        if k >= self.num_results:
            return None
        return type(self)(self.index, self.model, **{**self._settings(), "num_results": k})

    # ------------------------------------------------------------------------------------------------ transform
    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        """Expand every query of ``inp`` from its top documents and retrieve (or re-score) again.

        Args:
            inp: results with ``qid``, ``docno``, ``rank`` or ``score``, and ``query`` or ``query_embs``.

        Returns:
            pandas.DataFrame: see the class description for the columns.

        Raises:
            ValueError: when the index stores no token ids.
            KeyError: when a feedback docno is not a live document of this index.
        """
        validate_results(inp)
        src = self._source()
        self.index.check_model(self.model)
        stats = src.token_stats()
        query_cols = [c for c in inp.columns if c == "qid" or (c.startswith("query") and c not in RESULT_ONLY)]
        if self.rerank:
            out_cols = list(dict.fromkeys([c for c in inp.columns if c != "query_toks"] +
                                          ["query_embs", "prf_toks", "prf_weights", "score", "rank"]))
        else:
            out_cols = query_cols + ["query_embs", "prf_toks", "prf_weights", "docno", "score", "rank"]
        if len(inp) == 0:
            return pd.DataFrame(columns=out_cols)
        inp = inp.reset_index(drop=True)
        if "rank" in inp.columns or "score" in inp.columns:  # feedback: the best ranked (else the first) rows
            by_rank = "rank" in inp.columns
            order = inp.sort_values(["qid", "rank" if by_rank else "score"], ascending=[True, by_rank], kind="stable")
        else:
            order = inp.sort_values("qid", kind="stable")
        groups = order.groupby("qid", sort=False).indices  # positions into `order`, best first
        qids = list(groups)
        first = order.iloc[[groups[q][0] for q in qids]]
        q_vecs = query_vectors(self.model, first, self.batch_size, src.dim)
        expanded, toks, weights = [], [], []
        it = pt.tqdm(qids, desc=repr(self), unit="query", disable=not self.verbose)
        for q, qv in zip(it, q_vecs):
            vecs, ids = src.feedback(order["docno"].to_numpy()[groups[q][:self.fb_docs]])
            e, t, w = expansion_embeddings(vecs, ids, stats, n_clusters=self.n_clusters, fb_embs=self.fb_embs,
                                           beta=self.beta,
                                           seed=self.seed, iters=self.kmeans_iters)
            expanded.append(np.concatenate([qv, e]).astype(np.float32))
            toks.append(t)
            weights.append(w)
        divisors = [score_divisor(self.model, len(qv)) for qv in q_vecs]
        per_query = pd.DataFrame({"qid": qids, "query_embs": expanded, "prf_toks": toks, "prf_weights": weights})
        if self.rerank:
            return self._rerank(inp, per_query, divisors, src, out_cols)
        return self._retrieve(first, per_query, divisors, src, query_cols, out_cols)

    def _source(self) -> "FeedbackSource":
        """Where the feedback vectors come from and the expanded queries are searched: this index."""
        return IndexSource(self.index.reader(), self.backend, self.params, self.mode)

    def _retrieve(self, first: pd.DataFrame, per_query: pd.DataFrame, divisors: list, src: "FeedbackSource",
                  query_cols: list, out_cols: list) -> pd.DataFrame:
        frames = []
        for s in range(0, len(per_query), self.batch_size):
            vecs = per_query["query_embs"].iloc[s:s + self.batch_size].tolist()
            for j, (docnos, scores) in enumerate(src.search(vecs, self.num_results)):
                i = s + j
                frames.append(pd.DataFrame({
                    "docno": docnos, "score": scores.astype(np.float64) / divisors[i],
                    "rank": np.arange(len(docnos), dtype=np.int64), "_q": i}))
        res = pd.concat(frames, ignore_index=True)
        head = pd.concat([first[query_cols].reset_index(drop=True).drop(columns=["query_embs"], errors="ignore"),
                          per_query.drop(columns=["qid"])], axis=1)
        out = head.iloc[res["_q"].to_numpy()].reset_index(drop=True)
        return pd.concat([out, res.drop(columns=["_q"])], axis=1)[out_cols]

    def _rerank(self, inp: pd.DataFrame, per_query: pd.DataFrame, divisors: list, src: "FeedbackSource",
                out_cols: list) -> pd.DataFrame:
        ids = src.doc_ids(inp["docno"].to_numpy())
        scores = np.empty(len(inp), dtype=np.float64)
        rows_of = inp.groupby("qid", sort=False).indices
        for i, (q, qv) in enumerate(zip(per_query["qid"], per_query["query_embs"])):
            rows = rows_of[q]
            uniq, inv = np.unique(ids[rows], return_inverse=True)
            scores[rows] = src.exact(qv, uniq)[inv].astype(np.float64) / divisors[i]
        extra = per_query.set_index("qid").loc[inp["qid"]].reset_index(drop=True)
        out = inp.drop(columns=[c for c in extra.columns if c in inp.columns]).assign(
            **{c: extra[c].to_numpy() for c in extra.columns}, score=scores)
        out = rank_results(out)
        return out[out["rank"] < self.num_results].reset_index(drop=True)[out_cols]
