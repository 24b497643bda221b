"""Pruning: fewer query vectors at search time, fewer document vectors at indexing time.

- **Query-embedding pruning** (Tonellotto & Macdonald, CIKM 2021): keep the ``n`` query vectors whose token is
  rarest in the collection (lowest collection frequency, from the index's token statistics, :mod:`.token_stats`),
  or the first ``n`` by position; ``index.retriever(model, query_pruning=8)``. Fewer query tokens mean fewer
  probes and cheaper exact scoring.
- **Token pooling** (Clavié et al., 2024): merge similar vectors of each document before indexing (Ward
  hierarchical clustering to ``ceil(n / pool_factor)`` clusters, each replaced by its mean, re-normalised), so the
  index stores about ``1 / pool_factor`` of the vectors: ``index.indexer(model, pool_factor=2)`` or
  ``model.doc_encoder() >> TokenPooler(2) >> index.indexer(model)``. Each pooled vector keeps the token id of its
  cluster's member nearest to it.
"""
from __future__ import annotations

import logging
import math
from typing import Callable, Optional, Sequence

import numpy as np
import pandas as pd
import pyterrier as pt

from ..base import ConfigEquality
from .queries import query_vectors
from .token_stats import TokenStats

logger = logging.getLogger(__name__)

PRUNE_BY = ("cf", "position")


# ------------------------------------------------------------------------------------------------ query pruning
def check_query_pruning(keep: Optional[int], by: str) -> None:
    """``ValueError`` naming the problem for a bad ``query_pruning`` / ``query_pruning_by``."""
    if keep is not None and (not isinstance(keep, (int, np.integer)) or keep < 1):
        raise ValueError(f"query_pruning must be a number of query vectors to keep (>= 1) or None, not {keep!r}")
    if by not in PRUNE_BY:
        raise ValueError(f"query_pruning_by must be one of {PRUNE_BY}, not {by!r}")


def kept_positions(ids: Optional[np.ndarray], n: int, keep: int, by: str, stats: Optional[TokenStats]) -> np.ndarray:
    """Positions (ascending) of the ``keep`` query vectors kept out of ``n``: lowest collection frequency of their
    token ``ids`` first (ties: earlier position), or the first ``keep`` (``by="position"``)."""
    if keep >= n:
        return np.arange(n)
    if by == "position":
        return np.arange(keep)
    order = np.lexsort((np.arange(n), stats.cf(np.asarray(ids, dtype=np.int64))))
    return np.sort(order[:keep])


def pruned_query_vectors(model, frame: pd.DataFrame, batch_size: int, dim: int, keep: int, by: str,
                         stats: Callable[[], TokenStats]) -> list[np.ndarray]:
    """The query vectors of ``frame`` (as :func:`~.queries.query_vectors`), each cut to ``keep`` vectors.

    ``by="cf"`` needs each query's token ids: the ``query_toks`` column next to ``query_embs``, or ``query`` encoded
    by ``model`` with ids, and the collection's token statistics (``stats()``: read only then). Tokens absent from
    the collection have frequency 0 and are kept first.
    """
    if by == "position":
        vecs = query_vectors(model, frame, batch_size, dim)
        return [v[kept_positions(None, len(v), keep, by, None)] for v in vecs]
    stats = stats()
    if "query_embs" in frame.columns:
        if "query_toks" not in frame.columns:
            raise ValueError("query_pruning by collection frequency needs the query token ids: give 'query' text, or "
                             "'query_toks' next to 'query_embs' (model.query_encoder(token_ids=True)); or use "
                             "query_pruning_by='position'")
        vecs = query_vectors(model, frame, batch_size, dim)
        ids = [np.asarray(t, dtype=np.int64) for t in frame["query_toks"]]
    elif model is None:
        raise ValueError("the input has no 'query_embs' and no model was given to encode 'query'; pass the indexing "
                         "model, e.g. index.retriever(model, query_pruning=8)")
    else:
        vecs, ids = model.encode_queries(frame["query"].tolist(), batch_size=batch_size, return_ids=True)
        vecs = [np.asarray(v, dtype=np.float32) for v in vecs]
    out = []
    for v, i in zip(vecs, ids):
        if len(i) != len(v):
            raise ValueError(f"{len(i)} query token ids for {len(v)} query vectors")
        out.append(v[kept_positions(i, len(v), keep, by, stats)])
    return out


