"""Building a sharded index: the corpus spilled in parts, one codec trained from a sample, shards built by workers.

Phases of :meth:`ShardedIndexer.index`:

1. **Spill** (this process): stream the documents into ``inputs/part-NNNNN.pkl`` files of ``PART_DOCS`` documents,
   fingerprinting the corpus and checking that docnos are unique across the whole corpus.
2. **Plan**: the settings, the fingerprint and each shard's document range go to ``plan.json``. When a plan with
   the same settings and fingerprint is already there (an earlier build of this corpus failed), its codec and
   finished shards are kept: only what is missing is built.
3. **Codec** (one task): encode a random sample of documents (a pilot of ``PILOT_DOCS`` estimates the collection's
   vectors, hence the number of centroids and the sample needed), then k-means and the residual quantiser exactly
   as a single index trains them (:func:`pyterrier_lateint.index.build.train_codec`).
4. **Shards** (one task each, in parallel on Ray): read the shard's documents, encode them (on the worker's GPU when
   it has one), compress with the shared codec, write a complete :class:`~pyterrier_lateint.index.ColBERTIndex`
   atomically, then ``done.json``.
5. **Commit**: ``sharded.json`` (the completion marker) is written last; the spilled inputs are removed.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import pickle
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Union

import numpy as np
import pandas as pd
import pyterrier as pt

from ..index import ColBERTIndex
from ..index.build import BUCKET_SAMPLE, codec_of, default_kmeans_sample, document_vectors, train_codec
from ..index.folders import check_target, recover, replacing
from ..index.codec import DEFAULT_KIND, ResidualCodec, check_codec_settings
from ..index.coarse import check_assignment
from ..index.commit import write_json_atomic, writer_lock
from ..index.kmeans import default_n_centroids
from ..index.layout import ARTIFACT_TYPE, PACKAGE_HINT, is_index_folder
from ..models import LateInteractionModel, check_model
from .executors import LocalExecutor, RayExecutor, make_executor
from .handle import ShardedIndexHandle
from .layout import (CODEC_DIR, DONE_FILE, INPUTS_DIR, META_FILE, PART_DOCS, PLAN_FILE, SHARDED_FORMAT, SHARDS_DIR,
                     read_json, shard_dir, shard_index_path)


logger = logging.getLogger(__name__)

PILOT_DOCS = 256  # documents encoded first to estimate the collection's vectors per document


@dataclass
class _Settings:
    """What the codec task needs of the indexer (the fields :func:`train_codec` reads)."""
    nbits: int
    codec: str
    n_centroids: Optional[int]
    kmeans_iters: int
    kmeans_sample: Optional[int]
    seed: int
    assignment: str = "auto"


class ShardedIndexer(pt.Indexer):
    """Builds a :class:`~pyterrier_lateint.sharded.ShardedColBERTIndex` from documents (``docno`` with ``text``,
    or ``doc_embs``).

    ``n_shards`` shards of about equal document counts are built by ``executor`` (``"local"``, ``"ray"``, or an
    executor object, see :mod:`pyterrier_lateint.sharded.executors`); the phases are described in
    :mod:`pyterrier_lateint.sharded.build`. Usually made by :meth:`ShardedColBERTIndex.indexer
    <pyterrier_lateint.ShardedColBERTIndex.indexer>`.

    Args:
        index: the sharded index to write.
        model: encodes ``text`` and records its signature; ``None`` only for input with ``doc_embs``.
        n_shards: number of shards (>= 1, at most the number of documents); default one per worker.
        executor: ``"local"`` (default: tasks one after the other in this process), ``"ray"``, or an executor.
        workers: Ray: tasks at a time; default the cluster's CPUs over ``cpus_per_worker``.
        cpus_per_worker: Ray: CPUs per task (default 1).
        gpus_per_worker: Ray: GPUs per task; default one when the cluster has GPUs.
        max_retries: retries of a task that failed with an error that may pass (``OSError``, ``RuntimeError``,
            ``MemoryError``, a lost worker); default 2.
        nbits: bits per residual dimension: 1, 2 (default), 4, or 16.
        codec: the residual quantiser, ``"pq"`` (default) or ``"scalar"``.
        n_centroids: number of centroids; default by the collection's estimated vector count.
        kmeans_iters: k-means iterations (default 8).
        kmeans_sample: vectors k-means is trained on; default as a single index.
        batch_size: documents encoded together (default 64).
        store_token_ids: also store each vector's token id.
        pool_factor: token pooling, as :meth:`ColBERTIndex.indexer <pyterrier_lateint.ColBERTIndex.indexer>`'s
            (default 1: none).
        seed: seed of the samples and k-means (default 0).
        assignment: nearest-centroid assignment of k-means and the shards' compression, as
            :meth:`ColBERTIndex.indexer <pyterrier_lateint.ColBERTIndex.indexer>`'s (default ``"auto"``).
        overwrite: replace an existing index (built beside it and swapped in at the end).
        resume: keep the codec and finished shards of an earlier, failed build of the same corpus with the same
            settings (default True).
        codec_from: reuse the centroids and residual quantiser of another index (a
            :class:`~pyterrier_lateint.ColBERTIndex`, a sharded index, a codec or a path) instead of training them.
        verbose: show progress bars (default True).

    Raises:
        ValueError: on an unsupported ``nbits`` or ``codec``, ``n_shards`` below 1, or an unknown executor.
        ImportError: for ``executor="ray"`` without Ray installed.

    Example:
        .. code-block:: python

            from pyterrier_lateint.sharded import ShardedIndexer

            indexer = ShardedIndexer(index, model, n_shards=4)   # as index.indexer(model, n_shards=4)
            indexer.index(dataset.get_corpus_iter())
    """

    def __init__(self, index: ShardedIndexHandle, model: Optional[LateInteractionModel] = None, *,
                 n_shards: Optional[int] = None, executor: Union[str, LocalExecutor, RayExecutor] = "local",
                 workers: Optional[int] = None, cpus_per_worker: float = 1, gpus_per_worker: Optional[float] = None,
                 max_retries: int = 2, nbits: int = 2, codec: str = DEFAULT_KIND, n_centroids: Optional[int] = None,
                 kmeans_iters: int = 8, kmeans_sample: Optional[int] = None, batch_size: int = 64,
                 store_token_ids: bool = False, pool_factor: float = 1, seed: int = 0, overwrite: bool = False,
                 resume: bool = True, codec_from: Any = None, verbose: bool = True, assignment: str = "auto"):
        check_codec_settings(nbits, codec)
        if n_shards is not None and n_shards < 1:
            raise ValueError(f"n_shards must be >= 1, not {n_shards}")
        self.index_ref = index
        self.model = check_model(model, "ShardedIndexer")
        self.executor = make_executor(executor, workers=workers, cpus_per_worker=cpus_per_worker,
                                      gpus_per_worker=gpus_per_worker, max_retries=max_retries)
        self.n_shards = n_shards
        self.settings = _Settings(nbits, codec, n_centroids, kmeans_iters, kmeans_sample, seed,
                                  check_assignment(assignment))
        self.shard_settings = {"batch_size": batch_size, "store_token_ids": store_token_ids,
                               "pool_factor": pool_factor, "assignment": assignment}
        self.codec_from = codec_from
        self.overwrite = overwrite
        self.resume = resume
        self.verbose = verbose

    def __repr__(self) -> str:
        return f"ShardedIndexer({str(self.index_ref.path)!r}, n_shards={self.n_shards}, executor={self.executor!r})"

    def index_inputs(self) -> list[list[str]]:
        """The input columns :meth:`index` accepts (PyTerrier's ``Indexer`` API).

        Returns:
            list: ``[["docno", "text"], ["docno", "doc_embs"]]``.
        """
        return [["docno", "text"], ["docno", "doc_embs"]]

    def index(self, inp: Union[Iterable[dict], pd.DataFrame]) -> ShardedIndexHandle:
        """Index ``inp`` (an iterable of dicts or a DataFrame).

        Replacing an existing index (``overwrite=True``) builds beside it and swaps the new one in at the end, so
        a failed rebuild leaves the old index as it was. An interrupted build of the same corpus resumes in place.

        Args:
            inp: documents with ``docno`` and ``text`` or ``doc_embs``.

        Returns:
            ShardedColBERTIndex: the index artifact, built.

        Raises:
            FileExistsError: when the path holds an index (without ``overwrite``) or anything but an empty folder
                or an interrupted build.
            ValueError: for a document without docno, duplicate docnos, or more shards than documents.
            KeyError: for a document with neither ``text`` nor ``doc_embs``.
        """
        if isinstance(inp, pd.DataFrame):
            inp = inp.to_dict(orient="records")
        root = Path(self.index_ref.path).absolute()  # tasks may run in other processes, folders or machines
        with writer_lock(root):
            recover(root)
            # an index (sharded or not) is replaced with overwrite=True; an interrupted build of one (plan.json)
            # resumes in place; a file or a folder of other files is refused, whatever overwrite says
            resumable = root.is_dir() and (root / PLAN_FILE).is_file() and not (root / META_FILE).exists()
            occupied = not resumable and check_target(root, self.overwrite, is_index=is_index_folder)
            if not occupied:  # a new index (or an empty folder), or the resumable rest of an interrupted build
                root.mkdir(parents=True, exist_ok=True)
                self._build(root, inp)
            else:
                with replacing(root, is_index=is_index_folder) as tmp:
                    self._build(tmp, inp)
        self.index_ref.reload()
        return self.index_ref

    def _build(self, root: Path, inp: Iterable[dict]) -> None:
        """Phases 1-5 in the folder ``root``."""
        t0 = time.perf_counter()
        spill = _spill(root / f"{INPUTS_DIR}.new", inp, self.verbose)
        plan = self._plan(spill)
        old = read_json(root / PLAN_FILE)
        if old is not None and self.resume and old["id"] == plan["id"]:
            logger.info("resuming the build of %s: keeping its codec and finished shards", root)
            shutil.rmtree(root / f"{INPUTS_DIR}.new")
        else:
            for name in (INPUTS_DIR, CODEC_DIR, SHARDS_DIR, PLAN_FILE):
                p = root / name
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            os.replace(root / f"{INPUTS_DIR}.new", root / INPUTS_DIR)
            write_json_atomic(root / PLAN_FILE, plan)
        t_spill = time.perf_counter()
        if not (root / CODEC_DIR / "codec.json").exists():
            if self.codec_from is not None:
                _save_codec(root, _codec_of(self.codec_from))
            else:
                self.executor.run(train_codec_task, [(str(root), self.model, self.settings, plan)], "codec")
        t_codec = time.perf_counter()
        todo = [s for s in range(plan["n_shards"]) if not shard_done(root, s, plan["id"])]
        logger.info("building %d of %d shards with %r", len(todo), plan["n_shards"], self.executor)
        self.executor.run(build_shard_task, [(str(root), s, self.model, self.shard_settings, plan) for s in todo],
                          "shard")
        t_end = time.perf_counter()
        self._commit(root, plan, {"seconds_total": round(t_end - t0, 3), "seconds_spill": round(t_spill - t0, 3),
                                  "seconds_codec": round(t_codec - t_spill, 3),
                                  "seconds_shards": round(t_end - t_codec, 3), "shards_built": len(todo),
                                  "executor": self.executor.name, "workers": self.executor.workers})

    def _plan(self, spill: "_Spilled") -> dict[str, Any]:
        n_shards = self.n_shards or self.executor.workers
        if n_shards > spill.n_docs:
            raise ValueError(f"n_shards={n_shards} is more than the {spill.n_docs} documents; use fewer shards")
        bounds = np.linspace(0, spill.n_docs, n_shards + 1).round().astype(np.int64)
        settings = {**vars(self.settings), **self.shard_settings,
                    "model": self.model.signature() if self.model is not None else None,
                    "codec_from": _codec_of(self.codec_from).describe() if self.codec_from is not None else None}
        body = {"settings": settings, "fingerprint": spill.fingerprint, "n_docs": spill.n_docs,
                "n_shards": n_shards, "ranges": [[int(a), int(b)] for a, b in zip(bounds[:-1], bounds[1:])]}
        plan_id = hashlib.blake2b(pt_json(body).encode(), digest_size=12).hexdigest()
        return {"id": plan_id, **body}

    def _commit(self, root: Path, plan: dict[str, Any], timings: dict[str, Any]) -> None:
        shards = []
        for s in range(plan["n_shards"]):
            done = read_json(shard_dir(root, s) / DONE_FILE)
            shards.append({"path": f"{SHARDS_DIR}/{s:04d}/index", "n_docs": done["n_docs"],
                           "n_vectors": done["n_vectors"], "seconds": done["seconds"], "host": done["host"]})
        codec = ResidualCodec.load(root / CODEC_DIR)
        meta = {"format_version": 1, "complete": True, "n_shards": plan["n_shards"], "n_docs": plan["n_docs"],
                "n_vectors": int(sum(s["n_vectors"] for s in shards)), "plan": plan["id"],
                "model": plan["settings"]["model"], "codec": codec.describe(), "nbits": codec.nbits,
                "n_centroids": int(codec.n_centroids), "shards": shards, "build": timings}
        write_json_atomic(root / "pt_meta.json", {"type": ARTIFACT_TYPE, "format": SHARDED_FORMAT,
                                                  "package_hint": PACKAGE_HINT})
        write_json_atomic(root / META_FILE, meta)  # the completion marker
        shutil.rmtree(root / INPUTS_DIR, ignore_errors=True)


def pt_json(obj: Any) -> str:
    """Canonical JSON of ``obj`` (sorted keys), for hashing."""
    return json.dumps(obj, sort_keys=True, default=str)


# --- phase 1: spilling the corpus -------------------------------------------------------------------------------
@dataclass
class _Spilled:
    n_docs: int
    fingerprint: str


def _spill(folder: Path, inp: Iterable[dict], verbose: bool) -> _Spilled:
    """Write ``inp`` to ``folder/part-NNNNN.pkl`` (lists of ``PART_DOCS`` dicts); refuse duplicate docnos."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    digest = hashlib.blake2b(digest_size=16)
    hashes: list[np.ndarray] = []
    n = 0
    part: list[dict] = []
    pbar = pt.tqdm(desc="spilling", unit="doc", disable=not verbose)

    def flush() -> None:
        data = pickle.dumps(part, protocol=pickle.HIGHEST_PROTOCOL)
        digest.update(data)
        with open(folder / f"part-{(n - 1) // PART_DOCS:05d}.pkl", "wb") as f:
            f.write(data)
        hashes.append(np.array([_docno_hash(d["docno"]) for d in part], dtype=np.uint64))

    for d in inp:
        if not isinstance(d, dict):
            d = dict(d)
        if d.get("docno") is None:
            raise ValueError(f"a document has no docno (fields {sorted(d)}); every document needs one")
        if "text" not in d and "doc_embs" not in d:
            raise KeyError(f"documents need 'text' (with a model) or 'doc_embs'; got fields {sorted(d)}")
        d = {**d, "docno": str(d["docno"])}
        part.append(d)
        n += 1
        if len(part) == PART_DOCS:
            flush()
            part = []
            pbar.update(PART_DOCS)
    if part:
        flush()
    pbar.close()
    if n == 0:
        raise ValueError("no documents to index: the input is empty; pass at least one document with a docno and "
                         "text (or doc_embs)")
    _check_unique(folder, np.concatenate(hashes))
    return _Spilled(n, digest.hexdigest())


def _docno_hash(docno: str) -> int:
    return int.from_bytes(hashlib.blake2b(docno.encode(), digest_size=8).digest(), "little")


def _check_unique(folder: Path, hashes: np.ndarray) -> None:
    """``ValueError`` naming duplicated docnos (64-bit hashes first; equal hashes are confirmed on the strings)."""
    uniq, counts = np.unique(hashes, return_counts=True)
    suspects = set(uniq[counts > 1].tolist())
    if not suspects:
        return
    seen: dict[str, int] = {}
    for docs in _parts(folder):
        for d in docs:
            if _docno_hash(d["docno"]) in suspects:
                seen[d["docno"]] = seen.get(d["docno"], 0) + 1
    dups = [k for k, c in seen.items() if c > 1]
    if dups:
        raise ValueError(f"{len(dups)} docno(s) occur more than once in the corpus, e.g. {dups[:5]}; every document "
                         f"needs its own docno (drop or rename the duplicates)")


def _parts(folder: Path) -> Iterator[list[dict]]:
    for p in sorted(Path(folder).glob("part-*.pkl")):
        with open(p, "rb") as f:
            yield pickle.load(f)


def read_docs(root: Path, start: int, end: int) -> Iterator[dict]:
    """Documents ``start <= i < end`` of the spilled corpus, in order."""
    folder = Path(root) / INPUTS_DIR
    for p in range(start // PART_DOCS, (end - 1) // PART_DOCS + 1):
        with open(folder / f"part-{p:05d}.pkl", "rb") as f:
            docs = pickle.load(f)
        lo, hi = max(start - p * PART_DOCS, 0), min(end - p * PART_DOCS, len(docs))
        yield from docs[lo:hi]


def _docs_at(root: Path, ids: np.ndarray) -> list[dict]:
    """Documents of the spilled corpus at positions ``ids`` (sorted), each part read once."""
    out = []
    folder = Path(root) / INPUTS_DIR
    ids = np.sort(ids)
    for p in np.unique(ids // PART_DOCS):
        with open(folder / f"part-{int(p):05d}.pkl", "rb") as f:
            docs = pickle.load(f)
        out.extend(docs[int(i - p * PART_DOCS)] for i in ids[ids // PART_DOCS == p])
    return out


# --- phase 3: the shared codec ----------------------------------------------------------------------------------
def _vectors(model: Optional[LateInteractionModel], docs: list[dict], batch_size: int = 64) -> list[np.ndarray]:
    """Float32 ``(n_tokens, dim)`` vectors of ``docs`` (:func:`~pyterrier_lateint.index.build.document_vectors`)."""
    vecs, _ = document_vectors(docs, model, batch_size)
    return [np.asarray(v, dtype=np.float32).reshape(-1, np.shape(v)[-1]) for v in vecs]


def _on_worker_device(model: Optional[LateInteractionModel]) -> Optional[LateInteractionModel]:
    """The model on this worker's GPU when it has one (Ray sets ``CUDA_VISIBLE_DEVICES`` per task)."""
    import torch
    if model is not None and torch.cuda.is_available() and hasattr(model, "to") and \
            getattr(model, "device", None) is not None and model.device.type == "cpu":
        model = model.to("cuda")
    return model


def train_codec_task(root: str, model: Optional[LateInteractionModel], settings: _Settings,
                     plan: dict[str, Any]) -> dict[str, Any]:
    """Train the shared codec from a random sample of the corpus and save it to ``root/codec`` (atomically)."""
    root_p = Path(root)
    if (root_p / CODEC_DIR / "codec.json").exists():
        return {"skipped": True}
    t0 = time.perf_counter()
    model = _on_worker_device(model)
    n_docs = plan["n_docs"]
    order = np.random.default_rng(settings.seed).permutation(n_docs)
    taken = min(PILOT_DOCS, n_docs)
    vecs = _vectors(model, _docs_at(root_p, order[:taken]))
    while True:
        n_sampled = int(sum(len(v) for v in vecs))
        n_est = max(1, round(n_sampled / taken * n_docs))
        k = min(settings.n_centroids or default_n_centroids(n_est), n_est)
        # as many vectors as a single index's k-means and bucket samples (or the kmeans_sample asked for)
        need = settings.kmeans_sample or max(default_kmeans_sample(k), BUCKET_SAMPLE)
        if n_sampled >= min(need, n_est) or taken == n_docs:
            break
        more = min(n_docs - taken, max(PILOT_DOCS, math.ceil((need - n_sampled) * 1.1 / max(n_sampled / taken, 1))))
        vecs += _vectors(model, _docs_at(root_p, order[taken:taken + more]))
        taken += more
    sample = np.concatenate([v for v in vecs if len(v)]) if any(len(v) for v in vecs) else None
    if sample is None:
        raise ValueError("every sampled document is empty (no token vectors): nothing to train the codec on; check "
                         "the text column")
    codec, _ = train_codec(sample, settings, n_total=n_est)
    _save_codec(root_p, codec)
    logger.info("codec from %d sampled documents (%d vectors; ~%d in the corpus) in %.1fs", taken, len(sample),
                n_est, time.perf_counter() - t0)
    return {"docs": taken, "vectors": int(len(sample)), "seconds": time.perf_counter() - t0}


def _save_codec(root: Path, codec: ResidualCodec) -> None:
    """Write ``codec`` to ``root/codec`` atomically (a temporary folder renamed into place)."""
    tmp = Path(root) / f".{CODEC_DIR}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    codec.save(tmp)
    os.replace(tmp, Path(root) / CODEC_DIR)


def _codec_of(source: Any) -> ResidualCodec:
    """The codec of ``codec_from``: a codec, a (sharded) index or its path."""
    if not isinstance(source, ResidualCodec) and not callable(getattr(source, "codec", None)):
        path = Path(getattr(source, "path", source))
        if (path / CODEC_DIR / "codec.json").exists():  # a sharded index's folder
            return ResidualCodec.load(path / CODEC_DIR)
    return codec_of(source)


# --- phase 4: one shard -----------------------------------------------------------------------------------------
def shard_done(root: Path, shard: int, plan_id: str) -> bool:
    """Whether shard ``shard`` was completed under plan ``plan_id``."""
    done = read_json(shard_dir(root, shard) / DONE_FILE)
    return done is not None and done.get("plan") == plan_id and \
        ColBERTIndex(shard_index_path(root, shard)).built()


def build_shard_task(root: str, shard: int, model: Optional[LateInteractionModel], settings: dict[str, Any],
                     plan: dict[str, Any]) -> dict[str, Any]:
    """Build shard ``shard`` (its documents' range in ``plan``) with the shared codec; write ``done.json`` last.
    Idempotent: a shard already done under this plan returns at once."""
    root_p = Path(root)
    folder = shard_dir(root_p, shard)
    if shard_done(root_p, shard, plan["id"]):
        return read_json(folder / DONE_FILE)
    (folder / DONE_FILE).unlink(missing_ok=True)
    t0 = time.perf_counter()
    model = _on_worker_device(model)
    start, end = plan["ranges"][shard]
    index = ColBERTIndex(shard_index_path(root_p, shard))
    index.indexer(model, codec_from=ResidualCodec.load(root_p / CODEC_DIR), overwrite=True, verbose=False,
                  **settings).index(read_docs(root_p, start, end))
    meta = index.metadata()
    done = {"plan": plan["id"], "shard": shard, "n_docs": meta["n_docs"], "n_vectors": meta["n_vectors"],
            "seconds": round(time.perf_counter() - t0, 3), "host": socket.gethostname(), "pid": os.getpid()}
    write_json_atomic(folder / DONE_FILE, done)
    logger.info("shard %d: %d documents in %.1fs", shard, end - start, done["seconds"])
    return done
