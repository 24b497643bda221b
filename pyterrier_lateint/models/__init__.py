"""Late-interaction models: checkpoint layouts, encoding settings, the encoder, and what an index needs of a model."""
from .config import EncodingConfig
from .encoder import DEFAULT_MODEL, LateInteractionEncoder, LateInteractionModule, default_model_path
from .layouts import LAYOUTS, detect_layout, load_checkpoint
from .protocol import LateInteractionModel, check_model, model_key

__all__ = ["LateInteractionEncoder", "EncodingConfig", "LateInteractionModule", "LateInteractionModel", "DEFAULT_MODEL",
           "default_model_path", "LAYOUTS", "detect_layout", "load_checkpoint", "check_model", "model_key"]
