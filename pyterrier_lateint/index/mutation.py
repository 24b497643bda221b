"""Changing a built index: add documents (a new segment), delete them (tombstones), compact (one segment again).

Every write holds the writer lock (:func:`~.commit.writer_lock`), first repairs what a killed writer left
(:func:`~.folders.recover`, then :func:`collect_garbage`), and ends with one atomic commit of ``lateint.json``
(:func:`~.commit.commit_meta`); what it wrote before the commit is invisible to readers:

- **add**: the documents are encoded and compressed with the index's own centroids and buckets in a temporary
  folder (the build's phases); the segment's docnos and inverted file are written into the index folder under new
  names, and its vectors appended to the appendable arrays beyond their committed length (a writer first truncates
  bytes a killed add left there). The commit records the new lengths and the segment.
- **delete**: a new tombstone file (every deleted doc id), then the commit.
- **compact**: a new folder with the live documents only (their stored bytes copied, or re-compressed with
  retrained centroids), swapped into place by the build's two renames (rolled back by :func:`~.folders.recover` if
  killed between them).

Doc ids stay one global space: added documents get ids after the existing ones; deleted ones keep theirs (hidden
from every search and lookup) until a compaction renumbers the live documents in order.
"""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Union

import numpy as np
import pandas as pd

from ..models import LateInteractionModel
from .build import (ColBERTIndexer, array_specs, build_folder, chunk_bounds, compress, finish_folder, spilled_chunks,
                    stream_vectors)
from .commit import commit_meta, writer_lock
from .docstore import unknown_docnos_error, write_docnos
from .folders import recover, replacing, scratch_folder
from .handle import IndexHandle
from .integrity import extend_record, fsync_dir, record
from .layout import META_FILE, IndexReader
from .scorer import check_on_unknown
from .segment_files import SegmentWriter, write_ivf, write_token_ids
from .vectorfile import VectorFile


logger = logging.getLogger(__name__)

# token_stats.npz (counted at build and compact) stays referenced after add/delete: it records the documents,
# vectors and token-id fingerprint it counted, and load_token_stats counts afresh when they differ (or when documents
# are deleted), so it never describes another state; readers of an older generation may still be reading it.


# --- helpers ------------------------------------------------------------------------------------------------------
def collect_garbage(folder: Path, meta: dict[str, Any]) -> list[str]:
    """Remove files of the index folder that the committed metadata does not name (left by a killed writer, or
    replaced by the last commit). Returns their names."""
    keep = set(meta.get("files", {})) | {META_FILE}
    removed = []
    for p in Path(folder).iterdir():
        if p.is_file() and p.name not in keep:
            p.unlink()
            removed.append(p.name)
    if removed:
        logger.info("%s: removed %d unreferenced files %s", folder, len(removed), sorted(removed)[:5])
    return removed


def _append(path: Path, committed: int, source: Union[Path, np.ndarray]) -> int:
    """Append ``source`` (a file's bytes or an array's) to ``path`` after its first ``committed`` bytes (dropping
    whatever a killed writer left beyond them); fsynced. Returns the new size."""
    with open(path, "r+b") as f:
        f.truncate(committed)
        f.seek(committed)
        if isinstance(source, np.ndarray):
            f.write(np.ascontiguousarray(source).tobytes())
        else:
            with open(source, "rb") as src:
                shutil.copyfileobj(src, f, 2 ** 22)
        f.flush()
        os.fsync(f.fileno())
        return f.tell()


def _open_for_write(index: IndexHandle) -> IndexReader:
    """Under the writer lock: repair, then open the committed state (upgrading a format-1 index first)."""
    path = Path(index.path)
    recover(path)
    reader = IndexReader(path)
    if reader.format_version == 1:
        logger.info("%s is format 1: rewriting it as format 2 before changing it", path)
        compact_index(index)
        reader = IndexReader(path)
    collect_garbage(path, reader.meta)
    return reader


def _records(docs: Union[Iterable[dict], pd.DataFrame]) -> list[dict]:
    if isinstance(docs, pd.DataFrame):
        if "docno" not in docs.columns or not ({"text", "doc_embs"} & set(docs.columns)):
            raise KeyError(f"documents need columns 'docno' and 'text' (or 'doc_embs'); got {list(docs.columns)}")
        return docs.to_dict(orient="records")
    if isinstance(docs, dict):
        raise TypeError("add() takes a DataFrame or an iterable of documents (dicts), not one dict: wrap it in a list")
    return list(docs)


