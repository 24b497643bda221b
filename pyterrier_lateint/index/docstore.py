"""Docno storage of a format-2 index: one immutable, memory-mapped store per segment, and their union.

A segment's store is three ``.npy`` files named ``PREFIX.fwd.npy`` (UTF-8 docnos as fixed-width bytes, in doc-id
order), ``PREFIX.sorted.npy`` (the same, sorted) and ``PREFIX.order.npy`` (int64: the local doc id of each sorted
docno). Forward lookup is an array index, inverse lookup a binary search; any number of docnos (one included,
which npids 0.x cannot store) works.

:class:`SegmentedDocnos` joins the segments into the index's one doc-id space and hides deleted documents from
inverse lookup (a deleted docno is unknown; a re-added docno resolves to its live document). Both expose npids'
``fwd.lookup(ids)`` / ``inv.lookup(docnos)`` / ``len`` interface, which the readers and the retriever use.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .integrity import corrupt

FILE_SUFFIXES = (".fwd.npy", ".sorted.npy", ".order.npy")


def _encode(docnos: Sequence[str]) -> np.ndarray:
    enc = [str(d).encode("utf-8") for d in docnos]
    width = max([len(e) for e in enc] + [1])
    return np.array(enc, dtype=f"S{width}")


def write_docnos(folder: Path, prefix: str, docnos: Sequence[str]) -> list[str]:
    """Write the store of ``docnos`` (local ids 0..n-1) as ``folder/PREFIX.*.npy``; returns the file names.
    Raises ``ValueError`` naming a duplicate docno."""
    fwd = _encode(docnos)
    order = np.argsort(fwd, kind="stable")
    srt = fwd[order]
    if len(srt) > 1:
        dup = np.nonzero(srt[1:] == srt[:-1])[0]
        if len(dup):
            a, b = sorted((int(order[dup[0]]), int(order[dup[0] + 1])))
            raise ValueError(f"duplicate docno {srt[dup[0]].decode('utf-8')!r} (documents {a} and {b}); docnos must "
                             f"be unique: drop or rename the duplicates")
    names = [prefix + s for s in FILE_SUFFIXES]
    for name, arr in zip(names, (fwd, srt, order.astype(np.int64))):
        np.save(Path(folder) / name, arr)
    return names


class _Fwd:
    def __init__(self, owner: "DocnoStore | SegmentedDocnos"):
        self._owner = owner

    def lookup(self, ids: np.ndarray) -> np.ndarray:
        return self._owner._fwd(np.asarray(ids, dtype=np.int64).reshape(-1))


class _Inv:
    def __init__(self, owner: "DocnoStore | SegmentedDocnos"):
        self._owner = owner

    def lookup(self, docnos) -> np.ndarray:
        return self._owner._inv(np.asarray(docnos, dtype=object).reshape(-1))


def load_npy(folder: Path, name: str, dtype_kind: Optional[str], shape: Optional[tuple[Optional[int], ...]] = None,
             mmap: bool = True) -> np.ndarray:
    """The array of the ``.npy`` file ``folder/name`` (memory-mapped when ``mmap``), checked: dtype kind
    (``"i"``, ``"S"``, ``"f"``, ...; ``None``: any), ``shape`` (when given; ``None`` in it matches any length)
    and, for a map, that the file holds exactly the header and the data. A file that numpy cannot read, or that
    does not match, raises :class:`~.integrity.IndexCorruptError` naming it."""
    path = Path(folder) / name
    try:
        arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except FileNotFoundError:
        raise corrupt(folder, name, "is missing") from None
    except PermissionError:
        raise
    except Exception as e:  # numpy's header parser raises ValueError, SyntaxError, tokenize errors, MemoryError...
        raise corrupt(folder, name, f"is not a readable .npy array ({type(e).__name__}: {e})") from None
    problem = None
    if (dtype_kind and arr.dtype.kind != dtype_kind) or arr.dtype.hasobject:
        problem = f"holds dtype {arr.dtype}, not kind {dtype_kind!r}"
    elif shape is not None and (arr.ndim != len(shape) or any(w is not None and w != g
                                                               for w, g in zip(shape, arr.shape))):
        problem = f"has shape {arr.shape}, {tuple(shape)} expected"
    elif isinstance(arr, np.memmap) and arr.offset + arr.nbytes != path.stat().st_size:
        problem = (f"has {path.stat().st_size} bytes, but its header describes {arr.offset + arr.nbytes} "
                   f"(header {arr.offset} + data {arr.nbytes})")
    if problem:
        raise corrupt(folder, name, f"{problem}: its header or content was altered")
    return arr


class DocnoStore:
    """One segment's docnos (local ids), memory-mapped. ``n_docs``: the segment's documents, when known, checked
    against the files' shapes (a mismatch raises :class:`~.integrity.IndexCorruptError` naming the file)."""

    def __init__(self, folder: Path, prefix: str, n_docs: Optional[int] = None):
        names = [prefix + s for s in FILE_SUFFIXES]
        self.fwd_arr = load_npy(folder, names[0], "S", (n_docs,))
        self.sorted_arr = load_npy(folder, names[1], "S", (len(self.fwd_arr),))
        self.order = load_npy(folder, names[2], "i", (len(self.fwd_arr),))
        if self.sorted_arr.dtype != self.fwd_arr.dtype:
            raise corrupt(folder, names[1], f"holds {self.sorted_arr.dtype} docnos but {names[0]!r} holds "
                                            f"{self.fwd_arr.dtype}: one header was altered")
        self.fwd, self.inv = _Fwd(self), _Inv(self)

    def __len__(self) -> int:
        return len(self.fwd_arr)

    def _fwd(self, ids: np.ndarray) -> np.ndarray:
        return np.char.decode(np.asarray(self.fwd_arr[ids]), "utf-8").astype(object) if len(ids) else \
            np.zeros(0, dtype=object)

    def _inv(self, docnos: np.ndarray) -> np.ndarray:
        if len(docnos) == 0 or len(self) == 0:
            return np.full(len(docnos), -1, dtype=np.int64)
        q = _encode([str(d) for d in docnos])
        pos = np.searchsorted(self.sorted_arr, q)
        pos_c = np.minimum(pos, len(self) - 1)
        hit = np.asarray(self.sorted_arr[pos_c]) == q  # numpy compares bytes of any widths
        out = np.where(hit, np.asarray(self.order[pos_c]), -1)
        return out.astype(np.int64)


