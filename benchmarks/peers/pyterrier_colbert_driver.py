"""pyterrier_colbert driver: its end-to-end dense retrieval on the shared precomputed vectors; prints JSON.

What runs is pyterrier_colbert's own code (terrierteam/pyterrier_colbert on ColBERT v0.2, cmacdonald/ColBERT tag
v0.2), on the CPU (its ``gpu=False``):

- **indexing**: ``pyterrier_colbert.indexing.ColBERTIndexer(...).index(docs)``. Its ColBERT v0.2 collection encoder
  writes the vectors in ColBERT v0.2's layout (``{part}.pt``: one float16 tensor (vectors of the part, dim) per
  part; ``{part}.sample``: a random 5% of them, faiss's training sample; ``doclens.{part}.json``;
  ``docnos.pkl.gz``), then ColBERT v0.2's ``index_faiss`` trains and fills a faiss ``IndexIVFPQ`` (flat L2
  coarse quantiser, 16 sub-quantisers of 8 bits) on faiss-cpu. Settings are ColBERTIndexer's: ``partitions=100``
  (it sets 100 whatever the collection; the ``1 << ceil(log2(8 sqrt(n)))`` rule after it only runs when a caller
  sets ``args.partitions = None``, and then raises a TypeError in its ``warn`` call), ``chunksize=3`` (GiB per
  part, as its Vaswani notebook and tests), ``ids=False`` (no ``.tokenids`` files: they feed ``nn_term()``/PRF,
  not ``end_to_end()``, and the shared vectors come without token ids).
- **search**: ``indexer.ranking_factory().end_to_end()``, i.e. ``ColBERTFactory.set_retrieve() >>
  index_scorer(query_encoded=True)``: faiss ANN search of every query vector (``nprobe=10``, ``faiss_depth=1000``
  vectors each) -> the set of their documents -> exact MaxSim of the query against each candidate's stored
  float16 vectors (copied into zero-padded float32 (candidates, doc_maxlen, dim) blocks of up to 10,000 documents,
  ``memtype="mem"``). Its result holds every candidate with its score; the timed call includes taking the top k.
  ``pipe.transform`` of a frame of several queries loops over them (``set_retrieve(batch=True)`` asserts it is
  unsupported), so there is no batched figure.

Substitutions (nothing else of theirs is patched; no model or tokenizer files are needed):

- **encoder**: ``ModelInference.docFromText`` / ``queryFromText`` return the shared vectors of the passage / query
  named by its index (documents are indexed as text ``"0"``, ``"1"``, ... with docno = that text; queries are
  searched as query text ``"0"``, ``"1"``, ...). Documents are handed over as float16, as ColBERT v0.2's
  ``doc(keep_dims=False)`` returns them; queries as float32 (1, query tokens, dim), with token ids 0.
- **model**: a tiny randomly initialised ColBERT v0.2 ``ColBERT`` (BERT of 1 layer, width 8; its weights are never
  used), given as a torch module, which ``ColBERTIndexer`` accepts instead of a checkpoint path. ColBERT v0.2's
  tokenizers (built by ``ModelInference``, never called here) load ``bert-base-uncased``: the work folder holds a
  folder of that name with a 104-token vocabulary that has the ids ColBERT v0.2 asserts ([unused0]=1,
  [unused1]=2, [MASK]=103), and the driver runs in that folder.
- **pyterrier**: ``pt.started()`` returns True (pyterrier_colbert asserts it at import; nothing here uses Java).
- **faiss index loader**: pyterrier_colbert's ``ColBERTFactory._faiss_index`` passes ``mmap=(faisstype ==
  "mmap")`` to ColBERT v0.2's ``colbert.ranking.faiss_index.FaissIndex``, whose v0.2 signature has no such
  argument (a TypeError in their own pairing): a subclass accepts ``mmap=False`` (the default ``faisstype="mem"``;
  the same ``faiss.read_index``). Its constructor's ``multiprocessing.Pool(16)`` (16 forked processes that
  ``retrieve`` never uses since the v0.2 commit "dont use the pool") is not started.
- **training logs**: ``mlflow`` and ``torch.utils.tensorboard`` (imported by ColBERT v0.2's utilities) are stubs.
- ``args.doc_maxlen`` (180, the padding length of the re-ranker) is raised to the longest document when a
  document is longer (never with the default model, which truncates at 180).

    $PEER_VENVS/pyterrier_colbert/bin/python benchmarks/peers/pyterrier_colbert_driver.py VECTORS_DIR WORK_DIR

``--serve``: emit the build's figures after one warm-up pass, then answer ``pass`` requests on standard input (one
timed pass over the queries each) and ``extras`` (the variants, ``--variants``) until ``quit`` (``_common.serve``).
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import time
import types
from pathlib import Path
from typing import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (THREADS, dir_bytes, emit, load, peak_rss_mib, serve, time_one_at_a_time,  # noqa: E402
                     timed_pass)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(THREADS)
logger = logging.getLogger("pyterrier_colbert_driver")

VECTORS: np.ndarray | None = None   # (T, dim) document vectors, memory-mapped
OFFSETS: np.ndarray | None = None   # (n_docs + 1,) int64
QUERIES: list[np.ndarray] = []      # float32 (n_i, dim) per query


def _stub_training_logs() -> None:
    """ColBERT v0.2's utilities import mlflow and tensorboard for training logs; neither is used here."""
    sys.modules.setdefault("mlflow", types.ModuleType("mlflow"))
    tb = types.ModuleType("torch.utils.tensorboard")
    tb.SummaryWriter = None
    sys.modules.setdefault("torch.utils.tensorboard", tb)


