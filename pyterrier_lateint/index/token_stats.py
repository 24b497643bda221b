"""Token statistics of an index: document frequency and collection frequency per token id.

Written once at indexing when token ids are stored (``indexer(..., store_token_ids=True)``) as ``token_stats.npz``:
``stats`` int64 ``(vocab, 2)``, row ``t`` = ``(df, cf)`` of token id ``t`` (``vocab`` = largest stored id + 1):
``df`` the number of documents holding at least one vector of token ``t``, ``cf`` the number of vectors of token
``t``; plus the ``n_docs`` / ``n_vectors`` it counted. Read by ColBERT-PRF (IDF of the expansion tokens, :mod:`.prf`)
and query pruning (:mod:`.pruning`). When the index no longer is what was counted (documents added or deleted) or
has token ids but no stats file, the statistics are counted from the stored token ids on first use (per reader).
"""
from __future__ import annotations

import logging
from pathlib import Path
import weakref
import zipfile
import zlib
from typing import Any, Optional

import numpy as np

logger = logging.getLogger(__name__)

STATS_FILE = "token_stats.npz"
DOC_CHUNK = 2 ** 15  # documents whose (document, token) pairs are deduplicated together


def count_tokens(token_ids: np.ndarray, offsets: np.ndarray, deleted: Optional[np.ndarray] = None) -> np.ndarray:
    """``(df, cf)`` per token id of the stored ``token_ids`` ``(n_vectors,)`` of documents ``offsets`` ``(n_docs+1,)``:
    int64 ``(vocab, 2)``; documents flagged in ``deleted`` (bool ``(n_docs,)``) are left out. Works document chunk
    by chunk (memory bounded by one chunk)."""
    offsets = np.asarray(offsets, dtype=np.int64)
    n_docs = len(offsets) - 1
    vocab = int(np.max(token_ids)) + 1 if len(token_ids) else 0
    stats = np.zeros((vocab, 2), dtype=np.int64)
    for d0 in range(0, n_docs, DOC_CHUNK):
        d1 = min(d0 + DOC_CHUNK, n_docs)
        v0, v1 = int(offsets[d0]), int(offsets[d1])
        if v1 == v0:
            continue
        toks = np.asarray(token_ids[v0:v1], dtype=np.int64)
        if toks.min() < 0:
            raise ValueError(f"negative token id {int(toks.min())} in documents {d0}..{d1 - 1}")
        doc_of = np.repeat(np.arange(d1 - d0, dtype=np.int64), np.diff(offsets[d0:d1 + 1]))
        if deleted is not None:
            live = ~np.asarray(deleted[d0:d1], dtype=bool)[doc_of]
            toks, doc_of = toks[live], doc_of[live]
        stats[:, 1] += np.bincount(toks, minlength=vocab)
        pairs = np.unique(doc_of * vocab + toks)  # one (document, token) pair per document holding the token
        stats[:, 0] += np.bincount(pairs % vocab, minlength=vocab)
    return stats


def write_token_stats(folder: Path, raw_token_ids: Path, offsets: np.ndarray) -> None:
    """Indexing phase (with ``store_token_ids``): the int32 token ids in the raw file ``raw_token_ids`` (one per
    vector, documents ``offsets``) -> ``token_stats.npz`` in ``folder`` (``stats`` ``(vocab, 2)`` = df, cf;
    ``n_docs``, ``n_vectors``)."""
    n_vectors = int(offsets[-1])
    if Path(raw_token_ids).stat().st_size != 4 * n_vectors:
        raise RuntimeError(f"{raw_token_ids} holds {Path(raw_token_ids).stat().st_size // 4} token ids for "
                           f"{n_vectors} vectors")
    ids = np.memmap(raw_token_ids, dtype=np.int32, mode="r", shape=(n_vectors,))
    stats = count_tokens(ids, offsets)
    np.savez(Path(folder) / STATS_FILE, stats=stats, n_docs=len(offsets) - 1, n_vectors=n_vectors,
             fingerprint=fingerprint(ids, offsets))
    del ids


def fingerprint(token_ids: np.ndarray, offsets: np.ndarray) -> int:
    """CRC-32 of the token ids and document offsets: tells whether the statistics file still describes the stored
    ids (documents added, deleted or compacted since change it)."""
    crc = zlib.crc32(np.ascontiguousarray(offsets, dtype=np.int64).tobytes())
    for s in range(0, len(token_ids), 2 ** 24):
        crc = zlib.crc32(np.ascontiguousarray(token_ids[s:s + 2 ** 24], dtype=np.int32).tobytes(), crc)
    return crc


