"""The files of a segment being written: compressed ``codes.bin`` / ``residuals.bin`` of a run of whole documents,
their (centroid, document) postings (``pairs.i32``, then the inverted file) and token ids.

A build (:func:`~.build.compress`), an added segment and a compaction that copies stored bytes (:mod:`.mutation`)
all write through :class:`SegmentWriter`, chunk by chunk in document order, then :func:`write_ivf`.
"""
from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType
from typing import Optional

import numpy as np

from .vectorfile import VectorFile

COPY_CHUNK = 2 ** 22  # rows moved per step when filling the inverted file and the token ids


class SegmentWriter:
    """Appends chunks of whole documents to ``folder/codes.bin``, ``residuals.bin`` and ``pairs.i32`` (a context
    manager; the files are closed on exit), counting the postings of each centroid.

    Args:
        folder: where the files go (created or truncated).
        n_docs: documents of the segment (document ids run from 0).
        n_centroids: centroids of the codec.
    """

    def __init__(self, folder: Path, n_docs: int, n_centroids: int):
        self.n_docs, self.n_centroids = n_docs, n_centroids
        self.ivf_counts = np.zeros(n_centroids, dtype=np.int64)  # postings per centroid
        self.n_pairs = 0
        self._files = [open(Path(folder) / name, "wb") for name in ("codes.bin", "residuals.bin", "pairs.i32")]

    def __enter__(self) -> "SegmentWriter":
        return self

    def __exit__(self, kind: Optional[type], value: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        for f in self._files:
            f.close()

    def write(self, d0: int, lens: np.ndarray, codes: np.ndarray, residuals: np.ndarray) -> None:
        """Documents ``d0, d0 + 1, ...`` of ``lens`` vectors each: their centroid ``codes`` ``(n,)`` and residual
        bytes ``(n, bytes_per_vector)``, ``n = lens.sum()``."""
        codes_out, res_out, pair_out = self._files
        codes_out.write(np.ascontiguousarray(codes).tobytes())
        res_out.write(np.ascontiguousarray(residuals).tobytes())
        pairs = chunk_postings(codes, d0, np.asarray(lens, dtype=np.int64), self.n_docs)
        self.ivf_counts += np.bincount(pairs[:, 0], minlength=self.n_centroids)
        pair_out.write(pairs.tobytes())
        self.n_pairs += len(pairs)


def chunk_postings(codes: np.ndarray, d0: int, lens: np.ndarray, n_docs: int) -> np.ndarray:
    """The (centroid, document) postings of one chunk: ``codes`` the centroid of each vector of documents ``d0,
    d0 + 1, ...`` of lengths ``lens``; returns their unique pairs sorted by centroid then document, int32
    ``(n_pairs, 2)``."""
    doc_of = np.repeat(np.arange(d0, d0 + len(lens), dtype=np.int64), lens)
    pairs = np.unique(np.asarray(codes).astype(np.int64) * n_docs + doc_of)
    return np.stack([pairs // n_docs, pairs % n_docs], axis=1).astype(np.int32)


def write_ivf(tmp: Path, ivf_counts: np.ndarray, n_pairs: int, prefix: str = "ivf.0") -> None:
    """Phase 4: centroid -> ascending doc ids. Chunks arrived in doc order, so a stable fill keeps them sorted."""
    k = len(ivf_counts)
    ivf_offsets = np.zeros(k + 1, dtype=np.int64)
    np.cumsum(ivf_counts, out=ivf_offsets[1:])
    ivf_docs = np.lib.format.open_memmap(tmp / f"{prefix}.docs.npy", mode="w+", dtype=np.int32, shape=(n_pairs,))
    cursor = ivf_offsets[:-1].copy()
    pairs = VectorFile(tmp / "pairs.i32", n_pairs, 2, np.int32)
    for s in range(0, n_pairs, COPY_CHUNK):
        chunk = pairs.read(s, s + COPY_CHUNK)
        order = np.argsort(chunk[:, 0], kind="stable")
        c, d = chunk[order, 0], chunk[order, 1]
        starts = np.searchsorted(c, c, side="left")  # first row of each row's centroid within the chunk
        ivf_docs[cursor[c] + (np.arange(len(c)) - starts)] = d
        cursor += np.bincount(c, minlength=k)
    ivf_docs.flush()
    del ivf_docs
    np.save(tmp / f"{prefix}.offsets.npy", ivf_offsets)
    os.remove(tmp / "pairs.i32")


def write_token_ids(tmp: Path, n_vectors: int) -> None:
    """Phase 5 (``store_token_ids``): ``raw.tokids`` becomes ``token_ids.npy`` (appendable in format 2: later
    segments' ids follow the array its header describes; ``lateint.json`` holds the committed length)."""
    tids = np.memmap(tmp / "raw.tokids", dtype=np.int32, mode="r", shape=(n_vectors,)) if n_vectors else \
        np.zeros(0, dtype=np.int32)
    out = np.lib.format.open_memmap(tmp / "token_ids.npy", mode="w+", dtype=np.int32, shape=(n_vectors,))
    for s in range(0, n_vectors, COPY_CHUNK):
        out[s:s + COPY_CHUNK] = tids[s:s + COPY_CHUNK]
    out.flush()
