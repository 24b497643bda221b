"""End-to-end retrieval and re-ranking over a sharded index, as PyTerrier transformers."""
from __future__ import annotations

from typing import Optional, Union

import numpy as np
import pandas as pd
import pyterrier as pt

from ..base import ConfigEquality, check_int
from ..index.codec import ResidualCodec
from ..index.queries import query_vectors, validate_queries, validate_results
from ..index.pruning import check_query_pruning, pruned_query_vectors
from ..index.retriever import retrieve_in_batches, search_params
from ..index.scorer import ColBERTVecLoader, check_on_unknown, known_rows, score_in_batches
from ..index.search import SearchParams, pad_queries
from ..models import LateInteractionModel, check_model, model_key
from .executors import check_executor_settings
from .handle import ShardedIndexHandle
from .search import Results, merge_candidates, merge_top_k


def shared_codec(index: ShardedIndexHandle) -> ResidualCodec:
    """The codec every shard of ``index`` holds (from the open first shard: no file read)."""
    return index.shard_readers()[0][0].codec


def search_sharded(pool, queries: list[np.ndarray], k: int, params: SearchParams, mode: str, codec: ResidualCodec,
                   n_docs: int) -> Results:
    """Search a batch of queries over a search pool (:mod:`.executors`); per query ``(global ids, scores)`` best
    first, equal to a single index's results (:mod:`.search`). ``plaid``: two rounds of calls to the workers;
    ``exhaustive``: one. ``codec``: the shards' (queries go into its query space, :func:`~..index.search.pad_queries`);
    ``n_docs``: documents of all shards (for the size-dependent default settings)."""
    if not queries:
        return []
    if mode == "exhaustive":
        parts = pool.exhaustive(queries, k)
        return [merge_top_k([w[qi] for w in parts], k) for qi in range(len(queries))]
    p = params.for_k(k, n_docs)
    Q, q_off, lens = pad_queries(queries, codec)
    cands = pool.candidates(Q, q_off, lens, p)  # [worker][query]
    chosen = [merge_candidates([w[qi] for w in cands], p) for qi in range(len(queries))]
    owners = [pool.owners(c) for c in chosen]
    per_worker = [[c[o == w] for c, o in zip(chosen, owners)] for w in range(pool.n)]
    scores = pool.exact(Q, q_off, per_worker)
    return [merge_top_k([(per_worker[w][qi], scores[w][qi]) for w in range(pool.n)], k) for qi in range(len(queries))]


