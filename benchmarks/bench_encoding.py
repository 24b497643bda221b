"""CPU encoding speed and fidelity with the default model on Vaswani.

    python benchmarks/bench_encoding.py                 # whole corpus (11,429 documents), all configurations
    python benchmarks/bench_encoding.py --limit 3000 --rounds 2                # speed only (no nDCG)
    python benchmarks/bench_encoding.py --configs bf16-torch --no-hf-loop      # fidelity of bf16 on the corpus
    python benchmarks/bench_encoding.py --limit 600 --rounds 5 --no-hf-loop --configs bf16-torch bf16-torch-invariant
                                                   # what batch-invariant encoding costs

Side by side in one run, interleaved round by round (A B C ... A B C ...), so drift of a shared machine hits
every configuration alike:
- ``HF loop, sorted``: the reference a user would write — transformers ``AutoModel`` in batches of 64 texts taken
  in length order, fp32, vectors of non-special tokens, L2-normalised;
- this package's ``encode_docs`` under each precision/backend; with the suffix ``-invariant``, batch-invariant
  (``batch_invariant=True``: every batch ``models.runtime.INVARIANT_ROWS`` rows of one 16-token width bucket).
Reports documents/s (median over rounds) and the ratio to the HF loop; cosine similarity of every vector to its
fp32 counterpart (min, mean); nDCG@10 of exhaustive exact MaxSim retrieval over the encoded documents (all 93
queries, when the whole corpus is encoded); and query encoding latency at batch size 1 (median ms).
"""
from __future__ import annotations

import argparse
import logging
import statistics
import time

import numpy as np
import pandas as pd
import torch

from pyterrier_lateint import ColBERT
from pyterrier_lateint.data import load_collection
from pyterrier_lateint.maxsim import maxsim_packed, pack
from pyterrier_lateint.models import default_model_path

CONFIGS = [("fp32", "torch"), ("bf16", "torch"), ("int8", "torch"), ("fp32", "onnx"), ("int8", "onnx")]


def hf_loop(texts: list[str], batch_size: int = 64, doc_maxlen: int = 180) -> list[np.ndarray]:
    """The plain transformers reference: length-sorted batches, fp32, special tokens dropped."""
    from transformers import AutoModel, AutoTokenizer
    path = str(default_model_path())
    tok, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i].split()))
    out: list = [None] * len(texts)
    with torch.inference_mode():
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            enc = tok([texts[i] for i in idx], padding=True, truncation=True, max_length=doc_maxlen,
                      return_tensors="pt", return_special_tokens_mask=True)
            special = enc.pop("special_tokens_mask").bool()
            h = torch.nn.functional.normalize(model(**enc).last_hidden_state, dim=-1)
            keep = enc["attention_mask"].bool() & ~special
            for r, i in enumerate(idx):
                out[i] = h[r][keep[r]].numpy()
    return out


def ndcg10(model: ColBERT, docs: list[np.ndarray], docnos: list[str], collection) -> float:
    import pyterrier as pt
    from ir_measures import nDCG
    topics, qrels = collection.get_topics(), collection.get_qrels()
    vectors, offsets = pack(docs)
    rows = []
    for qid, q in zip(topics["qid"], model.encode_queries(topics["query"].tolist())):
        s = maxsim_packed(q, vectors, offsets)
        top = np.argsort(-s)[:10]
        rows += [(qid, docnos[i], float(s[i])) for i in top]
    run = pd.DataFrame(rows, columns=["qid", "docno", "score"])
    return float(pt.Evaluate(run, qrels, metrics=[nDCG @ 10])["nDCG@10"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=None, help="encode only the first N documents")
    ap.add_argument("--rounds", type=int, default=1, help="timed rounds of every configuration")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--configs", nargs="+", default=[f"{p}-{b}" for p, b in CONFIGS],
                    help="precision-backend pairs to run (default: all); fp32-torch is always included")
    ap.add_argument("--no-hf-loop", action="store_true", help="skip the plain transformers reference loop")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    collection = load_collection("vaswani")
    corpus = list(collection.get_corpus_iter())[:args.limit]
    texts, docnos = [d["text"] for d in corpus], [d["docno"] for d in corpus]
    full = args.limit is None or args.limit >= 11429

    wanted = [tuple(c.split("-", 2)) for c in dict.fromkeys(["fp32-torch", *args.configs])]
    for cfg in wanted:
        if len(cfg) > 2 and cfg[2] != "invariant":
            raise SystemExit(f"unknown configuration {'-'.join(cfg)}: PRECISION-BACKEND[-invariant]")
    models = {cfg: ColBERT.from_pretrained(precision=cfg[0], backend=cfg[1], batch_size=args.batch_size,
                                           batch_invariant=len(cfg) > 2) for cfg in wanted}
    for m in models.values():  # warm-up (ONNX export, quantisation, first-call overheads)
        m.encode_docs(texts[:64])
    timings: dict = {} if args.no_hf_loop else {"HF loop, sorted": []}
    outputs: dict = {}
    for _ in range(args.rounds):
        if not args.no_hf_loop:
            t = time.perf_counter()
            outputs["HF loop, sorted"] = hf_loop(texts, args.batch_size)
            timings["HF loop, sorted"].append(time.perf_counter() - t)
        for cfg, m in models.items():
            t = time.perf_counter()
            outputs[cfg] = m.encode_docs(texts)
            timings.setdefault(cfg, []).append(time.perf_counter() - t)

    ref = outputs[("fp32", "torch")]
    base = statistics.median(timings["HF loop, sorted" if not args.no_hf_loop else ("fp32", "torch")])
    rows = []
    queries = collection.get_topics()["query"].tolist()
    for key, times in timings.items():
        med = statistics.median(times)
        vecs = outputs[key]
        cos = np.concatenate([(a * b).sum(1) for a, b in zip(vecs, ref)])
        name = key if isinstance(key, str) else f"encode_docs {' '.join(key)}"
        row = {"configuration": name, "docs/s": round(len(texts) / med, 1),
               "s per round": " ".join(f"{x:.1f}" for x in times),
               "x " + ("HF loop" if not args.no_hf_loop else "fp32"): round(base / med, 2),
               "cos min": round(float(cos.min()), 4), "cos mean": round(float(cos.mean()), 5)}
        if not isinstance(key, str):
            m = models[key]
            lat = []
            for q in queries:
                t = time.perf_counter()
                m.encode_queries([q])
                lat.append((time.perf_counter() - t) * 1000)
            row["query ms (bs 1)"] = round(statistics.median(lat), 2)
            if full:
                row["nDCG@10 exact"] = round(ndcg10(m, vecs, docnos, collection), 4)
        rows.append(row)
    print(f"\nVaswani, {len(texts)} documents, {torch.get_num_threads()} threads, batch {args.batch_size}, "
          f"{args.rounds} round(s)\n")
    print(pd.DataFrame(rows).to_markdown(index=False))


if __name__ == "__main__":
    main()
