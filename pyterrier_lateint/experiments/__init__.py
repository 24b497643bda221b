"""Shared pieces of the experiments: a cached PISA BM25 index per collection."""
from __future__ import annotations

import logging

import pyterrier as pt

from ..data import Collection
from ..settings import cache_dir

logger = logging.getLogger(__name__)


def pisa_bm25(collection: Collection, num_results: int = 1000) -> pt.Transformer:
    """PISA BM25 (pyterrier-pisa defaults: porter2 stemming, k1=0.9, b=0.4) over ``collection``, indexed once."""
    from pyterrier_pisa import PisaIndex
    path = cache_dir() / "pisa" / collection.path.name
    index = PisaIndex(str(path), stemmer="porter2")
    if not index.built():
        logger.info("building PISA index of %s in %s", collection, path)
        path.parent.mkdir(parents=True, exist_ok=True)
        index.indexer().index(collection.get_corpus_iter())
    return index.bm25(num_results=num_results)


def lateint_index(collection: Collection, model, nbits: int = 2):
    """A :class:`~pyterrier_lateint.index.ColBERTIndex` of ``collection`` by ``model``, built once (cached by
    collection, model name and ``nbits``)."""
    from ..index import ColBERTIndex
    name = f"{collection.path.name}.{model.name.replace('/', '_')}.{nbits}bit.lateint"
    index = ColBERTIndex(cache_dir() / "index" / name)
    if not index.built():
        logger.info("building late-interaction index of %s in %s", collection, index.path)
        (cache_dir() / "index").mkdir(parents=True, exist_ok=True)
        index.indexer(model, nbits=nbits).index(collection.get_corpus_iter())
    return index
