"""The ShardedColBERTIndex artifact: one logical index made of shard indexes on shared storage."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Optional, Union

import numpy as np
import pandas as pd
import pyterrier as pt

from ..index import ColBERTIndex, IndexNotFoundError
from ..index.codec import DEFAULT_KIND, ResidualCodec
from ..index.docstore import unknown_docnos_error
from ..index.handle import file_stamp
from ..index.layout import ARTIFACT_TYPE, PACKAGE_HINT, IndexReader
from ..index.layout import META_FILE as SHARD_META
from ..index.scorer import check_on_unknown
from ..index.token_stats import TokenStats
from ..models import LateInteractionModel, check_model
from .build import ShardedIndexer
from .executors import LocalExecutor, RayExecutor, make_executor
from .layout import CODEC_DIR, META_FILE, PLAN_FILE, SHARDED_FORMAT, ShardTable, read_json
from .retriever import ShardedRetriever, ShardedScorer, ShardedVecLoader

if TYPE_CHECKING:
    from .prf import ShardedColBERTPRF


def _check_unique_docnos(index: "ShardedColBERTIndex", readers: list) -> None:
    """``ValueError`` when a docno is live in two shards. Shards are built from disjoint documents and
    :meth:`ShardedColBERTIndex.add` routes by docno, so only a shard changed directly (``index.shards()[i].add``)
    can break uniqueness: the documents added to a shard after its build (its later segments) are looked up in
    every other shard, a cost in the number of added documents."""
    for s, r in enumerate(readers):
        if len(r.segments) < 2:
            continue
        added = np.arange(int(r.segments[1]["start"]), r.n_docs, dtype=np.int64)
        if r.deleted is not None:
            added = added[~np.asarray(r.deleted)[added]]
        if not len(added):
            continue
        docnos = np.asarray(r.docnos.fwd.lookup(added)).astype(str)
        for o, other in enumerate(readers):
            if o == s:
                continue
            dup = docnos[np.asarray(other.doc_ids(docnos, on_unknown="ignore")) >= 0]
            if len(dup):
                raise ValueError(
                    f"docno {dup[0]!r} (and {len(dup) - 1} more) is live in shards {min(s, o)} and {max(s, o)} of "
                    f"{index!r}: a shard was changed directly, and searches would return it twice. Delete the "
                    f"extra copy (ColBERTIndex({str(r.path)!r}).delete({dup[:3].tolist()!r}), for every duplicate), "
                    f"and change a sharded index with ShardedColBERTIndex.add / delete, which keep docnos unique")


class ShardedColBERTIndex(pt.Artifact, pt.Indexer):
    """A late-interaction index split into shards (each a :class:`~pyterrier_lateint.index.ColBERTIndex`) that
    share one codec, for collections beyond one machine.

    Built by workers (:meth:`indexer`, on Ray with ``executor="ray"``), searched by fanning each query batch out to
    shard searchers and merging exactly (:meth:`retriever`): the same results as a single index of the same
    documents and codec. Files: :mod:`pyterrier_lateint.sharded.layout`; ``pt.Artifact.load(path)`` opens it.

    Args:
        path: the index folder (on a cluster, a folder every node sees).
        model: the default model of every factory; ``None``: pass one to each.

    Raises:
        TypeError: when ``model`` is not a late-interaction model.

    Example:
        .. code-block:: python

            from pyterrier_lateint import ColBERT, ShardedColBERTIndex

            model = ColBERT.from_pretrained()
            index = ShardedColBERTIndex("vaswani.sharded", model)
            index.indexer(n_shards=8, executor="ray", workers=4, cpus_per_worker=2).index(docs)
            retriever = index.retriever(num_results=10, executor="ray", workers=4, cpus_per_worker=2)
            results = retriever.search("chemical reactions")
            index.close()   # stop the Ray shard searchers
    """

    ARTIFACT_TYPE = ARTIFACT_TYPE
    ARTIFACT_FORMAT = SHARDED_FORMAT
    ARTIFACT_PACKAGE_HINT = PACKAGE_HINT

    def __init__(self, path: Union[str, Path], model: Optional[LateInteractionModel] = None):
        super().__init__(path)
        self.model = check_model(model, "ShardedColBERTIndex")
        self._state: Optional[tuple] = None  # (stamp, meta, shard indexes, table)
        self._pools: dict[Any, Any] = {}

    def __repr__(self) -> str:
        return f"ShardedColBERTIndex({str(self.path)!r})"

    def reload(self) -> None:
        """Forget the open state and stop the searchers (after this process wrote the index)."""
        self._state = None
        self.close()

    def _open(self) -> tuple[dict, list[ColBERTIndex], ShardTable]:
        root = Path(self.path)
        stamp = file_stamp(root / META_FILE)
        if self._state is not None and stamp is not None:  # a shard changed (add, delete, compact): re-open all
            stamp = (stamp, tuple(file_stamp(s.path / SHARD_META) for s in self._state[2]))
            if self._state[0] != stamp:
                self.close()  # searchers hold the old shard table
        if self._state is None or self._state[0] != stamp:
            meta = read_json(root / META_FILE)
            if meta is None:
                if (root / PLAN_FILE).exists():
                    raise IndexNotFoundError(f"the sharded index at {str(root)!r} is incomplete (a build was "
                                             f"interrupted); run the same indexer on the same documents again to "
                                             f"finish it (finished shards are kept)")
                raise IndexNotFoundError(f"no sharded index at {str(root)!r}; build one with "
                                         f"ShardedColBERTIndex(path).indexer(model).index(docs)")
            shards = [ColBERTIndex(root / s["path"], self.model) for s in meta["shards"]]
            readers = [s.reader() for s in shards]
            codec_crcs = {json.dumps(r.meta.get("files", {}).get("centroids.npy", {}).get("crc32")) for r in readers}
            if len(codec_crcs) > 1:
                raise ValueError(f"the shards of {self!r} hold different centroids; rebuild the index")
            _check_unique_docnos(self, readers)
            stamp = (file_stamp(root / META_FILE), tuple(file_stamp(s.path / SHARD_META) for s in shards))
            self._state = (stamp, meta, shards, ShardTable.of([s.path for s in shards], readers))
        return self._state[1], self._state[2], self._state[3]

    # --- building -------------------------------------------------------------------------------------------------
    def indexer(self, model: Optional[LateInteractionModel] = None, *, n_shards: Optional[int] = None,
                executor: Union[str, LocalExecutor, RayExecutor] = "local", workers: Optional[int] = None,
                cpus_per_worker: float = 1, gpus_per_worker: Optional[float] = None, max_retries: int = 2,
                nbits: int = 2, codec: str = DEFAULT_KIND, n_centroids: Optional[int] = None, kmeans_iters: int = 8,
                kmeans_sample: Optional[int] = None, batch_size: int = 64, store_token_ids: bool = False,
                pool_factor: float = 1, seed: int = 0, overwrite: bool = False, resume: bool = True,
                codec_from: Any = None, verbose: bool = True, assignment: str = "auto") -> ShardedIndexer:
        """A :class:`~pyterrier_lateint.sharded.build.ShardedIndexer` writing this index.

        The settings of :meth:`ColBERTIndex.indexer <pyterrier_lateint.ColBERTIndex.indexer>`, plus how the build is
        split and where it runs.

        Args:
            model: encodes ``text`` and records its signature; default the index's.
            n_shards: shards to build; default one per worker.
            executor: ``"local"`` (default: this process) or ``"ray"`` (a task per shard), or an executor object.
            workers: Ray: concurrent tasks; default the cluster's CPUs / ``cpus_per_worker``.
            cpus_per_worker: Ray: CPUs per task (default 1).
            gpus_per_worker: Ray: GPUs per task; default one when the cluster has GPUs.
            max_retries: retries of a task that failed with an error that may pass (default 2).
            nbits: bits per residual dimension: 1, 2 (default), 4, or 16.
            codec: the residual quantiser, ``"pq"`` (default) or ``"scalar"``.
            n_centroids: number of centroids; default by the collection's estimated vector count.
            kmeans_iters: k-means iterations (default 8).
            kmeans_sample: vectors k-means is trained on; default as a single index.
            batch_size: documents encoded together (default 64).
            store_token_ids: also store each vector's token id.
            pool_factor: token pooling (default 1: none).
            seed: seed of the samples and k-means (default 0).
            overwrite: replace an existing index.
            resume: keep the codec and finished shards of an earlier, failed build of the same corpus with the same
                settings (default True).
            codec_from: another index whose codec is reused instead of trained.
            verbose: show progress (default True).
            assignment: nearest-centroid assignment, ``"auto"`` (default), ``"exact"`` or ``"coarse"``.

        Returns:
            ShardedIndexer: the indexer; its ``index(docs)`` builds the index and returns this artifact.

        Raises:
            TypeError: when ``model`` is not a late-interaction model.
            ValueError: on an unsupported ``nbits``, ``codec`` or ``assignment``, ``n_shards`` below 1, or an
                unknown executor.

        Example:
            .. code-block:: python

                index = ShardedColBERTIndex("sharded.lateint", model)
                index.indexer(n_shards=3, overwrite=True).index(docs)                 # in this process
                index.indexer(n_shards=8, executor="ray", workers=4).index(docs)       # on a Ray cluster
        """
        return ShardedIndexer(self, self.model if model is None else check_model(model, repr(self)),
                              n_shards=n_shards, executor=executor, workers=workers, cpus_per_worker=cpus_per_worker,
                              gpus_per_worker=gpus_per_worker, max_retries=max_retries, nbits=nbits, codec=codec,
                              n_centroids=n_centroids, kmeans_iters=kmeans_iters, kmeans_sample=kmeans_sample,
                              batch_size=batch_size, store_token_ids=store_token_ids, pool_factor=pool_factor,
                              seed=seed, overwrite=overwrite, resume=resume, codec_from=codec_from, verbose=verbose,
                              assignment=assignment)

    def index(self, inp: Union[Iterable[dict], pd.DataFrame]) -> "ShardedColBERTIndex":
        """Index ``inp`` at default settings with the constructor's model: ``index.indexer().index(inp)``.

        Args:
            inp: documents (dicts or a frame) with ``docno`` and ``text`` or ``doc_embs``.

        Returns:
            ShardedColBERTIndex: this index (``self``), built.
        """
        return self.indexer().index(inp)

    def index_inputs(self) -> list[list[str]]:
        """The input columns :meth:`index` accepts (PyTerrier's ``Indexer`` API).

        Returns:
            list: ``[["docno", "text"], ["docno", "doc_embs"]]``.
        """
        return [["docno", "text"], ["docno", "doc_embs"]]

    def built(self) -> bool:
        """Whether a complete sharded index exists at the path.

        Returns:
            bool: False when there is none, or only an interrupted build.
        """
        try:
            self._open()
        except FileNotFoundError:
            return False
        return True

    # --- searching ------------------------------------------------------------------------------------------------
    def retriever(self, model: Optional[LateInteractionModel] = None, *, num_results: int = 1000,
                  mode: str = "plaid", nprobe: Optional[int] = None, ncandidates: Optional[int] = None,
                  nexact: Optional[int] = None, batch_size: int = 64, backend: Optional[str] = None,
                  device: Optional[str] = None, executor: Union[str, LocalExecutor, RayExecutor] = "local",
                  verbose: bool = False, query_pruning: Optional[int] = None, query_pruning_by: str = "cf",
                  **executor_kwargs: Any) -> ShardedRetriever:
        """End-to-end retriever over every shard: query frame -> top ``num_results`` documents per query.

        Queries are encoded here; shard searchers run where ``executor`` puts them, and their results are merged
        exactly.

        Args:
            model: encodes ``query``; default the index's. Must be the indexing model.
            num_results: documents per query (default 1000).
            mode: ``"plaid"`` (default) or ``"exhaustive"``, as :meth:`ColBERTIndex.retriever
                <pyterrier_lateint.ColBERTIndex.retriever>`.
            nprobe: centroids probed per query token (default: by the collection's size, 8 up to 100,000 documents).
            ncandidates: documents kept by stage 1; default ``4 * nexact``.
            nexact: documents scored exactly; default by the size of the whole collection.
            batch_size: queries encoded and searched together (default 64).
            backend: ``None`` or ``"numba"`` (the shard searchers' kernels; ``"torch"`` is refused: search a single
                index for it).
            device: ``None`` or ``"cpu"``.
            executor: ``"local"`` (default: threads in this process), ``"ray"`` (shard searchers as Ray actors), or
                an executor object.
            verbose: show a progress bar over the query batches.
            query_pruning: search with only this many query vectors; ``None`` (default): all.
            query_pruning_by: ``"cf"`` (default: lowest collection frequency over every shard first; needs
                ``store_token_ids=True``) or ``"position"``.
            **executor_kwargs: the executor's settings, e.g. ``workers=``, ``cpus_per_worker=``, ``address=`` for
                Ray.

        Returns:
            ShardedRetriever: the retriever transformer (``% k`` fuses into ``num_results``).

        Raises:
            IndexNotFoundError: when there is no complete sharded index at the path.
            ModelMismatchError: when ``model`` differs from the indexing model.
            ValueError: on a bad ``mode`` or setting.

        Example:
            .. code-block:: python

                retriever = index.retriever(num_results=10)                       # threads in this process
                on_ray = index.retriever(executor="ray", workers=4, cpus_per_worker=2)
                pt.Experiment([retriever], topics, qrels, ["nDCG@10"])
        """
        model = self.model if model is None else check_model(model, repr(self))
        self.check_model(model)
        return ShardedRetriever(self, model, num_results=num_results, mode=mode, nprobe=nprobe,
                                ncandidates=ncandidates, nexact=nexact, batch_size=batch_size, backend=backend,
                                device=device, executor=executor, verbose=verbose, query_pruning=query_pruning,
                                query_pruning_by=query_pruning_by, **executor_kwargs)

    def scorer(self, model: Optional[LateInteractionModel] = None, *, batch_size: int = 64,
               on_unknown: str = "error", verbose: bool = False) -> ShardedScorer:
        """Re-ranker: result frame -> the same rows re-scored by exact MaxSim over the stored vectors.

        Each docno's vectors are read from its shard, memory-mapped in this process.

        Args:
            model: encodes ``query`` when the frame has no ``query_embs``; default the index's.
            batch_size: queries encoded and scored together (default 64).
            on_unknown: docnos not in the index: ``"error"`` (default, ``KeyError``) or ``"drop"``.
            verbose: show a progress bar over the query batches.

        Returns:
            ShardedScorer: the scorer transformer.

        Raises:
            IndexNotFoundError: when there is no complete sharded index at the path.
            ModelMismatchError: when ``model`` differs from the indexing model.
            ValueError: on a bad ``on_unknown``.

        Example:
            .. code-block:: python

                pipeline = bm25 % 100 >> index.scorer()
        """
        model = self.model if model is None else check_model(model, repr(self))
        self.check_model(model)
        return ShardedScorer(self, model, batch_size=batch_size, on_unknown=on_unknown, verbose=verbose)

    def prf(self, model: Optional[LateInteractionModel] = None, *, fb_docs: int = 3, fb_embs: int = 10,
            beta: float = 1.0, n_clusters: Optional[int] = None, rerank: bool = False, num_results: int = 1000,
            seed: int = 42, kmeans_iters: int = 20, mode: str = "plaid", nprobe: Optional[int] = None,
            ncandidates: Optional[int] = None, nexact: Optional[int] = None, batch_size: int = 64,
            backend: Optional[str] = None, device: Optional[str] = None,
            executor: Union[str, LocalExecutor, RayExecutor] = "local", verbose: bool = False,
            k: Optional[int] = None, **executor_kwargs: Any) -> "ShardedColBERTPRF":
        """ColBERT-PRF over every shard, as :meth:`ColBERTIndex.prf <pyterrier_lateint.ColBERTIndex.prf>`: the
        feedback documents' vectors read from their shards, token statistics summed over the shards
        (:meth:`token_stats`), the expanded queries searched by the shard searchers, so the same results as a single
        index of the same documents and codec. Needs ``store_token_ids=True``.

        Args:
            model: encodes ``query`` when the frame has no ``query_embs``; default the index's.
            fb_docs: feedback documents per query (default 3).
            fb_embs: expansion vectors added to the query, between 0 and ``n_clusters`` (default 10).
            beta: weight of the expansion vectors (>= 0; default 1.0).
            n_clusters: k-means clusters of the feedback documents' vectors (default 24).
            rerank: re-score the input's documents instead of retrieving again (default False).
            num_results: documents per query (default 1000).
            seed: seed of the clustering (default 42).
            kmeans_iters: k-means iterations of the clustering (default 20).
            mode: ``"plaid"`` (default) or ``"exhaustive"`` for the second retrieval.
            nprobe: as :meth:`retriever`'s.
            ncandidates: as :meth:`retriever`'s.
            nexact: as :meth:`retriever`'s.
            batch_size: queries searched together (default 64).
            backend: as :meth:`retriever`'s (``None`` or ``"numba"``).
            device: as :meth:`retriever`'s (``None`` or ``"cpu"``).
            executor: as :meth:`retriever`'s, for the second retrieval.
            verbose: show a progress bar over the queries.
            k: pyterrier_colbert's name of ``n_clusters``, taken for it.
            **executor_kwargs: the executor's settings, as :meth:`retriever`'s.

        Returns:
            ShardedColBERTPRF: the transformer (:class:`~pyterrier_lateint.sharded.prf.ShardedColBERTPRF`).

        Raises:
            ModelMismatchError: when ``model`` differs from the indexing model.
            TypeError: on a setting the executor does not take.
            ValueError: on a setting out of range, or a backend or device a sharded index cannot search with.

        Example:
            .. code-block:: python

                prf = sharded.retriever(num_results=10) >> sharded.prf(fb_docs=3, fb_embs=10)
        """
        from .prf import ShardedColBERTPRF
        model = self.model if model is None else check_model(model, repr(self))
        self.check_model(model)
        return ShardedColBERTPRF(self, model, fb_docs=fb_docs, fb_embs=fb_embs, beta=beta, n_clusters=n_clusters,
                                 rerank=rerank, num_results=num_results, seed=seed, kmeans_iters=kmeans_iters,
                                 mode=mode, nprobe=nprobe, ncandidates=ncandidates, nexact=nexact,
                                 batch_size=batch_size, backend=backend, device=device, executor=executor,
                                 verbose=verbose, k=k, **executor_kwargs)

    def token_stats(self) -> TokenStats:
        """Document / collection frequency per token id over every shard; needs ``store_token_ids=True`` at
        indexing.

        Returns:
            TokenStats: the shards' statistics added up
            (:class:`~pyterrier_lateint.index.token_stats.TokenStats`).

        Raises:
            ValueError: when the index stores no token ids.
            IndexCorruptError: when a shard's statistics file is unreadable (naming it).
        """
        return TokenStats.combine([shard.token_stats() for shard in self._open()[1]])

    def vec_loader(self, *, on_unknown: str = "error") -> ShardedVecLoader:
        """Transformer adding ``doc_embs`` (the stored vectors, decompressed: float32 ``(n_tokens, dim)``) by
        ``docno``, each read from its shard, as :meth:`ColBERTIndex.vec_loader
        <pyterrier_lateint.ColBERTIndex.vec_loader>`.

        Args:
            on_unknown: docnos not in the index: ``"error"`` (default, ``KeyError`` naming them) or ``"drop"``
                (remove those rows, logging how many).

        Returns:
            ShardedVecLoader: the transformer.

        Raises:
            IndexNotFoundError: when there is no complete sharded index at the path.
            ValueError: on a bad ``on_unknown``.

        Example:
            .. code-block:: python

                with_vectors = index.retriever(num_results=10) >> index.vec_loader()
        """
        self._open()
        return ShardedVecLoader(self, on_unknown=on_unknown)

    def get_corpus_iter(self, *, verbose: bool = False, token_ids: bool = False) -> Iterator[dict[str, Any]]:
        """Every live document's stored vectors, shard after shard (global id order), as
        :meth:`ColBERTIndex.get_corpus_iter <pyterrier_lateint.ColBERTIndex.get_corpus_iter>`: re-index with other
        settings (a single index, or other shards), or export.

        Args:
            verbose: show a progress bar per shard.
            token_ids: also yield ``doc_toks`` (int32 ``(n_tokens,)``).

        Yields:
            dict: ``{"docno", "doc_embs"}`` (decompressed float32 ``(n_tokens, dim)``), plus ``doc_toks`` with
            ``token_ids``.

        Raises:
            IndexNotFoundError: when there is no complete sharded index at the path.
            ValueError: with ``token_ids`` when the index stores no token ids.
        """
        for shard in self._open()[1]:
            yield from shard.get_corpus_iter(verbose=verbose, token_ids=token_ids)

    def check_model(self, model: Optional[LateInteractionModel]) -> None:
        """Check that ``model`` is the indexing model (every shard records the same signature).

        Args:
            model: a late-interaction model, or ``None`` (nothing to check).

        Raises:
            ModelMismatchError: naming the settings that differ.
        """
        self._open()[1][0].check_model(model)

    def search_pool(self, executor: Union[str, LocalExecutor, RayExecutor] = "local", **kwargs: Any):
        """The search pool of ``executor``: shard searchers, made once per index and settings (Ray actors live until
        :meth:`close`).

        Args:
            executor: ``"local"`` (threads in this process), ``"ray"``, or an executor object.
            **kwargs: the executor's settings (e.g. ``workers``, ``cpus_per_worker``).

        Returns:
            LocalSearchPool or RaySearchPool: see :mod:`pyterrier_lateint.sharded.executors`.
        """
        _, shards, table = self._open()
        key = (repr(executor) if not isinstance(executor, str) else executor, tuple(sorted(kwargs.items())),
               tuple(table.bases))
        if key not in self._pools:
            self._pools[key] = make_executor(executor, **kwargs).search_pool(table.paths, table.bases[:-1])
        return self._pools[key]

    def close(self) -> None:
        """Stop this index's shard searchers (Ray actors); they are started again when next needed."""
        for pool in self._pools.values():
            pool.close()
        self._pools = {}

    # --- changing the index ---------------------------------------------------------------------------------------
    def add(self, docs: Union[Iterable[dict], pd.DataFrame], model: Optional[LateInteractionModel] = None, *,
            replace: bool = False, batch_size: int = 64, verbose: bool = False) -> int:
        """Add documents, compressed with the shared codec.

        Docnos stay unique over the whole index: a docno live in any shard raises ``ValueError`` unless
        ``replace=True``, which replaces it in the shard that holds it; new docnos go to the shard with the fewest
        live documents. Each shard commits its part on its own (:meth:`ColBERTIndex.add
        <pyterrier_lateint.ColBERTIndex.add>`): after an interruption, some shards hold their part and others
        not; run the same call with ``replace=True`` to finish it.

        Args:
            docs: documents (dicts or a frame) with ``docno`` and ``text``, or ``doc_embs``.
            model: encodes ``text``; default the index's.
            replace: replace live documents with the same docno instead of raising.
            batch_size: documents encoded together (default 64).
            verbose: show progress bars.

        Returns:
            int: how many documents were added.

        Raises:
            KeyError: when the documents have no ``docno`` column.
            ValueError: for a docno already live (without ``replace``).
        """
        frame = docs if isinstance(docs, pd.DataFrame) else pd.DataFrame(list(docs))
        if "docno" not in frame.columns:
            raise KeyError(f"documents need a 'docno' column; got {list(frame.columns)}")
        if len(frame) == 0:
            return 0
        _, shards, table = self._open()
        docnos = frame["docno"].astype(str).to_numpy()
        ids = self.doc_ids(docnos, on_unknown="drop")
        live = ids >= 0
        if live.any() and not replace:
            held = list(dict.fromkeys(docnos[live].tolist()))
            raise ValueError(f"{len(held)} docno(s) already in {self!r}, e.g. {held[:5]}; pass replace=True to "
                             "replace them, or delete them first")
        owner = np.full(len(frame), -1, dtype=np.int64)
        for s, pos in enumerate(table.split(ids[live])):
            owner[np.flatnonzero(live)[pos]] = s
        target = int(np.argmin([len(sh) for sh in shards]))
        owner[~live] = target
        added = 0
        for s in np.unique(owner):  # each shard's part: its replacements and, for the target, the new documents
            part = frame.iloc[np.flatnonzero(owner == s)]
            added += shards[s].add(part, model if model is not None else self.model, replace=replace,
                                   batch_size=batch_size, verbose=verbose)
        self.reload()
        return added

    def delete(self, docnos: Union[str, Iterable[str]], *, on_unknown: str = "error") -> int:
        """Delete documents from whichever shards hold them.

        Args:
            docnos: one docno or an iterable of them.
            on_unknown: ``"error"`` (default): unknown or already deleted docnos raise ``KeyError`` and nothing is
                deleted; ``"drop"`` skips them (``"ignore"``, its former name, is taken as ``"drop"``).

        Returns:
            int: how many documents were deleted.

        Raises:
            KeyError: for unknown or already deleted docnos (with ``on_unknown="error"``); nothing is deleted then.
            ValueError: on a bad ``on_unknown``.
        """
        on_unknown = check_on_unknown(on_unknown)
        docnos = np.asarray([docnos] if isinstance(docnos, str) else list(docnos), dtype=object).astype(str)
        _, shards, table = self._open()
        ids = self.doc_ids(docnos, on_unknown="drop")
        if on_unknown == "error" and (ids < 0).any():
            raise unknown_docnos_error(docnos, ids, f"{self!r} (or deleted already)",
                                       "nothing was deleted; use on_unknown='drop' to skip them")
        known = docnos[ids >= 0]
        deleted = 0
        for s, pos in enumerate(table.split(ids[ids >= 0])):
            if len(pos):
                deleted += shards[s].delete(list(dict.fromkeys(known[pos].tolist())))
        self.reload()
        return deleted

    # --- documents ------------------------------------------------------------------------------------------------
    def shard_readers(self) -> tuple[list[IndexReader], ShardTable]:
        """The open shards and the global id table, the reading interface of the sharded transformers.

        Returns:
            tuple: one :class:`~pyterrier_lateint.index.layout.IndexReader` per shard (global id order), and the
            :class:`~pyterrier_lateint.sharded.layout.ShardTable` (``bases``, ``split(ids)``).
        """
        _, shards, table = self._open()
        return [s.reader() for s in shards], table

    def docnos_of(self, ids: np.ndarray) -> np.ndarray:
        """Docnos of global ids.

        Args:
            ids: int64 global ids ``(n,)``.

        Returns:
            numpy.ndarray: str ``(n,)``.
        """
        _, shards, table = self._open()
        out = np.empty(len(ids), dtype=object)
        for s, pos in enumerate(table.split(ids)):
            if len(pos):
                out[pos] = shards[s].reader().docnos.fwd.lookup(np.asarray(ids)[pos] - table.bases[s])
        return out.astype(str) if len(ids) else np.array([], dtype=str)

    def doc_ids(self, docnos: np.ndarray, on_unknown: str = "error") -> np.ndarray:
        """Global ids of ``docnos``.

        Args:
            docnos: str ``(n,)``.
            on_unknown: ``"error"`` (unknown docnos raise ``KeyError``) or ``"drop"`` (they map to -1).

        Returns:
            numpy.ndarray: int64 ``(n,)``.
        """
        _, shards, table = self._open()
        ids = np.full(len(docnos), -1, dtype=np.int64)
        for s, shard in enumerate(shards):
            todo = np.flatnonzero(ids < 0)
            if not len(todo):
                break
            local = shard.reader().doc_ids(np.asarray(docnos)[todo], on_unknown="ignore")
            ids[todo[local >= 0]] = local[local >= 0] + table.bases[s]
        if on_unknown == "error" and (ids < 0).any():
            raise unknown_docnos_error(docnos, ids, repr(self), "drop them before scoring, or use on_unknown='drop'")
        return ids

    def shards(self) -> list[ColBERTIndex]:
        """The shard indexes, in global id order.

        Returns:
            list: one :class:`~pyterrier_lateint.ColBERTIndex` per shard.
        """
        return list(self._open()[1])

    def codec(self) -> ResidualCodec:
        """The codec every shard shares (pass it as ``codec_from=`` to build a comparable single index).

        Returns:
            ResidualCodec: the shared centroids and residual quantiser.
        """
        return ResidualCodec.load(Path(self.path) / CODEC_DIR)

    @property
    def dim(self) -> int:
        """Dimension of the stored token vectors."""
        return self._open()[1][0].reader().dim

    def metadata(self) -> dict:
        """``sharded.json``: shards, documents, vectors, model signature, codec, build record.

        Returns:
            dict: a copy of the committed metadata.
        """
        return dict(self._open()[0])

    def __len__(self) -> int:
        """Live documents over all shards."""
        return int(sum(len(s) for s in self._open()[1]))

    def size_bytes(self) -> dict[str, int]:
        """Bytes on disk per file, summed over the shards.

        Returns:
            dict: file name -> size in bytes.
        """
        out: dict[str, int] = {}
        for s in self._open()[1]:
            for name, n in s.size_bytes().items():
                out[name] = out.get(name, 0) + n
        return out
