"""The reading face of an index that its transformers and writers depend on, below the artifact that implements it.

:class:`IndexHandle` is what :mod:`.retriever`, :mod:`.scorer`, :mod:`.prf`, :mod:`.mutation` and :mod:`.build` use
of a :class:`~.artifact.ColBERTIndex` (its open :class:`~.layout.IndexReader`, the model check, forgetting the open
state after a write), so none of them imports the artifact, and the artifact imports them. The pieces both the
single and the sharded index need live here once: the stamp that tells a reader a commit happened, the model
signature check, and the error for unknown docnos.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Optional, Protocol, Union

from ..models import LateInteractionModel
from .layout import IndexReader

logger = logging.getLogger(__name__)


class ModelMismatchError(ValueError):
    """The model given to a retriever/scorer is not the one the index was built with.

    Raised when the model's signature (checkpoint name, layout, dimension, encoding settings) differs from the one
    recorded at indexing. A subclass of ``ValueError``.

    Example:
        .. code-block:: python

            from pyterrier_lateint.index import ModelMismatchError

            try:
                retriever = index.retriever(other_model)
            except ModelMismatchError as e:
                print(e)   # names the settings that differ
    """


class IndexHandle(Protocol):
    """What the transformers and writers of :mod:`pyterrier_lateint.index` use of an index (implemented by
    :class:`~pyterrier_lateint.index.ColBERTIndex`)."""

    path: Union[str, Path]

    def reader(self) -> IndexReader:
        """The open index, re-opened when a writer committed since."""

    def check_model(self, model: Optional[LateInteractionModel]) -> None:
        """``ModelMismatchError`` when ``model`` is not the indexing model (``None`` passes)."""

    def reload(self) -> None:
        """Forget the open state (after this process wrote the index)."""

    def metadata(self) -> dict:
        """The committed metadata (``lateint.json``)."""

    def load_model(self, **kwargs: Any) -> Any:
        """The model the index records."""


def file_stamp(path: Path) -> Optional[tuple]:
    """Identity of a committed metadata file ``(inode, mtime ns, size)`` (a commit replaces it: a new inode), or
    ``None`` when it is missing."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def check_signature(stored: Optional[dict], model: Optional[LateInteractionModel], where: str) -> None:
    """Compare ``model``'s signature with the one an index records (``stored``): ``ModelMismatchError`` naming the
    settings that differ; a warning when the index records none; nothing for ``model=None``."""
    if model is None:
        return
    if stored is None:
        logger.warning("%s records no model signature; cannot check that %r matches the indexing model", where, model)
        return
    given = json.loads(json.dumps(model.signature(), default=str))
    if given != stored:
        diff = sorted(k for k in set(stored) | set(given) if stored.get(k) != given.get(k))
        details = ", ".join(f"{k}: index={stored.get(k)!r} vs model={given.get(k)!r}" for k in diff[:6])
        raise ModelMismatchError(f"{where} was built with a different model ({details}); use the indexing model or "
                                 f"re-index with this one")

