"""On-disk layout of a ColBERTIndex and its memory-mapped reader.

Files in the index directory (all ``.npy`` files are opened with ``mmap_mode="r"``)::

    pt_meta.json        PyTerrier artifact metadata (type, format, package_hint)
    lateint.json        index metadata: model signature, nbits, counts, build settings; written last = completion marker
    docnos.npids        docnos (npids: compact forward and inverse lookup)
    offsets.npy         int64 (n_docs + 1,): document i owns vectors offsets[i]:offsets[i+1]
    doclens.npy         int32 (n_docs,): vectors per document (0 for an empty document)
    codec.json, centroids.npy (float32 (K, dim)), buckets.npz (per-dimension cut-offs and weights; nbits < 16)
    codes.npy           uint16 (or int32 when K > 65536) (n_vectors,): centroid of each vector
    residuals.npy       uint8 (n_vectors, dim * nbits / 8), or float16 (n_vectors, dim) for nbits=16
    ivf.offsets.npy     int64 (K + 1,) and ivf.docs.npy int32: the documents holding a vector of each centroid, ascending
    token_ids.npy       int32 (n_vectors,), optional: the token id behind each vector
"""
from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any, Iterator, Sequence, Union

import numpy as np

from .codec import ResidualCodec

FORMAT_VERSION = 1
META_FILE = "lateint.json"
ARTIFACT_TYPE = "late_interaction_index"
ARTIFACT_FORMAT = "lateint"
PACKAGE_HINT = "pyterrier-lateint"


class IndexNotFoundError(FileNotFoundError):
    """No (complete) index at the path."""


class DocnoList(Sequence[str]):
    """The docnos of an index in index order, memory-mapped: ``len``, ``[i]`` (negative too), ``[a:b]`` and
    ``[array of ids]`` (lists of str), iteration, ``docno in docnos``."""

    _ITER_CHUNK = 2 ** 16

    def __init__(self, lookup: Any):
        self._lookup = lookup

    def __len__(self) -> int:
        return len(self._lookup)

    def __getitem__(self, key: Union[int, slice, Sequence[int], np.ndarray]) -> Union[str, list[str]]:
        n = len(self)
        if isinstance(key, (int, np.integer)):
            i = int(key) + (n if key < 0 else 0)
            if not 0 <= i < n:
                raise IndexError(f"docno index {int(key)} out of range for {n} documents")
            return str(self._lookup.fwd.lookup(np.array([i], dtype=np.int64))[0])
        ids = np.arange(n)[key] if isinstance(key, slice) else np.asarray(key, dtype=np.int64)
        if len(ids) and (ids.min() < 0 or ids.max() >= n):
            raise IndexError(f"docno ids must be in [0, {n}); got {ids.min()}..{ids.max()}")
        return [str(d) for d in self._lookup.fwd.lookup(ids)] if len(ids) else []

    def __iter__(self) -> Iterator[str]:
        for s in range(0, len(self), self._ITER_CHUNK):
            yield from self[s:s + self._ITER_CHUNK]

    def __contains__(self, docno: object) -> bool:
        return isinstance(docno, str) and int(np.asarray(self._lookup.inv.lookup(np.array([docno]))).reshape(-1)[0]) >= 0

    def __repr__(self) -> str:
        return f"DocnoList({len(self)} docnos)"


class IndexReader:
    """Read-only, memory-mapped view of a complete index directory. Opening it reads only the small JSON files."""

    def __init__(self, path: Path):
        self.path = Path(path)
        meta_path = self.path / META_FILE
        if not self.path.exists():
            raise IndexNotFoundError(f"no index at {str(self.path)!r}; build one first with "
                                     f"ColBERTIndex({str(self.path)!r}).indexer(model).index(docs)")
        if not meta_path.exists():
            raise IndexNotFoundError(
                f"{str(self.path)!r} is not a complete lateint index (no {META_FILE}): it is half-written, from an "
                f"interrupted build, or something else. Delete it and re-index (or index with overwrite=True).")
        with open(meta_path) as f:
            self.meta: dict[str, Any] = json.load(f)
        if self.meta.get("format_version") != FORMAT_VERSION or not self.meta.get("complete"):
            raise IndexNotFoundError(f"{str(self.path)!r}: unsupported or incomplete index "
                                     f"(format_version={self.meta.get('format_version')!r}, expected {FORMAT_VERSION})")

    def _npy(self, name: str) -> np.ndarray:
        return np.load(self.path / name, mmap_mode="r")

    @property
    def n_docs(self) -> int:
        return int(self.meta["n_docs"])

    @property
    def n_vectors(self) -> int:
        return int(self.meta["n_vectors"])

    @property
    def dim(self) -> int:
        return int(self.meta["dim"])

    @property
    def nbits(self) -> int:
        return int(self.meta["nbits"])

    @property
    def signature(self) -> dict | None:
        return self.meta.get("model")

    @cached_property
    def codec(self) -> ResidualCodec:
        return ResidualCodec.load(self.path)

    @cached_property
    def offsets(self) -> np.ndarray:
        return self._npy("offsets.npy")

    @cached_property
    def doclens(self) -> np.ndarray:
        return self._npy("doclens.npy")

    @cached_property
    def codes(self) -> np.ndarray:
        return self._npy("codes.npy")

    @cached_property
    def residuals(self) -> np.ndarray:
        return self._npy("residuals.npy")

    @cached_property
    def ivf_offsets(self) -> np.ndarray:
        return self._npy("ivf.offsets.npy")

    @cached_property
    def ivf_docs(self) -> np.ndarray:
        return self._npy("ivf.docs.npy")

    @cached_property
    def token_ids(self) -> np.ndarray | None:
        p = self.path / "token_ids.npy"
        return np.load(p, mmap_mode="r") if p.exists() else None

    @cached_property
    def docnos(self):
        import npids
        return npids.Lookup(self.path / "docnos.npids")

    def doc_ids(self, docnos, on_unknown: str = "error") -> np.ndarray:
        """Internal ids (int64) of ``docnos``; unknown docnos raise ``KeyError`` (``on_unknown="error"``) or map
        to -1 (``on_unknown="ignore"``)."""
        docnos = np.asarray(docnos, dtype=object).astype(str)
        if len(docnos) == 0:
            return np.zeros(0, dtype=np.int64)
        ids = np.asarray(self.docnos.inv.lookup(docnos), dtype=np.int64).reshape(-1)
        bad = ids < 0
        if bad.any() and on_unknown == "error":
            missing = list(dict.fromkeys(docnos[bad].tolist()))
            raise KeyError(f"{len(missing)} docno(s) not in the index {str(self.path)!r}, e.g. {missing[:5]}; "
                           f"drop them before scoring, or use on_unknown='drop'")
        return ids

    def decompress_docs(self, doc_ids: np.ndarray, parallel: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Float32 vectors of ``doc_ids`` and their offsets (see :meth:`ResidualCodec.decompress_docs`)."""
        return self.codec.decompress_docs(doc_ids, self.offsets, self.codes, self.residuals, parallel=parallel)

    def size_bytes(self) -> dict[str, int]:
        """Bytes on disk per file."""
        return {p.name: p.stat().st_size for p in sorted(self.path.iterdir()) if p.is_file()}
