"""Sharded indexing and search (pyterrier_lateint.sharded) against the number of workers; prints markdown tables.

    python benchmarks/bench_sharded.py build  --workers 1 2          # Vaswani from text, default model
    python benchmarks/bench_sharded.py search --shards 1 2 4 --workers 1 2

``build``: wall seconds of a single ColBERTIndex and of sharded builds (``local``: this process; ``ray``: a local
Ray cluster, ``W`` workers of ``CPUS / W`` CPUs each), each run reported, with nDCG@10 of the result.
``search``: per-query latency, one query per call (query vectors precomputed, so encoding is excluded), of the
single index and of sharded indexes searched by local threads or Ray actors, all built from the same encoded
vectors and codec; rounds interleave the configurations and every configuration's results are checked equal to
the single index's. Ratios are per query against the single index in the same round.
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

logger = logging.getLogger("bench_sharded")


def _ray_init(cpus: int) -> None:
    import ray
    if not ray.is_initialized():
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)


def bench_build(args) -> None:
    from bench_index import load_frames, md_table, ndcg10
    from pyterrier_lateint import ColBERT, ColBERTIndex, ShardedColBERTIndex
    docs, queries, qrels = load_frames(args.collection)
    model = ColBERT.from_pretrained()
    cpus = os.cpu_count() or 1
    work = Path(tempfile.mkdtemp(prefix="bench_sharded_"))
    rows = []
    try:
        configs = [("single ColBERTIndex", None, None)] + [("local", 1, None)] + \
            [("ray", w, cpus / w) for w in args.workers]
        for rep in range(args.repeats):
            for name, workers, cpus_per in configs:
                path = work / f"{name.split()[0]}-{workers}"
                shutil.rmtree(path, ignore_errors=True)
                t = time.perf_counter()
                if workers is None:
                    idx = ColBERTIndex(path, model).indexer(verbose=False).index(docs.to_dict("records"))
                    phases = ""
                else:
                    if name == "ray":
                        _ray_init(cpus)
                    kw = dict(executor="ray", workers=workers, cpus_per_worker=cpus_per) if name == "ray" else {}
                    idx = ShardedColBERTIndex(path, model).indexer(n_shards=args.shards, verbose=False, **kw) \
                        .index(docs.to_dict("records"))
                    b = idx.metadata()["build"]
                    phases = f"spill {b['seconds_spill']:.1f} / codec {b['seconds_codec']:.1f} / " \
                             f"shards {b['seconds_shards']:.1f}"
                seconds = time.perf_counter() - t
                res = idx.retriever(model, num_results=10)(queries)
                rows.append({"run": rep + 1, "build": name if workers is None else
                             f"{name}, {workers} worker(s) x {cpus_per or cpus:g} CPU, {args.shards} shards",
                             "seconds": round(seconds, 1), "phases (s)": phases,
                             "nDCG@10": round(ndcg10(res, qrels), 4)})
                logger.info("%s", rows[-1])
                shutil.rmtree(path, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    emit(args, f"Build from text, {args.collection} ({len(docs)} documents), default model, {cpus} CPUs, every run",
         md_table(rows))


def bench_search(args) -> None:
    from bench_index import encoded_vectors, load_frames, md_table, ndcg10, qframe
    from pyterrier_lateint import ColBERT, ColBERTIndex, ShardedColBERTIndex
    docs, queries, qrels = load_frames(args.collection)
    model = ColBERT.from_pretrained()
    vectors, offsets, qvecs = encoded_vectors(model, docs, queries, args.collection)
    frame = qframe(queries, qvecs)
    docnos = docs.docno.tolist()

    def corpus():
        for i, d in enumerate(docnos):
            yield {"docno": d, "doc_embs": np.asarray(vectors[offsets[i]:offsets[i + 1]], dtype=np.float32)}

    cpus = os.cpu_count() or 1
    work = Path(tempfile.mkdtemp(prefix="bench_sharded_"))
    try:
        shards = {}
        for n in sorted(set(args.shards)):  # the first trains the codec; the others and the single index reuse it
            first = next(iter(shards.values()), None)
            shards[n] = ShardedColBERTIndex(work / f"s{n}", model).indexer(n_shards=n, verbose=False,
                                                                           codec_from=first).index(corpus())
        codec = next(iter(shards.values())).codec()
        single = ColBERTIndex(work / "single", model).indexer(codec_from=codec, verbose=False).index(corpus())
        single_r = single.retriever(model, num_results=args.k)
        ref = single_r(frame)
        # groups measured in turn, each interleaved with the single index (Ray searchers keep their CPUs while they
        # live, so one Ray configuration at a time)
        groups = [{f"{n} shards, local threads": (shards[n], {}) for n in shards}]
        if args.workers:
            _ray_init(cpus)
        groups += [{f"{n} shards, Ray, {w} worker(s) x {cpus / w:g} CPU":
                    (shards[n], dict(executor="ray", workers=w, cpus_per_worker=cpus / w))}
                   for w in args.workers for n in shards if n >= w]
        rows = []
        for group in groups:
            configs = {"single index": single_r}
            configs.update({name: idx.retriever(model, num_results=args.k, **kw) for name, (idx, kw) in group.items()})
            times = {name: [] for name in configs}
            for rep in range(args.repeats):
                for i in range(len(frame)):
                    q = frame.iloc[i:i + 1]
                    for name, r in configs.items():
                        t = time.perf_counter()
                        r(q)
                        times[name].append(1000 * (time.perf_counter() - t))
            base = np.asarray(times["single index"])
            for name, r in configs.items():
                if name == "single index" and rows:
                    continue
                batch = []
                for _ in range(3):
                    t = time.perf_counter()
                    res = r(frame)
                    batch.append(1000 * (time.perf_counter() - t) / len(frame))
                batch_ms = float(np.median(batch))
                a_ = np.asarray(times[name])
                rows.append({"configuration": name,
                             "results equal single": bool(len(res) == len(ref) and
                                                          (res.docno.to_numpy() == ref.docno.to_numpy()).all()),
                             "nDCG@10": round(ndcg10(res, qrels), 4),
                             "median ms": round(float(np.median(a_)), 2), "p95 ms": round(float(np.percentile(a_, 95)), 2),
                             "single index in the same rounds, median / p95 ms":
                                 f"{np.median(base):.2f} / {np.percentile(base, 95):.2f}",
                             "median ratio to single": round(float(np.median(a_ / base)), 2),
                             "p95 of ratio": round(float(np.percentile(a_ / base, 95)), 2),
                             "all queries in one call, ms/query (median of 3)": round(batch_ms, 2)})
                logger.info("%s", rows[-1])
            for idx, _ in group.values():
                idx.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    emit(args, f"Search, {args.collection} ({len(docnos)} documents, {len(frame)} queries x {args.repeats} rounds, "
               f"k={args.k}), one query per call, query encoding excluded, {cpus} CPUs", md_table(rows))


def emit(args, title: str, table: str) -> None:
    """Print the table (and write it to ``--out``), headed by the command that printed it."""
    text = f"{title}; printed by `python benchmarks/bench_sharded.py {' '.join(sys.argv[1:])}`:\n\n{table}\n"
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build time against workers")
    b.add_argument("--workers", type=int, nargs="*", default=[1, 2], help="Ray worker counts")
    b.add_argument("--shards", type=int, default=4)
    b.add_argument("--repeats", type=int, default=1, help="runs of each configuration")
    s = sub.add_parser("search", help="latency against shards and workers")
    s.add_argument("--shards", type=int, nargs="+", default=[1, 2, 4])
    s.add_argument("--workers", type=int, nargs="*", default=[1, 2], help="Ray worker counts (none: skip Ray)")
    s.add_argument("--repeats", type=int, default=3, help="rounds over the queries")
    s.add_argument("--k", type=int, default=10)
    for p in (b, s):
        p.add_argument("--collection", default="vaswani")
        p.add_argument("--out", help="also write the table to this file (e.g. experiments/results/sharded_build.md)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    bench_build(args) if args.cmd == "build" else bench_search(args)


if __name__ == "__main__":
    main()