class SegmentedDocnos:
    """The docnos of all segments in one doc-id space; ``deleted`` (bool ``(n_docs,)`` or ``None``) documents
    are unknown to inverse lookup. Forward lookup still names every doc id (deleted ones too)."""

    def __init__(self, stores: list[DocnoStore], starts: list[int], deleted: Optional[np.ndarray]):
        self.stores = stores
        self.starts = np.asarray(list(starts) + [starts[-1] + len(stores[-1]) if stores else 0], dtype=np.int64)
        self.deleted = deleted
        self.fwd, self.inv = _Fwd(self), _Inv(self)

    def __len__(self) -> int:
        return int(self.starts[-1])

    def _fwd(self, ids: np.ndarray) -> np.ndarray:
        if len(self.stores) == 1:
            return self.stores[0]._fwd(ids)
        out = np.empty(len(ids), dtype=object)
        seg = np.searchsorted(self.starts, ids, side="right") - 1
        for s in np.unique(seg):
            sel = seg == s
            out[sel] = self.stores[s]._fwd(ids[sel] - self.starts[s])
        return out

    def _inv(self, docnos: np.ndarray) -> np.ndarray:
        out = np.full(len(docnos), -1, dtype=np.int64)
        for s in range(len(self.stores) - 1, -1, -1):  # newest first: a re-added docno lives in a later segment
            todo = np.nonzero(out < 0)[0]
            if len(todo) == 0:
                break
            local = self.stores[s]._inv(docnos[todo])
            ids = np.where(local >= 0, local + self.starts[s], -1)
            if self.deleted is not None:
                ids = np.where((ids >= 0) & self.deleted[np.maximum(ids, 0)], -1, ids)
            out[todo] = ids
        return out


def unknown_docnos_error(docnos: Sequence[str], ids: np.ndarray, where: str, fix: str) -> KeyError:
    """The ``KeyError`` for the docnos whose id is -1 in ``ids``: how many, the first five, and ``fix``."""
    missing = list(dict.fromkeys(np.asarray(docnos, dtype=str)[np.asarray(ids) < 0].tolist()))
    return KeyError(f"{len(missing)} docno(s) not in {where}, e.g. {missing[:5]}; {fix}")
