"""Searching shards so that their merged results equal a single index's, and the merges.

The shards of a :class:`~pyterrier_lateint.sharded.ShardedColBERTIndex` share their centroids and residual codec,
so every stage score of a document (stage 1's probe sum, stage 2's centroid interaction, the exact MaxSim) is the
number a single index of the same documents gives it; only the cuts between stages are global. The search of a
batch therefore runs in two rounds (:func:`search_sharded`):

1. every searcher runs stages 1-2 on its shards and returns, per query, its best ``ncandidates`` documents by
   stage-1 score with their stage-2 scores; the coordinator keeps the best ``ncandidates`` of all of them, then
   the best ``nexact`` of those by stage-2 score (:func:`merge_candidates`). A shard's best ``ncandidates`` hold
   every one of its documents among the global best, so the cut is exact;
2. the searchers score the chosen documents exactly; the coordinator keeps the best ``k`` (:func:`merge_top_k`).

Every cut orders by score, then lower global id, by the single index's functions
(:mod:`pyterrier_lateint.index.ranking`). Exhaustive search is one round: each searcher's exact top ``k``, merged.
"""
from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from ..index.threads import pmap
from ..index.layout import IndexReader
from ..index.ranking import select_top, select_top_positions, top_k
from ..index.search import (PARALLEL_MIN_WORK, SearchParams, centroid_scores, exact_padded, exact_tables, query_slice,
                            search_exhaustive, stage_candidates, stage_interaction)

# One query's candidates round is spread over threads only for shards of at least this many vectors in all (below,
# waking a thread cost more than the stage-1 walk it saves: Vaswani's 547k vectors in 2 shards took 1.2 ms spread,
# 0.7 ms in one thread); the exact round follows the single index's rule (PARALLEL_MIN_WORK).
PARALLEL_MIN_VECTORS = 4_000_000
SCORE_CACHE = 4  # batches whose centroid scores a searcher keeps between the two rounds
Candidates = tuple[np.ndarray, np.ndarray, np.ndarray]  # global ids int64, stage-1 scores, stage-2 scores
Results = list[tuple[np.ndarray, np.ndarray]]  # per query: global ids int64, scores float32, best first


