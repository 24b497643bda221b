"""Main experiment: BM25 vs late-interaction re-ranking on a real test collection, as a pt.Experiment table.

    python experiments/vaswani.py                       # Vaswani, all 93 queries
    python experiments/vaswani.py --collection cacm     # any local TREC/BEIR collection

Systems: PISA BM25; BM25's top 100 re-ranked from text by the default model; end-to-end retrieval from the
compressed late-interaction index (2-bit residuals, built once into ~/.cache/pyterrier_lateint); BM25's top 1000
re-ranked from the index's stored vectors; and exhaustive exact MaxSim over the index. Prints a markdown table
(AP, nDCG@10, RR, R@1000, mean response time in ms, paired t-test against BM25) and saves the runs under
``--save-dir``.
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import pyterrier as pt
from ir_measures import AP, RR, R, nDCG

from pyterrier_lateint import ColBERT
from pyterrier_lateint.data import load_collection
from pyterrier_lateint.experiments import lateint_index, pisa_bm25


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--collection", default="vaswani", help="local collection name or folder")
    parser.add_argument("--split", default="test", help="query split (BEIR collections)")
    parser.add_argument("--model", default=None, help="checkpoint name or path (default: all-MiniLM-L6-v2)")
    parser.add_argument("--rerank-depth", type=int, default=100, help="BM25 results re-ranked per query")
    parser.add_argument("--save-dir", default="runs", help="folder for the saved runs")
    parser.add_argument("--no-index", action="store_true", help="skip the rows that need the late-interaction index")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    collection = load_collection(args.collection)
    topics, qrels = collection.get_topics(args.split), collection.get_qrels(args.split)
    bm25 = pisa_bm25(collection)
    model = ColBERT.from_pretrained(args.model)
    rerank = bm25 % args.rerank_depth >> pt.text.get_text(collection, "text") >> model.text_scorer()
    systems = [bm25, rerank]
    names = ["BM25", f"BM25 top{args.rerank_depth} then text scorer"]
    if not args.no_index:
        index = lateint_index(collection, model)
        systems += [index.retriever(model, num_results=1000), bm25 >> index.scorer(model),
                    index.retriever(model, mode="exhaustive", num_results=1000)]
        names += ["ColBERT E2E", "BM25 then index scorer", "ColBERT exhaustive"]

    save_dir = Path(args.save_dir) / collection.path.name
    save_dir.mkdir(parents=True, exist_ok=True)
    start = time.time()
    table = pt.Experiment(systems, topics, qrels, eval_metrics=[AP, nDCG @ 10, RR, R @ 1000, "mrt"], names=names,
                          baseline=0, correction="holm", save_dir=str(save_dir),
                          save_mode="overwrite", round=4)
    print(f"\n{collection.path.name}: {len(topics)} queries, {len(collection.texts())} documents, "
          f"model {model.name} (took {time.time() - start:.0f} s)\n")
    print(compact(table, ["AP", "nDCG@10", "RR", "R@1000"]).to_markdown(index=False))
    table.to_csv(save_dir / "experiment.csv", index=False)


def compact(table, measures: list[str]):
    """Measures, mean response time (ms) and Holm-corrected paired t-test p-values against the baseline."""
    cols = {"name": table["name"]}
    for m in measures:
        cols[m] = table[m]
        cols[f"{m} p"] = table[f"{m} p-value corrected"].map(lambda p: "" if p != p else f"{p:.3g}")
    cols["mrt (ms)"] = table["mrt"].round(1)
    return table.__class__(cols)


if __name__ == "__main__":
    main()
