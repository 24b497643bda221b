"""Beyond plain retrieval: ColBERT-PRF, query-embedding pruning, the approximate-score cutoff and token pooling, with
quality, index bytes and latency, on each shared collection.

    python experiments/beyond.py                          # vaswani cacm med scifact
    python experiments/beyond.py vaswani --figure         # also the explanation heat map (Vaswani)

Per collection, with the default model: a 2-bit index with token ids (``store_token_ids=True``, needed by PRF and
pruning by collection frequency) and a 2-bit index of the same encodings pooled with ``pool_factor=2``, both built
once from one encoding pass into ``cache_dir()/index`` (``*.tokids.lateint``, ``*.pool2.lateint``). Systems, all
compared with ``pt.Experiment`` against end-to-end retrieval (paired t-test, Holm-corrected):

- ColBERT end-to-end (``index.retriever(model)``, default search settings);
- ColBERT-PRF, re-retrieval: ``index.retriever(model) % 3 >> index.prf(fb_docs=3, fb_embs=10, beta=1.0, k=24)``;
- ColBERT-PRF, re-ranking: ``index.retriever(model) >> index.prf(fb_docs=3, fb_embs=10, beta=1.0, rerank=True)``;
  both also with ``beta=0.1`` (one alternative fixed in advance, not tuned on these queries);
- query pruning: ``index.retriever(model, query_pruning=N)`` (lowest collection frequency; and by position);
- approximate-score cutoff: ``index.retriever(model, num_results=10, nexact=N)`` (only the top N of the candidate
  stages are scored exactly; it only bites when ``num_results < nexact``, so top-10 retrieval on nDCG@10);
- token pooling: end-to-end retrieval from the pooled index.

Writes ``experiments/results/beyond_<collection>.md`` (and, with ``--figure``, ``explain_vaswani.png``).
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyterrier as pt

from pyterrier_lateint import ColBERT, ColBERTIndex
from pyterrier_lateint.data import get_dataset
from pyterrier_lateint.experiments import model_tag
from pyterrier_lateint.index.codec import DEFAULT_KIND
from pyterrier_lateint.index.search import SearchParams
from pyterrier_lateint.settings import cache_dir

RESULTS = Path(__file__).resolve().parent / "results"
PRF = dict(fb_docs=3, fb_embs=10, beta=1.0, k=24)
logger = logging.getLogger("beyond")


def build_indices(collection, model: ColBERT) -> tuple[ColBERTIndex, ColBERTIndex, bool]:
    """The token-id index and the pooled index of ``collection``, from one encoding pass (cached), and whether
    anything was built."""
    root = cache_dir() / "index"
    stem = f"{collection.name}.{model_tag(model)}.{DEFAULT_KIND}2bit"  # the default codec is part of the key
    full = ColBERTIndex(root / f"{stem}.tokids.lateint", model)
    pooled = ColBERTIndex(root / f"{stem}.pool2.lateint", model)
    encoded: list[dict] = []
    built = not (full.built() and pooled.built())
    if not full.built():
        def docs():
            batch: list[dict] = []
            for d in collection.get_corpus_iter():
                batch.append(d)
                if len(batch) == 256:
                    yield from encode(batch)
                    batch = []
            yield from encode(batch)

        def encode(batch):
            if not batch:
                return
            vecs, ids = model.encode_docs([d["text"] for d in batch], return_ids=True)
            for d, v, i in zip(batch, vecs, ids):
                doc = {"docno": d["docno"], "doc_embs": v.astype(np.float16), "doc_toks": i}
                encoded.append(doc)
                yield doc
        full.indexer(model, nbits=2, store_token_ids=True).index(docs())
    if not pooled.built():
        source = encoded or full.get_corpus_iter(token_ids=True)  # decompressed when the full index was cached
        if not encoded:
            logger.warning("pooling the stored (2-bit) vectors of %s: delete it to pool fresh encodings", full)
        pooled.indexer(model, nbits=2, store_token_ids=True, pool_factor=2).index(source)
    return full, pooled, built


def mb(index: ColBERTIndex) -> float:
    return round(sum(index.size_bytes().values()) / 2 ** 20, 1)


def _table(systems: list, topics: pd.DataFrame, qrels: pd.DataFrame, measures: list[str]) -> pd.DataFrame:
    """One ``pt.Experiment`` against the first system (paired t-test, Holm-corrected), with latency and index size."""
    from ir_measures import AP, R, nDCG
    known = {"nDCG@10": nDCG @ 10, "AP": AP, "R@1000": R @ 1000}
    for _, s, _ in systems:  # warm up (numba compilation, memory maps) so that latencies are comparable
        s(topics.head(2))
    raw = pt.Experiment([s for _, s, _ in systems], topics, qrels, eval_metrics=[known[m] for m in measures] + ["mrt"],
                        names=[n for n, _, _ in systems], baseline=0, correction="holm")
    table = pd.DataFrame({"name": raw["name"]})
    for m in measures:
        table[m] = raw[m].round(4)
        table[f"{m} p"] = raw[f"{m} p-value corrected"].map(lambda p: "" if p != p else f"{p:.3g}")
    table["mrt (ms)"] = raw["mrt"].round(1)
    table["index MB"] = [mb(i) for _, _, i in systems]
    table["vectors"] = [i.metadata()["n_vectors"] for _, _, i in systems]
    return table


def run(name: str, model: ColBERT, figure: bool) -> str:
    start = time.perf_counter()
    collection = get_dataset(name)
    topics, qrels = collection.get_topics("test"), collection.get_qrels("test")
    full, pooled, built = build_indices(collection, model)
    e2e = full.retriever(model)
    low = dict(PRF, beta=0.1)
    systems = [
        ("ColBERT end-to-end", e2e, full),
        ("PRF re-retrieval (fb_docs=3, fb_embs=10, beta=1, k=24)", full.retriever(model) % 3 >> full.prf(**PRF), full),
        ("PRF re-ranking (same settings)", e2e >> full.prf(**PRF, rerank=True), full),
        ("PRF re-retrieval, beta=0.1", full.retriever(model) % 3 >> full.prf(**low), full),
        ("PRF re-ranking, beta=0.1", e2e >> full.prf(**low, rerank=True), full),
        ("query pruning: 8 rarest vectors", full.retriever(model, query_pruning=8), full),
        ("query pruning: 4 rarest vectors", full.retriever(model, query_pruning=4), full),
        ("query pruning: first 4 vectors", full.retriever(model, query_pruning=4, query_pruning_by="position"), full),
        ("token pooling, pool_factor=2", pooled.retriever(model), pooled),
    ]
    # the approximate-score cutoff only bites when fewer than nexact documents are asked for (nexact >= num_results
    # always): top-10 retrieval, compared on nDCG@10 with the default nexact
    default_nexact = SearchParams().for_k(10, len(full)).nexact
    cutoffs = [(f"top 10, nexact={n}" + (" (default)" if n == default_nexact else ""),
                full.retriever(model, num_results=10, nexact=n), full) for n in (default_nexact, 32, 10)]
    table = _table(systems, topics, qrels, ["nDCG@10", "AP", "R@1000"])
    cut = _table(cutoffs, topics, qrels, ["nDCG@10"]).drop(columns=["index MB", "vectors"])
    pooling = pooled.metadata().get("pooling") or {}
    lens = [len(q) for q in model.encode_queries(topics["query"].tolist())]
    text = (f"**{collection.name}** ({len(topics)} test queries, {len(full):,} documents, model {model.name}; "
            f"query vectors per query: median {int(np.median(lens))}, max {max(lens)}). p: paired t-test against "
            f"ColBERT end-to-end, Holm-corrected; mrt: mean response time per query (ms), all queries in one batch, "
            f"2 CPU cores. Token pooling removed {pooling.get('fraction_removed', float('nan')):.1%} of the vectors "
            f"({pooling.get('vectors_in', 0):,} -> {pooling.get('vectors_out', 0):,}).\n\n"
            + table.to_markdown(index=False)
            + "\n\nApproximate-score cutoff: only the best `nexact` documents of the candidate stages are scored "
              f"exactly (top-10 retrieval; p against `nexact={default_nexact}`, the default):\n\n"
            + cut.to_markdown(index=False)
            + f"\n\n(`python experiments/beyond.py {name}`: {time.perf_counter() - start:.0f} s on 2 CPU cores"
            + (", index builds included)\n" if built else ", indices cached)\n"))
    if figure:
        qid = "76" if "76" in set(topics.qid) else topics.qid.iloc[0]
        query = topics.set_index("qid").loc[qid, "query"]
        top = e2e.search(query).iloc[0]["docno"]
        full.explain_plot(query, top, path=RESULTS / f"explain_{collection.name}.png",
                          title=f"{collection.name} query {qid} and its top end-to-end document {top} (from the index)")
        print(full.explain(query, top).round(3).to_markdown(index=False))
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("collections", nargs="*", default=["vaswani", "cacm", "med", "scifact"])
    ap.add_argument("--figure", action="store_true", help="also write the explanation heat map (first collection)")
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    model = ColBERT.from_pretrained()
    for i, name in enumerate(args.collections):
        text = run(name, model, args.figure and i == 0)
        print("\n" + text, flush=True)
        args.results.mkdir(parents=True, exist_ok=True)
        (args.results / f"beyond_{name}.md").write_text(text)


if __name__ == "__main__":
    main()
