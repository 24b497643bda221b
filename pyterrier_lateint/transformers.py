"""PyTerrier transformers over a :class:`~pyterrier_lateint.models.ColBERT` model.

Columns: ``query_toks`` holds a query's token vectors (float32 ``(n_query_tokens, dim)``), ``doc_toks`` a
document's (float32 ``(n_tokens, dim)``). Scores are MaxSim (see :mod:`pyterrier_lateint.maxsim`).
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Optional

import numpy as np
import pandas as pd
import pyterrier as pt

from .maxsim import maxsim_packed, pack

if TYPE_CHECKING:
    from .models import ColBERT

logger = logging.getLogger(__name__)


def _texts(frame: pd.DataFrame, column: str, id_column: Optional[str]) -> list[str]:
    """The ``column`` of ``frame`` as a list of str, with an error naming the row when a value is not a string."""
    values = frame[column].tolist()
    for i, v in enumerate(values):
        if not isinstance(v, str):
            where = f"{id_column}={frame[id_column].iloc[i]!r}" if id_column in frame.columns else f"row {i}"
            raise TypeError(f"{column!r} of {where} is {type(v).__name__} ({v!r:.40}), not str; replace missing "
                            f"values with '' (e.g. df[{column!r}] = df[{column!r}].fillna('')) or use astype(str)")
    return values


def rank_results(frame: pd.DataFrame) -> pd.DataFrame:
    """Sort by (qid, score desc) and set ``rank`` from 0, as PyTerrier results are."""
    frame = frame.sort_values(["qid", "score"], ascending=[True, False], kind="stable").reset_index(drop=True)
    frame["rank"] = frame.groupby("qid", sort=False).cumcount().astype(np.int64)
    return frame


class ConfigEquality:
    """Mixin: transformers are equal when of the same class with equal ``_config()`` tuples (hashed alike), so
    PyTerrier's pipeline caching and tests see equal configurations as equal."""

    def _config(self) -> tuple:
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self._config() == other._config()

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._config()))


class _ModelTransformer(ConfigEquality, pt.Transformer):
    """Base: equality and hashing on (class, model signature, settings)."""

    def __init__(self, model: "ColBERT", batch_size: Optional[int] = None, verbose: bool = False):
        self.model = model
        self.batch_size = batch_size or model.batch_size
        self.verbose = verbose

    def _config(self) -> tuple:
        return (self.model.key(), self.batch_size)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model.name!r})"


class QueryEncoder(_ModelTransformer):
    """Frame with ``(qid, query)`` (queries or results) -> the same frame with ``query_toks``."""

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        pt.validate.columns(inp, includes=["qid", "query"])
        queries = _texts(inp, "query", "qid")
        unique = list(dict.fromkeys(queries))
        vecs = dict(zip(unique, self.model.encode_queries(unique, self.batch_size, self.verbose))) if unique else {}
        return inp.assign(query_toks=pd.Series([vecs[q] for q in queries], index=inp.index, dtype=object))


class DocEncoder(_ModelTransformer):
    """Frame with ``text`` (a corpus batch or results) -> the same frame with ``doc_toks``."""

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        pt.validate.columns(inp, includes=["text"])
        texts = _texts(inp, "text", "docno")
        unique = list(dict.fromkeys(texts))
        vecs = dict(zip(unique, self.model.encode_docs(unique, self.batch_size, self.verbose))) if unique else {}
        return inp.assign(doc_toks=pd.Series([vecs[t] for t in texts], index=inp.index, dtype=object))


def score_frame(frame: pd.DataFrame, query_vecs: dict, doc_vecs: list, divide_by_query_length: bool) -> np.ndarray:
    """MaxSim of every row: ``query_vecs`` maps qid -> ``(nq, dim)``; ``doc_vecs[i]`` is row i's ``(n, dim)``."""
    scores = np.empty(len(frame), dtype=np.float32)
    positions = frame.groupby("qid", sort=False).indices
    for qid, rows in positions.items():
        q = query_vecs[qid]
        vectors, offsets = pack([doc_vecs[r] for r in rows])
        s = maxsim_packed(q, vectors, offsets)
        scores[rows] = s / max(len(q), 1) if divide_by_query_length else s
    return scores


class MaxSimScorer(ConfigEquality, pt.Transformer):
    """Results with ``query_toks`` and ``doc_toks`` -> ``score`` (MaxSim) and ``rank``; vectors are kept."""

    def __init__(self, divide_by_query_length: bool = False):
        self.divide_by_query_length = divide_by_query_length

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        pt.validate.result_frame(inp, extra_columns=["query_toks", "doc_toks"])
        out = inp.reset_index(drop=True)
        if len(out) == 0:
            return out.assign(score=pd.Series(dtype=np.float32), rank=pd.Series(dtype=np.int64))
        query_vecs = out.groupby("qid", sort=False)["query_toks"].first().to_dict()
        out = out.assign(score=score_frame(out, query_vecs, out["doc_toks"].tolist(), self.divide_by_query_length))
        return rank_results(out)

    def _config(self) -> tuple:
        return (self.divide_by_query_length,)

    def __repr__(self) -> str:
        return f"MaxSimScorer(divide_by_query_length={self.divide_by_query_length})"


class TextScorer(_ModelTransformer):
    """Re-ranks results ``(qid, query, docno, text)`` by MaxSim, encoding each distinct query and text once per
    chunk of at most ``chunk_size`` rows (whole queries), so memory stays bounded on large result frames.

    Output: the input columns with ``score`` replaced and ``rank`` recomputed, sorted by qid and rank.
    """

    def __init__(self, model: "ColBERT", batch_size: Optional[int] = None, verbose: bool = False,
                 chunk_size: int = 8192):
        super().__init__(model, batch_size, verbose)
        self.chunk_size = chunk_size

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        pt.validate.result_frame(inp, extra_columns=["query", "text"])
        out = inp.reset_index(drop=True)
        if len(out) == 0:
            return out.assign(score=pd.Series(dtype=np.float32), rank=pd.Series(dtype=np.int64))
        texts = _texts(out, "text", "docno")
        queries = out.groupby("qid", sort=False)["query"].first()
        _texts(queries.to_frame().reset_index(), "query", "qid")
        q_unique = list(dict.fromkeys(queries.tolist()))
        q_enc = dict(zip(q_unique, self.model.encode_queries(q_unique, self.batch_size)))
        query_vecs = {qid: q_enc[q] for qid, q in queries.items()}
        scores = np.empty(len(out), dtype=np.float32)
        chunks = self._chunks(out.groupby("qid", sort=False).indices)
        if self.verbose:
            chunks = pt.tqdm(chunks, desc="text re-ranking", unit="chunk")
        for rows in chunks:
            chunk_texts = [texts[r] for r in rows]
            unique = list(dict.fromkeys(chunk_texts))
            enc = dict(zip(unique, self.model.encode_docs(unique, self.batch_size)))
            part = out.iloc[rows]
            scores[rows] = score_frame(part, query_vecs, [enc[t] for t in chunk_texts],
                                       self.model.config.divide_by_query_length)
        return rank_results(out.assign(score=scores))

    def _chunks(self, groups: dict) -> list[np.ndarray]:
        """Row positions grouped into chunks of whole queries, about ``chunk_size`` rows each."""
        chunks, current, size = [], [], 0
        for rows in groups.values():
            if current and size + len(rows) > self.chunk_size:
                chunks.append(np.concatenate(current))
                current, size = [], 0
            current.append(rows)
            size += len(rows)
        if current:
            chunks.append(np.concatenate(current))
        return chunks

    def _config(self) -> tuple:
        return super()._config() + (self.chunk_size,)
