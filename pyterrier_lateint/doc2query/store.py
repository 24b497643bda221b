"""On-disk stores of generated queries: the cache of :class:`~pyterrier_lateint.doc2query.Doc2Query` and the home of
precomputed (published) expansions.

A store is a folder::

    pt_meta.json     {"type": "doc2query_store", "format": 1, "settings": {...}}  (the generator settings, or None)
    queries.jsonl    one line per document: {"docno": "d1", "querygen": ["query one", "query two", ...]}

Lines are only ever appended, a block at a time with one ``write`` followed by ``fsync``, under an exclusive lock on
the file. A write cut short (a crash, a full disk) leaves at most one incomplete last line; opening the store drops
it (with a warning), so every line read is a complete record and an interrupted expansion resumes from the last
complete block without regenerating anything before it.
"""
from __future__ import annotations

import gzip
import io
import json
import logging
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence, Union

import pandas as pd
import pyterrier as pt

from ..base import ConfigEquality, text_column

logger = logging.getLogger(__name__)

STORE_TYPE = "doc2query_store"
STORE_FORMAT = 1
META_FILE = "pt_meta.json"
QUERIES_FILE = "queries.jsonl"
ID_FIELDS = ("docno", "id", "doc_id", "docid", "pid")  # JSONL field names of a document id, in order of preference
QUERY_FIELDS = ("querygen", "predicted_queries", "queries", "doc2query")  # ... and of its queries


def _lock(f) -> None:
    try:
        import fcntl
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
    except ImportError:  # not POSIX: single-writer use only
        pass


def _clean_queries(value: Any, where: str) -> list[str]:
    """A list of query strings from a list or a newline-separated string; newlines inside a query become spaces."""
    if isinstance(value, str):
        value = value.split("\n")
    if not isinstance(value, (list, tuple)) or not all(isinstance(q, str) for q in value):
        raise ValueError(f"{where}: queries must be a list of strings or one newline-separated string, not "
                         f"{type(value).__name__}")
    return [" ".join(q.split()) for q in value if q.strip()]