def _write_tiny_vocab(folder: Path) -> None:
    """A 104-token uncased BERT vocabulary at ``folder/bert-base-uncased`` with the ids ColBERT v0.2 asserts:
    [PAD]=0, [unused0]=1 ([Q]), [unused1]=2 ([D]), [UNK]=100, [CLS]=101, [SEP]=102, [MASK]=103."""
    tok = folder / "bert-base-uncased"
    tok.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    (tok / "vocab.txt").write_text("\n".join(vocab) + "\n")


def _doc_from_text(self, docs: list[str], bsize: int | None = None, keep_dims: bool = True, to_cpu: bool = False,
                   with_ids: bool = False) -> list[torch.Tensor]:
    """Replaces ``ModelInference.docFromText`` for the indexer (``keep_dims=False``, ``with_ids=False``): the
    shared vectors of the passages named by their index, one float16 (doc length, dim) tensor each."""
    assert not keep_dims and not with_ids, "the indexer is run with ids=False (keep_dims=False, no token ids)"
    return [torch.from_numpy(np.array(VECTORS[OFFSETS[int(d)]:OFFSETS[int(d) + 1]], dtype=np.float16))
            for d in docs]


def _query_from_text(self, queries: list[str], bsize: int | None = None, to_cpu: bool = False,
                     with_ids: bool = False):
    """Replaces ``ModelInference.queryFromText``: the shared vectors of the queries named by their index, as one
    float32 (n_queries, query tokens, dim) tensor (all queries of a call have the same length), token ids 0 and
    attention mask 1 (n_queries, query tokens) with ``with_ids``."""
    Q = torch.from_numpy(np.stack([np.ascontiguousarray(QUERIES[int(q)], dtype=np.float32) for q in queries]))
    if not with_ids:
        return Q
    ids = torch.zeros(Q.shape[:2], dtype=torch.long)
    return Q, ids, torch.ones_like(ids)


