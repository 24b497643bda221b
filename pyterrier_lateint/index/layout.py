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
    codec.json, centroids.npy ((K, dim): float16 for the pq codec, float32 for scalar), codebooks.npy (pq, float16)
                        or buckets.npz (scalar: per-dimension cut-offs and weights; nbits < 16)
    docnos.S.*.npy      segment S's docnos (:mod:`.docstore`)
    ivf.S.offsets.npy   int64 (K + 1,) and ivf.S.docs.npy int32: segment S's inverted file (global doc ids, ascending)
    tombstones.G.npy    int64, sorted: deleted doc ids (absent when nothing is deleted)

Every open checks the metadata (sealed with its own checksum), every file's size, the checksums of all but the
per-vector data, and the structure of that data (:class:`IndexReader`); ``index.verify()`` checks every byte. A
damaged file raises :class:`~.integrity.IndexCorruptError` naming it and the fix.

Segments are consecutive doc-id ranges: the build writes segment 0, each ``index.add`` appends one
(:mod:`.mutation`). Format 1 stored the same arrays as ``.npy`` files (``offsets.npy``, ``codes.npy``, ...), its
docnos as ``docnos.npids`` and one ``ivf.offsets.npy`` / ``ivf.docs.npy``.
"""
from __future__ import annotations

import json
import time
import zipfile
from functools import cached_property
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

import numpy as np

from .codec import ResidualCodec
from .docstore import FILE_SUFFIXES as DOCNO_SUFFIXES
from .docstore import DocnoStore, SegmentedDocnos, load_npy, unknown_docnos_error
from .integrity import IndexCorruptError, check_at_open, corrupt, unseal_json, verify
from .token_stats import STATS_FILE

FORMAT_VERSION = 2
SUPPORTED_FORMATS = (1, 2)
META_FILE = "lateint.json"
SHARDED_META_FILE = "sharded.json"  # a sharded index's marker (pyterrier_lateint.sharded.layout.META_FILE)
ARTIFACT_TYPE = "late_interaction_index"
ARTIFACT_FORMAT = "lateint"
PACKAGE_HINT = "pyterrier-lateint"
OPEN_RETRIES = 100  # a reader racing a writer's commit re-reads the metadata (10 ms apart) at most this often
CHECK_CHUNK = 2 ** 24  # values read per step by the structural checks (offsets, code and posting ranges)
UNKNOWN_DOCNO_FIX = "drop them before scoring, or use on_unknown='drop'"  # doc_ids' default advice (scorers)
CODEC_FILES = ("codec.json", "centroids.npy", "codebooks.npy", "buckets.npz")


class IndexNotFoundError(FileNotFoundError):
    """No (complete) index at the path: nothing, a file, or a half-written or foreign folder.

    A subclass of ``FileNotFoundError``; :meth:`ColBERTIndex.built` returns False where opening raises it.

    Example:
        .. code-block:: python

            from pyterrier_lateint.index import IndexNotFoundError

            try:
                retriever = ColBERTIndex("missing.lateint").retriever(model)
            except IndexNotFoundError:
                ...   # build it first
    """


class DocnoList(Sequence[str]):
    """The docnos of an index's live documents in index order, memory-mapped.

    Supports ``len``, ``[i]`` (negative too), ``[a:b]`` and ``[array of positions]`` (lists of str), iteration,
    and ``docno in docnos``. Returned by :meth:`ColBERTIndex.docnos`.

    Args:
        lookup: the index's docno lookup (``fwd`` / ``inv``).
        live: the doc ids of the live documents when some are deleted (positions index into it), else ``None``
            (every doc id).

    Example:
        .. code-block:: python

            docnos = index.docnos()
            len(docnos), docnos[0], docnos[:3], "1024" in docnos
    """

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


def is_index_folder(path: Path) -> bool:
    """Whether ``path`` is a folder holding a lateint index, single or sharded: its completion marker
    (``lateint.json`` / ``sharded.json``), or a ``pt_meta.json`` naming a lateint index (one whose marker was
    damaged or deleted). What :func:`~.folders.check_target` lets ``overwrite=True`` replace."""
    path = Path(path)
    if not path.is_dir():
        return False
    if (path / META_FILE).exists() or (path / SHARDED_META_FILE).exists():
        return True
    try:
        with open(path / "pt_meta.json", "rb") as f:
            pt_meta = json.loads(f.read(4096))
    except (OSError, ValueError):
        return False
    return isinstance(pt_meta, dict) and pt_meta.get("type") == ARTIFACT_TYPE


def describe_entries(path: Path, limit: int = 3) -> str:
    """``"N entries, e.g. a.txt, b.csv, sub/"`` for the folder ``path`` (top level only, names sorted)."""
    names: list[str] = []
    try:
        for i, p in enumerate(Path(path).iterdir()):
            if i >= 10000:
                return f"more than 10000 entries, e.g. {', '.join(sorted(names)[:limit])}"
            names.append(p.name + ("/" if p.is_dir() else ""))
    except OSError as e:  # removed or renamed meanwhile (a writer swapping an index in), or unreadable
        return f"entries that cannot be listed ({type(e).__name__})"
    shown = ", ".join(sorted(names)[:limit]) + (", ..." if len(names) > limit else "")
    return f"{len(names)} {'entry' if len(names) == 1 else 'entries'}, e.g. {shown}" if names else "nothing"


def not_a_folder_error(path: Path) -> IndexNotFoundError:
    """The error for an index path where a file (or a broken link) lies instead of a folder."""
    what = "a broken symbolic link" if Path(path).is_symlink() and not Path(path).exists() else "a file"
    return IndexNotFoundError(f"{str(path)!r} is {what}, not an index folder: ColBERTIndex(path) takes the folder an "
                              f"index was built in; choose another path (nothing was changed)")


def _read_meta(path: Path) -> tuple[bytes, dict[str, Any]]:
    """The raw bytes and the parsed, seal-checked content of ``path/lateint.json``."""
    meta_path = path / META_FILE
    if (path.is_symlink() and not path.exists()) or (path.exists() and not path.is_dir()):
        raise not_a_folder_error(path)
    if not path.exists():
        raise IndexNotFoundError(f"no index at {str(path)!r}; build one first with "
                                 f"ColBERTIndex({str(path)!r}).indexer(model).index(docs)")
    try:
        with open(meta_path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        if (path / SHARDED_META_FILE).exists():
            raise IndexNotFoundError(f"{str(path)!r} holds a sharded index: open it with "
                                     f"ShardedColBERTIndex({str(path)!r}) (or pt.Artifact.load)") from None
        if is_index_folder(path):
            fix = "rebuild it with indexer(..., overwrite=True), or restore it from a copy"
        else:
            fix = "remove it yourself and re-index, or choose another path"
        raise IndexNotFoundError(
            f"{str(path)!r} is not a complete lateint index (no {META_FILE}; it holds {describe_entries(path)}): it "
            f"is half-written, from an interrupted build, or something else; {fix}") from None
    except IsADirectoryError:
        raise corrupt(path, META_FILE, "is a folder, not a file") from None
    try:
        meta = json.loads(raw)
    except ValueError:  # UnicodeDecodeError included
        raise corrupt(path, META_FILE, "is not valid JSON (altered or damaged)") from None
    if not isinstance(meta, dict):
        raise corrupt(path, META_FILE, f"holds a JSON {type(meta).__name__}, not an object (altered or damaged)")
    return raw, unseal_json(raw, meta, path, META_FILE)


def _swap_in_progress(path: Path) -> bool:
    """A writer is between the two renames that swap a rebuilt index into place (``.NAME.old-*`` exists)."""
    return any(path.parent.glob(f".{path.name}.old-*"))


def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _check_meta(path: Path, meta: dict[str, Any]) -> None:
    """Structure of format-2 metadata: counts, the file table, array specs whose committed sizes match the
    counts, consecutive segments whose files are recorded. Raises :class:`IndexCorruptError` naming
    ``lateint.json`` (sealed metadata only fails here if a writer was wrong; unsealed metadata may be altered)."""
    def bad(problem: str) -> IndexCorruptError:
        return corrupt(path, META_FILE, f"{problem} (altered, or written by something else)")

    for key in ("n_docs", "n_vectors", "dim", "nbits"):
        if not _is_count(meta.get(key)):
            raise bad(f"has {key}={meta.get(key)!r}, not a count")
    files = meta.get("files")
    if not isinstance(files, dict):
        raise bad("has no 'files' table")
    for name, rec in files.items():
        if not name or "/" in name or name.startswith(".") or not isinstance(rec, dict) or \
                not _is_count(rec.get("size")) or not isinstance(rec.get("crc32"), list) or \
                not all(isinstance(r, list) and len(r) == 2 and _is_count(r[0]) and _is_count(r[1])
                        for r in rec["crc32"]) or \
                [r[0] for r in rec["crc32"]] != sorted(r[0] for r in rec["crc32"]) or \
                (rec["crc32"][-1][0] if rec["crc32"] else 0) != rec["size"]:
            raise bad(f"has a malformed 'files' entry {name!r}: {rec!r:.120}")
    arrays = meta.get("arrays")
    if not isinstance(arrays, dict) or not {"offsets", "doclens", "codes", "residuals"} <= set(arrays):
        raise bad("has no (or an incomplete) 'arrays' table")
    n_docs, n_vec = int(meta["n_docs"]), int(meta["n_vectors"])
    rows = {"offsets": n_docs + 1, "doclens": n_docs, "codes": n_vec, "residuals": n_vec, "token_ids": n_vec}
    for key, spec in arrays.items():
        try:
            dtype = np.dtype(spec["dtype"])
            row = [int(c) for c in spec["row"]]
            ok = key in rows and spec["file"] in files and _is_count(spec.get("offset", 0)) and \
                all(c >= 0 for c in row) and dtype.kind in "iuf"
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise bad(f"has a malformed array spec {key!r}: {spec!r:.120}")
        want = int(spec.get("offset", 0)) + rows[key] * dtype.itemsize * int(np.prod(row, dtype=np.int64))
        if int(files[spec["file"]]["size"]) != want:
            raise bad(f"records {files[spec['file']]['size']} bytes for {spec['file']!r}, but its {rows[key]} rows "
                      f"of {dtype.name} {row} take {want}")
    segs = meta.get("segments")
    if not isinstance(segs, list) or not segs:
        raise bad("has no segments")
    start = 0
    for seg in segs:
        if not isinstance(seg, dict) or seg.get("start") != start or not _is_count(seg.get("end")) or \
                seg["end"] < start or not isinstance(seg.get("docnos"), str) or not isinstance(seg.get("ivf"), str):
            raise bad(f"has a malformed segment {seg!r:.120} (segments must be consecutive from doc id 0)")
        for name in [seg["docnos"] + s for s in DOCNO_SUFFIXES] + [f"{seg['ivf']}.offsets.npy",
                                                                   f"{seg['ivf']}.docs.npy"]:
            if name not in files:
                raise bad(f"names no record of segment file {name!r}")
        start = seg["end"]
    if start != n_docs:
        raise bad(f"has segments covering {start} documents, but n_docs={n_docs}")
    tomb = meta.get("tombstones")
    if (tomb is not None and (not isinstance(tomb, str) or tomb not in files)) or \
            not _is_count(meta.get("n_deleted", 0)):
        raise bad(f"has a malformed tombstones entry ({tomb!r}, n_deleted={meta.get('n_deleted')!r})")


def _check_offsets(path: Path, offsets: np.ndarray, doclens: Optional[np.ndarray], n_vectors: int,
                   off_name: str, len_name: str) -> None:
    """``offsets`` ``(n_docs + 1,)`` start at 0, never decrease, end at ``n_vectors``, and step by ``doclens``
    (when given) ``(n_docs,)``; reads both arrays once, in chunks."""
    if doclens is not None:
        total = 0
        for s in range(0, len(doclens), CHECK_CHUNK):
            part = np.asarray(doclens[s:s + CHECK_CHUNK], dtype=np.int64)
            if len(part) and part.min() < 0:
                raise corrupt(path, len_name, f"holds a negative length at document {s + int(np.argmin(part))}")
            total += int(part.sum())
        if total != n_vectors:
            raise corrupt(path, len_name, f"sums to {total} vectors, {n_vectors} recorded")
    if len(offsets) == 0 or int(offsets[0]) != 0 or int(offsets[-1]) != n_vectors:
        first, last = (int(offsets[0]), int(offsets[-1])) if len(offsets) else (None, None)
        raise corrupt(path, off_name, f"starts at {first} and ends at {last}, but must run from 0 to {n_vectors}")
    for s in range(0, len(offsets) - 1, CHECK_CHUNK):
        step = np.diff(np.asarray(offsets[s:s + CHECK_CHUNK + 1], dtype=np.int64))
        if doclens is not None:
            wrong = np.nonzero(step != np.asarray(doclens[s:s + len(step)], dtype=np.int64))[0]
        else:
            wrong = np.nonzero(step < 0)[0]
        if len(wrong):
            raise corrupt(path, off_name, f"is inconsistent at document {s + int(wrong[0])} (offsets "
                                          f"{int(offsets[s + wrong[0]])}..{int(offsets[s + wrong[0] + 1])}"
                                          + (f", length {int(doclens[s + wrong[0]])} in {len_name!r})"
                                             if doclens is not None else ")"))


def _check_ivf_offsets(path: Path, offsets: np.ndarray, n_centroids: int, name: str) -> None:
    """An inverted file's offsets: int64 ``(n_centroids + 1,)``, from 0, never decreasing."""
    offsets = np.asarray(offsets)
    if offsets.shape != (n_centroids + 1,):
        raise corrupt(path, name, f"has shape {offsets.shape}, ({n_centroids + 1},) expected for {n_centroids} "
                                  f"centroids")
    if int(offsets[0]) != 0 or (np.diff(offsets) < 0).any():
        raise corrupt(path, name, "is not an ascending offset array from 0")


