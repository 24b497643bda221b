"""The ColBERTIndex artifact: a compressed, memory-mapped late-interaction index and its transformer factories."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import pyterrier as pt

from .build import ColBERTIndexer
from .layout import ARTIFACT_FORMAT, ARTIFACT_TYPE, PACKAGE_HINT, IndexReader
from .scorer import ColBERTRetriever, ColBERTScorer

logger = logging.getLogger(__name__)


class ModelMismatchError(ValueError):
    """The model given to a retriever/scorer is not the one the index was built with."""


class ColBERTIndex(pt.Artifact):
    """A compressed late-interaction (ColBERT) index on disk.

    ``ColBERTIndex(path)`` is instant: files are memory-mapped when first needed. Build it with
    :meth:`indexer`; search it with :meth:`retriever`, re-rank with :meth:`scorer`. See
    :mod:`pyterrier_lateint.index.layout` for the files.
    """

    ARTIFACT_TYPE = ARTIFACT_TYPE
    ARTIFACT_FORMAT = ARTIFACT_FORMAT
    ARTIFACT_PACKAGE_HINT = PACKAGE_HINT

    def __init__(self, path: Union[str, Path]):
        super().__init__(path)
        self._reader_cache: Optional[IndexReader] = None

    def __repr__(self) -> str:
        return f"ColBERTIndex({str(self.path)!r})"

    def _reset(self) -> None:
        self._reader_cache = None

    def _reader(self) -> IndexReader:
        if self._reader_cache is None:
            self._reader_cache = IndexReader(Path(self.path))
        return self._reader_cache

    def built(self) -> bool:
        """Whether a complete index exists at the path."""
        try:
            self._reader()
        except FileNotFoundError:
            return False
        return True

    # --- factories ----------------------------------------------------------------------------------------------
    def indexer(self, model: Any = None, *, nbits: int = 2, n_centroids: Optional[int] = None,
                kmeans_iters: int = 8, batch_size: int = 64, store_token_ids: bool = False,
                overwrite: bool = False, verbose: bool = True, **kwargs: Any) -> ColBERTIndexer:
        """An indexer writing this index.

        Args:
            model: encodes ``text`` (``model.encode_docs``) and records its signature; optional when the input
                already has ``doc_toks`` (but then the index cannot check query models).
            nbits: bits per residual dimension: 1, 2, 4, or 16 (uncompressed float16).
            n_centroids: number of centroids (default: :func:`~pyterrier_lateint.index.kmeans.default_n_centroids`).
            store_token_ids: also store each vector's token id (needs a model or a ``doc_token_ids`` field).
            overwrite: replace an existing index (otherwise ``FileExistsError``).
        """
        return ColBERTIndexer(self, model, nbits=nbits, n_centroids=n_centroids, kmeans_iters=kmeans_iters,
                              batch_size=batch_size, store_token_ids=store_token_ids, overwrite=overwrite,
                              verbose=verbose, **kwargs)

    def retriever(self, model: Any = None, *, num_results: int = 1000, mode: str = "plaid",
                  nprobe: Optional[int] = None, ncandidates: Optional[int] = None, nexact: Optional[int] = None,
                  batch_size: int = 64, device: Optional[str] = None, verbose: bool = False) -> ColBERTRetriever:
        """End-to-end retriever: query frame -> top ``num_results`` documents per query.

        ``mode="plaid"`` (default) is the fast staged search; ``mode="exhaustive"`` scores every document exactly.
        ``nprobe``/``ncandidates``/``nexact``: see :class:`~pyterrier_lateint.index.search.SearchParams`.
        ``device``: ``None`` = a GPU (torch) when available, else the multi-threaded numba CPU path; ``"cpu"``
        forces the CPU path; ``"cuda"``/``"cuda:N"`` the torch path on that GPU.
        Raises :class:`ModelMismatchError` when ``model`` differs from the indexing model.
        """
        self._reader()  # fail now, not at transform time, if there is no complete index
        self._check_model(model)
        return ColBERTRetriever(self, model, num_results=num_results, mode=mode, nprobe=nprobe,
                                ncandidates=ncandidates, nexact=nexact, batch_size=batch_size, device=device,
                                verbose=verbose)

    def scorer(self, model: Any = None, *, batch_size: int = 64, on_unknown: str = "error",
               device: Optional[str] = None, verbose: bool = False) -> ColBERTScorer:
        """Re-ranker: result frame -> same rows re-scored by exact MaxSim over the stored vectors."""
        self._reader()
        self._check_model(model)
        return ColBERTScorer(self, model, batch_size=batch_size, on_unknown=on_unknown, device=device,
                             verbose=verbose)

    def _check_model(self, model: Any) -> None:
        if model is None:
            return
        stored = self._reader().signature
        if stored is None:
            logger.warning("%r records no model signature; cannot check that %r matches the indexing model",
                           self, model)
            return
        given = model.signature() if hasattr(model, "signature") else None
        if given is None:
            raise ModelMismatchError(f"{model!r} has no signature(); the index was built with {stored}")
        given = json.loads(json.dumps(given, default=str))
        if given != stored:
            diff = sorted(k for k in set(stored) | set(given) if stored.get(k) != given.get(k))
            details = ", ".join(f"{k}: index={stored.get(k)!r} vs model={given.get(k)!r}" for k in diff[:6])
            raise ModelMismatchError(f"{self!r} was built with a different model ({details}); use the indexing "
                                     f"model or re-index with this one")

    # --- inspection ---------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._reader().n_docs

    def docnos(self):
        """The docnos, in index order: a memory-mapped ``npids.Lookup`` (``len``, iteration, ``[i]``,
        ``.inv.lookup(docnos)``)."""
        return self._reader().docnos

    def doclens(self) -> np.ndarray:
        """Vectors per document, int32 ``(n_docs,)`` (memory-mapped)."""
        return self._reader().doclens

    def vectors(self, docno: str) -> np.ndarray:
        """The decompressed vectors of ``docno``: float32 ``(n_tokens, dim)``; ``KeyError`` if unknown."""
        r = self._reader()
        vecs, _ = r.decompress_docs(r.doc_ids([docno]))
        return vecs

    def token_ids(self, docno: str) -> np.ndarray:
        """The token ids of ``docno``'s vectors, int32 ``(n_tokens,)``; needs ``store_token_ids=True`` at indexing."""
        r = self._reader()
        if r.token_ids is None:
            raise ValueError(f"{self!r} stores no token ids; index with indexer(..., store_token_ids=True)")
        i = int(r.doc_ids([docno])[0])
        return np.asarray(r.token_ids[r.offsets[i]:r.offsets[i + 1]])

    def metadata(self) -> dict:
        """The index metadata (``lateint.json``): model signature, nbits, counts, build timings."""
        return dict(self._reader().meta)

    def size_bytes(self) -> dict[str, int]:
        """Bytes on disk per file of the index."""
        return self._reader().size_bytes()