def _patch_colbert_v02() -> None:
    """Install the substitutions listed in the module docstring (after ``pt.started`` is patched)."""
    import colbert.ranking.faiss_index as rfi
    from colbert.modeling.inference import ModelInference

    ModelInference.docFromText = _doc_from_text
    ModelInference.queryFromText = _query_from_text

    class FaissIndexAcceptingMmap(rfi.FaissIndex):
        """ColBERT v0.2's FaissIndex with the ``mmap`` argument pyterrier_colbert passes (False only)."""

        def __init__(self, index_path, faiss_index_path, nprobe, part_range=None, mmap: bool = False):
            if mmap:
                raise NotImplementedError("ColBERT v0.2's FaissIndex has no memory-mapped mode (faisstype='mmap')")
            super().__init__(index_path, faiss_index_path, nprobe, part_range)

    rfi.FaissIndex = FaissIndexAcceptingMmap
    rfi.Pool = lambda *args, **kwargs: None  # the retrieve() path does not use the pool


def _tiny_colbert(dim: int):
    """ColBERT v0.2's model class on a 1-layer, width-8 BERT (random weights, never used), in eval mode."""
    from colbert.modeling.colbert import ColBERT
    from transformers import BertConfig
    config = BertConfig(vocab_size=104, hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
                        intermediate_size=8)
    return ColBERT(config, query_maxlen=32, doc_maxlen=180, mask_punctuation=False, dim=dim).eval()


