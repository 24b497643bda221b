"""Experiments: cached BM25 and late-interaction indices per collection, the standard experiment over any collection
(:mod:`.runner`), and plots. Nothing else in the package imports this layer."""
from __future__ import annotations

import hashlib
import logging
from typing import Union

import pyterrier as pt

from ..data import Collection, IrdsCollection
from ..models import LateInteractionModel, model_key
from ..settings import cache_dir

logger = logging.getLogger(__name__)

AnyCollection = Union[Collection, IrdsCollection]


def pisa_bm25(collection: AnyCollection, num_results: int = 1000) -> pt.Transformer:
    """PISA BM25 (pyterrier-pisa defaults: porter2 stemming, k1=0.9, b=0.4) over ``collection``.

    Indexed once into ``cache_dir()/pisa/NAME``; later calls reuse the index.

    Args:
        collection: a :class:`~pyterrier_lateint.data.Collection` or
            :class:`~pyterrier_lateint.data.IrdsCollection`.
        num_results: documents per query (default 1000).

    Returns:
        pyterrier.Transformer: the BM25 retriever.

    Example:
        .. code-block:: python

            from pyterrier_lateint.data import load_collection
            from pyterrier_lateint.experiments import pisa_bm25

            bm25 = pisa_bm25(load_collection("vaswani"), num_results=100)
    """
    from pyterrier_pisa import PisaIndex
    path = cache_dir() / "pisa" / collection.name
    index = PisaIndex(str(path), stemmer="porter2")
    if not index.built():
        logger.info("building PISA index of %s in %s", collection, path)
        path.parent.mkdir(parents=True, exist_ok=True)
        index.indexer().index(collection.get_corpus_iter(verbose=True))
    return index.bm25(num_results=num_results)


def model_tag(model: LateInteractionModel) -> str:
    """``NAME.HASH``: the checkpoint's last path component and 8 hex digits of its signature.

    Names the cached indices and run folders of that model.

    Args:
        model: a late-interaction model.

    Returns:
        str: e.g. ``all-MiniLM-L6-v2.1a2b3c4d``.
    """
    model_name = str(model.signature().get("name", "model")).rstrip("/").split("/")[-1]
    return f"{model_name}.{hashlib.sha256(model_key(model).encode()).hexdigest()[:8]}"


def lateint_index(collection: AnyCollection, model: LateInteractionModel, nbits: int = 2):
    """A :class:`~pyterrier_lateint.index.ColBERTIndex` of ``collection`` by ``model``, built once.

    Built into ``cache_dir()/index`` (keyed by collection, model name, a hash of the model's signature, the default
    codec and ``nbits``); later calls reuse it.

    Args:
        collection: a :class:`~pyterrier_lateint.data.Collection` or
            :class:`~pyterrier_lateint.data.IrdsCollection`.
        model: the indexing model.
        nbits: bits per residual dimension (default 2).

    Returns:
        ColBERTIndex: the built index.

    Example:
        .. code-block:: python

            from pyterrier_lateint.experiments import lateint_index

            index = lateint_index(load_collection("vaswani"), model)
            retriever = index.retriever(model, num_results=10)
    """
    from ..index import ColBERTIndex
    from ..index.codec import DEFAULT_KIND
    index = ColBERTIndex(cache_dir() / "index" /
                         f"{collection.name}.{model_tag(model)}.{DEFAULT_KIND}{nbits}bit.lateint")
    if not index.built():
        logger.info("building late-interaction index of %s in %s", collection, index.path)
        (cache_dir() / "index").mkdir(parents=True, exist_ok=True)
        index.indexer(model, nbits=nbits).index(collection.get_corpus_iter())
    return index
