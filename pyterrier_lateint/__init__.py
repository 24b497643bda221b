"""pyterrier-lateint: late-interaction (ColBERT-style) retrieval for PyTerrier."""
from .colbert import ColBERT, DocEncoder, MaxSimScorer, QueryEncoder
from .index import ColBERTIndex
from .maxsim import maxsim
from .models import EncodingConfig, LateInteractionEncoder
from .sharded import ShardedColBERTIndex

__version__ = "0.1.0"

__all__ = ["ColBERT", "ColBERTIndex", "ShardedColBERTIndex", "EncodingConfig", "LateInteractionEncoder", "QueryEncoder", "DocEncoder",
           "MaxSimScorer", "maxsim"]
