"""The one ranking rule of every search: score descending, then lower document id first.

Every cut and every final ordering (the candidate stages of each backend, the top ``k`` of a search, the merge of
shards' results) follows it, so that backends and shardings keep the same documents in the same order. The numpy
functions serve the CPU paths; :func:`top_by_key` is the same rule on torch tensors, for batches that stay on a
device (``tests/test_ranking.py`` pins the two to the same order).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numba
import numpy as np

from ..maxsim import EMPTY_DOC_SCORE

if TYPE_CHECKING:
    import torch

ID_MAX = 2 ** 31 - 1  # ids ranked by :func:`top_by_key` are below this (an id of ID_MAX ranks after all others)


def rank_order(ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Positions (int64 ``(n,)``) that put ``ids`` / ``scores`` (both ``(n,)``) best first: score descending,
    ties by lower id (``-0.0`` ties ``0.0``)."""
    return np.lexsort((ids, -scores))


# Entries from which select_top_positions finds the cut by a histogram (numba) rather than a partition: the stage-1
# cut of 25,000 touched documents to 1,536 at 100,000 documents took 0.31 ms by np.argpartition
HISTOGRAM_MIN = 4096
_BINS = 4096


def select_top_positions(ids: np.ndarray, scores: np.ndarray, n: int) -> np.ndarray:
    """Positions (int64, unordered) of the ``n`` best of ``ids`` by ``scores`` (all of them when ``n`` or fewer);
    ties at the cut go to the lower ids. O(len(ids)): one partition, no sort but of the tied entries; from
    :data:`HISTOGRAM_MIN` finite float scores, :func:`_histogram_top` (two passes and a sort of one bin)."""
    if len(ids) <= n:
        return np.arange(len(ids))
    if len(ids) >= HISTOGRAM_MIN and scores.dtype == np.float32 and ids.dtype == np.int64:
        got = _histogram_top(ids, scores, n)
        if got is not None:
            return got
    part = np.argpartition(-scores, n - 1)
    thr = scores[part[n - 1]]
    if np.count_nonzero(scores >= thr) == n:  # no tie across the cut (the usual case): the partition's choice
        return part[:n]
    above = np.flatnonzero(scores > thr)
    tied = np.flatnonzero(scores == thr)
    tied = tied[rank_order(ids[tied], scores[tied])]
    return np.concatenate([above, tied[:n - len(above)]])


@numba.njit(cache=True, nogil=True)
def _histogram_top(ids, scores, n):
    """:func:`select_top_positions` for ``n < len(scores)``: bin the scores between their least and greatest (a
    monotone binning: equal scores share a bin), take the bins above the one holding the ``n``-th best whole, and
    from that bin the best by (score descending, id ascending). None when a score is not finite or all are equal
    (the caller's partition handles those)."""
    m = len(scores)
    lo = np.inf
    hi = -np.inf
    for i in range(m):
        x = scores[i]
        if not np.isfinite(x):
            return None
        lo = min(lo, x)
        hi = max(hi, x)
    if hi <= lo:
        return None
    width = (np.float64(hi) - np.float64(lo)) / _BINS
    counts = np.zeros(_BINS + 1, dtype=np.int64)
    bins = np.empty(m, dtype=np.int32)
    for i in range(m):
        b = min(_BINS, int((np.float64(scores[i]) - lo) / width))
        bins[i] = b
        counts[b] += 1
    above = 0
    cut = _BINS
    while above + counts[cut] < n:
        above += counts[cut]
        cut -= 1
    out = np.empty(n, dtype=np.int64)
    tied = np.empty(counts[cut], dtype=np.int64)
    k = 0
    j = 0
    for i in range(m):
        if bins[i] > cut:
            out[k] = i
            k += 1
        elif bins[i] == cut:
            tied[j] = i
            j += 1
    key = np.empty(len(tied), dtype=np.float64)  # score descending, then id ascending: a stable sort by id first
    by_id = tied[np.argsort(ids[tied], kind="mergesort")]
    for q in range(len(by_id)):
        key[q] = -np.float64(scores[by_id[q]])
    best = by_id[np.argsort(key, kind="mergesort")]
    out[k:] = best[:n - k]
    return out


def select_top(ids: np.ndarray, scores: np.ndarray, n: int) -> np.ndarray:
    """The ``n`` best ``ids`` by ``scores`` (unordered; :func:`select_top_positions`): the cut of every backend's
    candidate stages, so that they keep the same candidates."""
    return ids if len(ids) <= n else ids[select_top_positions(ids, scores, n)]


def top_k(ids: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best ``(ids, scores)``, best first (:func:`rank_order`), ``-inf`` (empty documents) dropped: the
    final cut of every search, also the merge of shards' results."""
    keep = scores > EMPTY_DOC_SCORE
    ids, scores = ids[keep], scores[keep]
    if len(ids) > k:
        sel = select_top_positions(ids, scores, k)
        ids, scores = ids[sel], scores[sel]
    order = rank_order(ids, scores)
    return ids[order], scores[order]


def order_key(scores: "torch.Tensor", ids: "torch.Tensor") -> "torch.Tensor":
    """int64 keys ordering as :func:`rank_order` (largest key = best): ``scores`` float32 and ``ids`` int64 in
    ``[0, ID_MAX]``, same shape. The float's bits, made monotone, above ``ID_MAX - id``; ``-0.0`` is folded into
    ``0.0`` (numerically equal scores must tie)."""
    import torch
    bits = (scores.float() + 0.0).contiguous().view(torch.int32).to(torch.int64)
    ordered = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)  # monotone in the float value
    return (ordered << 32) | (ID_MAX - ids)


def top_by_key(scores: "torch.Tensor", ids: "torch.Tensor", n: int) -> "torch.Tensor":
    """Column positions of the ``n`` best entries of each row of ``scores`` / ``ids`` ``(B, m)`` by
    :func:`order_key`, best first: int64 ``(B, min(n, m))``."""
    import torch
    n = min(n, scores.shape[1])
    return torch.topk(order_key(scores, ids), n, dim=1).indices
