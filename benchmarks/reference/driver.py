"""One reference library, in its own virtual environment, for ``benchmarks/bench_reference.py``.

    python driver.py make LIB BASE OUT          # LIB's checkpoint of the plain encoder folder BASE, written to OUT
    python driver.py serve LIB CKPT FRAME OUT BASE  # encode, re-rank FRAME with LIB's own re-ranker; timed passes

LIB: ``colbert-ai`` (colbert-ai 0.2.22), ``pylate`` (PyLate), ``pyterrier_colbert`` (pyterrier_colbert on ColBERT
v0.2: ``make`` writes a v1 ``.dnn`` with v0.2's ``save_checkpoint``). ``serve`` reads FRAME (JSON: rows of qid,
query, docno, text), writes ``OUT/LIB.npz`` (kept token ids and float32 vectors of every query and of the first
``N_DOCS`` distinct documents; the library's score of every row) and emits ``{"ready": ...}``; then on each
``pass`` line re-ranks the whole frame once and emits its wall time, until ``quit``. Only numpy, torch and the
library are used here.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch

N_DOCS = int(os.environ.get("REF_N_DOCS", "200"))
SEED = 7


def emit(obj: dict) -> None:
    sys.stdout.write("\n@@RESULT@@" + json.dumps(obj) + "\n")
    sys.stdout.flush()


def _v02_setup(work: Path, base: Path) -> None:
    """ColBERT v0.2 loads 'bert-base-uncased' (tokenizer and model) and runs on CUDA: give it a local folder of that
    name and the CPU (as pyterrier_colbert does with gpu=False); stub its training-log imports."""
    sys.modules.setdefault("mlflow", types.ModuleType("mlflow"))
    tb = types.ModuleType("torch.utils.tensorboard")
    tb.SummaryWriter = None
    sys.modules.setdefault("torch.utils.tensorboard", tb)
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "bert-base-uncased").exists():
        shutil.copytree(base, work / "bert-base-uncased")
    os.chdir(work)
    import colbert.evaluation.load_model
    import colbert.modeling.colbert
    import colbert.modeling.inference
    import colbert.parameters
    for module in (colbert.parameters, colbert.evaluation.load_model, colbert.modeling.colbert,
                   colbert.modeling.inference):
        module.DEVICE = torch.device("cpu")


def make(lib: str, base: Path, out: Path) -> None:
    torch.manual_seed(SEED)
    if lib == "colbert-ai":
        from colbert.infra import ColBERTConfig
        from colbert.modeling.checkpoint import Checkpoint
        config = ColBERTConfig(checkpoint=str(base), dim=128, query_maxlen=32, doc_maxlen=180, mask_punctuation=True)
        Checkpoint(str(base), colbert_config=config).save(str(out))
    elif lib == "pylate":
        from pylate import models
        models.ColBERT(str(base), embedding_size=128, query_length=32, document_length=180,
                       device="cpu").save(str(out))
    elif lib == "pyterrier_colbert":
        _v02_setup(out.parent / "v02-work", base)
        from colbert.modeling.colbert import ColBERT
        from colbert.utils.parser import Arguments
        from colbert.utils.utils import save_checkpoint
        parser = Arguments(description="bench")
        parser.add_model_parameters()
        parser.add_model_training_parameters()
        parser.add_training_input()
        arguments = vars(parser.parser.parse_args(["--triples", "t.tsv", "--mask-punctuation", "--run", "bench"]))
        model = ColBERT.from_pretrained("bert-base-uncased", query_maxlen=32, doc_maxlen=180, dim=128,
                                        similarity_metric="cosine", mask_punctuation=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(str(out), 0, 0, model, torch.optim.SGD(model.parameters(), lr=0.0), arguments)
    else:
        raise SystemExit(f"unknown library {lib}")
    emit({"made": str(out)})


class Library:
    """Encode texts (kept ids, vectors) and re-rank a frame the library's own way."""

    def __init__(self, lib: str, ckpt: Path, base: Path):
        self.lib = lib
        if lib == "colbert-ai":
            from colbert.infra import ColBERTConfig
            from colbert.modeling.checkpoint import Checkpoint
            from colbert.modeling.colbert import colbert_score
            self.ckpt = Checkpoint(str(ckpt), colbert_config=ColBERTConfig(), verbose=0).eval()
            self.colbert_score = colbert_score
        elif lib == "pylate":
            from pylate import models, rank
            self.model = models.ColBERT(str(ckpt), device="cpu").eval()
            self.rank = rank
        elif lib == "pyterrier_colbert":
            _v02_setup(ckpt.parent / "v02-work", base)
            import pyterrier as pt
            pt.started = lambda: True  # asserted at import; encoding and scoring need no JVM
            from pyterrier_colbert.ranking import ColBERTModelOnlyFactory
            # ColBERTFactory(checkpoint)'s model: mask_punctuation=False, lengths 32 / 180 (amp: off on a CPU)
            self.factory = ColBERTModelOnlyFactory(str(ckpt), gpu=False, dim=128)
            self.scorer = self.factory.text_scorer()

    def encode(self, texts: list[str], is_query: bool) -> tuple[list, list]:
        with torch.inference_mode():
            if self.lib == "colbert-ai":
                c = self.ckpt
                if is_query:
                    ids, _ = c.query_tokenizer.tensorize(texts)
                    return list(ids), [q.float() for q in c.queryFromText(texts, bsize=64)]
                ids, mask = c.doc_tokenizer.tensorize(texts)
                keep = torch.tensor(c.mask(ids, skiplist=c.skiplist))
                D, doclens = c.docFromText(texts, bsize=64, keep_dims="flatten")
                return [i[k] for i, k in zip(ids, keep)], list(torch.split(D.float(), doclens))
            if self.lib == "pylate":
                m = self.model
                vecs = m.encode(texts, is_query=is_query, convert_to_numpy=False)
                raw = m.encode(texts, is_query=is_query, output_value=None, convert_to_numpy=False)
                return [i[k.bool()] for i, k in zip(raw["input_ids"], raw["masks"])], [v.float() for v in vecs]
            inf = self.factory.args.inference
            if is_query:
                Q, ids, _ = inf.queryFromText(texts, with_ids=True)
                return list(ids), list(Q.float())
            ids, mask = inf.doc_tokenizer.tensorize(texts)
            D = inf.doc(ids, mask, keep_dims=True)
            keep = torch.tensor(self.factory.args.colbert.mask(ids))
            return [i[k] for i, k in zip(ids, keep)], [d[k].float() for d, k in zip(D, keep)]

    def rerank(self, frame) -> dict:
        """The library's own re-ranking of every query's rows: {(qid, docno): score}."""
        out = {}
        with torch.inference_mode():
            if self.lib == "pyterrier_colbert":
                res = self.scorer(frame)
                return {(r.qid, r.docno): float(r.score) for r in res.itertuples()}
            for qid, group in frame.groupby("qid", sort=False):
                query, texts, docnos = group["query"].iloc[0], group["text"].tolist(), group["docno"].tolist()
                if self.lib == "colbert-ai":
                    c = self.ckpt
                    Q = c.queryFromText([query])
                    ids, mask = c.doc_tokenizer.tensorize(texts)
                    D, D_mask = c.doc(ids, mask, keep_dims="return_mask")
                    scores = self.colbert_score(Q, D, D_mask, config=c.colbert_config).tolist()
                    out.update({(qid, d): float(s) for d, s in zip(docnos, scores)})
                else:  # PyLate: encode, then pylate.rank.rerank
                    q = self.model.encode([query], is_query=True)
                    d = self.model.encode(texts, is_query=False)
                    ranked = self.rank.rerank(documents_ids=[docnos], queries_embeddings=q, documents_embeddings=[d])
                    out.update({(qid, r["id"]): float(r["score"]) for r in ranked[0]})
        return out