class Doc2QueryStore:
    """Generated queries by docno, on disk (see :mod:`pyterrier_lateint.doc2query.store` for the layout).

    The folder is created at first use. Supports ``len``, ``docno in store`` and iteration over
    ``{"docno", "querygen"}`` records.

    Args:
        path: the store folder.
        settings: the generator settings the store belongs to (a JSON-able dict); opening an existing store with
            different settings raises ``ValueError`` naming them, so queries of one generator never mix with
            another's. ``None`` (default) accepts whatever the store holds (e.g. imported expansions).

    Example:
        .. code-block:: python

            from pyterrier_lateint.doc2query import Doc2QueryStore

            store = Doc2QueryStore("msmarco-v2.d2qstore").import_file("d2q.jsonl.gz")
            pipeline = store.generator(append=True) >> pisa_index.indexer()   # stored, not generated, queries
    """

    def __init__(self, path: Union[str, Path], settings: Optional[Mapping[str, Any]] = None):
        self.path = Path(path)
        self.settings = dict(settings) if settings is not None else None
        self._offsets: Optional[dict[str, int]] = None
        self._size = 0  # bytes of complete lines read so far

    def __repr__(self) -> str:
        return f"Doc2QueryStore({str(self.path)!r})"

    # ---------------------------------------------------------------- opening
    @property
    def queries_file(self) -> Path:
        """The ``queries.jsonl`` file of the store."""
        return self.path / QUERIES_FILE

    def exists(self) -> bool:
        """Whether the store has been created (its ``pt_meta.json`` exists).

        Returns:
            bool: True once created.
        """
        return (self.path / META_FILE).exists()

    def meta(self) -> dict:
        """The store's ``pt_meta.json``: type, format and generator settings.

        Returns:
            dict: the metadata.

        Raises:
            ValueError: when the folder is not a doc2query store.
            FileNotFoundError: when the store has not been created.
        """
        with open(self.path / META_FILE, encoding="utf-8") as f:
            meta = json.load(f)
        if meta.get("type") != STORE_TYPE:
            raise ValueError(f"{self.path} is not a doc2query store (pt_meta.json type is {meta.get('type')!r})")
        return meta

    def _create(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        tmp = self.path / (META_FILE + ".tmp")
        tmp.write_text(json.dumps({"type": STORE_TYPE, "format": STORE_FORMAT, "settings": self.settings},
                                  indent=1, sort_keys=True), encoding="utf-8")
        self.queries_file.touch()
        os.replace(tmp, self.path / META_FILE)

    def _check_settings(self) -> None:
        stored = self.meta().get("settings")
        if self.settings is None or stored is None or stored == self.settings:
            return
        keys = sorted(set(stored) | set(self.settings))
        diff = [f"{k}: store has {stored.get(k)!r}, generator has {self.settings.get(k)!r}" for k in keys
                if stored.get(k) != self.settings.get(k)]
        raise ValueError(f"{self.path} holds queries of a generator with other settings ({'; '.join(diff)}); use "
                         f"another folder for this generator, or the generator's own cache folder "
                         f"(Doc2Query(cache=ROOT) keeps one subfolder per settings)")

    def _index(self) -> dict[str, int]:
        """docno -> byte offset of its line; reads lines appended since the last call (and repairs a torn tail)."""
        if self._offsets is None:
            if not self.exists():
                self._create()
            self._check_settings()
            self._offsets, self._size = {}, 0
        with open(self.queries_file, "rb") as f:
            f.seek(self._size)
            data = f.read()
        if not data:
            return self._offsets
        end = data.rfind(b"\n") + 1
        if end < len(data):
            self._repair(self._size + end, len(data) - end)
            data = data[:end]
        pos = self._size
        for n, line in enumerate(io.BytesIO(data), start=1):
            try:
                docno = json.loads(line)["docno"]
            except (ValueError, KeyError) as ex:
                raise ValueError(f"{self.queries_file}: byte {pos}: not a store record ({ex}); the file was edited or "
                                 f"damaged: delete it (and pt_meta.json) to start the store afresh") from None
            self._offsets[docno] = pos
            pos += len(line)
        self._size = pos
        return self._offsets

    def _repair(self, keep: int, dropped: int) -> None:
        logger.warning("%s ends with an incomplete record (%d bytes, an interrupted write): dropped; its documents "
                       "will be expanded again", self.queries_file, dropped)
        with open(self.queries_file, "r+b") as f:
            _lock(f)
            f.truncate(keep)

    # ---------------------------------------------------------------- reading
    def __len__(self) -> int:
        return len(self._index())

    def __contains__(self, docno: str) -> bool:
        return docno in self._index()

    def docnos(self) -> list[str]:
        """The docnos the store holds, in the order they were stored.

        Returns:
            list: the docnos.
        """
        return list(self._index())

    def get(self, docnos: Iterable[str]) -> dict[str, list[str]]:
        """Queries of those ``docnos`` that the store holds (others are absent from the result).

        Args:
            docnos: the documents wanted.

        Returns:
            dict: docno -> its queries.
        """
        index = self._index()
        wanted = sorted({index[d]: d for d in docnos if d in index}.items())
        out: dict[str, list[str]] = {}
        with open(self.queries_file, "rb") as f:
            for offset, docno in wanted:
                f.seek(offset)
                out[docno] = json.loads(f.readline())["querygen"]
        return out

    def __iter__(self) -> Iterator[dict]:
        """``{"docno", "querygen": [str]}`` records in the order they were stored."""
        self._index()
        with open(self.queries_file, "rb") as f:
            for line in f:
                if not line.endswith(b"\n"):
                    break
                yield json.loads(line)

    # ---------------------------------------------------------------- writing
    def add(self, queries: Mapping[str, Sequence[str]]) -> None:
        """Append ``{docno: [query, ...]}`` as one block (one write, fsync'd). Docnos already stored are skipped.

        Args:
            queries: docno -> its queries.
        """
        index = self._index()
        lines = [json.dumps({"docno": d, "querygen": list(qs)}, ensure_ascii=False) + "\n"
                 for d, qs in queries.items() if d not in index]
        if not lines:
            return
        with open(self.queries_file, "ab") as f:
            _lock(f)
            f.write("".join(lines).encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
        self._index()

    def import_file(self, path: Union[str, Path], format: str = "auto", block_size: int = 10_000) -> "Doc2QueryStore":
        """Append precomputed expansions from ``path`` (plain or ``.gz``):

        - ``jsonl``: one document a line, its id in ``docno``/``id``/``doc_id``/``docid``/``pid`` and its queries
          (a list, or one newline-separated string) in ``querygen``/``predicted_queries``/``queries``/``doc2query``
          (as published for MS MARCO v2 by docTTTTTquery, ``{"id": ..., "predicted_queries": [...]}``);
        - ``tsv``: ``docno \\t query`` lines, a document's lines consecutive.

        Docnos already in the store are skipped, so an interrupted import can simply be run again.

        Args:
            path: the expansion file.
            format: ``"jsonl"``, ``"tsv"`` or ``"auto"`` (default: by the file name).
            block_size: documents appended per block (default 10,000).

        Returns:
            Doc2QueryStore: ``self``.

        Raises:
            FileNotFoundError: when there is no file at ``path``.
            ValueError: on an unknown format or a malformed line (naming it).
        """
        records = read_expansions(path, format)
        block: dict[str, list[str]] = {}
        for docno, queries in records:
            block.setdefault(docno, []).extend(queries)
            if len(block) >= block_size:
                self.add(block)
                block = {}
        self.add(block)
        return self

    def import_aligned(self, query_files: Sequence[Union[str, Path]], docnos: Iterable[str],
                       block_size: int = 10_000) -> "Doc2QueryStore":
        """Append expansions published as line-aligned files (docTTTTTquery's MS MARCO v1
        ``predicted_queries_topk_sample*.txt*``): line i of every file is one query of the i-th of ``docnos``.

        Args:
            query_files: the files (plain or ``.gz``), one query per document each.
            docnos: the documents, in the files' line order.
            block_size: documents appended per block (default 10,000).

        Returns:
            Doc2QueryStore: ``self``.

        Raises:
            ValueError: when a file ends before the docnos do.
        """
        handles = [_open_text(p) for p in query_files]
        try:
            block: dict[str, list[str]] = {}
            for i, docno in enumerate(docnos):
                lines = [h.readline() for h in handles]
                if any(line == "" for line in lines):
                    short = [str(p) for p, line in zip(query_files, lines) if line == ""]
                    raise ValueError(f"{', '.join(short)} ended at line {i}, before the docnos did: the query files and "
                                     f"the docnos must be aligned line by line")
                block[docno] = _clean_queries([line.rstrip("\n") for line in lines], f"line {i + 1}")
                if len(block) >= block_size:
                    self.add(block)
                    block = {}
            self.add(block)
        finally:
            for h in handles:
                h.close()
        return self

    # ---------------------------------------------------------------- as a transformer
    def generator(self, append: bool = False, limit_k: Optional[int] = None,
                  on_missing: str = "error") -> "StoredQueries":
        """A transformer that adds each document's stored queries (see :class:`StoredQueries`).

        Args:
            append: append the queries to ``text`` too (default False, as :class:`Doc2Query`).
            limit_k: at most this many queries per document; default all.
            on_missing: ``"error"`` (default) or ``"keep"`` for documents the store lacks.

        Returns:
            StoredQueries: the transformer.
        """
        return StoredQueries(self, append=append, limit_k=limit_k, on_missing=on_missing)


def _open_text(path: Union[str, Path]):
    path = Path(path)
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def read_expansions(path: Union[str, Path], format: str = "auto") -> Iterator[tuple[str, list[str]]]:
    """(docno, queries) pairs of a precomputed expansion file (see :meth:`Doc2QueryStore.import_file`).

    Args:
        path: a JSONL or TSV file, plain or ``.gz``.
        format: ``"jsonl"``, ``"tsv"`` or ``"auto"`` (default: ``.jsonl``/``.json`` or ``.tsv``/``.txt`` names).

    Yields:
        tuple: ``(docno, [query, ...])``, one per line (a TSV document's lines yield one pair each).

    Raises:
        FileNotFoundError: when there is no file at ``path``.
        ValueError: on an unknown format or a malformed line (naming it).

    Example:
        .. code-block:: python

            from pyterrier_lateint.doc2query import read_expansions

            for docno, queries in read_expansions("d2q.jsonl.gz"):
                ...
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no expansion file at {path}")
    if format == "auto":
        name = path.name[:-3] if path.name.endswith(".gz") else path.name
        format = "jsonl" if name.endswith((".jsonl", ".json")) else "tsv" if name.endswith((".tsv", ".txt")) else ""
        if not format:
            raise ValueError(f"{path}: cannot tell the format from the name; pass format='jsonl' or format='tsv'")
    if format not in ("jsonl", "tsv"):
        raise ValueError(f"unknown expansion format {format!r}: use 'jsonl' or 'tsv'")
    with _open_text(path) as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{n}"
            if format == "tsv":
                parts = line.rstrip("\n").split("\t")
                if len(parts) != 2:
                    raise ValueError(f"{where}: expected 'docno<TAB>query', found {len(parts)} fields")
                yield parts[0], _clean_queries([parts[1]], where)
                continue
            try:
                record = json.loads(line)
            except ValueError as ex:
                raise ValueError(f"{where}: not JSON ({ex})") from None
            id_field = next((k for k in ID_FIELDS if k in record), None)
            query_field = next((k for k in QUERY_FIELDS if k in record), None)
            if id_field is None or query_field is None:
                raise ValueError(f"{where}: needs a document id ({'/'.join(ID_FIELDS)}) and queries "
                                 f"({'/'.join(QUERY_FIELDS)}); found fields {sorted(record)}")
            yield str(record[id_field]), _clean_queries(record[query_field], where)


def load_expansions(path: Union[str, Path], format: str = "auto", store: Optional[Union[str, Path]] = None,
                    append: bool = False, limit_k: Optional[int] = None,
                    on_missing: str = "error") -> "StoredQueries":
    """A transformer adding precomputed queries by docno, instead of generating them.

    Args:
        path: a store folder, or an expansion file (JSONL / TSV, see :meth:`Doc2QueryStore.import_file`) that is
            first imported into ``store``.
        format: the file's format, ``"jsonl"``, ``"tsv"`` or ``"auto"`` (default).
        store: where a file is imported; default a ``.d2qstore`` folder beside it (importing again after an
            interruption continues).
        append: append the queries to ``text`` too (default False, as :class:`Doc2Query`).
        limit_k: at most this many queries per document; default all.
        on_missing: ``"error"`` (default) or ``"keep"`` for documents the store lacks.

    Returns:
        StoredQueries: the transformer.

    Raises:
        FileNotFoundError: when ``path`` is a folder but not a store, or does not exist.
        ValueError: on an unknown format or a malformed line.

    Example:
        .. code-block:: python

            from pyterrier_lateint.doc2query import load_expansions

            expand = load_expansions("msmarco_v2_d2q.jsonl.gz", limit_k=20, append=True)
            (expand >> pisa_index.indexer()).index(dataset.get_corpus_iter())
    """
    path = Path(path)
    if path.is_dir():
        target = Doc2QueryStore(path)
        if not target.exists():
            raise FileNotFoundError(f"{path} is a folder but not a doc2query store (no {META_FILE})")
    else:
        target = Doc2QueryStore(store if store is not None else path.with_name(path.name + ".d2qstore"))
        target.import_file(path, format)
    return target.generator(append=append, limit_k=limit_k, on_missing=on_missing)


def join_queries(queries: Sequence[str]) -> str:
    """The ``querygen`` column's form: one query a line."""
    return "\n".join(queries)


def expanded_text(text: str, querygen: str) -> str:
    """``text`` followed by the queries, one a line; unchanged when there are none."""
    return f"{text}\n{querygen}" if querygen else text


class StoredQueries(ConfigEquality, pt.Transformer):
    """Documents ``(docno, text)`` -> their stored queries in ``querygen`` (one a line, at most ``limit_k``), and with
    ``append`` also appended to ``text`` (as :class:`~pyterrier_lateint.doc2query.Doc2Query` does).

    Usually made by :meth:`Doc2QueryStore.generator` or :func:`load_expansions`.

    Args:
        store: the store holding the queries.
        append: append the queries to ``text`` too (default True; ``text`` is then required).
        limit_k: at most this many queries per document; default all.
        on_missing: ``"error"`` (default: a ``KeyError`` naming the docnos the store lacks), or ``"keep"`` (those
            documents get no queries).

    Raises:
        ValueError: on a bad ``on_missing``.

    Example:
        .. code-block:: python

            expand = Doc2QueryStore("d2q.d2qstore").generator(limit_k=10)   # a StoredQueries
            expanded = expand(pd.DataFrame({"docno": ["d1"], "text": ["..."]}))
    """

    def __init__(self, store: Doc2QueryStore, append: bool = False, limit_k: Optional[int] = None,
                 on_missing: str = "error"):
        if on_missing not in ("error", "keep"):
            raise ValueError(f"on_missing must be 'error' or 'keep', not {on_missing!r}")
        self.store = store
        self.append = append
        self.limit_k = limit_k
        self.on_missing = on_missing

    def _config(self) -> tuple:
        return (str(self.store.path), self.append, self.limit_k, self.on_missing)

    def __repr__(self) -> str:
        return f"StoredQueries({str(self.store.path)!r})"

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        """Add each document's stored queries.

        Args:
            inp: documents with ``docno`` (and ``text`` with ``append``).

        Returns:
            pandas.DataFrame: ``inp`` plus ``querygen`` (one query a line); with ``append`` ``text`` has them
            appended after a newline.

        Raises:
            KeyError: for docnos the store lacks (with ``on_missing="error"``).
        """
        pt.validate.columns(inp, includes=["docno"] + (["text"] if self.append else []))
        docnos = inp["docno"].astype(str).tolist()
        found = self.store.get(docnos)
        missing = [d for d in dict.fromkeys(docnos) if d not in found]
        if missing and self.on_missing == "error":
            raise KeyError(f"{len(missing)} docnos have no stored queries in {self.store.path} (e.g. "
                           f"{missing[:5]}); expand them with Doc2Query, or pass on_missing='keep' to leave them "
                           f"unexpanded")
        querygen = [join_queries(found.get(d, [])[:self.limit_k]) for d in docnos]
        out = inp.assign(querygen=querygen)
        if self.append:
            out["text"] = [expanded_text(t, q) for t, q in zip(text_column(inp, "text", "docno"), querygen)]
        return out