class ShardSearcher:
    """Searches the shards it was given (opened memory-mapped from shared storage): one per worker. ``paths``:
    shard index folders; ``bases``: the global id of each shard's first document. Work items are (shard, query)
    pairs spread over this process's thread pool."""

    def __init__(self, paths: Sequence[str | Path], bases: Sequence[int]):
        self.paths = [Path(p) for p in paths]
        self.readers = [IndexReader(p) for p in self.paths]
        self.bases = np.asarray(bases, dtype=np.int64)
        self.ends = self.bases + np.array([r.n_docs for r in self.readers], dtype=np.int64)
        self.n_vectors = int(sum(r.n_vectors for r in self.readers))
        self._scores: dict = {}  # recent batches' centroid scores (the exact round reuses the candidates round's)
        self._lock = threading.Lock()

    def _map(self, fn, items: list, spread: bool = True) -> list:
        """``fn(item, parallel)`` for each item: one item may use the thread pool itself; several are spread over
        the pool when ``spread`` (enough work to pay for waking threads), else run here one after another."""
        if len(items) == 1:
            return [fn(items[0], True)]
        if not spread:
            return [fn(it, False) for it in items]
        return pmap(lambda it: fn(it, False), items)

    def _vectors_of(self, s: int, local: np.ndarray) -> int:
        """Stored vectors of shard ``s``'s documents ``local`` (local ids)."""
        off = self.readers[s].offsets
        return int((off[local + 1] - off[local]).sum())

    def _centroid_scores(self, Q: np.ndarray) -> np.ndarray:
        """``centroids @ Q.T`` of a padded batch, kept from the candidates round for the exact round."""
        key = (Q.shape, hashlib.blake2b(Q.tobytes(), digest_size=16).digest())
        with self._lock:
            St = self._scores.get(key)
        if St is None:
            St = centroid_scores(self.readers[0], Q)  # the shards share their centroids
            with self._lock:
                self._scores[key] = St
                while len(self._scores) > SCORE_CACHE:
                    self._scores.pop(next(iter(self._scores)))
        return St

    def candidates(self, Q: np.ndarray, q_off: np.ndarray, lens: np.ndarray, p: SearchParams) -> list[Candidates]:
        """Stages 1-2 of every query of a padded batch (:func:`~pyterrier_lateint.index.search.pad_queries` with the
        shards' codec: in its query space) over these shards: per query, the shards' best ``p.ncandidates`` each,
        concatenated."""
        St_all = self._centroid_scores(Q)

        def one_shard(s: int, qi: int, St: np.ndarray) -> Candidates:
            ids, approx = stage_candidates(self.readers[s], St, int(lens[qi]), p)
            return ids + self.bases[s], approx, stage_interaction(self.readers[s], St, ids)

        if len(lens) == 1:  # one query: St_all is its own; its shards spread over threads when large enough
            parts = self._map(lambda s, parallel: one_shard(s, 0, St_all), list(range(len(self.readers))),
                              spread=self.n_vectors >= PARALLEL_MIN_VECTORS)
            return [_concat(parts)]
        def one_query(qi: int, parallel: bool) -> Candidates:  # its columns of St copied once for all the shards
            St = query_slice(St_all, q_off, qi)
            return _concat([one_shard(s, qi, St) for s in range(len(self.readers))])

        return self._map(one_query, list(range(len(lens))))  # a batch: its queries in parallel

    def exact(self, Q: np.ndarray, q_off: np.ndarray, ids: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Exact MaxSim (float32) of each query of the padded batch (as for :meth:`candidates`) against its global
        ``ids`` (held here). The per-query tables are built once and shared by the shards (one codec)."""
        St_all = self._centroid_scores(Q)
        compressed = self.readers[0].nbits != 16
        out = [np.empty(len(g), dtype=np.float32) for g in ids]
        per_query = []
        for qi, g in enumerate(ids):
            g = np.asarray(g, dtype=np.int64)
            shard = np.searchsorted(self.bases, g, side="right") - 1
            if len(g) and ((shard < 0).any() or (g >= self.ends[shard]).any()):
                raise ValueError(f"document ids outside the shards of this searcher ({self.paths})")
            per_query.append([(int(s), np.flatnonzero(shard == s)) for s in np.unique(shard)])

        def tables_of(qi):
            Qp = Q[q_off[qi]:q_off[qi + 1]]
            return exact_tables(self.readers[0], Qp, query_slice(St_all, q_off, qi)) if compressed else None

        def score(qi, s, pos, tables, parallel):
            local = np.asarray(ids[qi], dtype=np.int64)[pos] - self.bases[s]
            out[qi][pos] = exact_padded(self.readers[s], Q[q_off[qi]:q_off[qi + 1]], local, None, parallel, tables)

        if len(ids) == 1:  # one query: one table; its shards in parallel when the work pays for it
            tables = tables_of(0) if per_query[0] else None
            g = np.asarray(ids[0], dtype=np.int64)
            n_vec = sum(self._vectors_of(s, g[pos] - self.bases[s]) for s, pos in per_query[0])
            work = n_vec * self.readers[0].residuals.shape[1] * len(tables or [1])  # as the single index counts it
            self._map(lambda item, par: score(0, *item, tables, par), per_query[0], spread=work >= PARALLEL_MIN_WORK)
        else:  # a batch: its queries in parallel, each over its shards
            def one_query(qi, parallel):
                if per_query[qi]:
                    tables = tables_of(qi)
                    for s, pos in per_query[qi]:
                        score(qi, s, pos, tables, parallel)
            self._map(one_query, list(range(len(ids))))
        return out

    def exhaustive(self, queries: list[np.ndarray], k: int) -> Results:
        """Exact top ``k`` of every query over these shards (global ids)."""
        per_shard = [search_exhaustive(r, queries, k) for r in self.readers]
        return [merge_top_k([(ids + base, sc) for (ids, sc), base in zip((res[qi] for res in per_shard), self.bases)],
                            k) for qi in range(len(queries))]


def _concat(parts: list[Candidates]) -> Candidates:
    return tuple(np.concatenate([p[j] for p in parts]) for j in range(3))  # type: ignore[return-value]


def merge_candidates(parts: Sequence[Candidates], p: SearchParams) -> np.ndarray:
    """The documents (global ids, sorted) a single index would score exactly: the best ``p.ncandidates`` of all
    shards' candidates by stage-1 score, then the best ``p.nexact`` of those by stage-2 score."""
    ids, approx, inter = _concat(list(parts))
    keep = select_top_positions(ids, approx, p.ncandidates)
    ids, inter = ids[keep], inter[keep]
    if len(ids) > p.nexact:
        ids = select_top(ids, inter, p.nexact)
    return np.sort(ids)


def merge_top_k(parts: Sequence[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """The best ``k`` of several (ids, exact scores) lists: best first, ties by lower id."""
    if not parts:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    return top_k(np.concatenate([i for i, _ in parts]), np.concatenate([s for _, s in parts]), k)
