"""The float16 vector spill file of a build (``raw.f16``), read by explicit file reads rather than a memory map.

A memory-mapped file's pages that a process has touched count in its resident memory until the kernel takes them
back, so reading a whole spill file through ``np.memmap`` (tens of GB at a million documents) made a build look, and
be accounted, as large as its input. Reads into fresh buffers keep a build's resident memory at the size of one
chunk; the data still comes from the page cache when there is room for it.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

GATHER_SPAN = 64  # rows: sampled rows closer than this are read together in one read


class VectorFile:
    """Read-only view of a header-less row-major file of ``n`` rows of ``dim`` values of ``dtype``.

    Supports ``len()``, ``shape``, ``dtype``, contiguous slices ``vf[a:b]`` and sorted integer row arrays
    ``vf[rows]`` (returned as new arrays), which is what the build reads of it.
    """

    def __init__(self, path: str | Path, n: int, dim: int, dtype=np.float16):
        self.path, self.dtype = Path(path), np.dtype(dtype)
        self.shape = (int(n), int(dim))
        self._row_bytes = self.shape[1] * self.dtype.itemsize
        expected = self.shape[0] * self._row_bytes
        size = os.path.getsize(self.path)
        if size < expected:
            raise ValueError(f"{self.path} holds {size} bytes, fewer than the {expected} of {n} rows of {dim} "
                             f"{self.dtype.name} values")

    def __len__(self) -> int:
        return self.shape[0]

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` as a new ``(stop - start, dim)`` array."""
        start, stop = max(0, int(start)), min(len(self), int(stop))
        out = np.empty((max(0, stop - start), self.shape[1]), dtype=self.dtype)
        if len(out):
            with open(self.path, "rb") as f:
                f.seek(start * self._row_bytes)
                if f.readinto(memoryview(out).cast("B")) != out.nbytes:
                    raise OSError(f"{self.path}: short read of rows {start}:{stop}")
        return out

    def take(self, rows: np.ndarray) -> np.ndarray:
        """Rows ``rows`` (sorted ascending, int) as a new ``(len(rows), dim)`` array: one read per run of nearby
        rows, so a sample of a large file costs one read per sampled row at most."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), self.shape[1]), dtype=self.dtype)
        if not len(rows):
            return out
        if np.any(np.diff(rows) < 0) or rows[0] < 0 or rows[-1] >= len(self):
            raise IndexError(f"rows must be sorted and within [0, {len(self)})")
        breaks = np.flatnonzero(np.diff(rows) > GATHER_SPAN) + 1
        bounds = np.concatenate([[0], breaks, [len(rows)]])
        with open(self.path, "rb") as f:
            for a, b in zip(bounds[:-1], bounds[1:]):
                lo, hi = int(rows[a]), int(rows[b - 1]) + 1
                buf = os.pread(f.fileno(), (hi - lo) * self._row_bytes, lo * self._row_bytes)
                block = np.frombuffer(buf, dtype=self.dtype).reshape(hi - lo, self.shape[1])
                out[a:b] = block[rows[a:b] - lo]
        return out

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step != 1:
                raise IndexError("only contiguous slices are supported")
            return self.read(start, stop)
        return self.take(key)
