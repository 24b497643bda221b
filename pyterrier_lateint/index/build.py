"""Streaming construction of a ColBERTIndex, in named phases.

1. :func:`stream_vectors`: stream the documents (encoding ``text`` with the model, or taking ``doc_embs``),
   appending float16 vectors (the spill, ``raw.f16``: ``n_vectors * dim * 2`` bytes) and token ids to files; memory
   stays bounded by one batch (plus the docnos). With ``spill=False`` the vectors are not written: a uniform sample
   of them is kept in memory (:class:`~.sampling.StreamSample`) and phase 3 reads the documents a second time.
2. :func:`train_codec`: k-means on a sample of the vectors, residual buckets fitted on another sample (skipped
   with ``codec_from``: the centroids and buckets of another index).
3. :func:`compress`: compress the vectors chunk by chunk (:func:`spilled_chunks` from the spill, or
   :func:`_reencoded_chunks`), collecting (centroid, document) pairs.
4. :func:`write_ivf`: the inverted file from those pairs.
5. :func:`write_token_ids` (optional) and :func:`_metadata` (with every file's size and checksum).

Everything is written to a temporary folder next to the index (``.NAME.tmp-PID-RANDOM``) that is renamed into place
only when complete (``lateint.json``, the completion marker, last), so a crash never leaves a half index at the index
path. A temporary folder left by a killed build (its process gone) is removed by the next writer of that path, and
a writer killed between the two renames that replace an existing index is rolled back (:func:`recover`). Phases 1,
3 and 4 also build the segments that ``index.add`` appends (:mod:`.mutation`).

The index path (:func:`check_target`) may be missing, an empty folder, or an index (replaced only with
``overwrite=True``); anything else (a file, a folder of other files) is refused and never renamed or deleted.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from contextlib import nullcontext
from typing import Any, Callable, Iterable, Iterator, Optional, Union

import numpy as np
import pandas as pd
import pyterrier as pt

from ..base import invalid_unicode
from ..models import LateInteractionModel, check_model
from . import coarse
from .codec import DEFAULT_KIND, ResidualCodec, check_codec_settings
from .commit import commit_meta, writer_lock
from .docstore import write_docnos
from .handle import IndexHandle
from .integrity import fsync_file, record
from .kmeans import default_n_centroids
from .chunks import doc_chunks
from .folders import check_target, recover, replacing
from .layout import ARTIFACT_FORMAT, ARTIFACT_TYPE, FORMAT_VERSION, META_FILE, PACKAGE_HINT
from .pruning import TokenPooler, pool_batch
from .sampling import StreamSample
from .segment_files import SegmentWriter, write_ivf, write_token_ids
from .token_stats import write_token_stats
from .vectorfile import VectorFile


logger = logging.getLogger(__name__)

COMPRESS_CHUNK_VECTORS = 2 ** 17  # vectors compressed per step of the compression phase
KMEANS_SAMPLE_PER_CENTROID = 32  # k-means sample: this many vectors per centroid ...
KMEANS_MIN_SAMPLE = 2 ** 15  # ... but at least this many (all of them when there are fewer)
BUCKET_SAMPLE = 2 ** 16  # vectors sampled to fit the residual buckets


class ColBERTIndexer(pt.Indexer):
    """Builds a :class:`ColBERTIndex` from an iterable of documents.

    Each document is a dict (or frame row) with ``docno`` and either ``text`` (encoded with ``model``) or
    ``doc_embs`` (a float ``(n_tokens, dim)`` array, e.g. from ``model.doc_encoder()``), plus optionally
    ``doc_toks`` (int token ids ``(n_tokens,)``). Pass ``model`` in both cases so that its signature is recorded and
    ``index.retriever()`` can refuse a different model. Usually made by :meth:`ColBERTIndex.indexer`, which checks
    the settings and the target path first.

    Args:
        index: the index to write.
        model: encodes ``text`` and records its signature; ``None`` only for input with ``doc_embs``.
        nbits: bits per residual dimension: 1, 2 (default), 4, or 16 (uncompressed float16).
        n_centroids: number of centroids; default
            :func:`~pyterrier_lateint.index.kmeans.default_n_centroids` of the collection's vector count.
        kmeans_iters: k-means iterations (default 8).
        kmeans_sample: vectors k-means is trained on; default 32 per centroid, at least 32,768 (all vectors when
            there are fewer).
        batch_size: documents encoded together (default 64).
        store_token_ids: also store each vector's token id.
        overwrite: replace an existing index at the path.
        seed: seed of the samples and of k-means (default 0).
        verbose: show progress bars (default True).
        codec_from: another index (or its path) whose centroids and residual buckets are reused instead of trained
            (``nbits`` is then that index's).
        codec: the residual quantiser, ``"pq"`` (default) or ``"scalar"``.
        pool_factor: token pooling: each document keeps about ``1 / pool_factor`` of its vectors
            (:class:`~pyterrier_lateint.index.pruning.TokenPooler`); 1 (default) keeps them all.
        assignment: how k-means and the compression assign vectors to centroids: ``"auto"`` (default: two-level
            from 16,384 centroids up, :mod:`~pyterrier_lateint.index.coarse`), ``"exact"`` or ``"coarse"``.
        spill: True (default): write the vectors to a temporary float16 file (``n_vectors * dim * 2`` bytes of
            disk beside the index) and compress from it. False: read the documents twice instead (a uniform sample
            of the vectors kept in memory for the codec, then every document encoded again and compressed), for a
            collection whose vectors do not fit on the disk; the input must then be re-iterable (a list, a frame, or
            a function returning a fresh iterable), and ``text`` is encoded twice.

    Raises:
        ValueError: on an unsupported ``nbits``, ``codec`` or ``assignment``, or ``pool_factor`` below 1.

    Example:
        .. code-block:: python

            from pyterrier_lateint.index import ColBERTIndexer

            indexer = ColBERTIndexer(index, model, nbits=2)   # as index.indexer(model)
            index = indexer.index(dataset.get_corpus_iter())
    """

    def __init__(self, index: IndexHandle, model: Optional[LateInteractionModel] = None, *, nbits: int = 2,
                 n_centroids: Optional[int] = None, kmeans_iters: int = 8, kmeans_sample: Optional[int] = None,
                 batch_size: int = 64, store_token_ids: bool = False, overwrite: bool = False, seed: int = 0,
                 verbose: bool = True, codec_from: Any = None, codec: str = DEFAULT_KIND, pool_factor: float = 1,
                 assignment: str = "auto", spill: bool = True):
        check_codec_settings(nbits, codec)
        self.codec = codec
        self.index_ref = index
        self.model = check_model(model, "ColBERTIndexer")
        self.nbits = nbits
        self.n_centroids = n_centroids
        self.kmeans_iters = kmeans_iters
        self.kmeans_sample = kmeans_sample
        self.batch_size = batch_size
        self.store_token_ids = store_token_ids
        self.overwrite = overwrite
        self.seed = seed
        self.verbose = verbose
        self.codec_from = codec_from
        self.pooler = TokenPooler(pool_factor) if pool_factor != 1 else None  # read by pruning.pool_batch
        self.assignment = coarse.check_assignment(assignment)
        if not isinstance(spill, bool):
            raise TypeError(f"spill must be True or False, not {spill!r}")
        self.spill = spill

    def __repr__(self) -> str:
        return f"ColBERTIndexer({str(self.index_ref.path)!r}, nbits={self.nbits})"

    def index_inputs(self) -> list[list[str]]:
        """The input columns :meth:`index` accepts (PyTerrier's ``Indexer`` API).

        Returns:
            list: ``[["docno", "text"], ["docno", "doc_embs"]]``.
        """
        return [["docno", "text"], ["docno", "doc_embs"]]

    def index(self, inp: Union[Iterable[dict], pd.DataFrame, Callable[[], Iterable[dict]]]) -> IndexHandle:
        """Index ``inp`` (an iterable of dicts, a DataFrame, or a function returning either).

        The index is built in a temporary folder beside the path and moved into place only when complete, under
        the writer lock.

        Args:
            inp: documents with ``docno`` and ``text`` or ``doc_embs`` (optionally ``doc_toks``); with
                ``spill=False``, something that can be read twice: a list, a frame, or a function returning a fresh
                iterable (``lambda: dataset.get_corpus_iter()``).

        Returns:
            ColBERTIndex: the index artifact, built.

        Raises:
            FileExistsError: when the path holds an index (without ``overwrite``) or anything but an empty folder.
            TypeError: with ``spill=False``, for a one-shot iterator (a generator).
            ValueError: when the input is empty or every document is; with ``spill=False``, when the second reading
                differs from the first.
        """
        docs = document_source(inp, self.spill)
        path = Path(self.index_ref.path)
        check_target(path, self.overwrite)  # fail before taking the lock (and before reading any document)
        with writer_lock(path):
            recover(path)
            check_target(path, self.overwrite)
            with replacing(path) as tmp:
                finish_folder(tmp, build_folder(tmp, docs, self))
        self.index_ref.reload()
        return self.index_ref


def document_source(inp: Any, spill: bool = True) -> Callable[[], Iterable[dict]]:
    """The indexer's input as a function returning a fresh iterable of documents: ``inp`` may be an iterable, a
    DataFrame, or such a function. Without ``spill`` the documents are read twice, so a one-shot iterator (a
    generator, ``dataset.get_corpus_iter()``) raises ``TypeError``."""
    if callable(inp) and not isinstance(inp, pd.DataFrame) and not hasattr(inp, "__iter__"):
        def fresh() -> Iterable[dict]:
            out = inp()
            return out.to_dict(orient="records") if isinstance(out, pd.DataFrame) else out
        return fresh
    if isinstance(inp, pd.DataFrame):
        inp = inp.to_dict(orient="records")
    if not spill and iter(inp) is inp:
        raise TypeError(f"indexer(spill=False) reads the documents twice, but the input is a one-shot iterator "
                        f"({type(inp).__name__}); pass a list, a DataFrame, or a function returning a fresh iterator, "
                        f"e.g. indexer.index(lambda: dataset.get_corpus_iter()), or use spill=True (the default; it "
                        f"needs n_vectors * dim * 2 bytes of temporary disk beside the index)")
    return lambda: inp


def finish_folder(tmp: Path, meta: dict[str, Any]) -> None:
    """Record every file of a built folder (size, checksum) in ``meta``, fsync them, write ``pt_meta.json`` and
    then ``lateint.json`` (the completion marker)."""
    with open(tmp / "pt_meta.json", "w") as f:
        json.dump({"type": ARTIFACT_TYPE, "format": ARTIFACT_FORMAT, "package_hint": PACKAGE_HINT}, f)
    files = {}
    for p in sorted(tmp.iterdir()):
        if p.is_file() and p.name != META_FILE:
            fsync_file(p)
            files[p.name] = record(p)
    meta["files"] = files
    commit_meta(tmp, meta)


# Documents given to one encode_docs call by a batch-invariant model (batch_invariant=True, see
# models.runtime.EncodePlan.rows): each width bucket's last batch of a call is filled with filler rows, so larger
# calls waste less (at most rows - 1 filler rows per width bucket per call). Other models get ``batch_size``
# documents per call, as before (their bf16 vectors depend on the call's batches).
ENCODE_GROUP = 512


def _batches(it: Iterable[dict], n: int) -> Iterator[list[dict]]:
    batch: list[dict] = []
    for d in it:
        batch.append(d)
        if len(batch) >= n:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass
class Streamed:
    """What phase 1 wrote: ``raw.f16`` ``(n_vectors, dim)``, optional ``raw.tokids``; the docnos and lengths."""
    n_vectors: int
    dim: int
    doclens: np.ndarray  # int32 (n_docs,)
    encode_s: float
    docnos: list = None  # str (n_docs,)
    pooling: Optional[dict] = None  # the token pooler's figures (pool_factor), when the indexer pools


def document_vectors(batch: list[dict], model: Optional[LateInteractionModel], batch_size: int,
                     token_ids: bool = False) -> tuple[list, Optional[list]]:
    """The token vectors of a batch of documents, ``(n_tokens, dim)`` each: their ``doc_embs``, or their ``text``
    encoded by ``model`` (``batch_size`` at a time); with ``token_ids``, each one's token ids too (``doc_toks``, or
    the model's), else ``None``. Raises ``KeyError`` / ``TypeError`` / ``ValueError`` naming a missing field, a
    missing model or a bad text. Every indexer (single, sharded, an added segment) encodes through it."""
    if "docno" not in batch[0]:
        raise KeyError(f"documents need a 'docno' field; got fields {sorted(batch[0])}")
    if "doc_embs" in batch[0]:
        ids = None
        if token_ids:
            if "doc_toks" not in batch[0]:
                raise KeyError("store_token_ids=True needs a 'doc_toks' field (token ids) next to 'doc_embs'")
            ids = [d["doc_toks"] for d in batch]
        return [d["doc_embs"] for d in batch], ids
    if "text" not in batch[0]:
        raise KeyError(f"documents need 'text' (with a model) or 'doc_embs'; got fields {sorted(batch[0])}")
    if model is None:
        raise ValueError("documents have 'text' but no model was given: use index.indexer(model), "
                         "ColBERTIndex(path, model) / ShardedColBERTIndex(path, model), or "
                         "model.doc_encoder() >> index.indexer(model)")
    for d in batch:
        if not isinstance(d.get("text"), str):
            raise TypeError(f"docno {d.get('docno')!r}: text must be a str, not {type(d.get('text')).__name__} "
                            f"({d.get('text')!r}); fill missing text first (e.g. df.text.fillna('')) or drop the row")
        problem = invalid_unicode(d["text"])
        if problem:
            raise ValueError(f"docno {d.get('docno')!r}: text {problem}")
    texts = [d["text"] for d in batch]
    if token_ids:
        return model.encode_docs(texts, batch_size=batch_size, return_ids=True)
    return model.encode_docs(texts, batch_size=batch_size), None


def _batch_vectors(batch: list[dict], cfg: ColBERTIndexer) -> tuple[list, Optional[list], float]:
    """Vectors (and token ids when stored) of one batch of documents, pooled (``pool_factor``), and the seconds
    spent encoding."""
    t0 = time.perf_counter()
    vecs, ids = document_vectors(batch, cfg.model, cfg.batch_size, cfg.store_token_ids)
    seconds = time.perf_counter() - t0 if "doc_embs" not in batch[0] else 0.0
    return (*pool_batch(cfg, vecs, ids), seconds)


def _encode_group(cfg: ColBERTIndexer) -> int:
    """Documents read (and encoded) together: ``ENCODE_GROUP`` for a batch-invariant model, else ``batch_size``."""
    return max(cfg.batch_size, ENCODE_GROUP) if getattr(cfg.model, "batch_invariant", False) else cfg.batch_size


def _checked_document(d: dict, v: Any, dim: Optional[int]) -> tuple[str, np.ndarray]:
    """One document's docno and its vectors as float16 ``(n_tokens, dim)``, checked: it has a docno, and its vectors
    (``None``: none) are a 2-d array of the collection's dimension ``dim`` (``None``: not known yet) with finite
    values. Raises ``ValueError`` naming the document otherwise."""
    if "docno" not in d or d["docno"] is None or (isinstance(d["docno"], float) and np.isnan(d["docno"])):
        raise ValueError(f"a document has no docno (fields {sorted(d)}); every document needs one")
    v = np.asarray(v) if v is not None else np.zeros((0, dim or 0), dtype=np.float32)
    if v.ndim != 2:
        raise ValueError(f"doc_embs of docno {d['docno']!r} has shape {v.shape}; expected (n_tokens, dim)")
    if dim is not None and v.shape[1] != dim and len(v):
        raise ValueError(f"doc_embs of docno {d['docno']!r} has dim {v.shape[1]}, expected {dim}; encode every "
                         f"document with the same model (the indexing model)")
    if len(v) and not np.isfinite(v).all():
        raise ValueError(f"doc_embs of docno {d['docno']!r} holds NaN or infinite values; check the encoder's output")
    return str(d["docno"]), np.ascontiguousarray(v, dtype=np.float16)


def _checked_token_ids(docno: str, ids: Any, n_vectors: int) -> np.ndarray:
    """A document's token ids as int32 ``(n_vectors,)``; ``ValueError`` when there are not one per vector."""
    ids = np.asarray(ids, dtype=np.int32).reshape(-1)
    if len(ids) != n_vectors:
        raise ValueError(f"docno {docno!r}: {len(ids)} token ids for {n_vectors} vectors")
    return ids


def stream_vectors(tmp: Path, inp: Iterable[dict], cfg: ColBERTIndexer, allow_empty: bool = False,
                    spill: bool = True, sample: Optional[StreamSample] = None) -> Streamed:
    """Phase 1: float16 vectors to ``raw.f16`` (only with ``spill``) and offered to ``sample`` (when given), token
    ids to ``raw.tokids``; docnos kept (checked unique). ``allow_empty``: accept no documents / no vectors (an add
    may bring only empty documents)."""
    dim: Optional[int] = cfg.model.dim if cfg.model is not None else None
    doclens: list[int] = []
    docnos: list[str] = []
    encode_s = 0.0
    with (open(tmp / "raw.f16", "wb") if spill else nullcontext()) as raw_out, \
            open(tmp / "raw.tokids", "wb") as tid_out:
        pbar = pt.tqdm(desc="indexing" if spill else "indexing (pass 1 of 2)", unit="doc", disable=not cfg.verbose)
        for batch in _batches(inp, _encode_group(cfg)):
            vecs, ids_list, seconds = _batch_vectors(batch, cfg)
            encode_s += seconds
            for j, (d, v) in enumerate(zip(batch, vecs)):
                docno, v16 = _checked_document(d, v, dim)
                ids = None if ids_list is None else _checked_token_ids(docno, ids_list[j], len(v16))
                docnos.append(docno)
                dim = v16.shape[1] if dim is None else dim
                if spill:
                    raw_out.write(v16.tobytes())
                if sample is not None:
                    sample.add(v16)
                if ids is not None:
                    tid_out.write(ids.tobytes())
                doclens.append(len(v16))
            pbar.update(len(batch))
        pbar.close()
    if not doclens and not allow_empty:
        raise ValueError("no documents to index: the input is empty; pass at least one document with a docno and "
                         "text (or doc_embs)")
    n_vectors = int(sum(doclens))
    if (n_vectors == 0 or dim is None) and not allow_empty:
        raise ValueError("every document is empty (no token vectors): nothing to index; check the text column")
    return Streamed(n_vectors, int(dim or 0), np.asarray(doclens, dtype=np.int32), encode_s, docnos)


def train_codec(raw: np.ndarray, cfg: Any, n_total: Optional[int] = None,
                 timings: Optional[dict[str, float]] = None) -> tuple[ResidualCodec, int]:
    """Phase 2: centroids by k-means on a sample, the residual quantiser (``cfg.codec``) on another; returns the
    codec and the k-means sample size. ``raw``: every vector of the collection (an array or a :class:`VectorFile`),
    or (``n_total``: how many the collection has) a sample of them, as a sharded build trains once for all its
    shards. ``timings``: receives ``seconds_sample``, ``seconds_kmeans`` and ``seconds_quantiser``."""
    n_vectors = len(raw)
    rng = np.random.default_rng(cfg.seed)
    k = min(cfg.n_centroids or default_n_centroids(n_total or n_vectors), n_vectors)
    n_sample = min(n_vectors, cfg.kmeans_sample or default_kmeans_sample(k))
    t0 = time.perf_counter()
    take = np.sort(rng.choice(n_vectors, n_sample, replace=False))
    # every row of an in-memory sample: used as it is (the sorted draw is 0..n-1), not copied
    sample = raw if isinstance(raw, np.ndarray) and n_sample == n_vectors else np.asarray(raw[take])
    if sample.dtype != np.float16:  # a build's float16 spill stays float16: half the memory (1.6 GB at 1M docs)
        sample = sample.astype(np.float32, copy=False)
    bucket_idx = np.sort(rng.choice(n_vectors, min(n_vectors, BUCKET_SAMPLE), replace=False))
    bucket_sample = np.asarray(raw[bucket_idx], dtype=np.float32)
    t1 = time.perf_counter()
    logger.info("k-means: %d centroids from %d of %d vectors", k, n_sample, n_vectors)
    centroids = coarse.train_centroids(sample, k, iters=cfg.kmeans_iters, seed=cfg.seed, assignment=cfg.assignment)
    del sample
    t2 = time.perf_counter()
    codec = ResidualCodec.train(centroids, bucket_sample, cfg.nbits, kind=cfg.codec, seed=cfg.seed)
    if timings is not None:
        timings.update(seconds_sample=t1 - t0, seconds_kmeans=t2 - t1, seconds_quantiser=time.perf_counter() - t2)
    logger.info("codec: %s, %d bytes per vector", codec.describe(), codec.bytes_per_vector())
    return codec, n_sample


def default_kmeans_sample(k: int) -> int:
    """Vectors k-means is trained on for ``k`` centroids: ``KMEANS_SAMPLE_PER_CENTROID`` per centroid, at least
    ``KMEANS_MIN_SAMPLE`` (all vectors when the collection has fewer)."""
    return max(KMEANS_SAMPLE_PER_CENTROID * k, KMEANS_MIN_SAMPLE)


def chunk_bounds(offsets: np.ndarray) -> list[tuple[int, int]]:
    """Documents ``[d0, d1)`` of each compression chunk (:func:`~.chunks.doc_chunks` of at most
    ``COMPRESS_CHUNK_VECTORS`` vectors). ``offsets``: int64 ``(n_docs + 1,)`` vector offsets."""
    return list(doc_chunks(offsets, COMPRESS_CHUNK_VECTORS))


Chunks = Iterator[tuple[int, int, np.ndarray]]  # (d0, d1, float32 vectors of documents d0..d1-1)


def spilled_chunks(raw: VectorFile, offsets: np.ndarray) -> Chunks:
    """The compression chunks read from the spill file."""
    for d0, d1 in chunk_bounds(offsets):
        yield d0, d1, np.asarray(raw[int(offsets[d0]):int(offsets[d1])], dtype=np.float32)


def _reencoded_chunks(docs: Iterable[dict], cfg: ColBERTIndexer, streamed: Streamed, offsets: np.ndarray,
                      spent: dict[str, float]) -> Chunks:
    """The compression chunks of a build without spill: the documents read (and encoded) a second time, their
    vectors rounded to float16 as the spill stores them, in the chunks :func:`spilled_chunks` would give. Raises
    ``ValueError`` when this reading differs from the first (other docnos, lengths or order). ``spent`` receives
    ``seconds_encoding``."""
    bounds = iter(chunk_bounds(offsets))
    d0, d1 = next(bounds, (0, 0))
    pending: list[np.ndarray] = []
    i, n_docs = 0, len(streamed.doclens)
    pbar = pt.tqdm(total=n_docs, desc="indexing (pass 2 of 2)", unit="doc", disable=not cfg.verbose)
    for batch in _batches(docs, _encode_group(cfg)):
        vecs, _, seconds = _batch_vectors(batch, cfg)
        spent["seconds_encoding"] = spent.get("seconds_encoding", 0.0) + seconds
        for d, v in zip(batch, vecs):
            docno, v16 = _checked_document(d, v, streamed.dim)
            if i >= n_docs or docno != streamed.docnos[i] or len(v16) != streamed.doclens[i]:
                first = (f"docno {streamed.docnos[i]!r} with {streamed.doclens[i]} vectors" if i < n_docs
                         else "no document")
                raise ValueError(f"indexer(spill=False): the second reading of the documents differs from the "
                                 f"first at document {i}: docno {docno!r} with {len(v16)} vectors, where the first "
                                 f"had {first}; give an input that yields the same documents in the same order each "
                                 f"time (and a deterministic encoder), or use spill=True")
            pending.append(v16)
            i += 1
            if i == d1:
                yield d0, d1, np.concatenate(pending).astype(np.float32)
                pending = []
                d0, d1 = next(bounds, (d1, d1))
        pbar.update(len(batch))
    pbar.close()
    if i != n_docs:
        raise ValueError(f"indexer(spill=False): the second reading of the documents gave {i} documents, the first "
                         f"{n_docs}; give an input that yields the same documents each time, or use spill=True")


def compress(tmp: Path, chunks: Chunks, doclens: np.ndarray, codec: ResidualCodec, verbose: bool,
              timings: Optional[dict[str, float]] = None, assignment: str = "auto") -> tuple[np.ndarray, int]:
    """Phase 3: raw ``codes.bin`` and ``residuals.bin`` from ``chunks`` (whole documents, in order; memory: one
    chunk); the sorted unique (centroid, document) pairs of each chunk go to ``pairs.i32``. Returns the postings per
    centroid and their total. ``timings``: receives ``seconds_read`` (waiting for the chunks: reading the spill, or
    reading and encoding the documents again), ``seconds_assign`` (nearest centroid) and ``seconds_quantise``
    (residuals, scale bytes, postings)."""
    n_vectors = int(doclens.sum())
    spent = {"seconds_read": 0.0, "seconds_assign": 0.0, "seconds_quantise": 0.0}
    t = time.perf_counter()
    nearest_of = coarse.assigner(codec.centroids, assignment)  # exact, or two-level (many centroids)
    spent["seconds_assign"] += time.perf_counter() - t
    pbar = pt.tqdm(total=n_vectors, desc="compressing", unit="vec", disable=not verbose)
    with SegmentWriter(tmp, len(doclens), codec.n_centroids) as out:
        while True:
            t0 = time.perf_counter()
            chunk = next(chunks, None)
            if chunk is None:
                break
            d0, d1, vectors = chunk
            if len(vectors):
                t1 = time.perf_counter()
                nearest = nearest_of(vectors)
                t2 = time.perf_counter()
                codes, packed = codec.compress(vectors, codes=nearest)
                out.write(d0, doclens[d0:d1], codes, packed)
                spent["seconds_read"] += t1 - t0
                spent["seconds_assign"] += t2 - t1
                spent["seconds_quantise"] += time.perf_counter() - t2
                pbar.update(len(vectors))
    pbar.close()
    if timings is not None:
        timings.update(spent)
    return out.ivf_counts, out.n_pairs


def npy_data_offset(path: Path) -> int:
    """Bytes of the header of the ``.npy`` file ``path`` (where its data starts)."""
    arr = np.load(path, mmap_mode="r")
    return int(arr.offset) if isinstance(arr, np.memmap) else os.path.getsize(path)  # empty arrays: no memmap


def sample_capacity(cfg: Any) -> int:
    """Vectors a build without spill keeps from its first pass: enough for the k-means and bucket samples of any
    collection size (``kmeans_sample``, or the default sample of ``n_centroids`` or of the most centroids
    :func:`default_n_centroids` gives)."""
    return _codec_sample_size(cfg, cfg.n_centroids or default_n_centroids(2 ** 62))


def _codec_sample_size(cfg: Any, k: int) -> int:
    """Vectors the codec of ``k`` centroids is trained from: the k-means sample (``kmeans_sample``, or the default
    for ``k``), at least the residual buckets' sample."""
    return max(cfg.kmeans_sample or default_kmeans_sample(k), BUCKET_SAMPLE)


def build_folder(tmp: Path, docs: Callable[[], Iterable[dict]], cfg: ColBERTIndexer) -> dict[str, Any]:
    """Run the phases in ``tmp`` over the documents ``docs()`` (called twice without spill); returns the index
    metadata (``lateint.json``)."""
    t0 = time.perf_counter()
    sample = None if cfg.spill or cfg.codec_from is not None else StreamSample(sample_capacity(cfg), cfg.seed)
    streamed = stream_vectors(tmp, docs(), cfg, spill=cfg.spill, sample=sample)
    if getattr(cfg, "pooler", None) is not None:
        streamed.pooling = cfg.pooler.take_stats()  # the first pass's figures (a second pass pools again)
    t_pass1 = time.perf_counter()
    doclens = streamed.doclens
    offsets = np.zeros(len(doclens) + 1, dtype=np.int64)
    np.cumsum(doclens, out=offsets[1:])
    write_docnos(tmp, "docnos.0", streamed.docnos)  # refuses duplicates
    doclens.tofile(tmp / "doclens.i32")
    offsets.tofile(tmp / "offsets.i64")
    phases: dict[str, float] = {}
    raw = VectorFile(tmp / "raw.f16", streamed.n_vectors, streamed.dim) if cfg.spill else None
    if cfg.codec_from is not None:
        codec, n_sample = codec_of(cfg.codec_from, streamed.dim), 0
    elif cfg.spill:
        codec, n_sample = train_codec(raw, cfg, timings=phases)
    else:
        k = min(cfg.n_centroids or default_n_centroids(streamed.n_vectors), streamed.n_vectors)
        rows, _ = sample.result(limit=_codec_sample_size(cfg, k))
        codec, n_sample = train_codec(rows, cfg, n_total=streamed.n_vectors, timings=phases)
        del rows, sample
    codec.save(tmp)
    t_train = time.perf_counter()
    if cfg.spill:
        chunks = spilled_chunks(raw, offsets)
    else:
        chunks = _reencoded_chunks(docs(), cfg, streamed, offsets, phases)
    ivf_counts, n_pairs = compress(tmp, chunks, doclens, codec, cfg.verbose, timings=phases,
                                    assignment=cfg.assignment)
    if not cfg.spill and getattr(cfg, "pooler", None) is not None:
        cfg.pooler.take_stats()  # the second pass's counts: already recorded by the first
    t_ivf = time.perf_counter()
    write_ivf(tmp, ivf_counts, n_pairs, "ivf.0")
    phases["seconds_ivf"] = time.perf_counter() - t_ivf
    if cfg.store_token_ids:
        write_token_stats(tmp, tmp / "raw.tokids", offsets)  # df / cf per token id (PRF, query pruning)
        write_token_ids(tmp, streamed.n_vectors)
    del raw
    if cfg.spill:
        os.remove(tmp / "raw.f16")
    os.remove(tmp / "raw.tokids")
    t_end = time.perf_counter()
    encode_s = streamed.encode_s + phases.pop("seconds_encoding", 0.0)
    logger.info("indexed %d docs, %d vectors in %.1fs (%.1fs encoding)", len(doclens), streamed.n_vectors,
                t_end - t0, encode_s)
    timings = {"seconds_total": round(t_end - t0, 3), "seconds_encoding": round(encode_s, 3),
               "seconds_pass1": round(t_pass1 - t0, 3), "seconds_train": round(t_train - t_pass1, 3),
               "seconds_compress": round(t_end - t_train, 3),
               **{name: round(v, 3) for name, v in phases.items()},
               "vectors_per_second_excl_encoding":
                   round(streamed.n_vectors / max(t_end - t0 - encode_s, 1e-9), 1)}
    meta = _metadata(cfg, streamed, codec, n_pairs, n_sample, timings)
    meta["arrays"] = array_specs(codec, bool(cfg.store_token_ids), tmp)
    return meta


def _metadata(cfg: ColBERTIndexer, streamed: Streamed, codec: ResidualCodec, n_pairs: int, n_sample: int,
              timings: dict[str, float]) -> dict[str, Any]:
    sig = cfg.model.signature() if cfg.model is not None else None
    if sig is None:
        logger.warning("no model given to the indexer: the index records no model signature, so retriever() "
                       "cannot check that queries are encoded by the same model")
    n_docs = len(streamed.doclens)
    return {
        "format_version": FORMAT_VERSION,
        "complete": True,
        "model": sig,
        "dim": streamed.dim,
        "nbits": codec.nbits,
        "codec": codec.describe(),  # the residual quantiser (codec.json holds its parameters)
        "n_docs": n_docs,
        "n_vectors": streamed.n_vectors,
        "n_empty_docs": int((streamed.doclens == 0).sum()),
        "n_centroids": int(codec.n_centroids),
        "n_ivf_postings": int(n_pairs),
        "has_token_ids": bool(cfg.store_token_ids),
        "has_token_stats": bool(cfg.store_token_ids),
        "pooling": streamed.pooling,
        "build": {"kmeans_iters": cfg.kmeans_iters, "kmeans_sample": int(n_sample), "seed": cfg.seed,
                  "spill": bool(cfg.spill),
                  "assignment": coarse.describe(int(codec.n_centroids), cfg.assignment), **timings},
        "generation": 0,
        "segments": [{"start": 0, "end": n_docs, "docnos": "docnos.0", "ivf": "ivf.0"}],
        "tombstones": None,
        "n_deleted": 0,
    }


def array_specs(codec: ResidualCodec, token_ids: bool, folder: Path) -> dict[str, dict[str, Any]]:
    """``meta["arrays"]``: file, dtype, row shape and data offset of each appendable array."""
    cols, rdt = codec.residual_shape
    specs = {"offsets": ("offsets.i64", np.int64, []), "doclens": ("doclens.i32", np.int32, []),
             "codes": ("codes.bin", codec.code_dtype, []), "residuals": ("residuals.bin", rdt, [int(cols)])}
    if token_ids:
        specs["token_ids"] = ("token_ids.npy", np.int32, [])
    return {k: {"file": f, "dtype": np.dtype(dt).name, "row": row,
                "offset": npy_data_offset(folder / f) if f.endswith(".npy") else 0}
            for k, (f, dt, row) in specs.items()}


def codec_of(source: Any, dim: Optional[int] = None) -> ResidualCodec:
    """The codec of another index (a ``ColBERTIndex``, an ``IndexReader``, a path, or anything with a ``codec()``
    method such as a sharded index)."""
    from .layout import IndexReader
    if isinstance(source, ResidualCodec):
        codec = source
    elif callable(getattr(source, "codec", None)):
        codec = source.codec()
    elif isinstance(source, IndexReader):
        codec = source.codec
    else:
        codec = IndexReader(Path(getattr(source, "path", source))).codec
    if dim is not None and codec.dim != dim:
        raise ValueError(f"codec_from has {codec.dim}-d centroids but the documents have {dim}-d vectors; use an "
                         f"index built with the same model")
    return codec
