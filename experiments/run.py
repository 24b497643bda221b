"""The main experiment: BM25 against late-interaction re-ranking and retrieval with the default model, on one or more
collections, one ``pt.Experiment`` table each (see ``pyterrier_lateint.experiments.runner``).

    python experiments/run.py                              # Vaswani, all 93 queries (the README's main job)
    python experiments/run.py vaswani cacm med scifact     # every shared collection
    python experiments/run.py irds:beir/nfcorpus           # any ir_datasets collection (online)

Each table is printed and written to ``NAME.md`` in ``--results`` (default: ``$LATEINT_CACHE/results``, outside the
repository, so that a user's run never changes a tracked file). The README's tables are refreshed deliberately:
``python experiments/run.py --results experiments/results`` then ``python experiments/readme.py``. Runs are saved
under ``--save-dir`` and reused when run again.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from pyterrier_lateint.experiments.runner import SYSTEMS, ExperimentSettings, run_experiment
from pyterrier_lateint.settings import cache_dir

README_RESULTS = Path(__file__).resolve().parent / "results"  # the tables the README includes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("collections", nargs="*", default=["vaswani"], help="collection names (default: vaswani)")
    ap.add_argument("--split", default="test", help="query split (BEIR collections)")
    ap.add_argument("--model", default=None, help="checkpoint name or path (default: all-MiniLM-L6-v2)")
    ap.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS)
    ap.add_argument("--rerank-depth", type=int, default=100)
    ap.add_argument("--save-dir", default="runs")
    ap.add_argument("--generator", default=None, help="doc2query generator folder: adds BM25 + doc2query rows")
    ap.add_argument("--results", type=Path, default=None,
                    help=f"folder for the markdown tables (default: $LATEINT_CACHE/results; {README_RESULTS} "
                         "to refresh the README's tables)")
    args = ap.parse_args()
    args.results = args.results or cache_dir() / "results"
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for name in args.collections:
        result = run_experiment(ExperimentSettings(collection=name, split=args.split, model=args.model,
                                                   systems=tuple(args.systems), rerank_depth=args.rerank_depth,
                                                   save_dir=args.save_dir, generator=args.generator))
        command = "python experiments/run.py" + ("" if name == "vaswani" else f" {name}") + \
            (f" --generator {args.generator}" if args.generator else "")
        text = result.markdown() + f"\n(`{command}`: {result.meta['seconds']:.0f} s on this machine)\n"
        print("\n" + text, flush=True)
        args.results.mkdir(parents=True, exist_ok=True)
        (args.results / f"{result.meta['collection']}.md").write_text(text)
        logging.getLogger("run").info("table written to %s", args.results / f"{result.meta['collection']}.md")


if __name__ == "__main__":
    main()
