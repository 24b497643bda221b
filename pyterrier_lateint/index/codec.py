"""Residual compression of token vectors: ``v ~= centroid[code] + residual``, ``nbits`` bits per dimension.

Two residual quantisers (``kind``), both storing one byte per ``per = 8 // nbits`` dimensions:

- ``"pq"`` (default): product quantisation: each ``per``-dimension slice of the residual is the nearest of 256
  codewords learnt by k-means on a sample of training residuals (:mod:`.pq`).
- ``"scalar"`` (format of the first indexes): each dimension falls in one of ``2**nbits`` buckets whose cut-offs
  and reconstruction values are per-dimension quantiles of training residuals, packed ``per`` to a byte.

Both are a byte table ``lut`` ``(n_bytes, 256, per)`` (the values of the ``per`` dimensions a byte stands for), which
is all the search kernels read. When the indexed vectors have unit length (as every ColBERT model's do), the codec
also stores a scale byte per vector: the inverse norm of its reconstruction, so that decoded vectors and exact scores
are those of the unit-length reconstruction ``v_hat / |v_hat|`` (the radial part of the quantisation error removed,
as PLAID does by re-normalising what it decompresses). ``nbits=16`` stores the residual as float16 (near-lossless).
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numba
import numpy as np

from .kmeans import assign_nearest
from .simd import half_centroid_blocks
from .threads import n_threads, pmap

SUPPORTED_NBITS = (1, 2, 4, 16)
KINDS = ("pq", "scalar")
DEFAULT_KIND = "pq"


def check_codec_settings(nbits: Any, kind: Any) -> None:
    """``ValueError`` unless ``nbits`` is one of :data:`SUPPORTED_NBITS` and ``kind`` one of :data:`KINDS` (the
    indexers' ``nbits`` and ``codec`` settings)."""
    if nbits not in SUPPORTED_NBITS:
        raise ValueError(f"nbits must be one of {SUPPORTED_NBITS} (16 = uncompressed float16), not {nbits!r}")
    if kind not in KINDS:
        raise ValueError(f"codec must be one of {KINDS} (see pyterrier_lateint.index.codec), not {kind!r}")
UNIT_NORM_TOLERANCE = 1e-3  # training vectors within this of length 1 are unit vectors: store scale bytes
SCALE_LEVELS = 256


class ResidualCodec:
    """Centroids plus a residual quantiser (see the module docstring).

    - ``centroids``: float32 ``(K, dim)`` (pq indexes, the default, store them as float16 and use them rounded).
    - ``kind``: ``"pq"`` or ``"scalar"``; ``lut``: float32 ``(n_bytes, 256, per)`` byte table (empty for nbits=16).
    - scalar: ``cutoffs`` float32 ``(dim, 2**nbits - 1)`` bucket boundaries, ``weights`` ``(dim, 2**nbits)``
      reconstruction values. pq: ``codebooks`` float32 ``(n_bytes, 256, per)`` (= ``lut``).
    - ``scale_range``: ``(lo, hi)`` of the stored inverse norms (log-uniform over 256 levels: ``scale_lut``), or
      ``None`` when vectors store no scale byte (``scale_lut`` is then empty).

    Args:
        centroids: float ``(K, dim)``.
        nbits: bits per residual dimension: 1, 2, 4 or 16 (float16 residuals; ``kind`` is then ``"scalar"``).
        cutoffs: scalar codec: bucket boundaries ``(dim, 2**nbits - 1)``.
        weights: scalar codec: reconstruction values ``(dim, 2**nbits)``.
        kind: ``"scalar"`` (default here) or ``"pq"``; :meth:`train` defaults to ``"pq"``.
        codebooks: pq codec: float ``(n_bytes, 256, per)``.
        scale_range: ``(lo, hi)`` of the stored inverse norms, or ``None`` (default) for no scale byte.

    Raises:
        ValueError: on an unsupported ``nbits`` or ``kind``, a ``dim`` not a multiple of ``8 // nbits``, or missing
            tables for the kind.

    Example:
        .. code-block:: python

            codec = ResidualCodec.train(centroids, sample, nbits=2)   # centroids (K, dim), sample (n, dim)
            codes, residuals = codec.compress(vectors)
            approx = codec.decompress(codes, residuals)                # float32 (n, dim)
    """

    def __init__(self, centroids: np.ndarray, nbits: int, cutoffs: np.ndarray | None = None,
                 weights: np.ndarray | None = None, *, kind: str = "scalar", codebooks: np.ndarray | None = None,
                 scale_range: tuple[float, float] | None = None):
        if nbits not in SUPPORTED_NBITS:
            raise ValueError(f"nbits must be one of {SUPPORTED_NBITS} (16 = uncompressed float16), not {nbits!r}")
        if kind not in KINDS:
            raise ValueError(f"codec kind must be one of {KINDS}, not {kind!r}")
        self.centroids = np.ascontiguousarray(centroids, dtype=np.float32)
        self.nbits = nbits
        self.kind = kind if nbits != 16 else "scalar"
        self.dim = self.centroids.shape[1]
        self.cutoffs = self.weights = self.codebooks = None
        if nbits != 16:
            if self.dim % (8 // nbits):
                raise ValueError(f"dim {self.dim} must be a multiple of {8 // nbits} for nbits={nbits}")
            if self.kind == "pq":
                if codebooks is None:
                    raise ValueError("codebooks are required for a pq codec")
                self.codebooks = np.ascontiguousarray(codebooks, dtype=np.float32)
                self.lut = self.codebooks
            else:
                if cutoffs is None or weights is None:
                    raise ValueError("cutoffs and weights are required for nbits < 16")
                self.cutoffs = np.ascontiguousarray(cutoffs, dtype=np.float32)
                self.weights = np.ascontiguousarray(weights, dtype=np.float32)
                self.lut = _byte_lut(self.weights, nbits)
        else:
            self.lut = np.zeros((0, 256, 1), dtype=np.float32)
        self.scale_range = None if scale_range is None or nbits == 16 else (float(scale_range[0]),
                                                                             float(scale_range[1]))
        self.scale_lut = (np.zeros(0, dtype=np.float32) if self.scale_range is None else
                          np.exp(np.linspace(np.log(self.scale_range[0]), np.log(self.scale_range[1]),
                                             SCALE_LEVELS)).astype(np.float32))

    @functools.cached_property
    def norm_bounds(self) -> tuple[float, np.ndarray]:
        """``(c, r)``: the largest centroid norm and, per residual byte, the largest norm of its 256 reconstruction
        values, float32 ``(n_bytes,)``. They bound what a query token ``q`` can score: ``|centroid . q| <= c |q|``
        and ``|L[p, b, t]| <= r[p] |q_p|`` (``q_p`` the dimensions byte ``p`` stands for); the float16 tables' error
        bound is built on them (:func:`.search.half_error_bound`). Computed once per codec."""
        c = float(np.sqrt(np.einsum("kd,kd->k", self.centroids, self.centroids).max())) if len(self.centroids) else 0.
        r = np.sqrt(np.einsum("pbk,pbk->pb", self.lut, self.lut).max(axis=1)) if len(self.lut) else np.zeros(0)
        return c, r.astype(np.float32)

    @functools.cached_property
    def centroid_blocks(self) -> np.ndarray | None:
        """The centroids as float16 blocks for :func:`.search.centroid_scores`
        (:func:`~.simd.half_centroid_blocks`: uint16 ``(ceil(K / 16), dim, 16)``), or None when they are not all
        float16 values (scalar codecs; pq codecs round them to float16 when trained). Half the bytes of the float32
        centroids that every query reads; made once per codec."""
        half = self.centroids.astype(np.float16)
        if not len(self.centroids) or not np.array_equal(half.astype(np.float32), self.centroids):
            return None
        return half_centroid_blocks(half)

    @property
    def scaled(self) -> bool:
        """Whether each vector stores a scale byte (its reconstruction's inverse norm) after its residual bytes."""
        return self.scale_range is not None

    def describe(self) -> str:
        """Short name, e.g. ``"pq 2-bit + scale"``.

        Returns:
            str: kind, bits and ``+ scale`` when vectors store a scale byte; ``"float16 residuals"`` for nbits=16.
        """
        if self.nbits == 16:
            return "float16 residuals"
        return f"{self.kind} {self.nbits}-bit" + (" + scale" if self.scaled else "")

    def query_space(self, Q: np.ndarray) -> np.ndarray:
        """Queries mapped into the space the centroids and the residual table ``lut`` live in.

        Every kernel that scores queries against ``centroids`` / ``lut`` takes them through this first (identity
        for this codec; a rotating codec rotates them). ``decompress`` returns vectors in the original space.

        Args:
            Q: query vectors ``(n, dim)``.

        Returns:
            numpy.ndarray: ``(n, dim)``, here ``Q`` itself.
        """
        return Q

    @property
    def n_centroids(self) -> int:
        """The number of centroids ``K``."""
        return len(self.centroids)

    @property
    def code_dtype(self) -> np.dtype:
        """The dtype of the stored centroid codes: uint16 up to 65,536 centroids, else int32."""
        return np.dtype(np.uint16) if self.n_centroids <= 2 ** 16 else np.dtype(np.int32)

    @property
    def residual_shape(self) -> tuple[int, np.dtype]:
        """``(columns, dtype)`` of the stored residual matrix."""
        if self.nbits == 16:
            return self.dim, np.dtype(np.float16)
        return self.dim * self.nbits // 8 + int(self.scaled), np.dtype(np.uint8)

    def bytes_per_vector(self) -> int:
        """Stored bytes per token vector: code + residual (+ scale byte).

        Returns:
            int: bytes per vector, e.g. 2 + 32 + 1 = 35 for a scaled 2-bit codec at dim 128.
        """
        cols, dt = self.residual_shape
        return self.code_dtype.itemsize + cols * dt.itemsize

    @classmethod
    def train(cls, centroids: np.ndarray, sample: np.ndarray, nbits: int, kind: str = DEFAULT_KIND,
              scale: bool | None = None, seed: int = 0) -> "ResidualCodec":
        """Fit the residual quantiser on ``sample`` ``(n, dim)`` vectors (their residuals to the nearest centroid).

        The centroids of a pq codec are rounded to float16 first (as stored), so training, compression and search
        agree.

        Args:
            centroids: float ``(K, dim)``, e.g. from k-means.
            sample: float ``(n, dim)`` training vectors.
            nbits: bits per residual dimension: 1, 2, 4 or 16.
            kind: ``"pq"`` (default) or ``"scalar"``.
            scale: store a scale byte per vector; default: when the sample's vectors all have unit length (within
                1e-3).
            seed: seed of the pq codebooks' k-means (default 0).

        Returns:
            ResidualCodec: the trained codec.

        Raises:
            ValueError: on an unsupported ``nbits`` or ``kind``.
        """
        if nbits not in SUPPORTED_NBITS:
            raise ValueError(f"nbits must be one of {SUPPORTED_NBITS} (16 = uncompressed float16), not {nbits!r}")
        if kind not in KINDS:
            raise ValueError(f"codec kind must be one of {KINDS}, not {kind!r}")
        centroids = np.asarray(centroids, dtype=np.float32)
        if nbits == 16:
            return cls(centroids, 16)
        if kind == "pq":
            centroids = centroids.astype(np.float16).astype(np.float32)
        sample = np.asarray(sample, dtype=np.float32)
        res = sample - centroids[assign_nearest(sample, centroids)]
        if kind == "pq":
            from . import pq
            books = pq.train_codebooks(res, 8 // nbits, seed=seed).astype(np.float16).astype(np.float32)
            codec = cls(centroids, nbits, kind="pq", codebooks=books)
        else:
            nb = 2 ** nbits
            cutoffs = np.quantile(res, np.arange(1, nb) / nb, axis=0).T  # (dim, nb-1)
            weights = np.quantile(res, (np.arange(nb) + 0.5) / nb, axis=0).T  # (dim, nb)
            codec = cls(centroids, nbits, cutoffs, weights)
        if scale is None:
            norms = np.linalg.norm(sample, axis=1)
            scale = bool(len(norms)) and bool(np.abs(norms - 1).max() <= UNIT_NORM_TOLERANCE)
        if scale:
            inv = 1.0 / np.maximum(np.linalg.norm(codec._reconstruct(sample), axis=1), 1e-6)
            lo, hi = float(inv.min()), float(inv.max())
            pad = max(hi / lo, 1.0 + 1e-3) ** 0.25  # room for vectors beyond the sample's range
            codec = cls(codec.centroids, nbits, codec.cutoffs, codec.weights, kind=codec.kind,
                        codebooks=codec.codebooks, scale_range=(lo / pad, hi * pad))
        return codec

    def _reconstruct(self, vectors: np.ndarray) -> np.ndarray:
        """``centroid + decoded residual`` of float32 ``vectors`` ``(n, dim)``, not scaled (nbits < 16)."""
        codes = assign_nearest(vectors, self.centroids)
        res_bytes = self._quantise_residuals(vectors - self.centroids[codes])
        out = np.empty(vectors.shape, dtype=np.float32)
        _decode_packed(codes, res_bytes, self.centroids, self.lut, np.zeros(0, dtype=np.float32), out)
        return out

    def _quantise_residuals(self, res: np.ndarray) -> np.ndarray:
        if self.kind == "pq":
            from . import pq
            return pq.encode(res, self.codebooks)
        return _quantise(res, self.cutoffs, self.nbits)

    def compress(self, vectors: np.ndarray, codes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Encode float vectors as centroid codes and quantised residuals.

        Args:
            vectors: float ``(n, dim)``.
            codes: each vector's nearest centroid, when the caller has already computed it
                (:func:`~pyterrier_lateint.index.kmeans.assign_nearest`); default: computed here.

        Returns:
            tuple: ``(codes (n,) in code_dtype, residuals (n, cols))``: uint8 residual bytes (a scale byte last
            when scaled), or float16 ``(n, dim)`` for nbits=16.
        """
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        codes = assign_nearest(vectors, self.centroids) if codes is None else np.asarray(codes, dtype=np.int64)
        res = vectors - self.centroids[codes]
        if self.nbits == 16:
            return codes.astype(self.code_dtype), res.astype(np.float16)
        packed = self._quantise_residuals(res)
        if self.scaled:
            rec = np.empty_like(vectors)
            _decode_packed(codes, packed, self.centroids, self.lut, np.zeros(0, dtype=np.float32), rec)
            inv = 1.0 / np.maximum(np.linalg.norm(rec, axis=1), 1e-6)
            lo, hi = np.log(self.scale_range[0]), np.log(self.scale_range[1])
            level = np.clip(np.rint((np.log(inv) - lo) / (hi - lo) * (SCALE_LEVELS - 1)), 0, SCALE_LEVELS - 1)
            packed = np.concatenate([packed, level.astype(np.uint8)[:, None]], axis=1)
        return codes.astype(self.code_dtype), packed

    def decompress(self, codes: np.ndarray, residuals: np.ndarray) -> np.ndarray:
        """Decode codes and residuals back into vectors.

        Args:
            codes: centroid codes ``(n,)``.
            residuals: stored residuals ``(n, cols)`` (as :meth:`compress` returns them).

        Returns:
            numpy.ndarray: float32 ``(n, dim)`` (unit length when scaled).
        """
        out = np.empty((len(codes), self.dim), dtype=np.float32)
        if len(codes):
            if self.nbits == 16:  # numba has no float16 on CPU
                np.add(self.centroids[np.asarray(codes, dtype=np.int64)], residuals, out=out, casting="unsafe")
            else:
                _decode_packed(np.ascontiguousarray(codes), np.ascontiguousarray(residuals), self.centroids,
                               self.lut, self.scale_lut, out)
        return out

    def decompress_docs(self, doc_ids: np.ndarray, offsets: np.ndarray, codes: np.ndarray,
                        residuals: np.ndarray, parallel: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Decode the vectors of documents ``doc_ids`` from the stored (memory-mapped) arrays.

        Args:
            doc_ids: internal doc ids ``(n,)``.
            offsets: the index's vector offsets per doc id ``(n_docs + 1,)``.
            codes: the stored codes ``(n_vectors,)``.
            residuals: the stored residuals ``(n_vectors, cols)``.
            parallel: split large requests (4,096 vectors or more) over the thread pool (default True).

        Returns:
            tuple: ``(vectors (T, dim) float32, out_offsets (len(doc_ids) + 1,) int64)``: document ``doc_ids[i]``
            owns rows ``out_offsets[i]:out_offsets[i+1]``.
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
                                        self.centroids, self.lut, self.scale_lut, out)
                pmap(run, range(n_par))
        return out, out_offsets

    # --- persistence -------------------------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """Write the codec's files into a directory.

        ``codec.json`` and ``centroids.npy`` (float16 for pq, float32 for scalar, the first format), plus
        ``buckets.npz`` (scalar) or ``codebooks.npy`` (pq, float16) for nbits < 16.

        Args:
            path: an existing directory.
        """
        path = Path(path)
        np.save(path / "centroids.npy", self.centroids.astype(np.float16) if self.kind == "pq" else self.centroids)
        if self.nbits != 16 and self.kind == "scalar":
            np.savez(path / "buckets.npz", cutoffs=self.cutoffs, weights=self.weights)
        if self.kind == "pq":
            np.save(path / "codebooks.npy", self.codebooks.astype(np.float16))
        meta = {"nbits": self.nbits, "n_centroids": self.n_centroids, "dim": self.dim, "kind": self.kind}
        if self.scale_range is not None:
            meta["scale_range"] = list(self.scale_range)
        with open(path / "codec.json", "w") as f:
            json.dump(meta, f)

    @classmethod
    def load(cls, path: Path) -> "ResidualCodec":
        """Read a codec written by :meth:`save`.

        A ``codec.json`` without ``kind``, from the first indexes, is scalar without scale bytes.

        Args:
            path: the directory holding the codec's files.

        Returns:
            ResidualCodec: the codec.
        """
        path = Path(path)
        with open(path / "codec.json") as f:
            meta = json.load(f)
        centroids = np.load(path / "centroids.npy").astype(np.float32)
        kind = meta.get("kind", "scalar")
        scale_range = meta.get("scale_range")
        if meta["nbits"] == 16:
            return cls(centroids, 16)
        if kind == "pq":
            return cls(centroids, meta["nbits"], kind="pq", codebooks=np.load(path / "codebooks.npy"),
                       scale_range=scale_range)
        with np.load(path / "buckets.npz") as b:
            return cls(centroids, meta["nbits"], b["cutoffs"], b["weights"], scale_range=scale_range)


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
def _decode_packed(codes, packed, centroids, lut, scale, out):
    """``out[v] = centroids[codes[v]] + lut-decoded residual bytes``, times ``scale[scale byte]`` when ``scale``
    (float32 ``(256,)``) is not empty; the scale byte follows the ``lut.shape[0]`` residual bytes."""
    n = len(codes)
    nbytes = lut.shape[0]
    per = lut.shape[2]
    for v in range(n):
        c = codes[v]
        f = scale[packed[v, nbytes]] if len(scale) else np.float32(1.0)
        for p in range(nbytes):
            b = packed[v, p]
            for k in range(per):
                d = p * per + k
                out[v, d] = (centroids[c, d] + lut[p, b, k]) * f


@numba.njit(cache=True, nogil=True)
def _decode_docs_packed(doc_ids, offsets, out_offsets, codes, packed, centroids, lut, scale, out):
    nbytes = lut.shape[0]
    per = lut.shape[2]
    for i in range(len(doc_ids)):
        d0 = offsets[doc_ids[i]]
        o0 = out_offsets[i]
        for r in range(out_offsets[i + 1] - o0):
            v = d0 + r
            c = codes[v]
            f = scale[packed[v, nbytes]] if len(scale) else np.float32(1.0)
            for p in range(nbytes):
                b = packed[v, p]
                for k in range(per):
                    dd = p * per + k
                    out[o0 + r, dd] = (centroids[c, dd] + lut[p, b, k]) * f


def _doc_rows(doc_ids: np.ndarray, offsets: np.ndarray, out_offsets: np.ndarray) -> np.ndarray:
    """Stored row numbers of the vectors of ``doc_ids``, concatenated (int64 ``(out_offsets[-1],)``)."""
    starts = np.asarray(offsets[doc_ids], dtype=np.int64)
    lens = np.diff(out_offsets)
    return np.repeat(starts - out_offsets[:-1], lens) + np.arange(out_offsets[-1], dtype=np.int64)