def _recorded_model(index: IndexHandle) -> Optional[LateInteractionModel]:
    """The model the index records (:meth:`ColBERTIndex.load_model`), to encode added text when none is given;
    ``None`` when the index was built from vectors (the indexer then names the missing model)."""
    if index.metadata().get("model") is None:
        return None
    model = index.load_model()
    logger.info("%r: encoding the added text with the model the index records, %r (pass model= to choose)",
                index, model)
    return model


def _new_meta(meta: dict[str, Any], files: dict[str, dict], **changes: Any) -> dict[str, Any]:
    out = dict(meta, **changes)
    out["generation"] = int(meta.get("generation", 0)) + 1
    out["files"] = dict(files)
    return out


def _tombstones(folder: Path, meta: dict[str, Any], old: Optional[np.ndarray], new_ids: np.ndarray,
                files: dict[str, dict]) -> tuple[Optional[str], int]:
    """Write the union of the deleted ids as ``tombstones.G.npy``; returns its name and count."""
    ids = np.union1d(np.zeros(0, np.int64) if old is None else np.nonzero(old)[0], new_ids).astype(np.int64)
    if len(ids) == 0:
        return meta.get("tombstones"), int(meta.get("n_deleted", 0))
    name = f"tombstones.{int(meta.get('generation', 0)) + 1}.npy"
    np.save(folder / name, ids)
    files[name] = record(folder / name)
    if meta.get("tombstones"):
        files.pop(meta["tombstones"], None)
    return name, len(ids)


# --- add ----------------------------------------------------------------------------------------------------------
def add_documents(index: IndexHandle, docs: Union[Iterable[dict], pd.DataFrame],
                  model: Optional[LateInteractionModel], *, replace: bool = False, batch_size: int = 64,
                  verbose: bool = False) -> int:
    """Append ``docs`` as a new segment (see the module docstring); returns the number added."""
    path = Path(index.path)
    records = _records(docs)
    if not records:
        return 0
    docnos = []
    for d in records:
        if not isinstance(d, dict) or d.get("docno") is None:
            raise KeyError(f"every document needs a 'docno'; got {d!r:.80}")
        docnos.append(str(d["docno"]))
    seen: dict[str, int] = {}
    for i, d in enumerate(docnos):
        if d in seen:
            raise ValueError(f"duplicate docno {d!r} in the documents to add (positions {seen[d]} and {i}); docnos "
                             f"must be unique: drop or rename the duplicates")
        seen[d] = i
    if model is None and any("doc_embs" not in d for d in records):
        model = _recorded_model(index)
    with writer_lock(path):
        reader = _open_for_write(index)
        index.check_model(model)
        existing = reader.doc_ids(np.array(docnos, dtype=object), on_unknown="ignore")
        live = existing >= 0
        if live.any() and not replace:
            names = [docnos[i] for i in np.nonzero(live)[0][:5]]
            raise ValueError(f"{int(live.sum())} docno(s) already in {index!r}, e.g. {names}; use "
                             f"index.add(docs, replace=True) to replace them, or delete them first")
        pool_factor = (reader.meta.get("pooling") or {}).get("pool_factor")  # added documents pooled alike
        cfg = ColBERTIndexer(index, model, nbits=reader.nbits, batch_size=batch_size,
                             store_token_ids=reader.token_ids is not None, verbose=verbose,
                             pool_factor=1 if pool_factor is None else pool_factor)
        with scratch_folder(path) as tmp:
            meta = _add_segment(path, tmp, reader, records, cfg, existing[live])
            commit_meta(path, meta)
        collect_garbage(path, meta)
    return len(records)


