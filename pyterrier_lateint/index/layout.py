"""On-disk layout of a ColBERTIndex and its memory-mapped reader.

Format 2 (written since indexes became mutable; format 1 indexes still open and search). Files in the index
directory, every array memory-mapped::

    pt_meta.json        PyTerrier artifact metadata (type, format, package_hint)
    lateint.json        index metadata: model signature, nbits, counts, segments, tombstones, every file's committed
                        size and checksums (:mod:`.integrity`). Replacing it atomically is the commit point of every
                        write (build, add, delete, compact)
    offsets.i64         int64 (n_docs + 1,): document i owns vectors offsets[i]:offsets[i+1]      } appendable raw
    doclens.i32         int32 (n_docs,): vectors per document (0 for an empty document)          } arrays: readers
    codes.bin           uint16 (or int32 when K > 65536) (n_vectors,): centroid of each vector   } map exactly the
    residuals.bin       uint8 (n_vectors, dim * nbits / 8), or float16 (n_vectors, dim) for 16  } committed prefix
    token_ids.npy       int32 (n_vectors,), optional: each vector's token id (later segments'   }
                        ids follow the array its .npy header describes)                   }
    codec.json, centroids.npy (float32 (K, dim)), buckets.npz (per-dimension cut-offs and weights; nbits < 16)
    docnos.S.*.npy      segment S's docnos (:mod:`.docstore`)
    ivf.S.offsets.npy   int64 (K + 1,) and ivf.S.docs.npy int32: segment S's inverted file (global doc ids, ascending)
    tombstones.G.npy    int64, sorted: deleted doc ids (absent when nothing is deleted)

Segments are consecutive doc-id ranges: the build writes segment 0, each ``index.add`` appends one
(:mod:`.mutation`). Format 1 stored the same arrays as ``.npy`` files (``offsets.npy``, ``codes.npy``, ...), its
docnos as ``docnos.npids`` and one ``ivf.offsets.npy`` / ``ivf.docs.npy``.
"""
from __future__ import annotations

import json
import time
from functools import cached_property
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

import numpy as np

from .codec import ResidualCodec
from .docstore import DocnoStore, SegmentedDocnos
from .integrity import IndexCorruptError, check_sizes, verify

FORMAT_VERSION = 2
SUPPORTED_FORMATS = (1, 2)
META_FILE = "lateint.json"
ARTIFACT_TYPE = "late_interaction_index"
ARTIFACT_FORMAT = "lateint"
PACKAGE_HINT = "pyterrier-lateint"
OPEN_RETRIES = 100  # a reader racing a writer's commit re-reads the metadata (10 ms apart) at most this often


class IndexNotFoundError(FileNotFoundError):
    """No (complete) index at the path."""


class DocnoList(Sequence[str]):
    """The docnos of an index's live documents in index order, memory-mapped: ``len``, ``[i]`` (negative too),
    ``[a:b]`` and ``[array of positions]`` (lists of str), iteration, ``docno in docnos``. ``live``: the doc ids
    of the live documents when some are deleted (positions index into it), else ``None`` (every doc id)."""

    _ITER_CHUNK = 2 ** 16

    def __init__(self, lookup: Any, live: Optional[np.ndarray] = None):
        self._lookup = lookup
        self._live = live

    def __len__(self) -> int:
        return len(self._lookup) if self._live is None else len(self._live)

    def _names(self, ids: np.ndarray) -> list[str]:
        if self._live is not None:
            ids = self._live[ids]
        return [str(d) for d in self._lookup.fwd.lookup(ids)] if len(ids) else []

    def __getitem__(self, key: Union[int, slice, Sequence[int], np.ndarray]) -> Union[str, list[str]]:
        n = len(self)
        if isinstance(key, (int, np.integer)):
            i = int(key) + (n if key < 0 else 0)
            if not 0 <= i < n:
                raise IndexError(f"docno index {int(key)} out of range for {n} documents")
            return self._names(np.array([i], dtype=np.int64))[0]
        ids = np.arange(n)[key] if isinstance(key, slice) else np.asarray(key, dtype=np.int64)
        if len(ids) and (ids.min() < 0 or ids.max() >= n):
            raise IndexError(f"docno ids must be in [0, {n}); got {ids.min()}..{ids.max()}")
        return self._names(ids)

    def __iter__(self) -> Iterator[str]:
        for s in range(0, len(self), self._ITER_CHUNK):
            yield from self[s:s + self._ITER_CHUNK]

    def __contains__(self, docno: object) -> bool:
        return isinstance(docno, str) and int(np.asarray(self._lookup.inv.lookup(np.array([docno]))).reshape(-1)[0]) >= 0

    def __repr__(self) -> str:
        return f"DocnoList({len(self)} docnos)"