class TokenStats:
    """Document and collection frequencies per token id of an index of ``n_docs`` documents (``n_vectors`` vectors).

    ``df(ids)`` / ``cf(ids)``: int64 counts (0 for ids never stored); ``idf(ids)``: ``log((n_docs + 1) / (df + 1))``
    (pyterrier_colbert's IDF), float64, >= 0.
    """

    def __init__(self, stats: np.ndarray, n_docs: int, n_vectors: int):
        self.stats = np.asarray(stats, dtype=np.int64).reshape(-1, 2)
        self.n_docs = int(n_docs)
        self.n_vectors = int(n_vectors)

    def _get(self, ids: np.ndarray, col: int) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        out = np.zeros(ids.shape, dtype=np.int64)
        ok = (ids >= 0) & (ids < len(self.stats))
        out[ok] = self.stats[ids[ok], col]
        return out

    def df(self, ids: np.ndarray) -> np.ndarray:
        """Documents holding each token id: int64, shaped like ``ids``."""
        return self._get(ids, 0)

    def cf(self, ids: np.ndarray) -> np.ndarray:
        """Stored vectors of each token id: int64, shaped like ``ids``."""
        return self._get(ids, 1)

    def idf(self, ids: np.ndarray) -> np.ndarray:
        """``log((n_docs + 1) / (df + 1))`` of each token id: float64, shaped like ``ids``."""
        return np.log((self.n_docs + 1.0) / (self.df(ids) + 1.0))

    def __repr__(self) -> str:
        return f"TokenStats({len(self.stats)} token ids, {self.n_docs} docs, {self.n_vectors} vectors)"

    @classmethod
    def combine(cls, parts: "list[TokenStats]") -> "TokenStats":
        """The statistics of the union of disjoint document sets (the shards of a sharded index): frequencies,
        documents and vectors added up.

        Args:
            parts: the statistics of each set.

        Returns:
            TokenStats: their sum.
        """
        width = max((len(p.stats) for p in parts), default=0)
        stats = np.zeros((width, 2), dtype=np.int64)
        for p in parts:
            stats[:len(p.stats)] += p.stats
        return cls(stats, sum(p.n_docs for p in parts), sum(p.n_vectors for p in parts))


_CACHE: "weakref.WeakKeyDictionary[Any, TokenStats]" = weakref.WeakKeyDictionary()


def _read_stats_file(reader: Any) -> Optional[np.ndarray]:
    """``stats`` of the index's :data:`STATS_FILE` when it counted exactly the stored token ids, else None. A file
    that cannot be read (search never reads it, so it is checked here, when used) raises
    :class:`~.integrity.IndexCorruptError` naming it, whether or not its CRC-32 still matches the record."""
    from .integrity import corrupt, crc32_range
    path = Path(reader.path)
    try:
        with np.load(path / STATS_FILE) as f:
            if int(f["n_docs"]) == reader.n_docs and int(f["n_vectors"]) == reader.n_vectors and \
                    "fingerprint" in f.files and int(f["fingerprint"]) == fingerprint(reader.token_ids, reader.offsets):
                return np.asarray(f["stats"])
        return None
    except (ValueError, KeyError, OSError, EOFError, zipfile.BadZipFile) as e:
        problem = f"cannot be read ({type(e).__name__}: {e})"
        rec = getattr(reader, "meta", {}).get("files", {}).get(STATS_FILE)
        if rec is not None:
            start, failed = 0, False
            for end, crc in rec["crc32"]:
                failed |= crc32_range(path / STATS_FILE, start, end) != crc
                start = end
            problem += ": it fails its checksum" if failed else ", though its checksum matches"
        raise corrupt(path, STATS_FILE, problem) from None


def load_token_stats(reader: Any, who: str = "this") -> TokenStats:
    """The :class:`TokenStats` of an open index (an :class:`~.layout.IndexReader`: one committed state), cached per
    reader. The file written at indexing is used while the index is as built; after documents were added or
    deleted (or for an index built before the file existed) they are counted from the stored token ids of the live
    documents. Raises ``ValueError`` naming the fix when the index stores no token ids."""
    if reader in _CACHE:
        return _CACHE[reader]
    path = Path(reader.path)
    if reader.token_ids is None:
        raise ValueError(f"{who} needs token statistics, but the index {str(path)!r} stores no token ids; re-index "
                         f"with index.indexer(model, store_token_ids=True)")
    deleted = getattr(reader, "deleted", None)
    n_live = reader.n_docs - (int(deleted.sum()) if deleted is not None else 0)
    stats = None
    if (path / STATS_FILE).exists() and deleted is None:
        stats = _read_stats_file(reader)
    if stats is None:
        logger.info("%s: counting token statistics from the stored token ids (index changed since it was built, "
                    "or built without %s)", path, STATS_FILE)
        stats = count_tokens(reader.token_ids, reader.offsets, deleted)
    n_vectors = int(stats[:, 1].sum())
    _CACHE[reader] = TokenStats(stats, n_live, n_vectors)
    return _CACHE[reader]
