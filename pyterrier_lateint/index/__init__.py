"""Compressed late-interaction index: :class:`ColBERTIndex` and its parts."""
from .artifact import ColBERTIndex, ModelMismatchError
from .build import ColBERTIndexer
from .codec import ResidualCodec
from .layout import IndexNotFoundError
from .scorer import ColBERTRetriever, ColBERTScorer
from .search import SearchParams

__all__ = ["ColBERTIndex", "ColBERTIndexer", "ColBERTRetriever", "ColBERTScorer", "ModelMismatchError",
           "IndexNotFoundError", "ResidualCodec", "SearchParams"]
