"""pyterrier-lateint: late-interaction (ColBERT-style) retrieval for PyTerrier."""
from .index import ColBERTIndex
from .maxsim import maxsim
from .models import ColBERT, EncodingConfig
from .transformers import DocEncoder, MaxSimScorer, QueryEncoder, TextScorer

__version__ = "0.1.0"

__all__ = ["ColBERT", "ColBERTIndex", "EncodingConfig", "QueryEncoder", "DocEncoder", "MaxSimScorer", "TextScorer", "maxsim"]
