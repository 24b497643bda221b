"""Re-ranking from a ColBERTIndex's stored vectors, and loading those vectors, as PyTerrier transformers."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Optional

import numpy as np
import pandas as pd
import pyterrier as pt

from ..base import ConfigEquality, rank_results
from ..models import LateInteractionModel, check_model, model_key
from .backends import SearchBackend, select_backend
from .queries import query_vectors, score_divisor

if TYPE_CHECKING:
    from .artifact import ColBERTIndex

logger = logging.getLogger(__name__)

ON_UNKNOWN = ("error", "drop")


def _check_on_unknown(on_unknown: str) -> str:
    if on_unknown not in ON_UNKNOWN:
        raise ValueError(f"on_unknown must be one of {ON_UNKNOWN}, not {on_unknown!r}")
    return on_unknown


def known_rows(reader, inp: pd.DataFrame, on_unknown: str, who: str) -> tuple[pd.DataFrame, np.ndarray]:
    """``inp`` and the internal ids of its docnos; unknown docnos raise ``KeyError`` naming them, or with
    ``on_unknown="drop"`` their rows are dropped (logged)."""
    ids = reader.doc_ids(inp["docno"].to_numpy(), on_unknown="error" if on_unknown == "error" else "ignore")
    if (ids < 0).any():
        logger.warning("%s: dropping %d rows whose docno is not in the index", who, int((ids < 0).sum()))
        inp, ids = inp[ids >= 0], ids[ids >= 0]
    return inp, ids


class ColBERTScorer(ConfigEquality, pt.Transformer):
    """Re-ranks a result frame (``qid``, ``docno`` and ``query`` or ``query_embs``) by exact MaxSim over the stored
    document vectors: no document text, no document encoding.

    ``on_unknown``: what to do with docnos that are not in the index: ``"error"`` (default, ``KeyError`` naming
    them) or ``"drop"`` (remove those rows, logging how many).
    """

    def __init__(self, index: "ColBERTIndex", model: Optional[LateInteractionModel] = None, *, batch_size: int = 64,
                 on_unknown: str = "error", backend: Optional[str] = None, device: Optional[str] = None,
                 verbose: bool = False):
        self.index = index
        self.on_unknown = _check_on_unknown(on_unknown)
        self.model = check_model(model, "ColBERTScorer")
        self.batch_size = batch_size
        self.backend: SearchBackend = select_backend(backend, device)
        self.verbose = verbose

    def _config(self) -> tuple:
        return (str(self.index.path), model_key(self.model), self.on_unknown, self.backend.name, self.backend.device)

    def __repr__(self) -> str:
        return f"ColBERTScorer({str(self.index.path)!r}, on_unknown={self.on_unknown!r})"

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        with pt.validate.any(inp) as v:
            v.result_frame(extra_columns=["query_embs"], mode="vectors")
            v.result_frame(extra_columns=["query"], mode="text")
        reader = self.index._reader()
        self.index._check_model(self.model)
        out_cols = list(inp.columns) + [c for c in ("score", "rank") if c not in inp.columns]
        if len(inp) == 0:
            return pd.DataFrame(columns=out_cols)
        inp, ids = known_rows(reader, inp, self.on_unknown, "ColBERTScorer")
        inp = inp.reset_index(drop=True)
        scores = np.empty(len(inp), dtype=np.float64)
        groups = inp.groupby("qid", sort=False).indices
        qids = list(groups)
        for s in pt.tqdm(range(0, len(qids), self.batch_size), desc=repr(self), unit="batch",
                         disable=not self.verbose):
            batch_q = qids[s:s + self.batch_size]
            vecs = query_vectors(self.model, inp.iloc[[groups[q][0] for q in batch_q]], self.batch_size, reader.dim)
            for q, qv in zip(batch_q, vecs):
                rows = groups[q]
                uniq, inv = np.unique(ids[rows], return_inverse=True)  # sorted: sequential reads
                scores[rows] = self.backend.exact(reader, qv, uniq)[inv].astype(np.float64) / \
                    score_divisor(self.model, len(qv))
        return rank_results(inp.assign(score=scores))[out_cols]


class ColBERTVecLoader(ConfigEquality, pt.Transformer):
    """Adds ``doc_embs`` (the stored vectors, decompressed: float32 ``(n_tokens, dim)``) to a frame with ``docno``;
    ``on_unknown`` as :class:`ColBERTScorer`'s. The name follows pyterrier_dr's ``FlexIndex.vec_loader()``."""

    def __init__(self, index: "ColBERTIndex", on_unknown: str = "error"):
        self.index = index
        self.on_unknown = _check_on_unknown(on_unknown)

    def _config(self) -> tuple:
        return (str(self.index.path), self.on_unknown)

    def __repr__(self) -> str:
        return f"ColBERTVecLoader({str(self.index.path)!r})"

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        pt.validate.columns(inp, includes=["docno"])
        reader = self.index._reader()
        inp, ids = known_rows(reader, inp, self.on_unknown, "ColBERTVecLoader")
        uniq, inv = np.unique(ids, return_inverse=True)
        vectors, offsets = reader.decompress_docs(uniq)
        per_doc = [vectors[offsets[i]:offsets[i + 1]] for i in range(len(uniq))]
        return inp.assign(doc_embs=pd.Series([per_doc[i] for i in inv], index=inp.index, dtype=object))