# ------------------------------------------------------------------------------------------------ token pooling
def pool_vectors(vectors: np.ndarray, pool_factor: float, token_ids: Optional[np.ndarray] = None,
                 normalize: bool = True) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """Pool one document's vectors ``(n, dim)`` into ``ceil(n / pool_factor)``: Ward hierarchical clustering, each
    cluster replaced by its mean (L2-normalised with ``normalize``), clusters ordered by their first member.

    Returns ``(pooled float32 (m, dim), ids int32 (m,) or None)``: each pooled vector's token id is that of the
    cluster member nearest to it. ``pool_factor <= 1`` or ``n <= 2`` returns the input unchanged.
    """
    v = np.asarray(vectors, dtype=np.float32)
    n = len(v)
    m = max(1, math.ceil(n / pool_factor)) if pool_factor > 1 else n
    if m >= n or n <= 2:
        return v, (None if token_ids is None else np.asarray(token_ids, dtype=np.int32))
    from scipy.cluster.hierarchy import fcluster, linkage
    labels = fcluster(linkage(v.astype(np.float64), method="ward"), t=m, criterion="maxclust")
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.argsort(np.argsort(first))  # clusters renumbered by their first member's position
    cluster = rank[inverse]
    k = len(first)
    sums = np.zeros((k, v.shape[1]), dtype=np.float64)
    np.add.at(sums, cluster, v)
    pooled = sums / np.bincount(cluster, minlength=k)[:, None]
    if normalize:
        pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
    pooled = pooled.astype(np.float32)
    ids = None
    if token_ids is not None:
        token_ids = np.asarray(token_ids, dtype=np.int32)
        sims = (v * pooled[cluster]).sum(axis=1)  # each member's similarity to its own cluster's vector
        best = np.full(k, -np.inf)
        ids = np.zeros(k, dtype=np.int32)
        for j in range(n):  # n <= a few hundred: the nearest member of each cluster (first on ties)
            if sims[j] > best[cluster[j]]:
                best[cluster[j]], ids[cluster[j]] = sims[j], token_ids[j]
    return pooled, ids


class TokenPooler(ConfigEquality, pt.Transformer):
    """Frame with ``doc_embs`` (and optionally ``doc_toks``) -> the same frame with each document's vectors pooled to
    about ``1 / pool_factor`` of them (:func:`pool_vectors`). ``stats()`` reports the vectors seen and kept so far:
    ``model.doc_encoder() >> TokenPooler(2) >> index.indexer(model)``.

    Args:
        pool_factor: each document keeps ``ceil(n / pool_factor)`` vectors (>= 1; default 2; 1 keeps them all).
        normalize: L2-normalise each pooled mean (default True).

    Raises:
        ValueError: when ``pool_factor`` is below 1.
    """

    def __init__(self, pool_factor: float = 2, normalize: bool = True):
        if not pool_factor >= 1:
            raise ValueError(f"pool_factor must be >= 1 (1 keeps every vector), not {pool_factor!r}")
        self.pool_factor = pool_factor
        self.normalize = normalize
        self.n_in = 0
        self.n_out = 0

    def _config(self) -> tuple:
        return (self.pool_factor, self.normalize)

    def __repr__(self) -> str:
        return f"TokenPooler({self.pool_factor})"

    def pool(self, vecs: Sequence[np.ndarray], ids: Optional[Sequence[np.ndarray]] = None
             ) -> tuple[list[np.ndarray], Optional[list[np.ndarray]]]:
        """Pool each document of a batch: ``vecs`` ``(n_i, dim)`` each, ``ids`` their token ids (or ``None``)."""
        out_v, out_i = [], [] if ids is not None else None
        for j, v in enumerate(vecs):
            p, i = pool_vectors(v, self.pool_factor, None if ids is None else ids[j], self.normalize)
            self.n_in += len(v)
            self.n_out += len(p)
            out_v.append(p)
            if out_i is not None:
                out_i.append(i)
        return out_v, out_i

    def stats(self) -> dict:
        """``{"pool_factor", "vectors_in", "vectors_out", "fraction_removed"}`` over everything pooled so far."""
        return {"pool_factor": self.pool_factor, "vectors_in": int(self.n_in), "vectors_out": int(self.n_out),
                "fraction_removed": round(1 - self.n_out / self.n_in, 4) if self.n_in else 0.0}

    def take_stats(self) -> dict:
        """:meth:`stats`, then the counters start again (one index build's numbers)."""
        out = self.stats()
        self.n_in = self.n_out = 0
        return out

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        """Pool every document's vectors (and token ids, when ``doc_toks`` is present).

        Args:
            inp: a frame with ``doc_embs`` (float32 ``(n_tokens, dim)`` each) and optionally ``doc_toks``.

        Returns:
            pandas.DataFrame: ``inp`` with pooled ``doc_embs`` (and ``doc_toks``).
        """
        pt.validate.columns(inp, includes=["doc_embs"])
        ids = inp["doc_toks"].tolist() if "doc_toks" in inp.columns else None
        vecs, ids = self.pool(inp["doc_embs"].tolist(), ids)
        out = inp.assign(doc_embs=pd.Series(vecs, index=inp.index, dtype=object))
        if ids is not None:
            out = out.assign(doc_toks=pd.Series(ids, index=inp.index, dtype=object))
        logger.debug("%r: %s", self, self.stats())
        return out


def pool_batch(cfg, vecs: list, ids: Optional[list]) -> tuple[list, Optional[list]]:
    """The indexer's pooling hook: ``cfg.pooler`` (a :class:`TokenPooler`, set by ``indexer(pool_factor=...)``)
    applied to one batch, or the batch unchanged."""
    pooler = getattr(cfg, "pooler", None)
    if pooler is None:
        return vecs, ids
    return pooler.pool(vecs, ids)