def main() -> None:
    global VECTORS, OFFSETS, QUERIES
    p = argparse.ArgumentParser()
    p.add_argument("vectors")
    p.add_argument("work")
    p.add_argument("--nbits", type=int, default=2, help="ignored (faiss IVFPQ codes are 16 bytes per vector)")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3, help="timed passes per query (not --serve; and the variants)")
    p.add_argument("--serve", action="store_true", help="after the build, answer 'pass' requests on stdin")
    p.add_argument("--partitions", type=int, default=100, help="faiss IVF lists (ColBERTIndexer sets 100)")
    p.add_argument("--chunksize", type=float, default=3.0, help="GiB per index part (ColBERTIndexer's argument)")
    p.add_argument("--variants", nargs="*", default=[],
                   help="more search settings on the same index, NPROBE:FAISS_DEPTH (defaults 10:1000)")
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    VECTORS, OFFSETS, QUERIES = load(a.vectors)
    n_docs, dim = len(OFFSETS) - 1, VECTORS.shape[1]
    work = Path(a.work).resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    _write_tiny_vocab(work)
    os.chdir(work)  # ColBERT v0.2 loads its tokenizers from "bert-base-uncased": the folder written above

    _stub_training_logs()
    import pyterrier as pt
    pt.started = lambda: True  # asserted by pyterrier_colbert at import; Java/Terrier is not used here
    _patch_colbert_v02()
    import importlib.metadata as md

    from pyterrier_colbert.indexing import ColBERTIndexer

    torch.manual_seed(0)  # ColBERTIndexer draws each part's 5% faiss training sample with torch.randint
    indexer = ColBERTIndexer(_tiny_colbert(dim), str(work), "index", chunksize=a.chunksize, ids=False, gpu=False)
    indexer.args.dim = dim
    indexer.args.partitions = a.partitions
    docs = ({"docno": str(i), "text": str(i)} for i in range(n_docs))
    t = time.perf_counter()
    indexer.index(docs)
    build_s = time.perf_counter() - t
    index_path = Path(indexer.args.index_path)
    logger.info("built %s in %.1fs (%d docs, %d vectors)", index_path, build_s, n_docs, int(OFFSETS[-1]))

    t = time.perf_counter()
    factory = indexer.ranking_factory()
    longest = int(np.diff(OFFSETS).max())
    if longest > factory.args.doc_maxlen:
        logger.info("doc_maxlen %d -> %d (the longest document)", factory.args.doc_maxlen, longest)
        factory.args.doc_maxlen = longest
    pipe = factory.end_to_end()  # loads the faiss index and the stored vectors
    load_s = time.perf_counter() - t
    faiss_nprobe, faiss_depth = factory.args.nprobe, 1000  # ColBERTModelOnlyFactory's nprobe, set_retrieve's default

    frames = [pd.DataFrame({"qid": [str(i)], "query": [str(i)]}) for i in range(len(QUERIES))]
    candidates: list[int] = []

    def searcher(transformer: pt.Transformer) -> Callable[[pd.DataFrame], list[int]]:
        def one(frame: pd.DataFrame) -> list[int]:
            """One query through the pipeline; the top k document numbers (score descending, then docid)."""
            res = transformer.transform(frame)
            candidates.append(len(res))
            docid, score = res["docid"].to_numpy(), res["score"].to_numpy()
            return docid[np.lexsort((docid, -score))[:a.k]].tolist()
        return one

    one = searcher(pipe)

    def variants() -> list[dict]:
        out = []
        for v in a.variants:
            nprobe, depth = (int(x) for x in v.split(":"))
            factory.faiss_index.faiss_index.nprobe = nprobe
            vpipe = factory.set_retrieve(faiss_depth=depth) >> factory.index_scorer(query_encoded=True)
            candidates.clear()
            vq, vres = time_one_at_a_time(searcher(vpipe), frames, a.repeats)
            out.append({"settings": f"faiss nprobe={nprobe}, faiss_depth={depth} (same index), "
                                    f"median candidates {np.median(candidates):.0f}",
                        "per_query_ms": vq, "batched_ms_per_q": None, "topk": vres})
        factory.faiss_index.faiss_index.nprobe = faiss_nprobe
        return out

    bytes_by_kind = {kind: sum(f.stat().st_size for f in index_path.glob(pattern))
                     for kind, pattern in (("faiss", "*.faiss"), ("pt", "*.pt"), ("sample", "*.sample"))}
    system = (f"pyterrier_colbert {md.version('pyterrier-colbert')} + ColBERT v0.2 end_to_end (faiss-cpu "
              f"{md.version('faiss-cpu')}, torch {torch.__version__})")

    def settings() -> str:
        """The settings, with the median candidates per query so far and the time of the first stage alone."""
        ann_ms, _ = timed_pass(factory.set_retrieve().transform, frames)  # faiss search -> candidate set, no scores
        return (f"ColBERTIndexer defaults: faiss IVFPQ partitions={a.partitions}, 16x8-bit PQ, fp16 vectors in "
                f"{len(list(index_path.glob('*.pt')))} part(s); end_to_end(): nprobe={faiss_nprobe}, "
                f"faiss_depth={faiss_depth}, exact MaxSim re-ranking of the candidates (median "
                f"{np.median(candidates):.0f} per query; the faiss stage alone, set_retrieve(), median "
                f"{np.median(ann_ms):.1f} ms/q), gpu=False; index bytes: faiss "
                f"{bytes_by_kind['faiss'] / OFFSETS[-1]:.0f} + fp16 vectors {bytes_by_kind['pt'] / OFFSETS[-1]:.0f} "
                f"+ training sample {bytes_by_kind['sample'] / OFFSETS[-1]:.0f} B/vector; no batched API "
                f"(set_retrieve(batch=True) is unsupported)")

    common = {"system": system, "build_s": build_s, "load_s": load_s, "index_bytes": dir_bytes(index_path),
              "n_vectors": int(OFFSETS[-1]), "batched_ms_per_q": None, "threads": torch.get_num_threads()}
    if a.serve:
        for f in frames:  # warm-up: page cache, allocator, faiss
            one(f)
        emit({**common, "settings": settings(),
              "peak_rss_mib": peak_rss_mib()})
        serve(one, frames, lambda ms, res: emit({"per_query_ms": ms, "topk": res}),
              extras=lambda: {"batched_ms_per_q": None, "extra": variants()})
        return
    per_q, res = time_one_at_a_time(one, frames, a.repeats)
    emit({**common, "per_query_ms": per_q, "topk": res, "settings": settings(),
          "peak_rss_mib": peak_rss_mib(), "extra": variants()})


if __name__ == "__main__":
    main()
