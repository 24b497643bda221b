"""The reading face of a sharded index that its transformers and its indexer depend on, below the artifact.

:class:`ShardedIndexHandle` is what :mod:`.retriever`, :mod:`.prf` and :mod:`.build` use of a
:class:`~.artifact.ShardedColBERTIndex`, so none of them imports the artifact (which imports them).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Protocol, Union

import numpy as np

from ..index.layout import IndexReader
from ..index.token_stats import TokenStats
from ..models import LateInteractionModel
from .layout import ShardTable


class ShardedIndexHandle(Protocol):
    """What the transformers and the indexer of :mod:`pyterrier_lateint.sharded` use of a sharded index
    (implemented by :class:`~pyterrier_lateint.ShardedColBERTIndex`)."""

    path: Union[str, Path]
    model: Optional[LateInteractionModel]

    @property
    def dim(self) -> int:
        """Dimension of the stored token vectors."""

    def __len__(self) -> int:
        """Live documents over all shards."""

    def check_model(self, model: Optional[LateInteractionModel]) -> None:
        """``ModelMismatchError`` when ``model`` is not the indexing model (``None`` passes)."""

    def reload(self) -> None:
        """Forget the open state (after this process wrote the index)."""

    def search_pool(self, executor: Any = "local", **kwargs: Any) -> Any:
        """The shard searchers of ``executor`` (:mod:`.executors`)."""

    def shard_readers(self) -> tuple[list[IndexReader], ShardTable]:
        """The open shards in global id order, and the table mapping global ids to shards."""

    def doc_ids(self, docnos: np.ndarray, on_unknown: str = "error") -> np.ndarray:
        """Global ids of ``docnos`` (-1 for unknown ones with ``on_unknown="drop"``)."""

    def docnos_of(self, ids: np.ndarray) -> np.ndarray:
        """Docnos of global ids."""

    def token_stats(self) -> TokenStats:
        """Token statistics over all shards."""
