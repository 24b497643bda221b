"""Streaming construction of a ColBERTIndex.

Pass 1 streams the documents (encoding ``text`` with the model, or taking ``doc_toks``), appending float16 vectors,
document lengths, token ids and docnos to files in a temporary directory next to the index; memory stays bounded by
one batch. Then k-means runs on a sample, the residual buckets are fitted on another sample, and pass 2 compresses
the vectors chunk by chunk and builds the inverted file. The temporary directory is renamed into place only when
everything (including ``lateint.json``, the completion marker) is written, so a crash never leaves a half index at
the index path.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

import numpy as np
import pandas as pd
import pyterrier as pt

from .codec import SUPPORTED_NBITS, ResidualCodec
from .kmeans import default_n_centroids, kmeans
from .layout import ARTIFACT_FORMAT, ARTIFACT_TYPE, FORMAT_VERSION, META_FILE, PACKAGE_HINT

logger = logging.getLogger(__name__)

_CHUNK_VECTORS = 2 ** 17  # vectors compressed per step of pass 2


class ColBERTIndexer(pt.Indexer):
    """Builds a :class:`ColBERTIndex` from an iterable of documents.

    Each document is a dict (or frame row) with ``docno`` and either ``text`` (encoded with ``model``) or
    ``doc_toks`` (a float ``(n_tokens, dim)`` array, e.g. from ``model.doc_encoder()``), plus optionally
    ``doc_token_ids`` (int ``(n_tokens,)``). Pass ``model`` in both cases so that its signature is recorded and
    ``index.retriever()`` can refuse a different model.
    """

    def __init__(self, index: "pt.Artifact", model: Any = None, *, nbits: int = 2, n_centroids: Optional[int] = None,
                 kmeans_iters: int = 8, kmeans_sample: Optional[int] = None, batch_size: int = 64,
                 store_token_ids: bool = False, overwrite: bool = False, seed: int = 0, verbose: bool = True):
        if nbits not in SUPPORTED_NBITS:
            raise ValueError(f"nbits must be one of {SUPPORTED_NBITS} (16 = uncompressed float16), not {nbits!r}")
        self.index_ref = index
        self.model = model
        self.nbits = nbits
        self.n_centroids = n_centroids
        self.kmeans_iters = kmeans_iters
        self.kmeans_sample = kmeans_sample
        self.batch_size = batch_size
        self.store_token_ids = store_token_ids
        self.overwrite = overwrite
        self.seed = seed
        self.verbose = verbose

    def __repr__(self) -> str:
        return f"ColBERTIndexer({str(self.index_ref.path)!r}, nbits={self.nbits})"

    def index_inputs(self):
        return [["docno", "text"], ["docno", "doc_toks"]]

    def index(self, inp: Iterable[dict] | pd.DataFrame) -> "pt.Artifact":
        """Index ``inp`` (an iterable of dicts or a DataFrame); returns the index artifact."""
        if isinstance(inp, pd.DataFrame):
            inp = inp.to_dict(orient="records")
        path = Path(self.index_ref.path)
        occupied = path.is_file() or (path.is_dir() and any(path.iterdir()))
        if occupied and not self.overwrite:
            raise FileExistsError(f"an index already exists at {str(path)!r}; use indexer(..., overwrite=True) "
                                  f"to replace it, or choose another path")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            meta = _build(tmp, inp, self)
            with open(tmp / "pt_meta.json", "w") as f:
                json.dump({"type": ARTIFACT_TYPE, "format": ARTIFACT_FORMAT, "package_hint": PACKAGE_HINT}, f)
            with open(tmp / META_FILE, "w") as f:  # the completion marker: written last
                json.dump(meta, f, indent=1)
            if path.exists():
                trash = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
                os.replace(path, trash)
                os.replace(tmp, path)
                shutil.rmtree(trash, ignore_errors=True)
            else:
                os.replace(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if hasattr(self.index_ref, "_reset"):
            self.index_ref._reset()
        return self.index_ref


def _batches(it: Iterable[dict], n: int) -> Iterator[list[dict]]:
    batch: list[dict] = []
    for d in it:
        batch.append(d)
        if len(batch) >= n:
            yield batch
            batch = []
    if batch:
        yield batch


def _build(tmp: Path, inp: Iterable[dict], cfg: ColBERTIndexer) -> dict[str, Any]:
    import npids
    t0 = time.perf_counter()
    model = cfg.model
    dim: Optional[int] = getattr(model, "dim", None)
    raw_path, tid_path = tmp / "raw.f16", tmp / "raw.tokids"
    doclens: list[int] = []
    n_vectors = 0
    encode_s = 0.0
    want_ids = cfg.store_token_ids
    with npids.Lookup.builder(tmp / "docnos.npids") as docno_builder, open(raw_path, "wb") as raw_out, \
            open(tid_path, "wb") as tid_out:
        pbar = pt.tqdm(desc="indexing", unit="doc", disable=not cfg.verbose)
        for batch in _batches(inp, cfg.batch_size):
            if "docno" not in batch[0]:
                raise KeyError(f"documents need a 'docno' field; got fields {sorted(batch[0])}")
            has_toks = "doc_toks" in batch[0]
            ids_list = None
            if has_toks:
                vecs = [d["doc_toks"] for d in batch]
                if want_ids:
                    if "doc_token_ids" not in batch[0]:
                        raise KeyError("store_token_ids=True needs a 'doc_token_ids' field next to 'doc_toks'")
                    ids_list = [d["doc_token_ids"] for d in batch]
            else:
                if "text" not in batch[0]:
                    raise KeyError(f"documents need 'text' (with a model) or 'doc_toks'; got fields {sorted(batch[0])}")
                if model is None:
                    raise ValueError("documents have 'text' but no model was given: use index.indexer(model), or "
                                     "model.doc_encoder() >> index.indexer(model)")
                te = time.perf_counter()
                texts = [d["text"] if isinstance(d["text"], str) else "" for d in batch]
                if want_ids:
                    vecs, ids_list = model.encode_docs(texts, batch_size=cfg.batch_size, return_ids=True)
                else:
                    vecs = model.encode_docs(texts, batch_size=cfg.batch_size)
                encode_s += time.perf_counter() - te
            for j, (d, v) in enumerate(zip(batch, vecs)):
                docno_builder.add(str(d["docno"]))
                if v is None:
                    v = np.zeros((0, dim or 0), dtype=np.float32)
                v = np.asarray(v)
                if v.ndim != 2:
                    raise ValueError(f"doc_toks of docno {d['docno']!r} has shape {v.shape}; expected (n_tokens, dim)")
                if dim is None:
                    dim = v.shape[1]
                if v.shape[1] != dim and len(v):
                    raise ValueError(f"doc_toks of docno {d['docno']!r} has dim {v.shape[1]}, expected {dim}")
                raw_out.write(np.ascontiguousarray(v, dtype=np.float16).tobytes())
                if want_ids:
                    ids = np.asarray(ids_list[j], dtype=np.int32).reshape(-1)
                    if len(ids) != len(v):
                        raise ValueError(f"docno {d['docno']!r}: {len(ids)} token ids for {len(v)} vectors")
                    tid_out.write(ids.tobytes())
                doclens.append(len(v))
                n_vectors += len(v)
            pbar.update(len(batch))
        pbar.close()
    n_docs = len(doclens)
    if n_docs == 0:
        raise ValueError("no documents to index")
    if n_vectors == 0 or dim is None:
        raise ValueError("every document is empty (no token vectors): nothing to index")
    t_pass1 = time.perf_counter()

    _check_unique_docnos(tmp / "docnos.npids", n_docs)
    doclens_arr = np.asarray(doclens, dtype=np.int32)
    del doclens
    offsets = np.zeros(n_docs + 1, dtype=np.int64)
    np.cumsum(doclens_arr, out=offsets[1:])
    np.save(tmp / "doclens.npy", doclens_arr)
    np.save(tmp / "offsets.npy", offsets)
    raw = np.memmap(raw_path, dtype=np.float16, mode="r", shape=(n_vectors, dim))

    # centroids and residual buckets from samples
    rng = np.random.default_rng(cfg.seed)
    k = cfg.n_centroids or default_n_centroids(n_vectors)
    k = min(k, n_vectors)
    n_sample = min(n_vectors, cfg.kmeans_sample or max(32 * k, 2 ** 15))
    sample_idx = np.sort(rng.choice(n_vectors, n_sample, replace=False))
    sample = np.asarray(raw[sample_idx], dtype=np.float32)
    logger.info("k-means: %d centroids from %d of %d vectors", k, n_sample, n_vectors)
    centroids = kmeans(sample, k, iters=cfg.kmeans_iters, seed=cfg.seed)
    bucket_idx = np.sort(rng.choice(n_vectors, min(n_vectors, 2 ** 16), replace=False))
    codec = ResidualCodec.train(centroids, np.asarray(raw[bucket_idx], dtype=np.float32), cfg.nbits)
    del sample
    codec.save(tmp)
    t_train = time.perf_counter()

    # pass 2: compress in chunks aligned to document boundaries; collect the (centroid, doc) pairs for the IVF
    cols, rdt = codec.residual_shape
    codes_out = np.lib.format.open_memmap(tmp / "codes.npy", mode="w+", dtype=codec.code_dtype, shape=(n_vectors,))
    res_out = np.lib.format.open_memmap(tmp / "residuals.npy", mode="w+", dtype=rdt, shape=(n_vectors, cols))
    ivf_counts = np.zeros(k, dtype=np.int64)
    pair_path = tmp / "pairs.i32"
    n_pairs = 0
    pbar = pt.tqdm(total=n_vectors, desc="compressing", unit="vec", disable=not cfg.verbose)
    with open(pair_path, "wb") as pair_out:
        d0 = 0
        while d0 < n_docs:
            d1 = int(np.searchsorted(offsets, offsets[d0] + _CHUNK_VECTORS, side="right")) - 1
            d1 = min(max(d1, d0 + 1), n_docs)
            v0, v1 = int(offsets[d0]), int(offsets[d1])
            if v1 > v0:
                codes, packed = codec.compress(np.asarray(raw[v0:v1], dtype=np.float32))
                codes_out[v0:v1] = codes
                res_out[v0:v1] = packed
                doc_of = np.repeat(np.arange(d0, d1, dtype=np.int64), doclens_arr[d0:d1])
                pairs = np.unique(codes.astype(np.int64) * n_docs + doc_of)  # sorted by (centroid, doc)
                pc = (pairs // n_docs).astype(np.int32)
                pd_ = (pairs % n_docs).astype(np.int32)
                ivf_counts += np.bincount(pc, minlength=k)
                pair_out.write(np.stack([pc, pd_], axis=1).tobytes())
                n_pairs += len(pairs)
                pbar.update(v1 - v0)
            d0 = d1
    pbar.close()
    codes_out.flush()
    res_out.flush()
    del codes_out, res_out

    # inverted file: centroid -> ascending doc ids (chunks arrive in doc order, so a stable fill keeps them sorted)
    ivf_offsets = np.zeros(k + 1, dtype=np.int64)
    np.cumsum(ivf_counts, out=ivf_offsets[1:])
    ivf_docs = np.lib.format.open_memmap(tmp / "ivf.docs.npy", mode="w+", dtype=np.int32, shape=(n_pairs,))
    cursor = ivf_offsets[:-1].copy()
    pairs_mm = np.memmap(pair_path, dtype=np.int32, mode="r", shape=(n_pairs, 2))
    step = 2 ** 22
    for s in range(0, n_pairs, step):
        chunk = np.asarray(pairs_mm[s:s + step])
        order = np.argsort(chunk[:, 0], kind="stable")
        c, d = chunk[order, 0], chunk[order, 1]
        starts = np.searchsorted(c, c, side="left")  # first row of each row's centroid within the chunk
        pos = cursor[c] + (np.arange(len(c)) - starts)
        ivf_docs[pos] = d
        cursor += np.bincount(c, minlength=k)
    ivf_docs.flush()
    del ivf_docs, pairs_mm
    np.save(tmp / "ivf.offsets.npy", ivf_offsets)

    if want_ids:
        tids = np.memmap(tid_path, dtype=np.int32, mode="r", shape=(n_vectors,))
        out = np.lib.format.open_memmap(tmp / "token_ids.npy", mode="w+", dtype=np.int32, shape=(n_vectors,))
        for s in range(0, n_vectors, 2 ** 22):
            out[s:s + 2 ** 22] = tids[s:s + 2 ** 22]
        out.flush()
        del out, tids
    del raw
    os.remove(raw_path)
    os.remove(tid_path)
    os.remove(pair_path)
    t_end = time.perf_counter()

    sig = model.signature() if model is not None and hasattr(model, "signature") else None
    if sig is None:
        logger.warning("no model given to the indexer: the index records no model signature, so retriever() "
                       "cannot check that queries are encoded by the same model")
    build_s = t_end - t0 - encode_s
    logger.info("indexed %d docs, %d vectors in %.1fs (%.1fs encoding)", n_docs, n_vectors, t_end - t0, encode_s)
    return {
        "format_version": FORMAT_VERSION,
        "complete": True,
        "model": sig,
        "dim": int(dim),
        "nbits": cfg.nbits,
        "n_docs": n_docs,
        "n_vectors": n_vectors,
        "n_empty_docs": int((doclens_arr == 0).sum()),
        "n_centroids": int(k),
        "n_ivf_postings": int(n_pairs),
        "has_token_ids": bool(want_ids),
        "build": {
            "kmeans_iters": cfg.kmeans_iters, "kmeans_sample": int(n_sample), "seed": cfg.seed,
            "seconds_total": round(t_end - t0, 3), "seconds_encoding": round(encode_s, 3),
            "seconds_pass1": round(t_pass1 - t0, 3), "seconds_train": round(t_train - t_pass1, 3),
            "seconds_compress": round(t_end - t_train, 3),
            "vectors_per_second_excl_encoding": round(n_vectors / max(build_s, 1e-9), 1),
        },
    }


def _check_unique_docnos(npids_path: Path, n_docs: int) -> None:
    import npids
    with npids.Lookup(npids_path) as lookup:
        if len(lookup) != n_docs:
            raise RuntimeError(f"docno lookup holds {len(lookup)} docnos for {n_docs} documents")
        step = 2 ** 16
        for s in range(0, n_docs, step):
            idx = np.arange(s, min(s + step, n_docs))
            docnos = lookup.fwd.lookup(idx)
            back = np.asarray(lookup.inv.lookup(docnos), dtype=np.int64)
            bad = np.nonzero(back != idx)[0]
            if len(bad):
                raise ValueError(f"duplicate docno {str(docnos[bad[0]])!r} (documents {int(back[bad[0]])} and "
                                 f"{int(idx[bad[0]])}); docnos must be unique")
