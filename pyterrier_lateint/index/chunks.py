"""Cutting a run of documents (or queries) into consecutive pieces that fit a vector budget.

Every stage that walks the whole collection (compression at build time, copying live documents when compacting,
exhaustive search on the CPU and on a GPU) and every batch split by its work (the torch exact stage) uses these two
functions, so a document is never split and an oversized one still makes progress alone.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np


def doc_chunks(offsets: np.ndarray, max_vectors: int, start: int = 0, stop: int | None = None
               ) -> Iterator[tuple[int, int]]:
    """Documents ``[d0, d1)`` of each chunk of ``[start, stop)``: whole documents, at most ``max_vectors`` vectors
    each, or a single document longer than that.

    Args:
        offsets: int64 ``(n_docs + 1,)`` vector offsets (document ``d`` holds vectors ``offsets[d]:offsets[d + 1]``).
        max_vectors: vectors per chunk (>= 1).
        start, stop: the documents to cover (default: all).
    """
    if max_vectors < 1:
        raise ValueError(f"max_vectors must be >= 1, not {max_vectors}")
    stop = len(offsets) - 1 if stop is None else stop
    d0 = start
    while d0 < stop:
        d1 = int(np.searchsorted(offsets, offsets[d0] + max_vectors, side="right")) - 1
        d1 = min(max(d1, d0 + 1), stop)
        yield d0, d1
        d0 = d1


def budget_groups(sizes: Sequence[int], budget: int) -> list[tuple[int, int]]:
    """Consecutive groups ``[b0, b1)`` of items whose ``sizes`` add up to at most ``budget`` (an item larger than the
    budget forms a group alone); every item is in exactly one group, in order; no groups for no items."""
    groups, b0, acc = [], 0, 0
    for b, n in enumerate(sizes):
        if b > b0 and acc + n > budget:
            groups.append((b0, b))
            b0, acc = b, 0
        acc += n
    if len(sizes):
        groups.append((b0, len(sizes)))
    return groups
