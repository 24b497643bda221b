"""A seeded uniform sample of the token vectors of a stream whose length is not known in advance.

A build that does not spill its vectors to disk (``indexer(spill=False)``) reads the collection twice: the first
pass keeps this sample to train the codec on, the second compresses. Each vector gets a random key (one float64 of
``numpy.random.default_rng(seed)`` per vector, in stream order) and the sample is the vectors with the smallest
keys: a uniform sample without replacement, the same whatever the sizes of the pieces the stream arrives in.

Memory: one float16 buffer of ``SLACK * capacity`` rows, allocated untouched (pages become resident only as rows are
written: a small stream costs what it holds), cut back to ``capacity`` rows in place whenever it fills.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

SLACK = 1.25  # the buffer holds this many times ``capacity`` rows before it is cut back
MOVE_ROWS = 2 ** 16  # rows moved per step when cutting back in place


class StreamSample:
    """Uniform sample (without replacement) of up to ``capacity`` rows of a stream of ``(n, dim)`` arrays.

    Args:
        capacity: rows kept (>= 1).
        seed: seed of the keys.
    """

    def __init__(self, capacity: int, seed: int = 0):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, not {capacity!r}")
        self.capacity = int(capacity)
        self.n_seen = 0
        self._rng = np.random.default_rng(seed)
        self._threshold = np.inf  # keys at or above it can no longer enter the sample
        self._slots = int(np.ceil(SLACK * self.capacity))
        self._rows: Optional[np.ndarray] = None  # float16 (slots, dim), rows [0, m) in use, in stream order
        self._keys = np.empty(self._slots, dtype=np.float64)
        self._pos = np.empty(self._slots, dtype=np.int64)  # stream position of each row
        self._m = 0

    def add(self, vectors: np.ndarray) -> None:
        """Offer the next rows of the stream, float ``(n, dim)`` (kept as float16)."""
        n = len(vectors)
        if n == 0:
            return
        if self._rows is None:
            self._rows = np.empty((self._slots, vectors.shape[1]), dtype=np.float16)
        keys = self._rng.random(n)
        take = np.flatnonzero(keys < self._threshold)
        while len(take):
            put = take[:self._slots - self._m]
            m, m1 = self._m, self._m + len(put)
            self._rows[m:m1] = vectors[put]
            self._keys[m:m1] = keys[put]
            self._pos[m:m1] = put + self.n_seen
            self._m = m1
            take = take[len(put):]
            if self._m == self._slots:
                self._cut(self.capacity)
                take = take[keys[take] < self._threshold]
        self.n_seen += n

    def _cut(self, keep_n: int) -> None:
        """Keep the ``keep_n`` rows of smallest key, in stream order, moved down in place (``keep`` is sorted, so
        ``keep[i] >= i`` and no row is overwritten before it moves); later keys must beat the largest kept."""
        if self._m <= keep_n:
            return
        keep = np.sort(np.argpartition(self._keys[:self._m], keep_n - 1)[:keep_n])
        self._threshold = float(self._keys[keep].max())
        for j in range(0, keep_n, MOVE_ROWS):
            idx = keep[j:j + MOVE_ROWS]
            self._rows[j:j + len(idx)] = self._rows[idx]
            self._keys[j:j + len(idx)] = self._keys[idx]
            self._pos[j:j + len(idx)] = self._pos[idx]
        self._m = keep_n

    def result(self, limit: Optional[int] = None) -> tuple[np.ndarray, np.ndarray]:
        """The sample, cut to ``limit`` rows (a uniform sample too) when given: float16 ``(m, dim)`` rows (a view of
        the buffer) and their int64 stream positions ``(m,)``, in stream order; ``m = min(capacity, limit, n_seen)``.
        Raises ``ValueError`` when no row was offered."""
        if self._rows is None:
            raise ValueError("no vectors were offered to the sample")
        self._cut(min(self.capacity, limit or self.capacity))
        return self._rows[:self._m], self._pos[:self._m].copy()