def _read_meta(path: Path) -> tuple[bytes, dict[str, Any]]:
    meta_path = path / META_FILE
    if not path.exists():
        raise IndexNotFoundError(f"no index at {str(path)!r}; build one first with "
                                 f"ColBERTIndex({str(path)!r}).indexer(model).index(docs)")
    try:
        with open(meta_path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise IndexNotFoundError(
            f"{str(path)!r} is not a complete lateint index (no {META_FILE}): it is half-written, from an "
            f"interrupted build, or something else. Delete it and re-index (or index with overwrite=True).") from None
    try:
        meta = json.loads(raw)
    except ValueError:
        raise IndexCorruptError(f"index {str(path)!r}: {META_FILE} is not valid JSON (altered or damaged); "
                                f"rebuild the index (indexer(..., overwrite=True))") from None
    return raw, meta


def _swap_in_progress(path: Path) -> bool:
    """A writer is between the two renames that swap a rebuilt index into place (``.NAME.old-*`` exists)."""
    return any(path.parent.glob(f".{path.name}.old-*"))


class IndexReader:
    """Read-only, memory-mapped view of one committed state of an index directory.

    Opening reads the metadata, checks every file's size (``verify=True``: every checksum too) and maps every
    array, so the reader keeps seeing the state it opened even while a writer adds, deletes or compacts: appended
    bytes lie beyond the mapped prefix, and replaced files stay readable until unmapped. If a writer commits
    while the reader opens, it opens again (the metadata is re-read after mapping and must be unchanged).

    Attributes used by the kernels: ``offsets``, ``codes``, ``residuals``, ``doclens``, ``token_ids`` (or None),
    ``codec``, ``docnos`` (``fwd``/``inv`` lookup), ``n_docs`` (doc ids, deleted ones included), ``ivf_offsets`` /
    ``ivf_docs`` (one inverted file over all segments), ``deleted`` (bool ``(n_docs,)`` or None).
    """

    def __init__(self, path: Path, verify: bool = False):
        self.path = Path(path)
        for attempt in range(OPEN_RETRIES):
            try:
                raw, meta = _read_meta(self.path)
            except IndexNotFoundError:
                if attempt + 1 < OPEN_RETRIES and _swap_in_progress(self.path):
                    time.sleep(0.01)
                    continue
                raise
            try:
                self._open(meta, verify)
            except (IndexCorruptError, FileNotFoundError, ValueError):
                again = None
                try:
                    again = _read_meta(self.path)[0]
                except (IndexNotFoundError, IndexCorruptError):
                    pass
                if attempt + 1 < OPEN_RETRIES and (again != raw or (again is None and _swap_in_progress(self.path))):
                    time.sleep(0.01)  # a writer committed (or is swapping) meanwhile: open the new state
                    continue
                raise
            try:
                if _read_meta(self.path)[0] == raw:
                    return
            except (IndexNotFoundError, IndexCorruptError):
                if not _swap_in_progress(self.path):
                    raise
            time.sleep(0.01)
        raise RuntimeError(f"index {str(self.path)!r} kept changing while being opened ({OPEN_RETRIES} tries)")

    # --- opening ------------------------------------------------------------------------------------------------
    def _open(self, meta: dict[str, Any], full: bool) -> None:
        for name in ("offsets", "doclens", "codes", "residuals", "token_ids", "ivf_offsets", "ivf_docs", "codec",
                     "docnos"):
            self.__dict__.pop(name, None)
        self.meta = meta
        fmt = meta.get("format_version")
        if fmt not in SUPPORTED_FORMATS or not meta.get("complete"):
            raise IndexNotFoundError(f"{str(self.path)!r}: unsupported or incomplete index (format_version={fmt!r}, "
                                     f"this version reads {SUPPORTED_FORMATS}); upgrade pyterrier-lateint or "
                                     f"re-index")
        self.format_version = int(fmt)
        if self.format_version == 1:
            self._open_v1()
            return
        files = meta["files"]
        appendable = {a["file"] for a in meta["arrays"].values()}
        (verify if full else check_sizes)(self.path, files, appendable)
        n_docs, n_vec = self.n_docs, self.n_vectors
        rows = {"offsets": n_docs + 1, "doclens": n_docs, "codes": n_vec, "residuals": n_vec, "token_ids": n_vec}
        arrays = {}
        for key, a in meta["arrays"].items():
            shape = (rows[key], *a["row"])
            arrays[key] = _map_raw(self.path / a["file"], np.dtype(a["dtype"]), shape, int(a.get("offset", 0)))
        self.offsets, self.doclens = arrays["offsets"], arrays["doclens"]
        self.codes, self.residuals = arrays["codes"], arrays["residuals"]
        self.token_ids = arrays.get("token_ids")
        self.codec = ResidualCodec.load(self.path)
        self.segments: list[dict[str, Any]] = meta["segments"]
        tomb = meta.get("tombstones")
        self.deleted: Optional[np.ndarray] = None
        if tomb:
            self.deleted = np.zeros(n_docs, dtype=bool)
            self.deleted[np.load(self.path / tomb)] = True
        stores = [DocnoStore(self.path, seg["docnos"]) for seg in self.segments]
        self.docnos = stores[0] if len(stores) == 1 and self.deleted is None else \
            SegmentedDocnos(stores, [seg["start"] for seg in self.segments], self.deleted)
        self._ivfs = [(np.load(self.path / f"{seg['ivf']}.offsets.npy", mmap_mode="r"),
                       np.load(self.path / f"{seg['ivf']}.docs.npy", mmap_mode="r")) for seg in self.segments]
        if len(self._ivfs) == 1:
            self.ivf_offsets, self.ivf_docs = self._ivfs[0]

    def _open_v1(self) -> None:
        import npids
        self.offsets, self.doclens = self._npy("offsets.npy"), self._npy("doclens.npy")
        self.codes, self.residuals = self._npy("codes.npy"), self._npy("residuals.npy")
        self.ivf_offsets, self.ivf_docs = self._npy("ivf.offsets.npy"), self._npy("ivf.docs.npy")
        p = self.path / "token_ids.npy"
        self.token_ids = self._npy("token_ids.npy") if p.exists() else None
        self.codec = ResidualCodec.load(self.path)
        self.docnos = npids.Lookup(self.path / "docnos.npids")
        self.segments = [{"start": 0, "end": self.n_docs}]
        self.deleted = None
        for name, arr, n in (("offsets.npy", self.offsets, self.n_docs + 1), ("codes.npy", self.codes, self.n_vectors),
                             ("residuals.npy", self.residuals, self.n_vectors)):
            if len(arr) != n:
                raise IndexCorruptError(f"index {str(self.path)!r}: {name!r} holds {len(arr)} rows, {n} expected; "
                                        f"rebuild the index (indexer(..., overwrite=True))")

    def _npy(self, name: str) -> np.ndarray:
        try:
            return np.load(self.path / name, mmap_mode="r")
        except FileNotFoundError:
            raise IndexCorruptError(f"index {str(self.path)!r}: file {name!r} is missing; rebuild the index "
                                    f"(indexer(..., overwrite=True)) or restore it from a copy") from None
        except ValueError as e:  # numpy: "mmap length is greater than file size" and the like
            raise IndexCorruptError(f"index {str(self.path)!r}: file {name!r} is truncated or damaged ({e}); "
                                    f"rebuild the index (indexer(..., overwrite=True)) or restore it from a "
                                    f"copy") from None

    # --- the merged inverted file of several segments ----------------------------------------------------------
    @cached_property
    def ivf_offsets(self) -> np.ndarray:
        return self._merged_ivf[0]

    @cached_property
    def ivf_docs(self) -> np.ndarray:
        return self._merged_ivf[1]

    @cached_property
    def _merged_ivf(self) -> tuple[np.ndarray, np.ndarray]:
        """One inverted file over all segments (each centroid's documents stay ascending, since segments are
        consecutive doc-id ranges). Built at first use when the index has several segments."""
        k = self.codec.n_centroids
        counts = np.zeros(k, dtype=np.int64)
        for off, _ in self._ivfs:
            counts += np.diff(np.asarray(off))
        merged_off = np.zeros(k + 1, dtype=np.int64)
        np.cumsum(counts, out=merged_off[1:])
        docs = np.empty(int(merged_off[-1]), dtype=np.int32)
        cursor = merged_off[:-1].copy()
        for off, d in self._ivfs:
            off = np.asarray(off)
            lens = np.diff(off)
            if not len(d):
                continue
            # position of each posting: its centroid's cursor + its rank within the centroid's list
            cent = np.repeat(np.arange(k), lens)
            within = np.arange(len(d)) - np.repeat(off[:-1], lens)
            docs[cursor[cent] + within] = d
            cursor += lens
        return merged_off, docs

    # --- metadata -----------------------------------------------------------------------------------------------
    @property
    def n_docs(self) -> int:
        """Doc ids in use, deleted documents included (the kernels' id space)."""
        return int(self.meta["n_docs"])

    @property
    def n_live(self) -> int:
        """Documents not deleted."""
        return self.n_docs - int(self.meta.get("n_deleted", 0))

    def live_ids(self) -> Optional[np.ndarray]:
        """Doc ids (int64) of the live documents, or None when nothing is deleted."""
        return None if self.deleted is None else np.nonzero(~self.deleted)[0].astype(np.int64)

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

    def verify(self) -> int:
        """Check every file's checksum (format 2); returns the bytes checked. Raises :class:`IndexCorruptError`."""
        if self.format_version == 1:
            raise ValueError(f"index {str(self.path)!r} is format 1, which records no checksums; index.compact() "
                             f"rewrites it as format 2")
        return verify(self.path, self.meta["files"], {a["file"] for a in self.meta["arrays"].values()})

    def doc_ids(self, docnos, on_unknown: str = "error") -> np.ndarray:
        """Internal ids (int64) of ``docnos``; unknown (and deleted) docnos raise ``KeyError``
        (``on_unknown="error"``) or map to -1 (``on_unknown="ignore"``)."""
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
        """Bytes on disk per file (committed sizes for format 2)."""
        if self.format_version >= 2:
            return {n: int(r["size"]) for n, r in sorted(self.meta["files"].items())}
        return {p.name: p.stat().st_size for p in sorted(self.path.iterdir()) if p.is_file()}


def _map_raw(path: Path, dtype: np.dtype, shape: tuple[int, ...], offset: int = 0) -> np.ndarray:
    """Read-only map of the first ``prod(shape)`` items of a raw file from byte ``offset`` (an empty array when
    there are none)."""
    if int(np.prod(shape)) == 0:
        return np.zeros(shape, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", shape=shape, offset=offset)