def _add_segment(path: Path, tmp: Path, reader: IndexReader, records: list[dict], cfg: ColBERTIndexer,
                 replaced: np.ndarray) -> dict[str, Any]:
    """Write the segment of ``records`` into the index folder (uncommitted); returns the metadata to commit."""
    meta = reader.meta
    streamed = stream_vectors(tmp, records, cfg, allow_empty=True)
    if streamed.n_vectors and streamed.dim != reader.dim:
        raise ValueError(f"the new documents have {streamed.dim}-d vectors but the index holds {reader.dim}-d "
                         f"ones; encode them with the indexing model")
    doclens = streamed.doclens
    offsets = np.zeros(len(doclens) + 1, dtype=np.int64)
    np.cumsum(doclens, out=offsets[1:])
    raw = VectorFile(tmp / "raw.f16", streamed.n_vectors, reader.dim)
    ivf_counts, n_pairs = compress(tmp, spilled_chunks(raw, offsets), doclens, reader.codec, False)
    del raw
    write_ivf(tmp, ivf_counts, n_pairs, "ivf")
    n_old, v_old = reader.n_docs, reader.n_vectors
    g = int(meta.get("generation", 0)) + 1
    files = dict(meta["files"])
    for name in write_docnos(path, f"docnos.{g}", streamed.docnos):
        files[name] = record(path / name)
    np.save(path / f"ivf.{g}.offsets.npy", np.load(tmp / "ivf.offsets.npy"))
    np.save(path / f"ivf.{g}.docs.npy", (np.load(tmp / "ivf.docs.npy").astype(np.int64) + n_old).astype(np.int32))
    for name in (f"ivf.{g}.offsets.npy", f"ivf.{g}.docs.npy"):
        files[name] = record(path / name)
    sources = {"offsets": offsets[1:] + v_old, "doclens": doclens, "codes": tmp / "codes.bin",
               "residuals": tmp / "residuals.bin", "token_ids": tmp / "raw.tokids"}
    for key, spec in meta["arrays"].items():
        f = spec["file"]
        size = _append(path / f, int(files[f]["size"]), sources[key])
        files[f] = extend_record(files[f], path / f, size)
    tomb, n_deleted = _tombstones(path, meta, reader.deleted, replaced, files)
    fsync_dir(path)
    segments = list(meta["segments"]) + [{"start": n_old, "end": n_old + len(doclens), "docnos": f"docnos.{g}",
                                          "ivf": f"ivf.{g}"}]
    return _new_meta(meta, files, n_docs=n_old + len(doclens), n_vectors=v_old + streamed.n_vectors,
                     n_empty_docs=int(meta.get("n_empty_docs", 0)) + int((doclens == 0).sum()),
                     n_ivf_postings=int(meta.get("n_ivf_postings", 0)) + int(n_pairs), segments=segments,
                     tombstones=tomb, n_deleted=n_deleted)


# --- delete -------------------------------------------------------------------------------------------------------
def delete_documents(index: IndexHandle, docnos: Union[str, Iterable[str]], on_unknown: str = "error") -> int:
    """Tombstone ``docnos``; returns how many were deleted."""
    on_unknown = check_on_unknown(on_unknown)
    if isinstance(docnos, pd.DataFrame):
        if "docno" not in docnos.columns:
            raise KeyError(f"delete() needs a 'docno' column; got {list(docnos.columns)}")
        docnos = docnos["docno"]
    names = [docnos] if isinstance(docnos, str) else [str(d) for d in docnos]
    if not names:
        return 0
    path = Path(index.path)
    with writer_lock(path):
        reader = _open_for_write(index)
        ids = reader.doc_ids(np.array(names, dtype=object), on_unknown="ignore")
        if (ids < 0).any() and on_unknown == "error":
            raise unknown_docnos_error(names, ids, f"{index!r} (or already deleted)",
                                       "check them, or use delete(..., on_unknown='drop')")
        ids = np.unique(ids[ids >= 0])
        if len(ids) == 0:
            return 0
        meta = reader.meta
        files = dict(meta["files"])
        tomb, n_deleted = _tombstones(path, meta, reader.deleted, ids, files)
        fsync_dir(path)
        new = _new_meta(meta, files, tombstones=tomb, n_deleted=n_deleted)
        commit_meta(path, new)
        collect_garbage(path, new)
    return len(ids)


# --- compact ------------------------------------------------------------------------------------------------------
class _RecordedModel:
    """Stands for the indexing model when re-building from stored vectors: its dimension and recorded signature."""

    def __init__(self, dim: int, signature: Optional[dict]):
        self.dim = dim
        self._sig = signature

    def signature(self) -> Optional[dict]:
        return self._sig


def _live_docs(reader: IndexReader, live: np.ndarray, chunk: int = 1024) -> Iterator[dict]:
    """``{"docno", "doc_embs"[, "doc_toks"]}`` of the live documents, decompressed, in doc-id order."""
    for s in range(0, len(live), chunk):
        ids = live[s:s + chunk]
        vectors, offs = reader.decompress_docs(ids)
        names = reader.docnos.fwd.lookup(ids)
        for j, i in enumerate(ids):
            doc = {"docno": str(names[j]), "doc_embs": vectors[offs[j]:offs[j + 1]]}
            if reader.token_ids is not None:
                doc["doc_toks"] = np.asarray(reader.token_ids[reader.offsets[i]:reader.offsets[i + 1]])
            yield doc