def check_sharded_backend(backend: Optional[str], device: Optional[str]) -> None:
    """``ValueError`` for a backend or device a sharded index cannot search with: its shard searchers (threads or
    Ray actors) run the numba kernels on CPU."""
    if backend not in (None, "numba") or device not in (None, "cpu"):
        raise ValueError(f"a sharded index is searched by the numba kernels of its shard searchers, on CPU: "
                         f"backend={backend!r}, device={device!r} is not available for it. Use backend=None or "
                         f"'numba' (device None or 'cpu'); for the torch backend or a GPU, search a single "
                         f"ColBERTIndex (ColBERTIndex(path).indexer(codec_from=sharded.codec()) builds one with "
                         f"the same codec)")


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
        nprobe: centroids probed per query token (default: by the collection's size, 8 up to 100,000 documents).
        ncandidates: documents kept by stage 1; default ``4 * nexact``.
        nexact: documents scored exactly; default by the whole collection's size.
        batch_size: queries encoded and searched together (default 64).
        backend: ``None`` or ``"numba"``: the shard searchers run the numba kernels (``"torch"`` is refused).
        device: ``None`` or ``"cpu"``.
        executor: ``"local"`` (default), ``"ray"``, or an executor object.
        verbose: show a progress bar over the query batches.
        query_pruning: search with only this many query vectors; ``None`` (default): all (as
            :class:`~pyterrier_lateint.index.ColBERTRetriever`, collection frequencies over every shard).
        query_pruning_by: ``"cf"`` (default) or ``"position"``.
        **executor_kwargs: the executor's settings (``workers``, ``cpus_per_worker``, ...).

    Raises:
        ValueError: on a bad ``mode``, ``num_results``, backend, device or pruning setting.
        TypeError: on an executor setting the executor does not take.

    Example:
        .. code-block:: python

            retriever = index.retriever(num_results=10, executor="ray", workers=4)   # a ShardedRetriever
            results = retriever.search("chemical reactions")
    """

    def __init__(self, index: ShardedIndexHandle, model: Optional[LateInteractionModel] = None, *,
                 num_results: int = 1000, mode: str = "plaid", nprobe: Optional[int] = None,
                 ncandidates: Optional[int] = None, nexact: Optional[int] = None, batch_size: int = 64,
                 backend: Optional[str] = None, device: Optional[str] = None,
                 executor: Union[str, object] = "local", verbose: bool = False, query_pruning: Optional[int] = None,
                 query_pruning_by: str = "cf", **executor_kwargs):
        check_executor_settings(executor, executor_kwargs)  # a misspelt keyword fails here, not at first search
        check_sharded_backend(backend, device)
        check_query_pruning(query_pruning, query_pruning_by)
        self.query_pruning = query_pruning
        self.query_pruning_by = query_pruning_by
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
                repr(self.executor), tuple(sorted(self.executor_kwargs.items())), self.query_pruning,
                self.query_pruning_by)

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
                                query_pruning=self.query_pruning, query_pruning_by=self.query_pruning_by,
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
        self.index.check_model(self.model)
        pool = self.index.search_pool(self.executor, **self.executor_kwargs)
        dim, codec = self.index.dim, shared_codec(self.index)

        def vectors(batch: pd.DataFrame) -> list[np.ndarray]:
            if self.query_pruning is None:
                return query_vectors(self.model, batch, self.batch_size, dim)
            return pruned_query_vectors(self.model, batch, self.batch_size, dim, self.query_pruning,
                                        self.query_pruning_by, self.index.token_stats)

        return retrieve_in_batches(
            inp, self, vectors,
            lambda vecs: search_sharded(pool, vecs, self.num_results, self.params, self.mode, codec, len(self.index)),
            self.index.docnos_of)


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

    def __init__(self, index: ShardedIndexHandle, model: Optional[LateInteractionModel] = None, *,
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
        self.index.check_model(self.model)
        out_cols = list(inp.columns) + [c for c in ("score", "rank") if c not in inp.columns]
        if len(inp) == 0:
            return pd.DataFrame(columns=out_cols)
        inp, ids = known_rows(self.index.doc_ids, inp, self.on_unknown, "ShardedScorer")
        searcher = self.index.search_pool("local").searcher
        dim, codec = self.index.dim, shared_codec(self.index)

        def exact(vecs: list[np.ndarray], doc_ids: list[np.ndarray]) -> list[np.ndarray]:
            Q, q_off, _ = pad_queries(vecs, codec)
            return searcher.exact(Q, q_off, doc_ids)

        return score_in_batches(inp, ids, self, dim, exact)[out_cols]


class ShardedVecLoader(ColBERTVecLoader):
    """Adds ``doc_embs`` (the stored vectors, decompressed: float32 ``(n_tokens, dim)``) to a frame with ``docno``,
    each docno read from its shard: the same arrays as :class:`~pyterrier_lateint.index.ColBERTVecLoader` of a
    single index of the same documents and codec.

    Usually made by :meth:`ShardedColBERTIndex.vec_loader <pyterrier_lateint.ShardedColBERTIndex.vec_loader>`.

    Args:
        index: the sharded index holding the vectors.
        on_unknown: docnos not in the index: ``"error"`` (default, ``KeyError`` naming them) or ``"drop"``.

    Raises:
        ValueError: on a bad ``on_unknown``.

    Example:
        .. code-block:: python

            frame = index.vec_loader()(pd.DataFrame({"docno": ["1", "2"]}))   # a ShardedVecLoader
            frame["doc_embs"][0].shape   # (n_tokens, dim)
    """

    def __repr__(self) -> str:
        return f"ShardedVecLoader({str(self.index.path)!r})"

    def _known(self, inp: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
        return known_rows(self.index.doc_ids, inp, self.on_unknown, "ShardedVecLoader")

    def _vectors(self, ids: np.ndarray) -> list[np.ndarray]:
        readers, table = self.index.shard_readers()
        out: list = [None] * len(ids)
        for s, pos in enumerate(table.split(ids)):
            if len(pos):
                vectors, offs = readers[s].decompress_docs(ids[pos] - table.bases[s])
                for j, p in enumerate(pos):
                    out[p] = vectors[offs[j]:offs[j + 1]]
        return out
