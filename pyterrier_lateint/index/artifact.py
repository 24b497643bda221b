"""The ColBERTIndex artifact: a compressed, memory-mapped late-interaction index and its transformer factories."""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Iterable, Optional, Union

import numpy as np
import pandas as pd
import pyterrier as pt

from ..base import check_int
from ..models import LateInteractionModel, check_model
from .build import ColBERTIndexer, check_target
from .layout import ARTIFACT_FORMAT, ARTIFACT_TYPE, META_FILE, PACKAGE_HINT, DocnoList, IndexReader
from .retriever import ColBERTRetriever
from .pruning import TokenPooler
from .scorer import ColBERTScorer, ColBERTVecLoader

if TYPE_CHECKING:
    from ..colbert import ColBERT
    from .prf import ColBERTPRF
    from .token_stats import TokenStats

CORPUS_ITER_CHUNK = 1024  # documents decompressed together by get_corpus_iter

logger = logging.getLogger(__name__)


class ModelMismatchError(ValueError):
    """The model given to a retriever/scorer is not the one the index was built with."""


def _meta_stamp(path: Path) -> Optional[tuple]:
    """Identity of the committed metadata file (a commit replaces it: new inode)."""
    try:
        st = os.stat(path / META_FILE)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


class ColBERTIndex(pt.Artifact, pt.Indexer):
    """A compressed late-interaction (ColBERT) index on disk; a ``pt.Artifact`` and a ``pt.Indexer``, as
    ``PisaIndex`` and pyterrier_dr's ``FlexIndex`` are.

    ``ColBERTIndex(path, model=None)`` is instant: files are memory-mapped when first needed. Build it with
    :meth:`index` or :meth:`indexer`; search it with :meth:`retriever`, re-rank with :meth:`scorer`. ``model`` is
    the default of every factory's ``model`` argument. See :mod:`pyterrier_lateint.index.layout` for the files;
    :meth:`build_package` / ``pt.Artifact.from_url`` (and ``to_hf`` / ``from_hf``) share an index.
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

    def _reset(self) -> None:
        self._reader_cache = None

    def _reader(self) -> IndexReader:
        """The open state of the index; re-opened when a writer (this process or another) committed since."""
        stamp = _meta_stamp(Path(self.path))
        if self._reader_cache is None or stamp != self._reader_stamp:
            self._reader_cache = IndexReader(Path(self.path), verify=self.verify_on_open)
            self._reader_stamp = stamp
        return self._reader_cache

    def built(self) -> bool:
        """Whether a complete index exists at the path: False when nothing, a file, or a folder without a
        complete index is there; a damaged index raises
        :class:`~pyterrier_lateint.index.integrity.IndexCorruptError` rather than passing for absent."""
        try:
            self._reader()
        except FileNotFoundError:  # IndexNotFoundError: nothing, a file, a half-written or foreign folder
            return False
        return True

    def _model(self, model: Optional[LateInteractionModel]) -> Optional[LateInteractionModel]:
        return self.model if model is None else check_model(model, repr(self))

    def index(self, inp: Union[Iterable[dict], pd.DataFrame]) -> "ColBERTIndex":
        """Index documents (``docno`` with ``text`` encoded by the index's model, or ``doc_embs``) at default
        settings: ``index.indexer(model).index(inp)``, with ``model`` from the constructor."""
        return self.indexer().index(inp)

    def index_inputs(self) -> list[list[str]]:
        return [["docno", "text"], ["docno", "doc_embs"]]

    # --- factories ----------------------------------------------------------------------------------------------
    def indexer(self, model: Optional[LateInteractionModel] = None, *, nbits: int = 2, n_centroids: Optional[int] = None,
                kmeans_iters: int = 8, batch_size: int = 64, store_token_ids: bool = False,
                overwrite: bool = False, verbose: bool = True, pool_factor: float = 1, **kwargs: Any) -> ColBERTIndexer:
        """An indexer writing this index.

        Args:
            model: encodes ``text`` (``model.encode_docs``) and records its signature; optional when the input
                already has ``doc_embs`` (but then the index cannot check query models). Default: the index's.
            nbits: bits per residual dimension: 1, 2, 4, or 16 (uncompressed float16).
            codec: (keyword) the residual quantiser, ``"pq"`` (default: product quantisation) or ``"scalar"``
                (per-dimension buckets, the first indexes' codec); see :mod:`pyterrier_lateint.index.codec`.
            n_centroids: number of centroids (default: :func:`~pyterrier_lateint.index.kmeans.default_n_centroids`).
            store_token_ids: also store each vector's token id (needs a model or a ``doc_toks`` field).
            overwrite: replace an existing index (otherwise ``FileExistsError``). Whatever it says, a path holding
                something other than an index (a file, a folder of other files) is refused, never deleted; an
                empty folder is used.
            pool_factor: token pooling: each document keeps about ``1 / pool_factor`` of its vectors (similar ones
                merged, :class:`~pyterrier_lateint.index.pruning.TokenPooler`); 1 (default) keeps them all. The
                fraction removed is recorded in ``metadata()["pooling"]``.
        """
        check_int("n_centroids", n_centroids, optional=True)
        check_int("kmeans_iters", kmeans_iters, minimum=0)
        check_int("batch_size", batch_size)
        if kwargs.get("kmeans_sample") is not None:
            check_int("kmeans_sample", kwargs["kmeans_sample"])
        check_target(Path(self.path), overwrite)  # refuse a file, a foreign folder or an index now, not after encoding
        indexer = ColBERTIndexer(self, self._model(model), nbits=nbits, n_centroids=n_centroids,
                                 kmeans_iters=kmeans_iters, batch_size=batch_size, store_token_ids=store_token_ids,
                                 overwrite=overwrite, verbose=verbose, **kwargs)
        indexer.pooler = TokenPooler(pool_factor) if pool_factor != 1 else None  # read by build._batch_vectors
        return indexer

    def retriever(self, model: Optional[LateInteractionModel] = None, *, num_results: int = 1000,
                  mode: str = "plaid", nprobe: Optional[int] = None, ncandidates: Optional[int] = None,
                  nexact: Optional[int] = None, batch_size: int = 64, backend: Optional[str] = None,
                  device: Optional[str] = None, verbose: bool = False, query_pruning: Optional[int] = None,
                  query_pruning_by: str = "cf") -> ColBERTRetriever:
        """End-to-end retriever: query frame -> top ``num_results`` documents per query.

        ``mode="plaid"`` (default) is the fast staged search; ``mode="exhaustive"`` scores every document exactly.
        ``nprobe``/``ncandidates``/``nexact``: see :class:`~pyterrier_lateint.index.search.SearchParams`.
        ``backend``/``device``: see :func:`~pyterrier_lateint.index.backends.select_backend` (default: torch on a
        GPU when there is one, else the multi-threaded numba CPU kernels).
        ``query_pruning=n``: search with only ``n`` query vectors, those of lowest collection frequency
        (``query_pruning_by="cf"``, needs ``store_token_ids=True``) or the first ``n`` (``"position"``).
        Raises :class:`ModelMismatchError` when ``model`` differs from the indexing model.
        """
        model = self._model(model)
        self._reader()  # fail now, not at transform time, if there is no complete index
        self._check_model(model)
        if query_pruning is not None and query_pruning_by == "cf":
            self.token_stats()  # fail now, not at transform time, if the index stores no token ids
        return ColBERTRetriever(self, model, num_results=num_results, mode=mode, nprobe=nprobe,
                                ncandidates=ncandidates, nexact=nexact, batch_size=batch_size, backend=backend,
                                device=device, verbose=verbose, query_pruning=query_pruning,
                                query_pruning_by=query_pruning_by)

    def scorer(self, model: Optional[LateInteractionModel] = None, *, batch_size: int = 64,
               on_unknown: str = "error", backend: Optional[str] = None, device: Optional[str] = None,
               verbose: bool = False) -> ColBERTScorer:
        """Re-ranker: result frame -> same rows re-scored by exact MaxSim over the stored vectors."""
        model = self._model(model)
        self._reader()
        self._check_model(model)
        return ColBERTScorer(self, model, batch_size=batch_size, on_unknown=on_unknown, backend=backend,
                             device=device, verbose=verbose)

    def prf(self, model: Optional[LateInteractionModel] = None, *, fb_docs: int = 3, fb_embs: int = 10,
            beta: float = 1.0, k: int = 24, rerank: bool = False, num_results: int = 1000, seed: int = 42,
            **kwargs: Any) -> "ColBERTPRF":
        """ColBERT-PRF (Wang et al., ICTIR 2021): results -> the query expanded with ``fb_embs`` weighted centroids
        of the top ``fb_docs`` documents' vectors (``k`` clusters), then retrieved again (``rerank=False``) or the
        same documents re-scored (``rerank=True``). Needs ``store_token_ids=True``; see
        :class:`~pyterrier_lateint.index.prf.ColBERTPRF` (``kwargs``: ``nprobe``, ``nexact``, ``backend``, ...)."""
        from .prf import ColBERTPRF
        model = self._model(model)
        self._check_model(model)
        return ColBERTPRF(self, model, fb_docs=fb_docs, fb_embs=fb_embs, beta=beta, k=k, rerank=rerank,
                          num_results=num_results, seed=seed, **kwargs)

    def token_stats(self) -> "TokenStats":
        """Document / collection frequency per token id (:class:`~pyterrier_lateint.index.token_stats.TokenStats`);
        needs ``store_token_ids=True`` at indexing."""
        from .token_stats import load_token_stats
        return load_token_stats(self._reader(), repr(self))  # an unreadable stats file: IndexCorruptError naming it

    def explain(self, query: str, docno: str, model: Optional[LateInteractionModel] = None) -> pd.DataFrame:
        """Which stored document token each query token matched: one row per query token (see
        :func:`pyterrier_lateint.explain.explain_vectors`), from the stored vectors and token ids of ``docno``
        (``store_token_ids=True``); similarities sum to the score ``index.scorer()`` gives."""
        from ..explain import explain_vectors
        return explain_vectors(*self._explain_inputs(query, docno, model))

    def explain_plot(self, query: str, docno: str, model: Optional[LateInteractionModel] = None, *,
                     path: Optional[Union[str, Path]] = None, title: Optional[str] = None):
        """Heat map of :meth:`explain` (a matplotlib ``Figure``; ``path`` also saves a PNG)."""
        from ..explain import explain_plot_vectors
        return explain_plot_vectors(*self._explain_inputs(query, docno, model), path=path,
                                    title=title or f"query {query!r} vs document {docno}")

    def _explain_inputs(self, query: str, docno: str, model: Optional[LateInteractionModel]) -> tuple:
        model = self._model(model)
        if model is None:
            raise ValueError(f"{self!r}.explain needs the indexing model to encode the query: pass model=, or "
                             f"ColBERTIndex(path, model), or index.load_model()")
        self._check_model(model)
        d_ids = self.token_ids(docno)
        q_vecs, q_ids = model.encode_queries([query], return_ids=True)
        return (q_vecs[0], q_ids[0], self.vectors(docno), d_ids, getattr(model, "tokenizer", None),
                float(model.score_divisor(len(q_vecs[0]))))

    def vec_loader(self, on_unknown: str = "error") -> ColBERTVecLoader:
        """Transformer adding ``doc_embs`` (stored vectors, decompressed) by ``docno``."""
        self._reader()
        return ColBERTVecLoader(self, on_unknown=on_unknown)

    def get_corpus_iter(self, verbose: bool = False, token_ids: bool = False) -> Iterator[dict[str, Any]]:
        """Yield ``{"docno", "doc_embs"}`` (decompressed float32 ``(n_tokens, dim)``; with ``token_ids`` also
        ``doc_toks``) for every document in index order: re-index with other settings, or export."""
        r = self._reader()
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
        """The model this index was built with, loaded from its recorded signature (checkpoint name or path and
        encoding settings), so a downloaded index needs nothing else; ``kwargs`` go to ``from_pretrained``
        (``device``, ``precision``, ...). Raises :class:`ModelMismatchError` if the loaded model's vectors would
        differ."""
        from ..colbert import ColBERT
        from ..models import DEFAULT_MODEL, EncodingConfig
        sig = self._reader().signature
        if sig is None:
            raise ValueError(f"{self!r} records no model (it was indexed from vectors); pass the model yourself")
        settings = {f.name: sig[f.name] for f in dataclasses.fields(EncodingConfig) if f.name in sig}
        settings["doc_skiplist"] = tuple(settings.get("doc_skiplist", ()))
        name = None if sig["name"] == DEFAULT_MODEL else sig["name"]
        model = ColBERT.from_pretrained(name, layout=sig.get("layout"), **settings, **kwargs)
        self._check_model(model)
        return model

    def _check_model(self, model: Optional[LateInteractionModel]) -> None:
        if model is None:
            return
        stored = self._reader().signature
        if stored is None:
            logger.warning("%r records no model signature; cannot check that %r matches the indexing model",
                           self, model)
            return
        given = json.loads(json.dumps(model.signature(), default=str))
        if given != stored:
            diff = sorted(k for k in set(stored) | set(given) if stored.get(k) != given.get(k))
            details = ", ".join(f"{k}: index={stored.get(k)!r} vs model={given.get(k)!r}" for k in diff[:6])
            raise ModelMismatchError(f"{self!r} was built with a different model ({details}); use the indexing "
                                     f"model or re-index with this one")

    # --- inspection ---------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        """Live documents (deleted ones excluded)."""
        return self._reader().n_live

    def docnos(self) -> DocnoList:
        """The live documents' docnos in index order (memory-mapped): ``len``, ``[i]``, ``[a:b]``, iteration,
        ``in``. Added documents come after the earlier ones; deleted ones are left out."""
        r = self._reader()
        return DocnoList(r.docnos, r.live_ids())

    # --- changing the index (see pyterrier_lateint.index.mutation) ---------------------------------------------
    def add(self, docs: Union[Iterable[dict], pd.DataFrame], model: Optional[LateInteractionModel] = None, *,
            replace: bool = False, batch_size: int = 64, verbose: bool = False) -> int:
        """Encode and append documents (``docno`` and ``text``, or ``doc_embs``) as a new segment, compressed with
        the index's centroids; returns how many were added. A docno already live raises ``ValueError`` unless
        ``replace=True`` (the old document is deleted in the same commit); a deleted docno can be added again."""
        from .mutation import add_documents
        n = add_documents(self, docs, self._model(model), replace=replace, batch_size=batch_size, verbose=verbose)
        self._reset()
        return n

    def delete(self, docnos: Union[str, Iterable[str]], on_unknown: str = "error") -> int:
        """Delete documents at once (tombstones; space is reclaimed by :meth:`compact`); returns how many were
        deleted. Unknown or already deleted docnos raise ``KeyError`` (``on_unknown="ignore"`` skips them)."""
        from .mutation import delete_documents
        n = delete_documents(self, docnos, on_unknown=on_unknown)
        self._reset()
        return n

    def compact(self, retrain: bool = False, n_centroids: Optional[int] = None, verbose: bool = False) -> None:
        """Rewrite the index as one segment without deleted documents and swap it in atomically. ``retrain``:
        train new centroids and buckets on the live documents (their stored vectors, decompressed), e.g. after
        many adds; otherwise the stored bytes are copied as they are (search results unchanged). Also upgrades a
        format-1 index."""
        from .mutation import compact_index
        check_int("n_centroids", n_centroids, optional=True)
        if n_centroids is not None and not retrain:
            raise ValueError(f"n_centroids={n_centroids} needs compact(retrain=True): without retraining the index "
                             f"keeps its {self._reader().codec.n_centroids} centroids")
        compact_index(self, retrain=retrain, n_centroids=n_centroids, verbose=verbose)
        self._reset()

    def verify(self) -> dict[str, Any]:
        """Check every file's size and checksum (and ``lateint.json``'s own); raises
        :class:`~pyterrier_lateint.index.integrity.IndexCorruptError` naming the damaged file, else returns
        ``{"files": n, "bytes": n}``. Opening the index already checks all but the per-vector data (codes,
        residuals, token ids, postings; see :class:`~pyterrier_lateint.index.layout.IndexReader`)."""
        r = IndexReader(Path(self.path))
        n_bytes = r.verify()
        return {"files": len(r.meta["files"]), "bytes": n_bytes}

    def doclens(self) -> np.ndarray:
        """Vectors per document, int32 ``(n_docs,)`` (memory-mapped)."""
        return self._reader().doclens

    def _doc_id(self, r: IndexReader, docno: str, who: str) -> int:
        """The internal id of one ``docno``; ``TypeError`` for anything but one docno, ``KeyError`` if unknown."""
        if not isinstance(docno, (str, np.str_, int, np.integer)) or isinstance(docno, bool):
            raise TypeError(f"{self!r}.{who} takes one docno (a str), not {type(docno).__name__} {docno!r:.60}; for "
                            f"many documents use index.vec_loader() on a frame with a 'docno' column")
        return int(r.doc_ids([str(docno)], fix=f"check it first ({str(docno)!r} in index.docnos()); "
                                               f"vec_loader(on_unknown='drop') skips unknown docnos in a frame")[0])

    def vectors(self, docno: str) -> np.ndarray:
        """The decompressed vectors of ``docno``: float32 ``(n_tokens, dim)``; ``KeyError`` if unknown (or
        deleted)."""
        r = self._reader()
        vecs, _ = r.decompress_docs(np.array([self._doc_id(r, docno, "vectors")], dtype=np.int64))
        return vecs

    def token_ids(self, docno: str) -> np.ndarray:
        """The token ids of ``docno``'s vectors, int32 ``(n_tokens,)``; needs ``store_token_ids=True`` at indexing."""
        r = self._reader()
        if r.token_ids is None:
            raise ValueError(f"{self!r} stores no token ids (needed for token texts and statistics); re-index "
                             f"with indexer(model, store_token_ids=True)")
        i = self._doc_id(r, docno, "token_ids")
        return np.asarray(r.token_ids[r.offsets[i]:r.offsets[i + 1]])

    def metadata(self) -> dict:
        """The index metadata (``lateint.json``): model signature, nbits, counts, build timings."""
        return dict(self._reader().meta)

    def size_bytes(self) -> dict[str, int]:
        """Bytes on disk per file of the index."""
        return self._reader().size_bytes()
