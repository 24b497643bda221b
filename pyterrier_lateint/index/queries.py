"""Query vectors for the index's transformers: taken from ``query_embs`` or encoded from ``query`` by the model."""
from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd
import pyterrier as pt

from ..models import LateInteractionModel


def query_vectors(model: Optional[LateInteractionModel], frame: pd.DataFrame, batch_size: int,
                  index_dim: int) -> list[np.ndarray]:
    """``query_embs`` of ``frame`` if present, else ``model.encode_queries(frame.query)``: float32 ``(nq, dim)`` each,
    checked against the index's ``index_dim``."""
    if "query_embs" in frame.columns:
        vecs = [np.asarray(q, dtype=np.float32) for q in frame["query_embs"]]
    elif model is None:
        raise ValueError("the input has no 'query_embs' column and no model was given to encode 'query'; pass the "
                         "indexing model, e.g. index.retriever(model)")
    else:
        vecs = [np.asarray(q, dtype=np.float32) for q in model.encode_queries(frame["query"].tolist(),
                                                                              batch_size=batch_size)]
    for q in vecs:
        if q.ndim != 2 or (len(q) and q.shape[1] != index_dim):
            raise ValueError(f"query vectors have shape {q.shape}; the index holds dim {index_dim} vectors")
    return vecs


def score_divisor(model: Optional[LateInteractionModel], n_query_tokens: int) -> float:
    """What MaxSim is divided by: the model's rule, or 1 without a model."""
    return 1.0 if model is None else float(model.score_divisor(n_query_tokens))


def validate_queries(inp: pd.DataFrame) -> None:
    """A query frame with ``query_embs`` (vectors) or ``query`` (text), else PyTerrier's error naming the columns."""
    with pt.validate.any(inp) as v:
        v.query_frame(extra_columns=["query_embs"], mode="vectors")
        v.query_frame(extra_columns=["query"], mode="text")


def validate_results(inp: pd.DataFrame) -> None:
    """A result frame with ``query_embs`` (vectors) or ``query`` (text), else PyTerrier's error naming the columns."""
    with pt.validate.any(inp) as v:
        v.result_frame(extra_columns=["query_embs"], mode="vectors")
        v.result_frame(extra_columns=["query"], mode="text")
