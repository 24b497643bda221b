"""Self-supervised domain adaptation: train the default backbone with a ColBERT head on a corpus alone, then
compare with the untrained default on the collection's real queries (never used for training).

    python experiments/train_selfsupervised.py --collection vaswani --output runs/selfsup-vaswani

Pseudo-queries are random word spans of documents; their hard negatives are BM25 ranks 10-99 of the pseudo-query
that are not the source document. The table compares BM25 % 100 >> text re-ranking with the untrained default and
with the trained model (paired t-test against the untrained default).
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pyterrier as pt
from ir_measures import AP, RR, nDCG

from pyterrier_lateint import ColBERT
from pyterrier_lateint.data import load_collection
from pyterrier_lateint.experiments import pisa_bm25
from pyterrier_lateint.training import Trainer, TrainingConfig, mine_hard_negatives, pseudo_queries


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--collection", default="vaswani")
    ap.add_argument("--output", default="runs/selfsup-vaswani")
    ap.add_argument("--n-queries", type=int, default=3000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--max-steps", type=int, default=400)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--n-negatives", type=int, default=4)
    ap.add_argument("--learning-rate", type=float, default=2e-5)
    ap.add_argument("--head-learning-rate", type=float, default=1e-3)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--freeze-encoder", "--freeze-backbone", action="store_true",
                    help="train only the head (a few hundred KB)")
    ap.add_argument("--head-init", default="random", choices=("random", "identity"),
                    help="identity (with --dim 384) starts from exactly the untrained default vectors")
    ap.add_argument("--mixed-precision", default="no", choices=("no", "bf16", "fp16"))
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    collection = load_collection(args.collection)
    bm25 = pisa_bm25(collection)
    text = pt.text.get_text(collection, "text")
    topics, qrels = pseudo_queries(collection.get_corpus_iter(), args.n_queries, seed=args.seed)
    examples = mine_hard_negatives(topics, qrels, bm25, text, neg_ranks=(10, 100), n_negatives=16, seed=args.seed)

    model = ColBERT.from_pretrained(dim=args.dim, head_init=args.head_init)
    config = TrainingConfig(output_dir=args.output, max_steps=args.max_steps, batch_size=args.batch_size,
                            n_negatives=args.n_negatives, learning_rate=args.learning_rate,
                            head_learning_rate=args.head_learning_rate, temperature=args.temperature,
                            freeze_encoder=args.freeze_encoder, seed=args.seed, save_every=100, log_every=10,
                            warmup_ratio=0.1, mixed_precision=args.mixed_precision)
    Trainer(model, config).train(examples)

    untrained = ColBERT.from_pretrained()
    trained = ColBERT.from_pretrained(str(Path(args.output) / "final"))
    table = pt.Experiment(
        [bm25, bm25 % 100 >> text >> untrained.text_scorer(), bm25 % 100 >> text >> trained.text_scorer()],
        collection.get_topics(), collection.get_qrels(), [AP, nDCG @ 10, RR],
        names=["BM25", "untrained default (384-d)", f"self-supervised ({args.dim}-d)"], baseline=1, round=4)
    print(table.to_markdown(index=False))


if __name__ == "__main__":
    main()