def _check_range(path: Path, arr: np.ndarray, lo: int, hi: int, name: str, what: str) -> None:
    """Every value of ``arr`` in ``[lo, hi)`` (read in chunks), else :class:`IndexCorruptError` naming ``name``."""
    for s in range(0, len(arr), CHECK_CHUNK):
        part = np.asarray(arr[s:s + CHECK_CHUNK])
        if len(part) and (int(part.min()) < lo or int(part.max()) >= hi):
            i = int(np.nonzero((part < lo) | (part >= hi))[0][0])
            raise corrupt(path, name, f"holds {what} {int(part[i])} at position {s + i}, outside [{lo}, {hi})")


def _npy_header(path: Path, name: str) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """``(shape, fortran_order, dtype, data offset)`` from the header of the ``.npy`` file ``path/name``."""
    try:
        with open(path / name, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(f)
            return shape, fortran, dtype, f.tell()
    except OSError:
        raise
    except Exception as e:  # numpy's header parser raises ValueError, SyntaxError, tokenize errors, ...
        raise corrupt(path, name, f"has a damaged .npy header ({type(e).__name__}: {e})") from None


def _load_codec(path: Path) -> ResidualCodec:
    """The index's codec; files numpy or json cannot read raise :class:`IndexCorruptError`."""
    try:
        return ResidualCodec.load(path)
    except FileNotFoundError as e:
        raise corrupt(path, Path(e.filename or "codec.json").name, "is missing") from None
    except (ValueError, KeyError, TypeError, IndexError, OSError, EOFError, MemoryError, OverflowError,
            zipfile.BadZipFile) as e:
        names = [n for n in CODEC_FILES if (path / n).exists()]
        raise corrupt(path, " / ".join(names), f"cannot be read as a codec ({type(e).__name__}: {e})") from None


class IndexReader:
    """Read-only, memory-mapped view of one committed state of an index directory.

    Opening reads the metadata, checks it and every file (``verify=False``: :func:`~.integrity.check_at_open`, the
    checksums of everything but the per-vector data; ``verify=True``: every checksum) and maps every array, so the
    reader keeps seeing the state it opened even while a writer adds, deletes or compacts: appended bytes lie
    beyond the mapped prefix, and replaced files stay readable until unmapped. If a writer commits while the reader
    opens, it opens again (the metadata is re-read after mapping and must be unchanged).

    What a damaged file raises, always :class:`IndexCorruptError` naming it (see :func:`_open`): at open, any
    change to ``lateint.json`` (its seal), to the files checksummed at open, to the ``.npy`` headers, and offsets
    or lengths that disagree; at first use of ``codes`` / ``ivf_docs``, values outside their range. Changes inside
    the per-vector data that keep values in range (a residual byte, a code, a token id, a posting) are found by
    :meth:`verify` only.

    Attributes used by the kernels: ``offsets``, ``codes``, ``residuals``, ``doclens``, ``token_ids`` (or None),
    ``codec``, ``docnos`` (``fwd``/``inv`` lookup), ``n_docs`` (doc ids, deleted ones included), ``ivf_offsets`` /
    ``ivf_docs`` (one inverted file over all segments), ``deleted`` (bool ``(n_docs,)`` or None).
    """

    _LAZY = ("offsets", "doclens", "codes", "residuals", "token_ids", "ivf_offsets", "ivf_docs", "_merged_ivf",
             "codec", "docnos")

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
        """Check and map the state ``meta`` describes. Checked here (O(files + centroids + documents)): the metadata's
        structure and sizes; every file's size; the checksums of every file but the per-vector data (``full``:
        those too); the ``.npy`` headers of the per-vector data against the counts; offsets against lengths; the
        codec against the metadata; tombstone ids."""
        for name in self._LAZY:
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
        path = self.path
        _check_meta(path, meta)
        files, specs = meta["files"], meta["arrays"]
        self.segments: list[dict[str, Any]] = meta["segments"]
        appendable = {a["file"] for a in specs.values()}
        # per-vector data (checked structurally here and at first use), and what search never reads (checked when
        # read: ColBERTIndex.token_stats)
        deferred = {specs[k]["file"] for k in ("codes", "residuals", "token_ids") if k in specs} | \
            {f"{seg['ivf']}.docs.npy" for seg in self.segments} | {STATS_FILE}
        if full:
            verify(path, files, appendable)
        else:
            check_at_open(path, files, appendable, deferred)
        n_docs, n_vec = self.n_docs, self.n_vectors
        rows = {"offsets": n_docs + 1, "doclens": n_docs, "codes": n_vec, "residuals": n_vec, "token_ids": n_vec}
        arrays = {}
        for key, a in specs.items():
            shape = (rows[key], *a["row"])
            arrays[key] = _map_raw(path / a["file"], np.dtype(a["dtype"]), shape, int(a.get("offset", 0)))
        self.offsets, self.doclens = arrays["offsets"], arrays["doclens"]
        _check_offsets(path, self.offsets, self.doclens, n_vec, specs["offsets"]["file"], specs["doclens"]["file"])
        self._codes, self._codes_file = arrays["codes"], specs["codes"]["file"]
        self.residuals = arrays["residuals"]
        self.token_ids = arrays.get("token_ids")
        if self.token_ids is not None:
            self._check_token_ids_header(specs["token_ids"])
        self.codec = _load_codec(path)
        self._check_codec(specs)
        tomb = meta.get("tombstones")
        self.deleted: Optional[np.ndarray] = None
        if tomb:
            ids = load_npy(path, tomb, "i", (int(meta.get("n_deleted", 0)),), mmap=False)
            _check_range(path, ids, 0, n_docs, tomb, "doc id")
            self.deleted = np.zeros(n_docs, dtype=bool)
            self.deleted[ids] = True
        stores = [DocnoStore(path, seg["docnos"], seg["end"] - seg["start"]) for seg in self.segments]
        self.docnos = stores[0] if len(stores) == 1 and self.deleted is None else \
            SegmentedDocnos(stores, [seg["start"] for seg in self.segments], self.deleted)
        k = self.codec.n_centroids
        self._ivfs, self._ivf_names = [], []
        for seg in self.segments:
            off_name, docs_name = f"{seg['ivf']}.offsets.npy", f"{seg['ivf']}.docs.npy"
            off = load_npy(path, off_name, "i", (k + 1,))
            _check_ivf_offsets(path, off, k, off_name)
            self._ivfs.append((off, load_npy(path, docs_name, "i", (int(off[-1]),))))
            self._ivf_names.append(docs_name)

    def _check_token_ids_header(self, spec: dict[str, Any]) -> None:
        """``token_ids.npy``'s header describes int32 ids of the first segment's vectors, data at the recorded
        offset (later segments' ids follow, mapped from the metadata)."""
        name = spec["file"]
        shape, fortran, dtype, offset = _npy_header(self.path, name)
        want = (int(self.offsets[self.segments[0]["end"]]),)
        if dtype != np.dtype(spec["dtype"]) or fortran or tuple(shape) != want or offset != int(spec["offset"]):
            raise corrupt(self.path, name, f"has a header describing {dtype} {tuple(shape)} from byte {offset}, but "
                                           f"{spec['dtype']} {want} from byte {spec['offset']} is recorded: its "
                                           f"header was altered")

    def _check_codec(self, specs: dict[str, dict[str, Any]]) -> None:
        """The codec files agree with the metadata: dimension, bits, centroids, stored row layout."""
        c, meta = self.codec, self.meta
        cols, rdt = c.residual_shape
        got = {"dim": c.dim, "nbits": c.nbits, "n_centroids": c.n_centroids, "codes dtype": c.code_dtype.name,
               "residual row": [int(cols)], "residual dtype": rdt.name}
        want = {"dim": meta["dim"], "nbits": meta["nbits"], "n_centroids": meta.get("n_centroids", c.n_centroids),
                "codes dtype": np.dtype(specs["codes"]["dtype"]).name, "residual row": list(specs["residuals"]["row"]),
                "residual dtype": np.dtype(specs["residuals"]["dtype"]).name}
        diff = [f"{k}: codec {got[k]!r} vs {want[k]!r}" for k in got if got[k] != want[k]]
        if diff:
            names = " / ".join(n for n in CODEC_FILES if (self.path / n).exists())
            raise corrupt(self.path, names, f"disagree(s) with {META_FILE} ({', '.join(diff)})")

    def _open_v1(self) -> None:
        import npids
        self.segments = [{"start": 0, "end": self.n_docs}]
        self.offsets, self.doclens = self._npy("offsets.npy"), self._npy("doclens.npy")
        self._codes, self._codes_file = self._npy("codes.npy"), "codes.npy"
        self.residuals = self._npy("residuals.npy")
        self._ivfs = [(self._npy("ivf.offsets.npy"), self._npy("ivf.docs.npy"))]
        self._ivf_names = ["ivf.docs.npy"]
        p = self.path / "token_ids.npy"
        self.token_ids = self._npy("token_ids.npy") if p.exists() else None
        self.codec = _load_codec(self.path)
        try:
            self.docnos = npids.Lookup(self.path / "docnos.npids")
        except FileNotFoundError:
            raise corrupt(self.path, "docnos.npids", "is missing") from None
        except (ValueError, OSError, EOFError, IndexError) as e:
            raise corrupt(self.path, "docnos.npids", f"cannot be read ({type(e).__name__}: {e})") from None
        self.deleted = None
        for name, arr, n in (("offsets.npy", self.offsets, self.n_docs + 1), ("doclens.npy", self.doclens, self.n_docs),
                             ("codes.npy", self._codes, self.n_vectors), ("residuals.npy", self.residuals,
                                                                         self.n_vectors)):
            if len(arr) != n:
                raise corrupt(self.path, name, f"holds {len(arr)} rows, {n} expected")
        _check_offsets(self.path, self.offsets, self.doclens, self.n_vectors, "offsets.npy", "doclens.npy")
        off, docs = self._ivfs[0]
        _check_ivf_offsets(self.path, off, self.codec.n_centroids, "ivf.offsets.npy")
        if int(off[-1]) != len(docs):
            raise corrupt(self.path, "ivf.docs.npy", f"holds {len(docs)} postings, {int(off[-1])} expected")

    def _npy(self, name: str) -> np.ndarray:
        return load_npy(self.path, name, None, None)

    # --- arrays checked at first use (their checks read every vector's data) -----------------------------------
    @cached_property
    def codes(self) -> np.ndarray:
        """Centroid of each vector ``(n_vectors,)``; checked at first use: every code < ``n_centroids`` (a code
        beyond would make the kernels read outside the centroid table)."""
        _check_range(self.path, self._codes, 0, self.codec.n_centroids, self._codes_file, "centroid id")
        return self._codes

    @cached_property
    def ivf_offsets(self) -> np.ndarray:
        return self._merged_ivf[0]

    @cached_property
    def ivf_docs(self) -> np.ndarray:
        return self._merged_ivf[1]

    @cached_property
    def _merged_ivf(self) -> tuple[np.ndarray, np.ndarray]:
        """One inverted file over all segments (each centroid's documents stay ascending, since segments are
        consecutive doc-id ranges). Built at first use when the index has several segments; at first use every
        posting is checked to lie in its segment's doc ids."""
        for seg, (_, d), name in zip(self.segments, self._ivfs, self._ivf_names):
            _check_range(self.path, d, int(seg["start"]), int(seg["end"]), name, "doc id")
        if len(self._ivfs) == 1:
            return self._ivfs[0]
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

    def doc_ids(self, docnos, on_unknown: str = "error", fix: Optional[str] = None) -> np.ndarray:
        """Internal ids (int64) of ``docnos`` (a 1-d sequence of str); unknown (and deleted) docnos raise
        ``KeyError`` (``on_unknown="error"``) whose message ends with ``fix`` (default: the scorers' advice,
        ``on_unknown='drop'``), or map to -1 (``on_unknown="ignore"``, or ``"drop"`` as the scorers call it)."""
        if on_unknown not in ("error", "ignore", "drop"):
            raise ValueError(f"on_unknown must be 'error' or 'ignore' (or 'drop'), not {on_unknown!r}")
        docnos = np.asarray(docnos, dtype=object)
        if docnos.ndim != 1:
            raise TypeError(f"docnos must be a 1-d sequence of str; got an array of shape {docnos.shape}")
        docnos = docnos.astype(str)
        if len(docnos) == 0:
            return np.zeros(0, dtype=np.int64)
        ids = np.asarray(self.docnos.inv.lookup(docnos), dtype=np.int64).reshape(-1)
        bad = ids < 0
        if bad.any() and on_unknown == "error":
            raise unknown_docnos_error(docnos, ids, f"the index {str(self.path)!r} (or deleted)",
                                       fix or UNKNOWN_DOCNO_FIX)
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
