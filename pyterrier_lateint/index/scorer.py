"""Re-ranking from a ColBERTIndex's stored vectors, and loading those vectors, as PyTerrier transformers."""
from __future__ import annotations

import logging
from typing import Any, Callable, Optional

import numpy as np
import pandas as pd
import pyterrier as pt

from ..base import ConfigEquality, check_int, rank_results
from ..models import LateInteractionModel, check_model, model_key
from .backends import SearchBackend, select_backend
from .handle import IndexHandle
from .queries import query_vectors, score_divisor, validate_results


logger = logging.getLogger(__name__)

ON_UNKNOWN = ("error", "drop")


ON_UNKNOWN_ALIASES = {"ignore": "drop"}  # delete()'s former word for "drop"


def check_on_unknown(on_unknown: str) -> str:
    """The checked ``on_unknown`` setting: ``"error"`` or ``"drop"`` (``"ignore"``, the former word of ``delete``,
    is taken as ``"drop"``); ``ValueError`` otherwise."""
    on_unknown = ON_UNKNOWN_ALIASES.get(on_unknown, on_unknown)
    if on_unknown not in ON_UNKNOWN:
        raise ValueError(f"on_unknown must be one of {ON_UNKNOWN}, not {on_unknown!r}")
    return on_unknown


def known_rows(doc_ids: Callable[..., np.ndarray], inp: pd.DataFrame, on_unknown: str,
               who: str) -> tuple[pd.DataFrame, np.ndarray]:
    """``inp`` and the ids of its docnos by ``doc_ids(docnos, on_unknown=...)`` (a reader's, or a sharded index's
    global ids); unknown docnos raise ``KeyError`` naming them, or with ``on_unknown="drop"`` their rows are dropped
    (logged)."""
    ids = doc_ids(inp["docno"].to_numpy(), on_unknown="error" if on_unknown == "error" else "drop")
    if (ids < 0).any():
        logger.warning("%s: dropping %d rows whose docno is not in the index", who, int((ids < 0).sum()))
        inp, ids = inp[ids >= 0], ids[ids >= 0]
    return inp, ids


def score_in_batches(inp: pd.DataFrame, ids: np.ndarray, scorer: Any, dim: int,
                     exact: Callable[[list[np.ndarray], list[np.ndarray]], list[np.ndarray]]) -> pd.DataFrame:
    """A scorer's transform: the rows of ``inp`` (doc ids ``ids``) re-scored query by query, ``scorer.batch_size``
    queries at a time; ``exact(query vectors, sorted unique doc ids per query)`` gives raw MaxSim per query. Scores
    are divided by the model's ``score_divisor``; rows are ranked per query."""
    inp = inp.reset_index(drop=True)
    scores = np.empty(len(inp), dtype=np.float64)
    groups = inp.groupby("qid", sort=False).indices
    qids = list(groups)
    for s in pt.tqdm(range(0, len(qids), scorer.batch_size), desc=repr(scorer), unit="batch",
                     disable=not scorer.verbose):
        batch_q = qids[s:s + scorer.batch_size]
        vecs = query_vectors(scorer.model, inp.iloc[[groups[q][0] for q in batch_q]], scorer.batch_size, dim)
        uniq = [np.unique(ids[groups[q]], return_inverse=True) for q in batch_q]  # sorted: sequential reads
        for q, qv, (_, inv), sc in zip(batch_q, vecs, uniq, exact(vecs, [u for u, _ in uniq])):
            scores[groups[q]] = np.asarray(sc)[inv].astype(np.float64) / score_divisor(scorer.model, len(qv))
    return rank_results(inp.assign(score=scores))


