"""Training late-interaction models: data formats, losses, the trainer and its command line."""
from .data import Example, TrainingStream, detect_format, mine_hard_negatives, read_examples, write_jsonl
from .selfsupervised import pseudo_queries
from .losses import combined_loss, contrastive_loss, distillation_loss, maxsim_scores
from .trainer import Trainer, TrainingConfig, pyterrier_validation

__all__ = ["Trainer", "TrainingConfig", "Example", "TrainingStream", "read_examples", "detect_format",
           "mine_hard_negatives", "pseudo_queries", "write_jsonl", "pyterrier_validation", "maxsim_scores", "contrastive_loss",
           "distillation_loss", "combined_loss"]
