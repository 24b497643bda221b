"""End-to-end retrieval and re-ranking over a sharded index, as PyTerrier transformers."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Optional, Union

import numpy as np
import pandas as pd
import pyterrier as pt

from ..base import ConfigEquality, check_int
from ..index.queries import query_vectors, validate_queries, validate_results
from ..index.retriever import retrieve_in_batches, search_params
from ..index.scorer import check_on_unknown, score_in_batches
from ..index.search import SearchParams, pad_queries
from ..models import LateInteractionModel, check_model, model_key
from .executors import check_executor_settings
from .search import Results, merge_candidates, merge_top_k

if TYPE_CHECKING:
    from .artifact import ShardedColBERTIndex

logger = logging.getLogger(__name__)


def search_sharded(pool, queries: list[np.ndarray], k: int, params: SearchParams, mode: str, dim: int,
                   n_docs: int) -> Results:
    """Search a batch of queries over a search pool (:mod:`.executors`); per query ``(global ids, scores)`` best
    first, equal to a single index's results (:mod:`.search`). ``plaid``: two rounds of calls to the workers;
    ``exhaustive``: one. ``n_docs``: documents of all shards (for the size-dependent default settings)."""
    if not queries:
        return []
    if mode == "exhaustive":
        parts = pool.exhaustive(queries, k)
        return [merge_top_k([w[qi] for w in parts], k) for qi in range(len(queries))]
    p = params.for_k(k, n_docs)
    Q, q_off, lens = pad_queries(queries, dim)
    cands = pool.candidates(Q, q_off, lens, p)  # [worker][query]
    chosen = [merge_candidates([w[qi] for w in cands], p) for qi in range(len(queries))]
    owners = [pool.owners(c) for c in chosen]
    per_worker = [[c[o == w] for c, o in zip(chosen, owners)] for w in range(pool.n)]
    scores = pool.exact(Q, q_off, per_worker)
    return [merge_top_k([(per_worker[w][qi], scores[w][qi]) for w in range(pool.n)], k) for qi in range(len(queries))]


class ShardedRetriever(ConfigEquality, pt.Transformer):
    """Query frame (``qid``, ``query`` and/or ``query_embs``) -> ranked results (``docno``, ``score``, ``rank``)
    from every shard, merged.

    The same rows, scores and ranks as :class:`~pyterrier_lateint.index.ColBERTRetriever` over a single index of
    the same documents and codec. Queries are encoded here; shard searchers run where the ``executor`` puts them
    (``"local"``: this process's threads; ``"ray"``: Ray actors). Usually made by
    :meth:`ShardedColBERTIndex.retriever <pyterrier_lateint.ShardedColBERTIndex.retriever>`.

    Args:
        index: the sharded index to search.
        model: encodes ``query`` when the frame has no ``query_embs``.
        num_results: documents per query (default 1000).
        mode: ``"plaid"`` (default) or ``"exhaustive"``.
        nprobe: centroids probed per query token (default 8).
        ncandidates: documents kept by stage 1; default ``4 * nexact``.
        nexact: documents scored exactly; default by the whole collection's size.
        batch_size: queries encoded and searched together (default 64).
        executor: ``"local"`` (default), ``"ray"``, or an executor object.
        verbose: show a progress bar over the query batches.
        **executor_kwargs: the executor's settings (``workers``, ``cpus_per_worker``, ...).

    Raises:
        ValueError: on a bad ``mode`` or ``num_results``.

    Example:
        .. code-block:: python

            retriever = index.retriever(num_results=10, executor="ray", workers=4)   # a ShardedRetriever
            results = retriever.search("chemical reactions")
    """

    def __init__(self, index: "ShardedColBERTIndex", model: Optional[LateInteractionModel] = None, *,
                 num_results: int = 1000, mode: str = "plaid", nprobe: Optional[int] = None,
                 ncandidates: Optional[int] = None, nexact: Optional[int] = None, batch_size: int = 64,
                 executor: Union[str, object] = "local", verbose: bool = False, **executor_kwargs):
        check_executor_settings(executor, executor_kwargs)  # a misspelt keyword fails here, not at first search
        self.params = search_params(mode, num_results, nprobe, ncandidates, nexact)
        self.index = index
        self.model = check_model(model, "ShardedRetriever")
        self.num_results = int(num_results)
        self.mode = mode
        self.batch_size = check_int("batch_size", batch_size)
        self.executor = executor
        self.executor_kwargs = executor_kwargs
        self.verbose = verbose

    def _config(self) -> tuple:
        return (str(self.index.path), model_key(self.model), self.num_results, self.mode, self.params,
                repr(self.executor), tuple(sorted(self.executor_kwargs.items())))

    def __repr__(self) -> str:
        return (f"ShardedRetriever({str(self.index.path)!r}, num_results={self.num_results}, mode={self.mode!r}, "
                f"{self.params.describe()})")

    def fuse_rank_cutoff(self, k: int) -> Optional[pt.Transformer]:
        """``retriever % k`` -> the same retriever with ``num_results=k`` (PyTerrier's rank cutoff fusion).

        Args:
            k: the rank cutoff.

        Returns:
            ShardedRetriever: a copy with ``num_results=k`` when ``k`` is smaller, else ``None`` (no fusion).
        """
        if k >= self.num_results:
            return None
        return ShardedRetriever(self.index, self.model, num_results=k, mode=self.mode, nprobe=self.params.nprobe,
                                ncandidates=self.params.ncandidates, nexact=self.params.nexact,
                                batch_size=self.batch_size, executor=self.executor, verbose=self.verbose,
                                **self.executor_kwargs)

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        """Search every shard for every query of ``inp`` and merge the results.

        Args:
            inp: a query frame with ``qid`` and ``query`` or ``query_embs``.

        Returns:
            pandas.DataFrame: the input columns, repeated per result, plus ``docno``, ``score`` and ``rank``
            (from 0), best first per query.

        Raises:
            ModelMismatchError: when the model differs from the indexing model.
        """
        validate_queries(inp)
        self.index._check_model(self.model)
        pool = self.index._pool(self.executor, **self.executor_kwargs)
        dim = self.index.dim
        return retrieve_in_batches(
            inp, self, lambda batch: query_vectors(self.model, batch, self.batch_size, dim),
            lambda vecs: search_sharded(pool, vecs, self.num_results, self.params, self.mode, dim, len(self.index)),
            self.index._docnos_of)


class ShardedScorer(ConfigEquality, pt.Transformer):
    """Re-ranks a result frame by exact MaxSim over the stored vectors, each docno read from its shard (memory-mapped
    in this process).

    Usually made by :meth:`ShardedColBERTIndex.scorer <pyterrier_lateint.ShardedColBERTIndex.scorer>`.

    Args:
        index: the sharded index holding the documents' vectors.
        model: encodes ``query`` when the frame has no ``query_embs``.
        batch_size: queries encoded and scored together (default 64).
        on_unknown: as :class:`~pyterrier_lateint.index.ColBERTScorer`'s: ``"error"`` (default) or ``"drop"``.
        verbose: show a progress bar over the query batches.

    Raises:
        ValueError: on a bad ``on_unknown``.

    Example:
        .. code-block:: python

            pipeline = bm25 % 100 >> index.scorer()   # a ShardedScorer
    """

    def __init__(self, index: "ShardedColBERTIndex", model: Optional[LateInteractionModel] = None, *,
                 batch_size: int = 64, on_unknown: str = "error", verbose: bool = False):
        self.index = index
        self.model = check_model(model, "ShardedScorer")
        self.batch_size = check_int("batch_size", batch_size)
        self.on_unknown = check_on_unknown(on_unknown)
        self.verbose = verbose

    def _config(self) -> tuple:
        return (str(self.index.path), model_key(self.model), self.on_unknown)

    def __repr__(self) -> str:
        return f"ShardedScorer({str(self.index.path)!r}, on_unknown={self.on_unknown!r})"

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        """Re-score every row by exact MaxSim and re-rank per query.

        Args:
            inp: results with ``qid``, ``docno`` and ``query`` or ``query_embs``.

        Returns:
            pandas.DataFrame: the input columns with ``score`` and ``rank`` (from 0) set, sorted by qid and score.

        Raises:
            KeyError: for docnos not in the index (with ``on_unknown="error"``).
            ModelMismatchError: when the model differs from the indexing model.
        """
        validate_results(inp)
        self.index._check_model(self.model)
        out_cols = list(inp.columns) + [c for c in ("score", "rank") if c not in inp.columns]
        if len(inp) == 0:
            return pd.DataFrame(columns=out_cols)
        ids = self.index._doc_ids(inp["docno"].to_numpy(), self.on_unknown)
        if (ids < 0).any():
            logger.warning("ShardedScorer: dropping %d rows whose docno is not in the index", int((ids < 0).sum()))
            inp, ids = inp[ids >= 0], ids[ids >= 0]
        searcher = self.index._pool("local").searcher
        dim = self.index.dim

        def exact(vecs: list[np.ndarray], doc_ids: list[np.ndarray]) -> list[np.ndarray]:
            Q, q_off, _ = pad_queries(vecs, dim)
            return searcher.exact(Q, q_off, doc_ids)

        return score_in_batches(inp, ids, self, dim, exact)[out_cols]
