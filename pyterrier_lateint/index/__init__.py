"""Compressed late-interaction index: :class:`ColBERTIndex` and its parts."""
from .artifact import ColBERTIndex
from .handle import ModelMismatchError
from .backends import NumbaBackend, SearchBackend, TorchBackend, select_backend
from .build import ColBERTIndexer
from .codec import ResidualCodec
from .layout import DocnoList, IndexNotFoundError
from .retriever import ColBERTRetriever
from .scorer import ColBERTScorer, ColBERTVecLoader
from .search import SearchParams

__all__ = ["ColBERTIndex", "ColBERTIndexer", "ColBERTRetriever", "ColBERTScorer", "ColBERTVecLoader",
           "ModelMismatchError", "IndexNotFoundError", "DocnoList", "ResidualCodec", "SearchParams", "SearchBackend",
           "NumbaBackend", "TorchBackend", "select_backend"]
