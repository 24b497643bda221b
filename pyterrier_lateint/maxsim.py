"""MaxSim: the late-interaction score of a query against documents.

``score(q, d) = sum_i max_j <q_i, d_j>`` over query token vectors ``q_i`` and document token vectors ``d_j``.
A document with no vectors (empty text) scores ``-inf``: it can never be ranked above a real match.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

EMPTY_DOC_SCORE = float("-inf")


def pack(docs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate per-document matrices.

    Returns ``(vectors (T, dim), offsets (n_docs + 1,))`` so that document ``i`` owns rows
    ``offsets[i]:offsets[i+1]``.
    """
    lens = np.fromiter((len(d) for d in docs), dtype=np.int64, count=len(docs))
    offsets = np.zeros(len(docs) + 1, dtype=np.int64)
    np.cumsum(lens, out=offsets[1:])
    if len(docs) == 0:
        return np.zeros((0, 0), dtype=np.float32), offsets
    dim = docs[0].shape[1] if docs[0].ndim == 2 else 0
    vectors = np.concatenate([np.asarray(d, dtype=np.float32).reshape(-1, dim) for d in docs]) if offsets[-1] else \
        np.zeros((0, dim), dtype=np.float32)
    return vectors, offsets


def maxsim_packed(query: np.ndarray, vectors: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """MaxSim of one query ``(nq, dim)`` against packed documents (see :func:`pack`).

    Returns float32 scores ``(n_docs,)``; empty documents get :data:`EMPTY_DOC_SCORE`.
    """
    n_docs = len(offsets) - 1
    scores = np.full(n_docs, EMPTY_DOC_SCORE, dtype=np.float32)
    if n_docs == 0 or len(vectors) == 0 or len(query) == 0:
        if len(query) == 0:
            scores[np.diff(offsets) > 0] = 0.0
        return scores
    sims = np.asarray(query, dtype=np.float32) @ vectors.T  # (nq, T)
    nonempty = np.diff(offsets) > 0
    starts = offsets[:-1][nonempty]
    # maximum.reduceat over each document's column range, then sum over query tokens
    scores[nonempty] = np.maximum.reduceat(sims, starts, axis=1).sum(axis=0)
    return scores


def maxsim(query: np.ndarray, docs: Sequence[np.ndarray]) -> np.ndarray:
    """MaxSim of one query against each of a list of documents.

    ``score(q, d) = sum_i max_j <q_i, d_j>``; a document with no vectors scores ``-inf``
    (:data:`EMPTY_DOC_SCORE`), and an empty query scores 0 against every non-empty document.

    Args:
        query: the query's token vectors, ``(nq, dim)``.
        docs: each document's token vectors, ``(n_i, dim)`` (converted to float32).

    Returns:
        numpy.ndarray: float32 ``(n_docs,)`` scores, in the order of ``docs``.

    Raises:
        ValueError: when the documents' dimension differs from the query's.

    Example:
        .. code-block:: python

            q = model.encode_queries(["electron spin"])[0]
            docs = model.encode_docs(["the spin of the electron", "an unrelated text"])
            maxsim(q, docs)   # array([s0, s1], dtype=float32)
    """
    vectors, offsets = pack(docs)
    if vectors.shape[1:] != (query.shape[1],) and len(vectors):
        raise ValueError(f"query dim {query.shape[1]} != document dim {vectors.shape[1]}")
    return maxsim_packed(query, vectors, offsets)
