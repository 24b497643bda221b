"""The README's plots, into experiments/results/ (needs matplotlib: pip install -e '.[plots]').

    python experiments/make_plots.py

- ``per_query_vaswani.png``: nDCG@10 per query, ColBERT end-to-end minus BM25, all 93 Vaswani queries
  (``pt.Experiment(..., perquery=True)``).
- ``latency_recall_vaswani.png``: median ms per query (query vectors precomputed) against R@10 relative to exhaustive
  search, for a grid of ``nprobe`` x ``nexact`` on the cached 2-bit Vaswani index (exhaustive search's latency in
  the title).
- ``token_heatmap.png``: token similarities of one Vaswani query (``--qid``) and its top end-to-end document.

Uses the default model and the cached indices of ``pisa_bm25`` and ``lateint_index`` (built on the first run, about
3 minutes on 2 CPU cores; then the script takes about a minute). Also writes the sweep and the per-query table as
CSV next to the PNGs.
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import pyterrier as pt
from ir_measures import nDCG

from pyterrier_lateint import ColBERT
from pyterrier_lateint.data import load_collection
from pyterrier_lateint.experiments import lateint_index, pisa_bm25
from pyterrier_lateint.experiments.plots import latency_recall, per_query_difference, token_heatmap
from pyterrier_lateint.experiments.sweep import latency_recall_sweep

NPROBE = (2, 4, 8)  # nprobe=1 is left out: stage 1 then gives every candidate the same score (see the report)
NEXACT = (16, 32, 64, 128, 256)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    ap.add_argument("--qid", default="76", help="Vaswani query of the heat map (76: a short query whose top "
                    "document is short and judged relevant)")
    ap.add_argument("--repeats", type=int, default=3, help="timed passes of the sweep")
    ap.add_argument("--nprobe", type=int, nargs="+", default=list(NPROBE), help="nprobe values of the sweep")
    ap.add_argument("--nexact", type=int, nargs="+", default=list(NEXACT), help="nexact values of the sweep")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.time()

    vaswani = load_collection("vaswani")
    topics, qrels = vaswani.get_topics(), vaswani.get_qrels()
    model = ColBERT.from_pretrained()
    bm25 = pisa_bm25(vaswani)
    index = lateint_index(vaswani, model)
    e2e = index.retriever(model, num_results=1000)

    per_query = pt.Experiment([bm25, e2e], topics, qrels, [nDCG @ 10], names=["BM25", "ColBERT E2E"], perquery=True)
    per_query.to_csv(out / "per_query_vaswani.csv", index=False)
    per_query_difference(per_query, "BM25", "ColBERT E2E", "nDCG@10", path=out / "per_query_vaswani.png")

    queries = model.query_encoder()(topics)
    sweep = latency_recall_sweep(index, queries, [(p, e) for p in args.nprobe for e in args.nexact], k=10,
                                 repeats=args.repeats)
    sweep.to_csv(out / "latency_recall_vaswani.csv", index=False)
    exhaustive_ms = sweep.loc[sweep["mode"] == "exhaustive", "ms_per_query"].iloc[0]
    latency_recall(sweep[sweep["mode"] == "plaid"], group="nprobe", label="nexact",
                   path=out / "latency_recall_vaswani.png",
                   title=f"Vaswani ({len(index):,} documents, 2-bit index, {len(topics)} queries one at a time, "
                         f"2 CPU cores)\nlabels: nexact; exhaustive search: {exhaustive_ms:.0f} ms per query")

    query = topics.set_index("qid").loc[args.qid, "query"]
    top = e2e.search(query).iloc[0]
    document = vaswani.texts()[top["docno"]]
    judged = ((qrels["qid"] == args.qid) & (qrels["docno"] == top["docno"]) & (qrels["label"] > 0)).any()
    fig = token_heatmap(model, query, document)
    fig.suptitle(f"Vaswani query {args.qid} and its top end-to-end document {top['docno']} "
                 f"({'judged relevant' if judged else 'not judged relevant'})", fontsize=10)
    fig.savefig(out / "token_heatmap.png", dpi=150)

    print(sweep.round(3).to_markdown(index=False))
    print(f"\nquery {args.qid}: {query!r}\ntop document {top['docno']}: {document!r}")
    print(f"wrote {out}/per_query_vaswani.png, latency_recall_vaswani.png, token_heatmap.png "
          f"in {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
