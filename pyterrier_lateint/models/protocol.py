"""What the index (and anything else that stores or searches vectors) needs from a late-interaction model.

:class:`~pyterrier_lateint.models.LateInteractionEncoder` (and so :class:`pyterrier_lateint.ColBERT`) satisfies it;
any other object with these members can be used to build and search an index (tests use a synthetic one).
"""
from __future__ import annotations

import json
from typing import Any, Optional, Protocol, Sequence, runtime_checkable

import numpy as np


@runtime_checkable
class LateInteractionModel(Protocol):
    """Texts to token vectors. ``encode_*`` return one float32 ``(n_tokens, dim)`` matrix per text; with
    ``return_ids=True`` ``encode_docs`` also returns the int32 token id of each vector."""

    @property
    def dim(self) -> int: ...

    def signature(self) -> dict[str, Any]:
        """JSON-serialisable settings that make two models' vectors interchangeable (stored in indices)."""
        ...

    def score_divisor(self, n_query_tokens: int) -> float:
        """MaxSim is divided by this (1 for sums; the query length for models that average, e.g. bge-m3)."""
        ...

    def encode_queries(self, texts: Sequence[str], batch_size: Optional[int] = None,
                       show_progress: bool = False) -> list[np.ndarray]: ...

    def encode_docs(self, texts: Sequence[str], batch_size: Optional[int] = None, show_progress: bool = False,
                    return_ids: bool = False) -> Any: ...


def check_model(model: Any, what: str) -> Optional[LateInteractionModel]:
    """``model`` itself when it is ``None`` or satisfies :class:`LateInteractionModel`; otherwise a ``TypeError``
    naming the members it lacks."""
    if model is None or isinstance(model, LateInteractionModel):
        return model
    needed = ("dim", "signature", "score_divisor", "encode_queries", "encode_docs")
    missing = [m for m in needed if not hasattr(model, m)]
    raise TypeError(f"{what} needs a late-interaction model (e.g. pyterrier_lateint.ColBERT.from_pretrained()); "
                    f"{type(model).__name__} lacks {missing}")


def model_key(model: Optional[LateInteractionModel]) -> Optional[str]:
    """A stable string of ``model``'s signature (``None`` for no model): transformers over models with equal keys
    compare equal."""
    if model is None:
        return None
    return json.dumps(model.signature(), sort_keys=True, default=str)
