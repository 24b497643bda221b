"""The ColBERTIndex artifact: a compressed, memory-mapped late-interaction index and its transformer factories."""
from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Iterable, Optional, Union

import numpy as np
import pandas as pd
import pyterrier as pt

from ..models import LateInteractionModel, check_model
from .build import ColBERTIndexer
from .layout import ARTIFACT_FORMAT, ARTIFACT_TYPE, PACKAGE_HINT, DocnoList, IndexReader
from .retriever import ColBERTRetriever
from .scorer import ColBERTScorer, ColBERTVecLoader

if TYPE_CHECKING:
    from ..colbert import ColBERT

CORPUS_ITER_CHUNK = 1024  # documents decompressed together by get_corpus_iter

logger = logging.getLogger(__name__)


class ModelMismatchError(ValueError):
    """The model given to a retriever/scorer is not the one the index was built with."""


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

    def __init__(self, path: Union[str, Path], model: Optional[LateInteractionModel] = None):
        super().__init__(path)
        self.model = check_model(model, "ColBERTIndex")
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
                overwrite: bool = False, verbose: bool = True, **kwargs: Any) -> ColBERTIndexer:
        """An indexer writing this index.

        Args:
            model: encodes ``text`` (``model.encode_docs``) and records its signature; optional when the input
                already has ``doc_embs`` (but then the index cannot check query models). Default: the index's.
            nbits: bits per residual dimension: 1, 2, 4, or 16 (uncompressed float16).
            n_centroids: number of centroids (default: :func:`~pyterrier_lateint.index.kmeans.default_n_centroids`).
            store_token_ids: also store each vector's token id (needs a model or a ``doc_toks`` field).
            overwrite: replace an existing index (otherwise ``FileExistsError``).
        """
        return ColBERTIndexer(self, self._model(model), nbits=nbits, n_centroids=n_centroids, kmeans_iters=kmeans_iters,
                              batch_size=batch_size, store_token_ids=store_token_ids, overwrite=overwrite,
                              verbose=verbose, **kwargs)

    def retriever(self, model: Optional[LateInteractionModel] = None, *, num_results: int = 1000,
                  mode: str = "plaid", nprobe: Optional[int] = None, ncandidates: Optional[int] = None,
                  nexact: Optional[int] = None, batch_size: int = 64, backend: Optional[str] = None,
                  device: Optional[str] = None, verbose: bool = False) -> ColBERTRetriever:
        """End-to-end retriever: query frame -> top ``num_results`` documents per query.

        ``mode="plaid"`` (default) is the fast staged search; ``mode="exhaustive"`` scores every document exactly.
        ``nprobe``/``ncandidates``/``nexact``: see :class:`~pyterrier_lateint.index.search.SearchParams`.
        ``backend``/``device``: see :func:`~pyterrier_lateint.index.backends.select_backend` (default: torch on a
        GPU when there is one, else the multi-threaded numba CPU kernels).
        Raises :class:`ModelMismatchError` when ``model`` differs from the indexing model.
        """
        model = self._model(model)
        self._reader()  # fail now, not at transform time, if there is no complete index
        self._check_model(model)
        return ColBERTRetriever(self, model, num_results=num_results, mode=mode, nprobe=nprobe,
                                ncandidates=ncandidates, nexact=nexact, batch_size=batch_size, backend=backend,
                                device=device, verbose=verbose)

    def scorer(self, model: Optional[LateInteractionModel] = None, *, batch_size: int = 64,
               on_unknown: str = "error", backend: Optional[str] = None, device: Optional[str] = None,
               verbose: bool = False) -> ColBERTScorer:
        """Re-ranker: result frame -> same rows re-scored by exact MaxSim over the stored vectors."""
        model = self._model(model)
        self._reader()
        self._check_model(model)
        return ColBERTScorer(self, model, batch_size=batch_size, on_unknown=on_unknown, backend=backend,
                             device=device, verbose=verbose)

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
        pbar = pt.tqdm(total=r.n_docs, desc=f"{self!r} corpus", unit="doc", disable=not verbose)
        for s in starts:
            ids = np.arange(s, min(s + CORPUS_ITER_CHUNK, r.n_docs), dtype=np.int64)
            vectors, offs = r.decompress_docs(ids)
            names = docnos[int(ids[0]):int(ids[-1]) + 1]  # one lookup per chunk
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
        return self._reader().n_docs

    def docnos(self) -> DocnoList:
        """The docnos in index order (memory-mapped): ``len``, ``[i]``, ``[a:b]``, iteration, ``in``."""
        return DocnoList(self._reader().docnos)

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