class ColBERTScorer(ConfigEquality, pt.Transformer):
    """Re-ranks a result frame (``qid``, ``docno`` and ``query`` or ``query_embs``) by exact MaxSim over the stored
    document vectors: no document text, no document encoding.

    Usually made by :meth:`ColBERTIndex.scorer`, which also checks the index and the model at once.

    Args:
        index: the index holding the documents' vectors.
        model: encodes ``query`` when the frame has no ``query_embs``.
        batch_size: queries encoded and scored together (default 64).
        on_unknown: what to do with docnos that are not in the index: ``"error"`` (default, ``KeyError`` naming
            them) or ``"drop"`` (remove those rows, logging how many).
        backend: ``"numba"``, ``"torch"`` or ``None`` (automatic).
        device: a torch device string for the torch backend.
        verbose: show a progress bar over the query batches.

    Raises:
        ValueError: on a bad ``on_unknown``, backend or device.

    Example:
        .. code-block:: python

            pipeline = bm25 % 100 >> index.scorer(model)   # a ColBERTScorer
    """

    def __init__(self, index: IndexHandle, model: Optional[LateInteractionModel] = None, *, batch_size: int = 64,
                 on_unknown: str = "error", backend: Optional[str] = None, device: Optional[str] = None,
                 verbose: bool = False):
        self.index = index
        self.on_unknown = check_on_unknown(on_unknown)
        self.model = check_model(model, "ColBERTScorer")
        self.batch_size = check_int("batch_size", batch_size)
        self.backend: SearchBackend = select_backend(backend, device)
        self.verbose = verbose

    def _config(self) -> tuple:
        return (str(self.index.path), model_key(self.model), self.on_unknown, self.backend.name, self.backend.device)

    def __repr__(self) -> str:
        return f"ColBERTScorer({str(self.index.path)!r}, on_unknown={self.on_unknown!r})"

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        """Re-score every row by exact MaxSim and re-rank per query.

        Args:
            inp: results with ``qid``, ``docno`` and ``query`` or ``query_embs``.

        Returns:
            pandas.DataFrame: the input columns with ``score`` (divided by the model's ``score_divisor``) and
            ``rank`` (from 0) set, sorted by qid and score.

        Raises:
            KeyError: for docnos not in the index (with ``on_unknown="error"``).
            ModelMismatchError: when the model differs from the indexing model.
        """
        validate_results(inp)
        reader = self.index.reader()
        self.index.check_model(self.model)
        out_cols = list(inp.columns) + [c for c in ("score", "rank") if c not in inp.columns]
        if len(inp) == 0:
            return pd.DataFrame(columns=out_cols)
        inp, ids = known_rows(reader.doc_ids, inp, self.on_unknown, "ColBERTScorer")

        def exact(vecs: list[np.ndarray], doc_ids: list[np.ndarray]) -> list[np.ndarray]:
            return [self.backend.exact(reader, qv, d) for qv, d in zip(vecs, doc_ids)]

        return score_in_batches(inp, ids, self, reader.dim, exact)[out_cols]


class ColBERTVecLoader(ConfigEquality, pt.Transformer):
    """Adds ``doc_embs`` (the stored vectors, decompressed: float32 ``(n_tokens, dim)``) to a frame with ``docno``.

    The name follows pyterrier_dr's ``FlexIndex.vec_loader()``. Usually made by :meth:`ColBERTIndex.vec_loader`.

    Args:
        index: the index holding the vectors.
        on_unknown: as :class:`ColBERTScorer`'s: ``"error"`` (default) or ``"drop"``.

    Raises:
        ValueError: on a bad ``on_unknown``.

    Example:
        .. code-block:: python

            frame = index.vec_loader()(pd.DataFrame({"docno": ["1", "2"]}))
            frame["doc_embs"][0].shape   # (n_tokens, dim)
    """

    def __init__(self, index: IndexHandle, on_unknown: str = "error"):
        self.index = index
        self.on_unknown = check_on_unknown(on_unknown)

    def _config(self) -> tuple:
        return (str(self.index.path), self.on_unknown)

    def __repr__(self) -> str:
        return f"ColBERTVecLoader({str(self.index.path)!r})"

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        """Add each row's stored vectors.

        Args:
            inp: a frame with ``docno``.

        Returns:
            pandas.DataFrame: ``inp`` (less dropped rows) with ``doc_embs``, float32 ``(n_tokens, dim)`` per row.

        Raises:
            KeyError: for docnos not in the index (with ``on_unknown="error"``).
        """
        pt.validate.columns(inp, includes=["docno"])
        inp, ids = self._known(inp)
        uniq, inv = np.unique(ids, return_inverse=True)
        per_doc = self._vectors(uniq)
        return inp.assign(doc_embs=pd.Series([per_doc[i] for i in inv], index=inp.index, dtype=object))

    def _known(self, inp: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
        """``inp`` less the rows dropped by ``on_unknown``, and the ids of its docnos."""
        return known_rows(self.index.reader().doc_ids, inp, self.on_unknown, type(self).__name__)

    def _vectors(self, ids: np.ndarray) -> list[np.ndarray]:
        """The stored vectors of the documents ``ids`` (sorted, unique), decompressed, one array each."""
        vectors, offsets = self.index.reader().decompress_docs(ids)
        return [vectors[offsets[i]:offsets[i + 1]] for i in range(len(ids))]
