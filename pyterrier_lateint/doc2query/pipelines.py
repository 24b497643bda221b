"""Ready-made doc2query retrieval for experiments: PISA BM25 over a collection expanded by a generator (optionally
filtered by Doc2Query--), with the expansion and the index cached under the package's cache folder."""
from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path
from typing import Any, Optional, Union

import pandas as pd
import pyterrier as pt

from ..settings import cache_dir
from .filtering import QueryFilter, QueryScorer
from .generate import Doc2Query
from .store import expanded_text

logger = logging.getLogger(__name__)

EXPANSION_CACHE = "doc2query"  # subfolders of the cache folder
INDEX_CACHE = "pisa-doc2query"


def _collection_name(collection) -> str:
    """A folder-safe name for ``collection``: its folder's name (local collections), else its ``name``
    (:class:`~pyterrier_lateint.data.IrdsCollection`), else its ``repr`` (any other PyTerrier dataset)."""
    path = getattr(collection, "path", None)
    name = Path(path).name if path is not None else str(getattr(collection, "name", None) or collection)
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[-80:]


def _generator(generator: Union[str, Path, Doc2Query], **kwargs) -> Doc2Query:
    if isinstance(generator, Doc2Query):
        return generator
    kwargs.setdefault("cache", cache_dir() / EXPANSION_CACHE)
    return Doc2Query(str(generator), **kwargs)


def expand_collection(collection, generator: Union[str, Path, Doc2Query], scorer: Optional[pt.Transformer] = None,
                      keep: Optional[float] = None, verbose: bool = True, **generator_kwargs) -> pd.DataFrame:
    """The whole ``collection`` as a frame ``(docno, text)`` with ``text`` expanded by ``generator`` (a folder or a
    :class:`Doc2Query`; expansions cached). With ``scorer`` and ``keep``, Doc2Query--: every generated query is scored
    and the threshold is the ``1 - keep`` quantile over the whole collection (exact, the filter is fitted on all of
    it)."""
    d2q = _generator(generator, append=scorer is None, verbose=verbose, **generator_kwargs)
    docs = pd.DataFrame(list(collection.get_corpus_iter()))
    if scorer is None:
        out = d2q(docs)
        if not d2q.append:  # a Doc2Query given without append=True: expand the text here
            out["text"] = [expanded_text(t, q) for t, q in zip(docs["text"], out["querygen"])]
        return out
    if keep is None:
        raise ValueError("a scorer needs keep= (the share of generated queries to keep)")
    scored = QueryScorer(scorer, verbose=verbose)(d2q(docs))
    return QueryFilter(keep=keep).fit(scored)(scored)


def doc2query_bm25(collection, generator: Union[str, Path, Doc2Query], *, scorer: Optional[pt.Transformer] = None,
                   keep: Optional[float] = None, num_results: int = 1000, verbose: bool = True,
                   **generator_kwargs) -> pt.Transformer:
    """PISA BM25 (porter2 stemming, pyterrier-pisa's k1=0.9, b=0.4) over ``collection`` expanded by ``generator``.

    See :func:`expand_collection`; the index is built once per collection, generator settings and filter, under
    ``cache_dir()/pisa-doc2query`` (the expansions under ``cache_dir()/doc2query``).

    Args:
        collection: a collection with ``get_corpus_iter()`` (e.g. :func:`~pyterrier_lateint.data.load_collection`).
        generator: a seq2seq folder or Hub name, or a :class:`Doc2Query`.
        scorer: with ``keep``, Doc2Query--: the re-ranker scoring each generated query; default none.
        keep: the share of generated queries kept (with ``scorer``).
        num_results: documents per query (default 1000).
        verbose: show progress bars (default True).
        **generator_kwargs: :class:`Doc2Query` settings when ``generator`` is not one.

    Returns:
        pyterrier.Transformer: the BM25 retriever (needs pyterrier-pisa).

    Raises:
        ValueError: for a ``scorer`` without ``keep``.

    Example:
        .. code-block:: python

            from pyterrier_lateint.data import load_collection
            from pyterrier_lateint.doc2query import doc2query_bm25

            bm25_d2q = doc2query_bm25(load_collection("vaswani"), "doc2query-model/final", num_samples=5)
    """
    from pyterrier_pisa import PisaIndex

    d2q = _generator(generator, verbose=verbose, **generator_kwargs)
    what = f"{d2q.store.path.name if d2q.store is not None else d2q.name}|{scorer!r}|{keep}"
    key = hashlib.sha1(what.encode()).hexdigest()[:12]
    path = cache_dir() / INDEX_CACHE / f"{_collection_name(collection)}-{key}"
    index = PisaIndex(str(path), stemmer="porter2")
    if not index.built():
        expanded = expand_collection(collection, d2q, scorer=scorer, keep=keep, verbose=verbose)
        logger.info("building PISA index of %s expanded by %s in %s", collection, d2q.name, path)
        path.parent.mkdir(parents=True, exist_ok=True)
        index.indexer().index(expanded[["docno", "text"]].to_dict(orient="records"))
    return index.bm25(num_results=num_results)


def doc2query_rows(collection, generator: Union[str, Path, Doc2Query], model: Any = None, keep: float = 0.7,
                   num_samples: int = 5, verbose: bool = True, **generator_kwargs) -> list[tuple[str, pt.Transformer]]:
    """Rows for ``pt.Experiment``: BM25 over doc2query expansions, and Doc2Query-- filtered by a model.

    ``("BM25 + doc2query", ...)`` and, given a late-interaction ``model``, ``("BM25 + doc2query-- (keep 70%)",
    ...)`` (the share from ``keep``; queries scored by ``model.text_scorer()``).

    Args:
        collection: a collection with ``get_corpus_iter()``.
        generator: a seq2seq folder (e.g. ``lateint doc2query-train``'s ``output_dir/final``) or a
            :class:`Doc2Query`.
        model: a late-interaction model for the Doc2Query-- row; default none (one row).
        keep: the share of generated queries Doc2Query-- keeps (default 0.7).
        num_samples: queries per chunk when ``generator`` is not a :class:`Doc2Query` (default 5).
        verbose: show progress bars (default True).
        **generator_kwargs: further :class:`Doc2Query` settings when ``generator`` is not one.

    Returns:
        list: ``(name, transformer)`` pairs.

    Example:
        .. code-block:: python

            rows = doc2query_rows(collection, "doc2query-model/final", model=ColBERT.from_pretrained())
            pt.Experiment([t for _, t in rows], topics, qrels, ["nDCG@10"], names=[n for n, _ in rows])
    """
    d2q = generator if isinstance(generator, Doc2Query) else \
        _generator(generator, num_samples=num_samples, verbose=verbose, **generator_kwargs)
    rows = [("BM25 + doc2query", doc2query_bm25(collection, d2q, verbose=verbose))]
    if model is not None:
        filtered = doc2query_bm25(collection, d2q, scorer=model.text_scorer(), keep=keep, verbose=verbose)
        rows.append((f"BM25 + doc2query-- (keep {keep:.0%})", filtered))
    return rows
