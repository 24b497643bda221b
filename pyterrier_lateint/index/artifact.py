"""The ColBERTIndex artifact: a compressed, memory-mapped late-interaction index and its transformer factories."""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Iterable, Optional, Union

import numpy as np
import pandas as pd
import pyterrier as pt

from ..base import check_int
from ..models import LateInteractionModel, check_model
from .build import ColBERTIndexer
from .codec import DEFAULT_KIND
from .folders import check_target
from .handle import check_signature, file_stamp
from .layout import ARTIFACT_FORMAT, ARTIFACT_TYPE, META_FILE, PACKAGE_HINT, DocnoList, IndexReader
from .retriever import ColBERTRetriever
from .scorer import ColBERTScorer, ColBERTVecLoader

if TYPE_CHECKING:
    from ..colbert import ColBERT
    from .prf import ColBERTPRF
    from .token_stats import TokenStats

CORPUS_ITER_CHUNK = 1024  # documents decompressed together by get_corpus_iter

logger = logging.getLogger(__name__)


class ColBERTIndex(pt.Artifact, pt.Indexer):
    """A compressed late-interaction (ColBERT) index on disk; a ``pt.Artifact`` and a ``pt.Indexer``, as
    ``PisaIndex`` and pyterrier_dr's ``FlexIndex`` are.

    ``ColBERTIndex(path, model=None)`` is instant: files are memory-mapped when first needed. Build it with
    :meth:`index` or :meth:`indexer`; search it with :meth:`retriever`, re-rank with :meth:`scorer`. ``model`` is
    the default of every factory's ``model`` argument. See :mod:`pyterrier_lateint.index.layout` for the files;
    :meth:`build_package` / ``pt.Artifact.from_url`` (and ``to_hf`` / ``from_hf``) share an index.

    Args:
        path: the index folder (need not exist yet).
        model: the default model of every factory (:meth:`indexer`, :meth:`retriever`, :meth:`scorer`, ...);
            ``None``: pass one to each, or :meth:`load_model`.
        verify: check every file's checksum when opening (default False: sizes and the checksums of everything but
            the per-vector data).

    Raises:
        TypeError: when ``model`` is not a late-interaction model.

    Example:
        .. code-block:: python

            import pyterrier as pt
            from pyterrier_lateint import ColBERT, ColBERTIndex

            model = ColBERT.from_pretrained()
            index = ColBERTIndex("vaswani.lateint", model)
            if not index.built():
                index.index(pt.get_dataset("irds:vaswani").get_corpus_iter())
            results = index.retriever(num_results=10).search("chemical reactions")
    """

    ARTIFACT_TYPE = ARTIFACT_TYPE
    ARTIFACT_FORMAT = ARTIFACT_FORMAT
    ARTIFACT_PACKAGE_HINT = PACKAGE_HINT

    def __init__(self, path: Union[str, Path], model: Optional[LateInteractionModel] = None, verify: bool = False):
        super().__init__(path)
        self.model = check_model(model, "ColBERTIndex")
        self.verify_on_open = verify  # check every file's checksum when opening (default: sizes only)
        self._reader_cache: Optional[IndexReader] = None
        self._reader_stamp: Optional[tuple] = None

    def __repr__(self) -> str:
        return f"ColBERTIndex({str(self.path)!r})"

    def reload(self) -> None:
        """Forget the open state: the next :meth:`reader` opens the index again (writers call it after a commit)."""
        self._reader_cache = None

    def reader(self) -> IndexReader:
        """The open index (files memory-mapped), the reading interface of its transformers; re-opened when a writer
        (this process or another) committed since.

        Returns:
            IndexReader: counts, codec, offsets, codes, residuals, inverted file and docnos
            (:class:`~pyterrier_lateint.index.layout.IndexReader`).

        Raises:
            IndexNotFoundError: when there is no complete index at the path.
            IndexCorruptError: when the index is damaged.
        """
        stamp = file_stamp(Path(self.path) / META_FILE)
        if self._reader_cache is None or stamp != self._reader_stamp:
            self._reader_cache = IndexReader(Path(self.path), verify=self.verify_on_open)
            self._reader_stamp = stamp
        return self._reader_cache

    def built(self) -> bool:
        """Whether a complete index exists at the path.

        Returns:
            bool: False when nothing, a file, or a folder without a complete index is there, else True.

        Raises:
            IndexCorruptError: when the index is damaged
                (:class:`~pyterrier_lateint.index.integrity.IndexCorruptError`), rather than passing for absent.
        """
        try:
            self.reader()
        except FileNotFoundError:  # IndexNotFoundError: nothing, a file, a half-written or foreign folder
            return False
        return True

    def _model(self, model: Optional[LateInteractionModel]) -> Optional[LateInteractionModel]:
        return self.model if model is None else check_model(model, repr(self))

    def index(self, inp: Union[Iterable[dict], pd.DataFrame]) -> "ColBERTIndex":
        """Index documents at default settings: ``index.indexer().index(inp)``, with the constructor's ``model``.

        Args:
            inp: documents (dicts or frame rows) with ``docno`` and ``text`` (encoded by the index's model) or
                ``doc_embs`` (float ``(n_tokens, dim)``).

        Returns:
            ColBERTIndex: this index (``self``), built.

        Raises:
            FileExistsError: when an index (or anything else but an empty folder) is already at the path.
            ValueError: when the input is empty or every document is.
        """
        return self.indexer().index(inp)

    def index_inputs(self) -> list[list[str]]:
        """The input columns :meth:`index` accepts (PyTerrier's ``Indexer`` API).

        Returns:
            list: ``[["docno", "text"], ["docno", "doc_embs"]]``.
        """
        return [["docno", "text"], ["docno", "doc_embs"]]

    # --- factories ----------------------------------------------------------------------------------------------
    def indexer(self, model: Optional[LateInteractionModel] = None, *, nbits: int = 2, n_centroids: Optional[int] = None,
                kmeans_iters: int = 8, kmeans_sample: Optional[int] = None, batch_size: int = 64,
                store_token_ids: bool = False, overwrite: bool = False, verbose: bool = True, pool_factor: float = 1,
                codec: str = DEFAULT_KIND, codec_from: Any = None, seed: int = 0,
                assignment: str = "auto", spill: bool = True) -> ColBERTIndexer:
        """An indexer writing this index.

        Documents are streamed through ``model.encode_docs`` (or taken from ``doc_embs``), k-means trains the
        centroids on a sample, and every vector is stored as its centroid id plus a quantised residual.

        Args:
            model: encodes ``text`` (``model.encode_docs``) and records its signature; optional when the input
                already has ``doc_embs`` (but then the index cannot check query models). Default: the index's.
            nbits: bits per residual dimension: 1, 2 (default), 4, or 16 (uncompressed float16).
            n_centroids: number of centroids (default: :func:`~pyterrier_lateint.index.kmeans.default_n_centroids`).
            kmeans_iters: k-means iterations (an int >= 0; default 8).
            kmeans_sample: vectors k-means is trained on; default 32 per centroid, at least 32,768 (all vectors when
                there are fewer).
            batch_size: documents encoded together (default 64).
            store_token_ids: also store each vector's token id (needs a model or a ``doc_toks`` field); needed by
                :meth:`prf`, :meth:`token_stats`, :meth:`explain` and ``query_pruning_by="cf"``.
            overwrite: replace an existing index (otherwise ``FileExistsError``). Whatever it says, a path holding
                something other than an index (a file, a folder of other files) is refused, never deleted; an
                empty folder is used.
            verbose: show progress bars (default True).
            pool_factor: token pooling: each document keeps about ``1 / pool_factor`` of its vectors (similar ones
                merged, :class:`~pyterrier_lateint.index.pruning.TokenPooler`); 1 (default) keeps them all. The
                fraction removed is recorded in ``metadata()["pooling"]``.
            codec: the residual quantiser, ``"pq"`` (default: product quantisation) or ``"scalar"`` (per-dimension
                buckets, the first indexes' codec; see :mod:`pyterrier_lateint.index.codec`).
            codec_from: another index (a ``ColBERTIndex``, a sharded index, or a path) whose centroids and residual
                quantiser are reused instead of trained (``nbits`` and ``codec`` are then its own).
            seed: seed of the samples and of k-means (default 0).
            assignment: how k-means and the compression find each vector's nearest centroid: ``"auto"`` (default:
                exact below 16,384 centroids, two-level from there, :mod:`~pyterrier_lateint.index.coarse`),
                ``"exact"`` or ``"coarse"``; ``metadata()["build"]["assignment"]`` records it.
            spill: True (default): the build writes every vector to a temporary float16 file beside the index
                (``n_vectors * dim * 2`` bytes: 67 GB for a million documents of 87 384-d vectors) and compresses
                from it. False: it reads the documents twice instead, keeping a uniform sample of the vectors in
                memory for the codec (float16, at most 1.25 x 2,097,152 of them by default: 2 GB at 384-d) and
                encoding every document again to compress it; the input must be re-iterable (a list, a DataFrame,
                or a function returning a fresh iterator, ``lambda: dataset.get_corpus_iter()``), and ``text`` is
                encoded twice. The index is the same as a spilled build's but for the random codec sample.

        Returns:
            ColBERTIndexer: the indexer; its ``index(docs)`` builds the index and returns this artifact.

        Raises:
            FileExistsError: when the path holds an index (without ``overwrite``) or anything but an empty folder,
                checked now rather than after encoding.
            TypeError: when an integer setting is not an int.
            ValueError: on an integer setting out of range, an unsupported ``nbits`` or ``codec``, or
                ``pool_factor`` below 1.

        Example:
            .. code-block:: python

                index = ColBERTIndex("scifact.lateint")
                indexer = index.indexer(model, nbits=4, store_token_ids=True)
                indexer.index(dataset.get_corpus_iter())
                # or in a pipeline, from precomputed vectors:
                (model.doc_encoder() >> index.indexer(model, overwrite=True)).index(dataset.get_corpus_iter())
        """
        check_int("n_centroids", n_centroids, optional=True)
        check_int("kmeans_iters", kmeans_iters, minimum=0)
        check_int("batch_size", batch_size)
        check_int("kmeans_sample", kmeans_sample, optional=True)
        check_int("seed", seed, minimum=0)
        check_target(Path(self.path), overwrite)  # refuse a file, a foreign folder or an index now, not after encoding
        return ColBERTIndexer(self, self._model(model), nbits=nbits, n_centroids=n_centroids,
                              kmeans_iters=kmeans_iters, kmeans_sample=kmeans_sample, batch_size=batch_size,
                              store_token_ids=store_token_ids, overwrite=overwrite, seed=seed, verbose=verbose,
                              codec_from=codec_from, codec=codec, pool_factor=pool_factor, assignment=assignment,
                              spill=spill)

    def retriever(self, model: Optional[LateInteractionModel] = None, *, num_results: int = 1000,
                  mode: str = "plaid", nprobe: Optional[int] = None, ncandidates: Optional[int] = None,
                  nexact: Optional[int] = None, batch_size: int = 64, backend: Optional[str] = None,
                  device: Optional[str] = None, verbose: bool = False, query_pruning: Optional[int] = None,
                  query_pruning_by: str = "cf") -> ColBERTRetriever:
        """End-to-end retriever: query frame -> top ``num_results`` documents per query.

        Queries come as ``query`` (encoded by ``model``) or ``query_embs``; input columns are kept, and ``docno``,
        ``score`` (exact MaxSim over the stored vectors, divided by the model's ``score_divisor``) and ``rank``
        are added.

        Args:
            model: encodes ``query``; default the index's. Must be the indexing model.
            num_results: documents per query (default 1000).
            mode: ``"plaid"`` (default) is the fast staged search; ``"exhaustive"`` scores every document exactly
                (the ground truth, slow).
            nprobe: centroids probed per query token; default by the collection's size
                (:func:`~pyterrier_lateint.index.search.default_nprobe`: 8 up to 100,000 documents); see
                :class:`~pyterrier_lateint.index.search.SearchParams`.
            ncandidates: documents kept by stage 1 for centroid interaction; default ``4 * nexact``.
            nexact: documents scored by exact MaxSim; default by the collection's size
                (:func:`~pyterrier_lateint.index.search.default_nexact`), at least ``num_results``.
            batch_size: queries encoded and searched together (default 64).
            backend: ``"numba"``, ``"torch"`` or ``None``; see :func:`~pyterrier_lateint.index.backends.select_backend`
                (default: torch on a GPU when there is one, else the multi-threaded numba CPU kernels).
            device: a torch device string for the torch backend; default as ``backend``.
            verbose: show a progress bar over the query batches.
            query_pruning: search with only this many query vectors; default ``None`` (all).
            query_pruning_by: which ones: ``"cf"`` (default: lowest collection frequency; needs
                ``store_token_ids=True``) or ``"position"`` (the first ones).

        Returns:
            ColBERTRetriever: the retriever transformer (``% k`` fuses into ``num_results``).

        Raises:
            IndexNotFoundError: when there is no complete index at the path.
            ModelMismatchError: when ``model`` differs from the indexing model.
            ValueError: on a bad ``mode``, backend, device or pruning setting, or ``query_pruning_by="cf"`` on an
                index without token ids.
            TypeError: when an integer setting is not an int.

        Example:
            .. code-block:: python

                retriever = index.retriever(num_results=100)
                results = retriever.search("chemical reactions")
                pt.Experiment([retriever, index.retriever(mode="exhaustive")], topics, qrels, ["nDCG@10"])
                fast = index.retriever(nprobe=4, nexact=128, query_pruning=16)
        """
        model = self._model(model)
        self.reader()  # fail now, not at transform time, if there is no complete index
        self.check_model(model)
        if query_pruning is not None and query_pruning_by == "cf":
            self.token_stats()  # fail now, not at transform time, if the index stores no token ids
        return ColBERTRetriever(self, model, num_results=num_results, mode=mode, nprobe=nprobe,
                                ncandidates=ncandidates, nexact=nexact, batch_size=batch_size, backend=backend,
                                device=device, verbose=verbose, query_pruning=query_pruning,
                                query_pruning_by=query_pruning_by)

    def scorer(self, model: Optional[LateInteractionModel] = None, *, batch_size: int = 64,
               on_unknown: str = "error", backend: Optional[str] = None, device: Optional[str] = None,
               verbose: bool = False) -> ColBERTScorer:
        """Re-ranker: result frame -> the same rows re-scored by exact MaxSim over the stored vectors.

        No document text and no document encoding: the documents' stored vectors are scored. Rows are re-ranked
        per query.

        Args:
            model: encodes ``query`` when the frame has no ``query_embs``; default the index's.
            batch_size: queries encoded and scored together (default 64).
            on_unknown: docnos not in the index: ``"error"`` (default, ``KeyError`` naming them) or ``"drop"``
                (remove those rows, logging how many).
            backend: ``"numba"``, ``"torch"`` or ``None`` (automatic); see
                :func:`~pyterrier_lateint.index.backends.select_backend`.
            device: a torch device string for the torch backend.
            verbose: show a progress bar over the query batches.

        Returns:
            ColBERTScorer: the scorer transformer.

        Raises:
            IndexNotFoundError: when there is no complete index at the path.
            ModelMismatchError: when ``model`` differs from the indexing model.
            ValueError: on a bad ``on_unknown``, backend or device.

        Example:
            .. code-block:: python

                bm25 = pt.terrier.Retriever.from_dataset("vaswani", "terrier_stemmed", wmodel="BM25")
                pipeline = bm25 % 100 >> index.scorer()
        """
        model = self._model(model)
        self.reader()
        self.check_model(model)
        return ColBERTScorer(self, model, batch_size=batch_size, on_unknown=on_unknown, backend=backend,
                             device=device, verbose=verbose)

    def prf(self, model: Optional[LateInteractionModel] = None, *, fb_docs: int = 3, fb_embs: int = 10,
            beta: float = 1.0, n_clusters: Optional[int] = None, rerank: bool = False, num_results: int = 1000,
            seed: int = 42, kmeans_iters: int = 20, mode: str = "plaid", nprobe: Optional[int] = None,
            ncandidates: Optional[int] = None, nexact: Optional[int] = None, batch_size: int = 64,
            backend: Optional[str] = None, device: Optional[str] = None, verbose: bool = False,
            k: Optional[int] = None) -> "ColBERTPRF":
        """ColBERT-PRF (Wang et al., ICTIR 2021): pseudo-relevance feedback on the stored vectors.

        Results -> the query expanded with ``fb_embs`` weighted centroids of the top ``fb_docs`` documents' vectors
        (``n_clusters`` clusters), then retrieved again (``rerank=False``) or the same documents re-scored
        (``rerank=True``). Needs ``store_token_ids=True``; see :class:`~pyterrier_lateint.index.prf.ColBERTPRF`.

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
            backend: as :meth:`retriever`'s.
            device: as :meth:`retriever`'s.
            verbose: show a progress bar over the queries.
            k: pyterrier_colbert's name of ``n_clusters`` (``ColbertPRF(k=24)``), taken for it; ``k`` is the
                result depth everywhere else here.

        Returns:
            ColBERTPRF: the transformer; its output has the expanded ``query_embs`` and ``prf_toks`` /
            ``prf_weights`` (token id and weight of each expansion vector).

        Raises:
            ModelMismatchError: when ``model`` differs from the indexing model.
            ValueError: on a setting out of range.

        Example:
            .. code-block:: python

                index = ColBERTIndex("vaswani.lateint", model)   # built with store_token_ids=True
                prf = index.retriever(num_results=10) >> index.prf(fb_docs=3, fb_embs=10, beta=1.0)
                prf_rerank = index.retriever() >> index.prf(rerank=True)
        """
        from .prf import ColBERTPRF
        model = self._model(model)
        self.check_model(model)
        return ColBERTPRF(self, model, fb_docs=fb_docs, fb_embs=fb_embs, beta=beta, n_clusters=n_clusters,
                          rerank=rerank, num_results=num_results, seed=seed, kmeans_iters=kmeans_iters, mode=mode,
                          nprobe=nprobe, ncandidates=ncandidates, nexact=nexact, batch_size=batch_size,
                          backend=backend, device=device, verbose=verbose, k=k)

    def token_stats(self) -> "TokenStats":
        """Document / collection frequency per token id; needs ``store_token_ids=True`` at indexing.

        Returns:
            TokenStats: the statistics (:class:`~pyterrier_lateint.index.token_stats.TokenStats`).

        Raises:
            ValueError: when the index stores no token ids.
            IndexCorruptError: when the statistics file is unreadable (naming it).
        """
        from .token_stats import load_token_stats
        return load_token_stats(self.reader(), repr(self))  # an unreadable stats file: IndexCorruptError naming it

    def explain(self, query: str, docno: str, model: Optional[LateInteractionModel] = None) -> pd.DataFrame:
        """Which stored document token each query token matched.

        One row per query token (see :func:`pyterrier_lateint.explain.explain_vectors`), from the stored vectors
        and token ids of ``docno`` (``store_token_ids=True``); the contributions sum to the score
        ``index.scorer()`` gives.

        Args:
            query: the query text (encoded by the model).
            docno: the document, by docno.
            model: the indexing model; default the index's.

        Returns:
            pandas.DataFrame: one row per query token vector; ``frame.attrs["score"]`` holds the MaxSim score.

        Raises:
            ValueError: when there is no model, or the index stores no token ids.
            KeyError: when ``docno`` is unknown or deleted.
            ModelMismatchError: when ``model`` differs from the indexing model.

        Example:
            .. code-block:: python

                table = index.explain("electron spin", docno="1024")
                print(table[["query_token", "doc_token", "similarity", "contribution"]])
        """
        from ..explain import explain_vectors
        return explain_vectors(*self._explain_inputs(query, docno, model))

    def explain_plot(self, query: str, docno: str, model: Optional[LateInteractionModel] = None, *,
                     path: Optional[Union[str, Path]] = None, title: Optional[str] = None):
        """Heat map of :meth:`explain`: query tokens x stored document tokens, each query token's winner outlined.

        Needs matplotlib (``pip install 'pyterrier-lateint[plots]'``).

        Args:
            query: the query text.
            docno: the document, by docno.
            model: the indexing model; default the index's.
            path: also save the figure there as a PNG; default: not saved.
            title: the title; default ``query '...' vs document DOCNO``.

        Returns:
            matplotlib.figure.Figure: the figure (no pyplot state).

        Raises:
            ImportError: when matplotlib is not installed.
            ValueError: when there is no model, or the index stores no token ids.
            KeyError: when ``docno`` is unknown or deleted.

        Example:
            .. code-block:: python

                index.explain_plot("electron spin", "1024", path="explain.png")
        """
        from ..explain import explain_plot_vectors
        return explain_plot_vectors(*self._explain_inputs(query, docno, model), path=path,
                                    title=title or f"query {query!r} vs document {docno}")

    def _explain_inputs(self, query: str, docno: str, model: Optional[LateInteractionModel]) -> tuple:
        model = self._model(model)
        if model is None:
            raise ValueError(f"{self!r}.explain needs the indexing model to encode the query: pass model=, or "
                             f"ColBERTIndex(path, model), or index.load_model()")
        self.check_model(model)
        d_ids = self.token_ids(docno)
        q_vecs, q_ids = model.encode_queries([query], return_ids=True)
        return (q_vecs[0], q_ids[0], self.vectors(docno), d_ids, getattr(model, "tokenizer", None),
                float(model.score_divisor(len(q_vecs[0]))))

    def vec_loader(self, *, on_unknown: str = "error") -> ColBERTVecLoader:
        """Transformer adding ``doc_embs`` (the stored vectors, decompressed: float32 ``(n_tokens, dim)``) by ``docno``.

        Args:
            on_unknown: docnos not in the index: ``"error"`` (default, ``KeyError`` naming them) or ``"drop"``
                (remove those rows, logging how many).

        Returns:
            ColBERTVecLoader: the transformer.

        Raises:
            IndexNotFoundError: when there is no complete index at the path.
            ValueError: on a bad ``on_unknown``.

        Example:
            .. code-block:: python

                with_vectors = index.retriever(num_results=10) >> index.vec_loader()
        """
        self.reader()
        return ColBERTVecLoader(self, on_unknown=on_unknown)

    def get_corpus_iter(self, *, verbose: bool = False, token_ids: bool = False) -> Iterator[dict[str, Any]]:
        """Every live document's stored vectors, in index order: re-index with other settings, or export.

        Args:
            verbose: show a progress bar.
            token_ids: also yield ``doc_toks`` (int32 ``(n_tokens,)``).

        Yields:
            dict: ``{"docno", "doc_embs"}`` (decompressed float32 ``(n_tokens, dim)``), plus ``doc_toks`` with
            ``token_ids``.

        Raises:
            ValueError: with ``token_ids`` when the index stores no token ids.
        """
        r = self.reader()
        if token_ids and r.token_ids is None:
            raise ValueError(f"{self!r} stores no token ids; index with indexer(..., store_token_ids=True)")
        docnos = DocnoList(r.docnos)
        starts = range(0, r.n_docs, CORPUS_ITER_CHUNK)
        pbar = pt.tqdm(total=r.n_live, desc=f"{self!r} corpus", unit="doc", disable=not verbose)
        for s in starts:
            ids = np.arange(s, min(s + CORPUS_ITER_CHUNK, r.n_docs), dtype=np.int64)
            if r.deleted is not None:  # live documents only
                ids = ids[~r.deleted[ids]]
                if len(ids) == 0:
                    continue
            vectors, offs = r.decompress_docs(ids)
            names = docnos[ids]  # one lookup per chunk
            for j, i in enumerate(ids):
                doc = {"docno": names[j], "doc_embs": vectors[offs[j]:offs[j + 1]]}
                if token_ids:
                    doc["doc_toks"] = np.asarray(r.token_ids[r.offsets[i]:r.offsets[i + 1]])
                yield doc
            pbar.update(len(ids))
        pbar.close()

    def load_model(self, **kwargs: Any) -> "ColBERT":
        """The model this index was built with, loaded from its recorded signature.

        The signature holds the checkpoint name or path and the encoding settings, so a downloaded index needs
        nothing else.

        Args:
            **kwargs: passed to :meth:`ColBERT.from_pretrained <pyterrier_lateint.ColBERT.from_pretrained>`
                (``device``, ``precision``, ...).

        Returns:
            ColBERT: the indexing model.

        Raises:
            ValueError: when the index records no model (it was indexed from vectors).
            ModelMismatchError: if the loaded model's vectors would differ.
        """
        from ..colbert import ColBERT
        from ..models import DEFAULT_MODEL, EncodingConfig
        sig = self.reader().signature
        if sig is None:
            raise ValueError(f"{self!r} records no model (it was indexed from vectors); pass the model yourself")
        settings = {f.name: sig[f.name] for f in dataclasses.fields(EncodingConfig) if f.name in sig}
        settings["doc_skiplist"] = tuple(settings.get("doc_skiplist", ()))
        name = None if sig["name"] == DEFAULT_MODEL else sig["name"]
        model = ColBERT.from_pretrained(name, layout=sig.get("layout"), **settings, **kwargs)
        self.check_model(model)
        return model

    def check_model(self, model: Optional[LateInteractionModel]) -> None:
        """Check that ``model`` is the one the index was built with (an index that records no model logs a
        warning). Every transformer of the index calls it.

        Args:
            model: a late-interaction model, or ``None`` (nothing to check).

        Raises:
            ModelMismatchError: naming the settings that differ.
        """
        check_signature(self.reader().signature, model, repr(self))

    # --- inspection ---------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        """Live documents (deleted ones excluded)."""
        return self.reader().n_live

    def docnos(self) -> DocnoList:
        """The live documents' docnos in index order (memory-mapped).

        Added documents come after the earlier ones; deleted ones are left out.

        Returns:
            DocnoList: supports ``len``, ``[i]``, ``[a:b]``, iteration and ``in``.
        """
        r = self.reader()
        return DocnoList(r.docnos, r.live_ids())

    # --- changing the index (see pyterrier_lateint.index.mutation) ---------------------------------------------
    def add(self, docs: Union[Iterable[dict], pd.DataFrame], model: Optional[LateInteractionModel] = None, *,
            replace: bool = False, batch_size: int = 64, verbose: bool = False) -> int:
        """Encode and append documents as a new segment, compressed with the index's centroids.

        A docno already live raises ``ValueError`` unless ``replace=True`` (the old document is deleted in the same
        commit); a deleted docno can be added again. The change is one atomic commit.

        Args:
            docs: documents (dicts or a frame) with ``docno`` and ``text``, or ``doc_embs``.
            model: encodes ``text``; default the index's, else the model the index records (:meth:`load_model`,
                loaded when some document has no ``doc_embs``).
            replace: replace live documents with the same docno instead of raising.
            batch_size: documents encoded together (default 64).
            verbose: show progress bars.

        Returns:
            int: how many documents were added.

        Raises:
            ValueError: for a docno already live (without ``replace``) or repeated in ``docs``.
            KeyError: for a document without ``docno``.
        """
        from .mutation import add_documents
        n = add_documents(self, docs, self._model(model), replace=replace, batch_size=batch_size, verbose=verbose)
        self.reload()
        return n

    def delete(self, docnos: Union[str, Iterable[str]], *, on_unknown: str = "error") -> int:
        """Delete documents at once (tombstones; space is reclaimed by :meth:`compact`).

        Args:
            docnos: one docno, an iterable of them, or a frame with a ``docno`` column.
            on_unknown: ``"error"`` (default) raises for unknown or already deleted docnos; ``"drop"`` skips them
                (``"ignore"``, its former name, is taken as ``"drop"``).

        Returns:
            int: how many documents were deleted.

        Raises:
            KeyError: for unknown or already deleted docnos (with ``on_unknown="error"``).
            ValueError: on a bad ``on_unknown``.
        """
        from .mutation import delete_documents
        n = delete_documents(self, docnos, on_unknown=on_unknown)
        self.reload()
        return n

    def compact(self, retrain: bool = False, n_centroids: Optional[int] = None, verbose: bool = False) -> None:
        """Rewrite the index as one segment without deleted documents and swap it in atomically.

        Also upgrades a format-1 index.

        Args:
            retrain: train new centroids and buckets on the live documents (their stored vectors, decompressed),
                e.g. after many adds; otherwise (default) the stored bytes are copied as they are (search results
                unchanged).
            n_centroids: centroids to train (only with ``retrain``); default as at indexing
                (:func:`~pyterrier_lateint.index.kmeans.default_n_centroids`).
            verbose: show progress bars.

        Raises:
            ValueError: for ``n_centroids`` without ``retrain``, or when every document is deleted.
        """
        from .mutation import compact_index
        check_int("n_centroids", n_centroids, optional=True)
        if n_centroids is not None and not retrain:
            raise ValueError(f"n_centroids={n_centroids} needs compact(retrain=True): without retraining the index "
                             f"keeps its {self.reader().codec.n_centroids} centroids")
        compact_index(self, retrain=retrain, n_centroids=n_centroids, verbose=verbose)
        self.reload()

    def verify(self) -> dict[str, Any]:
        """Check every file's size and checksum (and ``lateint.json``'s own).

        Opening the index already checks all but the per-vector data (codes, residuals, token ids, postings; see
        :class:`~pyterrier_lateint.index.layout.IndexReader`).

        Returns:
            dict: ``{"files": n, "bytes": n}``, the files and bytes checked.

        Raises:
            IndexCorruptError: naming the damaged file
                (:class:`~pyterrier_lateint.index.integrity.IndexCorruptError`).
            ValueError: for a format-1 index, which records no checksums (:meth:`compact` upgrades it).
        """
        r = IndexReader(Path(self.path))
        n_bytes = r.verify()
        return {"files": len(r.meta["files"]), "bytes": n_bytes}

    def doclens(self) -> np.ndarray:
        """Vectors per document, by internal doc id (memory-mapped).

        Returns:
            numpy.ndarray: int32 ``(n_docs,)``; deleted documents keep their entry until :meth:`compact`, so
            ``n_docs`` can exceed ``len(index)``.
        """
        return self.reader().doclens

    def _doc_id(self, r: IndexReader, docno: str, who: str) -> int:
        """The internal id of one ``docno``; ``TypeError`` for anything but one docno, ``KeyError`` if unknown."""
        if not isinstance(docno, (str, np.str_, int, np.integer)) or isinstance(docno, bool):
            raise TypeError(f"{self!r}.{who} takes one docno (a str), not {type(docno).__name__} {docno!r:.60}; for "
                            f"many documents use index.vec_loader() on a frame with a 'docno' column")
        return int(r.doc_ids([str(docno)], fix=f"check it first ({str(docno)!r} in index.docnos()); "
                                               f"vec_loader(on_unknown='drop') skips unknown docnos in a frame")[0])

    def vectors(self, docno: str) -> np.ndarray:
        """The decompressed vectors of one document.

        Args:
            docno: the document's docno (one str).

        Returns:
            numpy.ndarray: float32 ``(n_tokens, dim)``.

        Raises:
            KeyError: when ``docno`` is unknown (or deleted).
            TypeError: when ``docno`` is not one docno (for many, use :meth:`vec_loader`).
        """
        r = self.reader()
        vecs, _ = r.decompress_docs(np.array([self._doc_id(r, docno, "vectors")], dtype=np.int64))
        return vecs

    def token_ids(self, docno: str) -> np.ndarray:
        """The token ids of one document's vectors; needs ``store_token_ids=True`` at indexing.

        Args:
            docno: the document's docno (one str).

        Returns:
            numpy.ndarray: int32 ``(n_tokens,)``, aligned with :meth:`vectors`.

        Raises:
            ValueError: when the index stores no token ids.
            KeyError: when ``docno`` is unknown (or deleted).
            TypeError: when ``docno`` is not one docno.
        """
        r = self.reader()
        if r.token_ids is None:
            raise ValueError(f"{self!r} stores no token ids (needed for token texts and statistics); re-index "
                             f"with indexer(model, store_token_ids=True)")
        i = self._doc_id(r, docno, "token_ids")
        return np.asarray(r.token_ids[r.offsets[i]:r.offsets[i + 1]])

    def metadata(self) -> dict:
        """The index metadata (``lateint.json``): model signature, nbits, counts, build timings.

        Returns:
            dict: a copy of the committed metadata.
        """
        return dict(self.reader().meta)

    def size_bytes(self) -> dict[str, int]:
        """Bytes on disk per file of the index.

        Returns:
            dict: file name -> size in bytes (the committed sizes).
        """
        return self.reader().size_bytes()
