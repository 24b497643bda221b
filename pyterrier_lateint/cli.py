"""The ``lateint`` command line. ``lateint COMMAND --help`` documents each command.

- ``lateint index COLLECTION_OR_JSONL --out PATH``: build a compressed late-interaction index.
- ``lateint search PATH "query"``: a ranked table from an index.
- ``lateint experiment NAME``: the standard experiment (BM25 vs late interaction) on a collection.
- ``lateint train``: train a late-interaction model (every :class:`TrainingConfig` setting is a flag).
- ``lateint doc2query-train``: train a doc2query query generator (:mod:`pyterrier_lateint.doc2query.cli`).
- ``lateint cleanup``: remove temporary folders left by interrupted index builds.

Flags are spelled with dashes (``--output-dir``; the underscore spelling is accepted too); boolean settings are
switches (``--in-batch-negatives`` / ``--no-in-batch-negatives``).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

logger = logging.getLogger("lateint")


# ------------------------------------------------------------------------------------------------------ train
def _add_train(sub) -> None:
    from .training.config import add_config_arguments
    from .training.data import FORMATS
    from .training.trainer import TrainingConfig

    tr = sub.add_parser("train", help="train a late-interaction model",
                        description="Train a late-interaction model. Several GPUs: "
                                    "accelerate launch -m pyterrier_lateint.cli train ...")
    tr.add_argument("--data", required=True, help="training file (formats: " + ", ".join(FORMATS) + ")")
    tr.add_argument("--format", default="auto", choices=("auto",) + FORMATS, help="training file format")
    tr.add_argument("--queries", help="queries.tsv (qid \\t text) for files of ids")
    tr.add_argument("--collection", help="collection.tsv (pid \\t text) for files of ids")
    tr.add_argument("--model", default=None, help="checkpoint name or path to start from (default: all-MiniLM-L6-v2)")
    tr.add_argument("--dim", type=int, default=None, help="add a new projection head of this dimension")
    tr.add_argument("--layout", default=None, help="force a checkpoint layout")
    tr.add_argument("--config", help="JSON file of training settings")
    tr.add_argument("--no-resume", action="store_true", help="ignore checkpoints in the output folder")
    add_config_arguments(tr, TrainingConfig, "training settings (override --config)")
    tr.set_defaults(run=_run_train)


def _run_train(args: argparse.Namespace) -> None:
    from .colbert import ColBERT
    from .training import Trainer, TrainingConfig
    from .training.config import config_from_args

    config = config_from_args(args, TrainingConfig, args.config)
    model = ColBERT.from_pretrained(args.model, dim=args.dim, layout=args.layout)
    Trainer(model, config).train(args.data, format=args.format, queries=args.queries, collection=args.collection,
                                 resume=not args.no_resume)
    logger.info("trained model saved to %s/final", config.output_dir)


# ------------------------------------------------------------------------------------------------------ index
def _add_index(sub) -> None:
    ix = sub.add_parser("index", help="build a compressed late-interaction index",
                        description="Index a collection (vaswani, cacm, med, scifact, a folder in TREC or BEIR layout, "
                                    "irds:NAME) or a JSONL file of {\"docno\", \"text\"} records (BEIR's "
                                    "{\"_id\", \"title\", \"text\"} too) into a ColBERTIndex.")
    ix.add_argument("source", help="collection name, folder, irds:NAME, or a .jsonl file")
    ix.add_argument("--out", required=True, type=Path, help="index folder to write")
    ix.add_argument("--model", default=None, help="checkpoint name or path (default: all-MiniLM-L6-v2)")
    ix.add_argument("--nbits", type=int, default=2, choices=(1, 2, 4, 16), help="bits per residual dimension "
                    "(16 = uncompressed float16; default: %(default)s)")
    ix.add_argument("--overwrite", action="store_true", help="replace an existing index")
    ix.set_defaults(run=_run_index)


def jsonl_documents(path: Path):
    """``{"docno", "text"}`` records of a JSONL file (``_id``/``title`` accepted), with errors naming the line."""
    import json
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
            except json.JSONDecodeError as ex:
                raise ValueError(f"{path}:{n} is not JSON ({ex.msg}); expected one {{\"docno\", \"text\"}} "
                                 f"object per line") from None
            docno = d.get("docno", d.get("_id"))
            if docno is None or not isinstance(d.get("text"), str):
                raise ValueError(f"{path}:{n} needs 'docno' (or '_id') and a string 'text'; got keys {sorted(d)}")
            text = f"{d['title']} {d['text']}" if d.get("title") else d["text"]
            yield {"docno": str(docno), "text": text}


def _run_index(args: argparse.Namespace) -> None:
    from .colbert import ColBERT
    from .data import get_dataset
    from .index import ColBERTIndex
    source = Path(args.source)
    docs = jsonl_documents(source) if source.suffix == ".jsonl" and source.is_file() else \
        get_dataset(args.source).get_corpus_iter()
    model = ColBERT.from_pretrained(args.model)
    index = ColBERTIndex(args.out, model)
    index.indexer(nbits=args.nbits, overwrite=args.overwrite).index(docs)
    meta = index.metadata()
    print(f"indexed {meta['n_docs']} documents, {meta['n_vectors']} vectors into {args.out} "
          f"({sum(index.size_bytes().values()) / 1e6:.1f} MB, {meta['build']['seconds_total']:.0f} s)")


# ------------------------------------------------------------------------------------------------------ search
def _add_search(sub) -> None:
    se = sub.add_parser("search", help="search an index: a ranked table",
                        description="Search a ColBERTIndex with one or more queries and print a ranked table. The "
                                    "model is the one recorded in the index unless --model is given.")
    se.add_argument("index", type=Path, help="index folder")
    se.add_argument("queries", nargs="+", help="query text(s)")
    se.add_argument("-k", "--num-results", type=int, default=10, help="results per query (default: %(default)s)")
    se.add_argument("--model", default=None, help="checkpoint name or path (default: the index's own)")
    se.add_argument("--mode", default="plaid", choices=("plaid", "exhaustive"), help="search mode")
    se.add_argument("--collection", default=None, help="show the text of each result from this collection")
    se.set_defaults(run=_run_search)


def _run_search(args: argparse.Namespace) -> None:
    import pandas as pd

    from .colbert import ColBERT
    from .index import ColBERTIndex
    index = ColBERTIndex(args.index)
    model = ColBERT.from_pretrained(args.model) if args.model else index.load_model()
    topics = pd.DataFrame({"qid": [str(i + 1) for i in range(len(args.queries))], "query": args.queries})
    res = index.retriever(model, num_results=args.num_results, mode=args.mode)(topics)
    cols = ["qid", "query", "rank", "docno", "score"]
    if args.collection:
        import pyterrier as pt

        from .data import get_dataset
        res = pt.text.get_text(get_dataset(args.collection), "text")(res)
        res["text"] = res["text"].str.slice(0, 80)
        cols.append("text")
    print(res[cols].to_markdown(index=False, floatfmt=".4f"))


# ------------------------------------------------------------------------------------------------------ experiment
def _add_experiment(sub) -> None:
    from .experiments.runner import SYSTEMS
    ex = sub.add_parser("experiment", help="BM25 vs late interaction on a collection (pt.Experiment table)",
                        description="The standard experiment (pyterrier_lateint.experiments.runner): BM25, BM25 "
                                    "re-ranked from text and from the index, end-to-end and exhaustive retrieval; AP, "
                                    "nDCG@10, RR, R@1000, mean response time, paired t-tests against BM25 (Holm). "
                                    "Runs are saved and reused.")
    ex.add_argument("collection", help="vaswani, cacm, med, scifact, a folder, or irds:NAME")
    ex.add_argument("--split", default="test", help="query split (default: %(default)s)")
    ex.add_argument("--model", default=None, help="checkpoint name or path (default: all-MiniLM-L6-v2)")
    ex.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS, help="systems to run")
    ex.add_argument("--rerank-depth", type=int, default=100, help="BM25 results re-ranked from text")
    ex.add_argument("--max-queries", type=int, default=None, help="only the first N queries")
    ex.add_argument("--save-dir", default="runs", help="folder for runs and tables (default: %(default)s)")
    ex.add_argument("--generator", default=None, help="a doc2query generator (seq2seq folder): adds BM25 + doc2query "
                                                      "and BM25 + doc2query-- rows")
    ex.add_argument("--results", type=Path, default=None, help="also write the markdown table to this file")
    ex.set_defaults(run=_run_experiment)


def _run_experiment(args: argparse.Namespace) -> None:
    from .experiments.runner import ExperimentSettings, run_experiment
    settings = ExperimentSettings(collection=args.collection, split=args.split, model=args.model,
                                  systems=tuple(args.systems), rerank_depth=args.rerank_depth,
                                  max_queries=args.max_queries, save_dir=args.save_dir, generator=args.generator)
    result = run_experiment(settings)
    print("\n" + result.markdown())
    print(f"(runs and tables in {result.folder}; {result.meta['seconds']:.0f} s)")
    if args.results:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(result.markdown())


def _add_doc2query_train(sub) -> None:
    from .doc2query import cli as d2q_cli
    d2q_cli.add_parser(sub).set_defaults(run=d2q_cli.run)


# ------------------------------------------------------------------------------------------------------ cleanup
def _add_cleanup(sub) -> None:
    from .settings import cache_dir
    cl = sub.add_parser("cleanup", help="remove folders left by interrupted index builds",
                        description="Remove the temporary folders (.NAME.tmp-PID-*, .NAME.old-PID-*) that index builds "
                                    "killed part-way left behind, when their process is gone. A build of the same "
                                    "path also removes them.")
    cl.add_argument("folders", nargs="*", type=Path, help=f"folders to search, recursively (default: {cache_dir()})")
    cl.add_argument("--dry-run", action="store_true", help="list what would be removed, remove nothing")
    cl.set_defaults(run=_run_cleanup)


def _run_cleanup(args: argparse.Namespace) -> None:
    import shutil

    from .index.build import stale_builds_under
    from .settings import cache_dir
    folders = args.folders or [cache_dir()]
    found = [p for folder in folders for p in stale_builds_under(folder)]
    for p in found:
        size = sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
        print(f"{'would remove' if args.dry_run else 'removing'} {p} ({size / 1e6:.1f} MB)")
        if not args.dry_run:
            shutil.rmtree(p, ignore_errors=True)
    if not found:
        print(f"nothing to remove under {', '.join(str(f) for f in folders)}")


# ------------------------------------------------------------------------------------------------------ main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lateint", description="pyterrier-lateint command line")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_index(sub)
    _add_search(sub)
    _add_experiment(sub)
    _add_train(sub)
    _add_doc2query_train(sub)
    _add_cleanup(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args.run(args)


if __name__ == "__main__":
    main(sys.argv[1:])
