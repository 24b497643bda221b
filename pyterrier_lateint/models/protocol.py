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
    """What an index needs of a model: texts to token vectors.

    ``encode_*`` return one float32 ``(n_tokens, dim)`` matrix per text; with ``return_ids=True`` ``encode_docs``
    also returns the int32 token id of each vector. A structural (``runtime_checkable``) protocol: any object with
    these members passes ``isinstance(obj, LateInteractionModel)``, :class:`~pyterrier_lateint.ColBERT` among them.

    Example:
        .. code-block:: python

            from pyterrier_lateint.models import LateInteractionModel

            assert isinstance(model, LateInteractionModel)
            index.indexer(model).index(docs)   # any such object can build and search an index
    """

    @property
    def dim(self) -> int:
        """Dimension of the token vectors."""
        ...

    def signature(self) -> dict[str, Any]:
        """JSON-serialisable settings that make two models' vectors interchangeable (stored in indices).

        Returns:
            dict: setting name -> value; equal signatures mean interchangeable vectors.
        """
        ...

    def score_divisor(self, n_query_tokens: int) -> float:
        """MaxSim is divided by this (1 for sums; the query length for models that average, e.g. bge-m3).

        Args:
            n_query_tokens: the number of query vectors.

        Returns:
            float: the divisor.
        """
        ...

    def encode_queries(self, texts: Sequence[str], batch_size: Optional[int] = None,
                       show_progress: bool = False) -> list[np.ndarray]:
        """Token vectors of each query.

        Args:
            texts: the query texts.
            batch_size: queries encoded together; ``None``: the model's default.
            show_progress: show a progress bar.

        Returns:
            list: one float32 ``(n_query_tokens, dim)`` array per query.
        """
        ...

    def encode_docs(self, texts: Sequence[str], batch_size: Optional[int] = None, show_progress: bool = False,
                    return_ids: bool = False) -> Any:
        """Token vectors of each document.

        Args:
            texts: the document texts.
            batch_size: documents encoded together; ``None``: the model's default.
            show_progress: show a progress bar.
            return_ids: also return the int32 token id of each vector.

        Returns:
            list: one float32 ``(n_tokens, dim)`` array per document; with ``return_ids`` a tuple
            ``(vectors, token_ids)`` with int32 ``(n_tokens,)`` arrays.
        """
        ...


def check_model(model: Any, what: str) -> Optional[LateInteractionModel]:
    """Check that ``model`` is a late-interaction model (or ``None``).

    Args:
        model: the object to check.
        what: who needs the model (named in the error).

    Returns:
        LateInteractionModel: ``model`` itself when it is ``None`` or satisfies :class:`LateInteractionModel`.

    Raises:
        TypeError: naming the members ``model`` lacks.
    """
    if model is None or isinstance(model, LateInteractionModel):
        return model
    needed = ("dim", "signature", "score_divisor", "encode_queries", "encode_docs")
    missing = [m for m in needed if not hasattr(model, m)]
    raise TypeError(f"{what} needs a late-interaction model (e.g. pyterrier_lateint.ColBERT.from_pretrained()); "
                    f"{type(model).__name__} lacks {missing}")


def model_key(model: Optional[LateInteractionModel]) -> Optional[str]:
    """A stable string of ``model``'s signature: transformers over models with equal keys compare equal.

    Args:
        model: the model, or ``None``.

    Returns:
        str: the signature as sorted-key JSON; ``None`` for no model.
    """
    if model is None:
        return None
    return json.dumps(model.signature(), sort_keys=True, default=str)