def compact_index(index: IndexHandle, retrain: bool = False, n_centroids: Optional[int] = None,
                  verbose: bool = False) -> None:
    """Rewrite the index with its live documents only, as one segment, and swap it in (see the module docstring)."""
    path = Path(index.path)
    with writer_lock(path):
        recover(path)
        reader = IndexReader(path)
        live = reader.live_ids()
        live = np.arange(reader.n_docs, dtype=np.int64) if live is None else live
        if len(live) == 0:
            raise ValueError(f"every document of {index!r} is deleted: there is nothing to compact to; add documents "
                             f"first, or remove the folder and build a new index")
        with replacing(path) as tmp:
            if retrain:
                cfg = ColBERTIndexer(index, None, nbits=reader.nbits, n_centroids=n_centroids,
                                     store_token_ids=reader.token_ids is not None, verbose=verbose,
                                     seed=int(reader.meta.get("build", {}).get("seed", 0)))
                cfg.model, cfg.pooler = _RecordedModel(reader.dim, reader.signature), None
                meta = build_folder(tmp, lambda: _live_docs(reader, live), cfg)
                meta["pooling"] = reader.meta.get("pooling")
            else:
                meta = _copy_live(tmp, reader, live, verbose)
            meta["generation"] = int(reader.meta.get("generation", 0)) + 1
            meta["compacted"] = {"from_docs": reader.n_docs, "live_docs": int(len(live)), "retrained": bool(retrain)}
            finish_folder(tmp, meta)


def _copy_live(tmp: Path, reader: IndexReader, live: np.ndarray, verbose: bool) -> dict[str, Any]:
    """The live documents' stored bytes, copied into ``tmp`` as a one-segment index; returns its metadata."""
    doclens, offsets = _write_live_layout(tmp, reader, live)
    n_pairs = _copy_stored_bytes(tmp, reader, live, doclens, offsets)
    has_tok = reader.token_ids is not None
    if has_tok:
        write_token_ids(tmp, int(offsets[-1]))
        from .token_stats import write_token_stats
        write_token_stats(tmp, tmp / "raw.tokids", offsets)
    os.remove(tmp / "raw.tokids")
    return _copied_meta(reader, tmp, doclens, int(offsets[-1]), n_pairs, has_tok)


def _write_live_layout(tmp: Path, reader: IndexReader, live: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Docnos, document lengths, vector offsets and the codec of the live documents, renumbered from 0; returns
    ``(doclens int32 (n,), offsets int64 (n + 1,))``."""
    doclens = np.asarray(reader.doclens, dtype=np.int32)[live]
    offsets = np.zeros(len(live) + 1, dtype=np.int64)
    np.cumsum(doclens, out=offsets[1:])
    write_docnos(tmp, "docnos.0", [str(d) for d in reader.docnos.fwd.lookup(live)])
    doclens.tofile(tmp / "doclens.i32")
    offsets.tofile(tmp / "offsets.i64")
    reader.codec.save(tmp)
    return doclens, offsets


def _copy_stored_bytes(tmp: Path, reader: IndexReader, live: np.ndarray, doclens: np.ndarray,
                       offsets: np.ndarray) -> int:
    """The live documents' codes, residual bytes and token ids (``raw.tokids``, empty without them), chunk by
    chunk as a build compresses them, then the inverted file; returns the number of postings."""
    old_off = np.asarray(reader.offsets, dtype=np.int64)
    has_tok = reader.token_ids is not None
    with SegmentWriter(tmp, len(live), reader.codec.n_centroids) as out, open(tmp / "raw.tokids", "wb") as ft:
        for d0, d1 in chunk_bounds(offsets):
            lens = doclens[d0:d1].astype(np.int64)
            # the old rows of these documents' vectors, in order
            rows = np.repeat(old_off[live[d0:d1]] - (offsets[d0:d1] - offsets[d0]), lens) + np.arange(int(lens.sum()))
            out.write(d0, lens, np.asarray(reader.codes[rows]), np.asarray(reader.residuals[rows]))
            if has_tok:
                ft.write(np.asarray(reader.token_ids[rows], dtype=np.int32).tobytes())
    write_ivf(tmp, out.ivf_counts, out.n_pairs, "ivf.0")
    return out.n_pairs


def _copied_meta(reader: IndexReader, tmp: Path, doclens: np.ndarray, n_vectors: int, n_pairs: int,
                 has_tok: bool) -> dict[str, Any]:
    """The metadata of a compacted copy: the old index's, one segment, no deletions."""
    n_docs = len(doclens)
    meta = {k: v for k, v in reader.meta.items() if k not in ("files", "tombstones", "n_deleted", "segments")}
    meta.update({"format_version": 2, "complete": True, "n_docs": n_docs, "n_vectors": n_vectors,
                 "n_empty_docs": int((doclens == 0).sum()), "n_ivf_postings": int(n_pairs),
                 "has_token_ids": has_tok, "has_token_stats": has_tok,
                 "arrays": array_specs(reader.codec, has_tok, tmp),
                 "segments": [{"start": 0, "end": n_docs, "docnos": "docnos.0", "ivf": "ivf.0"}],
                 "tombstones": None, "n_deleted": 0})
    return meta
