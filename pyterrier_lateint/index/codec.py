"""Residual compression of token vectors: ``v ~= centroid[code] + residual``.

The residual is quantised per dimension into ``2**nbits`` buckets (nbits 1, 2 or 4, packed ``8 // nbits``
dimensions per byte, little end first) whose cut-offs and reconstruction values are per-dimension quantiles of a
sample of training residuals; ``nbits=16`` stores the residual as float16 (near-lossless).
"""
from __future__ import annotations

import json
from pathlib import Path

import numba
import numpy as np

from ._threads import n_threads, pmap
from .kmeans import assign_nearest

SUPPORTED_NBITS = (1, 2, 4, 16)


class ResidualCodec:
    """Centroids plus per-dimension residual buckets.

    - ``centroids``: float32 ``(K, dim)``.
    - ``cutoffs``: float32 ``(dim, 2**nbits - 1)`` bucket boundaries (``None`` for nbits=16).
    - ``weights``: float32 ``(dim, 2**nbits)`` reconstruction value of each bucket (``None`` for nbits=16).
    """

    def __init__(self, centroids: np.ndarray, nbits: int, cutoffs: np.ndarray | None = None,
                 weights: np.ndarray | None = None):
        if nbits not in SUPPORTED_NBITS:
            raise ValueError(f"nbits must be one of {SUPPORTED_NBITS} (16 = uncompressed float16), not {nbits!r}")
        self.centroids = np.ascontiguousarray(centroids, dtype=np.float32)
        self.nbits = nbits
        self.dim = self.centroids.shape[1]
        if nbits != 16:
            if self.dim % (8 // nbits):
                raise ValueError(f"dim {self.dim} must be a multiple of {8 // nbits} for nbits={nbits}")
            if cutoffs is None or weights is None:
                raise ValueError("cutoffs and weights are required for nbits < 16")
            self.cutoffs = np.ascontiguousarray(cutoffs, dtype=np.float32)
            self.weights = np.ascontiguousarray(weights, dtype=np.float32)
            self.lut = _byte_lut(self.weights, nbits)
        else:
            self.cutoffs = self.weights = None
            self.lut = np.zeros((0, 256, 1), dtype=np.float32)

    def query_space(self, Q: np.ndarray) -> np.ndarray:
        """Queries ``(n, dim)`` mapped into the space the centroids and the residual table ``lut`` live in: every
        kernel that scores queries against ``centroids`` / ``lut`` takes them through this first (identity for
        this codec; a rotating codec rotates them). ``decompress`` returns vectors in the original space."""
        return Q

    @property
    def n_centroids(self) -> int:
        return len(self.centroids)

    @property
    def code_dtype(self) -> np.dtype:
        return np.dtype(np.uint16) if self.n_centroids <= 2 ** 16 else np.dtype(np.int32)

    @property
    def residual_shape(self) -> tuple[int, np.dtype]:
        """``(columns, dtype)`` of the stored residual matrix."""
        if self.nbits == 16:
            return self.dim, np.dtype(np.float16)
        return self.dim * self.nbits // 8, np.dtype(np.uint8)

    def bytes_per_vector(self) -> int:
        """Stored bytes per token vector: code + residual."""
        cols, dt = self.residual_shape
        return self.code_dtype.itemsize + cols * dt.itemsize

    @classmethod
    def train(cls, centroids: np.ndarray, sample: np.ndarray, nbits: int) -> "ResidualCodec":
        """Fit residual buckets on ``sample`` ``(n, dim)`` vectors (their residuals to the nearest centroid)."""
        if nbits not in SUPPORTED_NBITS:
            raise ValueError(f"nbits must be one of {SUPPORTED_NBITS} (16 = uncompressed float16), not {nbits!r}")
        if nbits == 16:
            return cls(centroids, 16)
        sample = np.asarray(sample, dtype=np.float32)
        res = sample - centroids[assign_nearest(sample, centroids)]
        nb = 2 ** nbits
        cut_q = np.arange(1, nb) / nb
        w_q = (np.arange(nb) + 0.5) / nb
        cutoffs = np.quantile(res, cut_q, axis=0).T  # (dim, nb-1)
        weights = np.quantile(res, w_q, axis=0).T  # (dim, nb)
        return cls(centroids, nbits, cutoffs, weights)

    def compress(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Encode float ``(n, dim)`` vectors; returns ``(codes (n,), residuals (n, cols))``."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        codes = assign_nearest(vectors, self.centroids)
        res = vectors - self.centroids[codes]
        if self.nbits == 16:
            packed = res.astype(np.float16)
        else:
            packed = _quantise(res, self.cutoffs, self.nbits)
        return codes.astype(self.code_dtype), packed

    def decompress(self, codes: np.ndarray, residuals: np.ndarray) -> np.ndarray:
        """Decode ``(n,)`` codes and ``(n, cols)`` residuals into float32 ``(n, dim)``."""
        out = np.empty((len(codes), self.dim), dtype=np.float32)
        if len(codes):
            if self.nbits == 16:  # numba has no float16 on CPU
                np.add(self.centroids[np.asarray(codes, dtype=np.int64)], residuals, out=out, casting="unsafe")
            else:
                _decode_packed(np.ascontiguousarray(codes), np.ascontiguousarray(residuals), self.centroids,
                               self.lut, out)
        return out

    def decompress_docs(self, doc_ids: np.ndarray, offsets: np.ndarray, codes: np.ndarray,
                        residuals: np.ndarray, parallel: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Decode the vectors of documents ``doc_ids`` from the stored (memory-mapped) arrays.

        Returns ``(vectors (T, dim) float32, out_offsets (len(doc_ids) + 1,) int64)``: document ``doc_ids[i]``
        owns rows ``out_offsets[i]:out_offsets[i+1]``. ``parallel``: split large requests over the thread pool.
        """
        doc_ids = np.asarray(doc_ids, dtype=np.int64)
        lens = offsets[doc_ids + 1] - offsets[doc_ids]
        out_offsets = np.zeros(len(doc_ids) + 1, dtype=np.int64)
        np.cumsum(lens, out=out_offsets[1:])
        out = np.empty((int(out_offsets[-1]), self.dim), dtype=np.float32)
        if len(out):
            if self.nbits == 16:
                rows = _doc_rows(doc_ids, offsets, out_offsets)
                np.add(self.centroids[np.asarray(codes[rows], dtype=np.int64)], residuals[rows], out=out,
                       casting="unsafe")
            else:
                n_par = n_threads() if parallel and len(out) >= 4096 else 1
                bounds = np.linspace(0, len(doc_ids), n_par + 1).astype(np.int64)

                def run(j: int) -> None:
                    a, b = bounds[j], bounds[j + 1]
                    _decode_docs_packed(doc_ids[a:b], offsets, out_offsets[a:b + 1], codes, residuals,
                                        self.centroids, self.lut, out)
                pmap(run, range(n_par))
        return out, out_offsets

    # --- persistence -------------------------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """Write ``centroids.npy`` and ``codec.json`` (+ ``buckets.npz`` for nbits < 16) into directory ``path``."""
        path = Path(path)
        np.save(path / "centroids.npy", self.centroids)
        if self.nbits != 16:
            np.savez(path / "buckets.npz", cutoffs=self.cutoffs, weights=self.weights)
        with open(path / "codec.json", "w") as f:
            json.dump({"nbits": self.nbits, "n_centroids": self.n_centroids, "dim": self.dim}, f)

    @classmethod
    def load(cls, path: Path) -> "ResidualCodec":
        path = Path(path)
        with open(path / "codec.json") as f:
            meta = json.load(f)
        centroids = np.load(path / "centroids.npy")
        if meta["nbits"] == 16:
            return cls(centroids, 16)
        with np.load(path / "buckets.npz") as b:
            return cls(centroids, meta["nbits"], b["cutoffs"], b["weights"])


def _quantise(res: np.ndarray, cutoffs: np.ndarray, nbits: int) -> np.ndarray:
    """Bucket ``res`` ``(n, dim)`` per dimension and pack ``8 // nbits`` buckets per byte."""
    n, dim = res.shape
    buckets = np.zeros((n, dim), dtype=np.uint8)
    for j in range(cutoffs.shape[1]):  # bucket = number of cut-offs below the value
        buckets += res > cutoffs[:, j]
    per = 8 // nbits
    buckets = buckets.reshape(n, dim // per, per)
    packed = np.zeros((n, dim // per), dtype=np.uint8)
    for k in range(per):
        packed |= buckets[:, :, k] << np.uint8(k * nbits)
    return packed


def _byte_lut(weights: np.ndarray, nbits: int) -> np.ndarray:
    """``lut[p, byte, k]`` = reconstruction value of dimension ``p * per + k`` for packed byte ``byte``."""
    dim = weights.shape[0]
    per = 8 // nbits
    mask = (1 << nbits) - 1
    byte = np.arange(256)
    lut = np.empty((dim // per, 256, per), dtype=np.float32)
    for k in range(per):
        bucket = (byte >> (k * nbits)) & mask  # (256,)
        lut[:, :, k] = weights[k::per][:, bucket]
    return lut


@numba.njit(cache=True, nogil=True)
def _decode_packed(codes, packed, centroids, lut, out):
    n, nbytes = packed.shape
    per = lut.shape[2]
    for v in range(n):
        c = codes[v]
        for p in range(nbytes):
            b = packed[v, p]
            for k in range(per):
                d = p * per + k
                out[v, d] = centroids[c, d] + lut[p, b, k]


@numba.njit(cache=True, nogil=True)
def _decode_docs_packed(doc_ids, offsets, out_offsets, codes, packed, centroids, lut, out):
    nbytes = packed.shape[1]
    per = lut.shape[2]
    for i in range(len(doc_ids)):
        d0 = offsets[doc_ids[i]]
        o0 = out_offsets[i]
        for r in range(out_offsets[i + 1] - o0):
            v = d0 + r
            c = codes[v]
            for p in range(nbytes):
                b = packed[v, p]
                for k in range(per):
                    dd = p * per + k
                    out[o0 + r, dd] = centroids[c, dd] + lut[p, b, k]


def _doc_rows(doc_ids: np.ndarray, offsets: np.ndarray, out_offsets: np.ndarray) -> np.ndarray:
    """Stored row numbers of the vectors of ``doc_ids``, concatenated (int64 ``(out_offsets[-1],)``)."""
    starts = np.asarray(offsets[doc_ids], dtype=np.int64)
    lens = np.diff(out_offsets)
    return np.repeat(starts - out_offsets[:-1], lens) + np.arange(out_offsets[-1], dtype=np.int64)