def serve(lib: str, ckpt: Path, frame_path: Path, out: Path, base: Path) -> None:
    import pandas as pd
    frame = pd.DataFrame(json.loads(frame_path.read_text()))
    t = time.perf_counter()
    library = Library(lib, ckpt, base)
    load_s = time.perf_counter() - t
    queries = list(dict.fromkeys(frame["query"]))
    docs = list(dict.fromkeys(frame["text"]))[:N_DOCS]
    arrays = {}
    for kind, texts, is_query in (("q", queries, True), ("d", docs, False)):
        ids, vecs = library.encode(texts, is_query)
        arrays[f"{kind}_lens"] = np.array([len(v) for v in vecs])
        arrays[f"{kind}_ids"] = np.concatenate([np.asarray(i, dtype=np.int64) for i in ids])
        arrays[f"{kind}_vecs"] = np.concatenate([v.numpy().astype(np.float32) for v in vecs])
    scores = library.rerank(frame)
    arrays["scores"] = np.array([scores[(q, d)] for q, d in zip(frame["qid"], frame["docno"])], dtype=np.float64)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / f"{lib}.npz", **arrays)
    emit({"ready": lib, "load_s": load_s})
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "quit":
            return
        if cmd == "pass":
            t = time.perf_counter()
            library.rerank(frame)
            emit({"pass_s": time.perf_counter() - t})


if __name__ == "__main__":
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    if sys.argv[1] == "make":
        make(sys.argv[2], Path(sys.argv[3]).resolve(), Path(sys.argv[4]).resolve())
    elif sys.argv[1] == "serve":
        serve(sys.argv[2], Path(sys.argv[3]).resolve(), Path(sys.argv[4]).resolve(), Path(sys.argv[5]).resolve(),
              Path(sys.argv[6]).resolve())
    else:
        raise SystemExit(__doc__)
