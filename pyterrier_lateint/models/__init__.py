"""Late-interaction models: checkpoint layouts, encoding settings, the ``ColBERT`` interface."""
from .colbert import DEFAULT_MODEL, ColBERT, LateInteractionModule, default_model_path
from .config import EncodingConfig
from .layouts import LAYOUTS, detect_layout, load_checkpoint

__all__ = ["ColBERT", "EncodingConfig", "LateInteractionModule", "DEFAULT_MODEL", "default_model_path", "LAYOUTS",
           "detect_layout", "load_checkpoint"]
