"""ColBERT-PRF over a sharded index: the feedback documents read from their shards, token statistics summed over the
shards, the expanded queries searched (or re-scored) by the shard searchers. The same expansion and results as
:class:`~pyterrier_lateint.index.prf.ColBERTPRF` over a single index of the same documents and codec."""
from __future__ import annotations

import inspect
from typing import Optional, Union

import numpy as np

from ..index.docstore import unknown_docnos_error
from ..index.prf import PRF_DOCNO_FIX, ColBERTPRF
from ..index.search import SearchParams, pad_queries
from ..index.token_stats import TokenStats
from ..models import LateInteractionModel
from .executors import check_executor_settings
from .handle import ShardedIndexHandle
from .retriever import check_sharded_backend, search_sharded, shared_codec


class ShardedSource:
    """:class:`~pyterrier_lateint.index.prf.FeedbackSource` of a sharded index (ids are global ids); ``pool``: the
    search pool of the retrieval (:mod:`.executors`)."""

    def __init__(self, index: ShardedIndexHandle, params: SearchParams, mode: str, pool):
        self.index, self.params, self.mode, self.pool = index, params, mode, pool
        self.dim, self.codec = index.dim, shared_codec(index)

    def token_stats(self) -> TokenStats:
        return self.index.token_stats()

    def doc_ids(self, docnos: np.ndarray) -> np.ndarray:
        ids = self.index.doc_ids(np.asarray(docnos), on_unknown="drop")
        if (ids < 0).any():
            raise unknown_docnos_error(docnos, ids, f"{self.index!r} (or deleted)", PRF_DOCNO_FIX)
        return ids

    def feedback(self, docnos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ids = np.sort(self.doc_ids(docnos))
        readers, table = self.index.shard_readers()
        vecs, toks = [], []
        for s, pos in enumerate(table.split(ids)):  # ids sorted: shard by shard is id order
            if len(pos):
                r = readers[s]
                local = ids[pos] - table.bases[s]
                vecs.append(r.decompress_docs(local)[0])
                toks.append(np.concatenate([np.asarray(r.token_ids[r.offsets[d]:r.offsets[d + 1]]) for d in local]))
        return np.concatenate(vecs), np.concatenate(toks)

    def search(self, queries: list[np.ndarray], k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        res = search_sharded(self.pool, queries, k, self.params, self.mode, self.codec, len(self.index))
        return [(np.asarray(self.index.docnos_of(ids), dtype=str), sc) for ids, sc in res]

    def exact(self, query: np.ndarray, ids: np.ndarray) -> np.ndarray:
        Q, q_off, _ = pad_queries([query], self.codec)
        return self.index.search_pool("local").searcher.exact(Q, q_off, [np.asarray(ids, dtype=np.int64)])[0]


class ShardedColBERTPRF(ColBERTPRF):
    """:class:`~pyterrier_lateint.index.prf.ColBERTPRF` over a :class:`~pyterrier_lateint.ShardedColBERTIndex`:
    the same settings, plus the ``executor`` (and its settings) that searches the expanded queries; ``backend`` and
    ``device`` as :meth:`ShardedColBERTIndex.retriever <pyterrier_lateint.ShardedColBERTIndex.retriever>` takes
    them. Usually made by :meth:`ShardedColBERTIndex.prf <pyterrier_lateint.ShardedColBERTIndex.prf>`.

    Args:
        index: the sharded index (built with ``store_token_ids=True``) holding the feedback documents.
        model: encodes ``query`` when the frame has no ``query_embs``.
        executor: ``"local"`` (default), ``"ray"``, or an executor object, for the second retrieval.
        backend: ``None`` or ``"numba"``.
        device: ``None`` or ``"cpu"``.
        **settings: ColBERTPRF's settings (``fb_docs``, ``fb_embs``, ``beta``, ``n_clusters``, ``rerank``,
            ``num_results``, ...) and the executor's (``workers``, ``cpus_per_worker``, ...).

    Raises:
        TypeError: on a setting neither ColBERTPRF nor the executor takes.
        ValueError: as ColBERTPRF, or on a backend or device a sharded index cannot search with.

    Example:
        .. code-block:: python

            prf = sharded.retriever(num_results=10) >> sharded.prf(fb_docs=3, fb_embs=10)   # a ShardedColBERTPRF
    """

    # ColBERTPRF's own settings; any other keyword goes to the executor (which refuses those it does not take)
    PRF_SETTINGS = tuple(name for name in inspect.signature(ColBERTPRF.__init__).parameters
                         if name not in ("self", "index", "model", "backend", "device"))

    def __init__(self, index: ShardedIndexHandle, model: Optional[LateInteractionModel] = None, *,
                 executor: Union[str, object] = "local", backend: Optional[str] = None, device: Optional[str] = None,
                 **settings):
        check_sharded_backend(backend, device)
        executor_kwargs = {k: v for k, v in settings.items() if k not in self.PRF_SETTINGS}
        check_executor_settings(executor, executor_kwargs)
        super().__init__(index, model, backend="numba", **{k: v for k, v in settings.items()
                                                            if k in self.PRF_SETTINGS})
        self.executor, self.executor_kwargs = executor, executor_kwargs

    def _config(self) -> tuple:
        return super()._config() + (repr(self.executor), tuple(sorted(self.executor_kwargs.items())))

    def __repr__(self) -> str:
        return "Sharded" + super().__repr__()

    def _settings(self) -> dict:
        return {**super()._settings(), "executor": self.executor, **self.executor_kwargs}

    def _source(self) -> ShardedSource:
        return ShardedSource(self.index, self.params, self.mode, self.index.search_pool(self.executor,
                                                                                  **self.executor_kwargs))
