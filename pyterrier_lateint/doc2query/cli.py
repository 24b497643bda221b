"""``lateint doc2query-train``: train a query generator from the shell.

Wire it into a command line with ``add_parser(subparsers)`` (registers the sub-command) and call ``run(args)`` when
it is chosen."""
from __future__ import annotations

import argparse
import logging
from typing import Optional

COMMAND = "doc2query-train"
logger = logging.getLogger(__name__)


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``doc2query-train`` on ``subparsers`` (from ``ArgumentParser.add_subparsers``) and return its
    parser. Every :class:`GeneratorTrainingConfig` setting is a flag (``--output-dir``, ``--max-steps``, ...;
    booleans as ``--flag/--no-flag``)."""
    from ..training.config import add_config_arguments
    from .train import GeneratorTrainingConfig

    p = subparsers.add_parser(COMMAND, help="train a doc2query generator (passage -> query)",
                              description="Fine-tune a sequence-to-sequence model to generate queries from passages "
                                          "(doc2query). Pairs come from --pairs (passage<TAB>query lines) or from a "
                                          "collection's qrels and corpus (--collection, --split).")
    src = p.add_argument_group("training pairs")
    src.add_argument("--pairs", help="TSV of passage<TAB>query lines")
    src.add_argument("--collection", help="a collection name for pyterrier_lateint.data.load_collection (e.g. "
                                          "scifact) or a folder; pairs are its qrels with label >= --min-label")
    src.add_argument("--split", default="train", help="the collection's qrels split (never use the test split)")
    src.add_argument("--min-label", type=int, default=1, help="smallest qrels label that makes a pair")
    src.add_argument("--n-validation", type=int, default=0,
                     help="pairs held back (whole queries) and scored by BLEU/ROUGE at each validation")
    model = p.add_argument_group("model")
    model.add_argument("--model", help="a seq2seq checkpoint (folder or Hub name) to fine-tune")
    model.add_argument("--warm-start", metavar="ENCODER",
                       help="build an EncoderDecoderModel from this BERT-like encoder (encoder and decoder); the "
                            "default when --model is not given: the default model, all-MiniLM-L6-v2")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="continue from the newest checkpoint in --output-dir")
    add_config_arguments(p, GeneratorTrainingConfig, "training settings")
    return p


def _pairs(args):
    from .train import pairs_from_qrels, read_pairs_tsv

    if (args.pairs is None) == (args.collection is None):
        raise SystemExit(f"{COMMAND}: give exactly one of --pairs FILE and --collection NAME")
    if args.pairs is not None:
        return read_pairs_tsv(args.pairs)
    if args.split == "test":
        logger.warning("training a generator on the test split's queries: results on that split are then invalid")
    from ..data import load_collection
    collection = load_collection(args.collection)  # a name or a folder
    return pairs_from_qrels(collection.get_topics(args.split), collection.get_qrels(args.split), collection,
                            min_label=args.min_label)


def _model(args):
    from .generate import load_generator
    from .train import warm_start_encoder_decoder

    if args.model is not None and args.warm_start is not None:
        raise SystemExit(f"{COMMAND}: give at most one of --model and --warm-start")
    if args.model is not None:
        return load_generator(args.model)
    seed = args.seed if args.seed is not None else 42
    return warm_start_encoder_decoder(args.warm_start, seed=seed)


def config_from_args(args: argparse.Namespace):
    """The :class:`GeneratorTrainingConfig` of parsed arguments (flags not given keep their defaults)."""
    from ..training.config import config_from_args as from_args
    from .train import GeneratorTrainingConfig
    return from_args(args, GeneratorTrainingConfig)


def run(args: argparse.Namespace) -> Optional[dict]:
    """Run ``doc2query-train``: build the pairs, hold back ``--n-validation``, train, save ``output_dir/final``.
    Returns the last validation measures (or ``None`` without validation)."""
    from .train import GeneratorTrainer, bleu_rouge_validation, split_pairs

    config = config_from_args(args)
    pairs = _pairs(args)
    train, val = split_pairs(pairs, args.n_validation, seed=config.seed)
    logger.info("%d training pairs, %d held back for validation", len(train), len(val))
    model, tokenizer = _model(args)
    validation = bleu_rouge_validation(val) if val else None
    trainer = GeneratorTrainer(model, tokenizer, config, validation=validation)
    trainer.train(train, resume=args.resume)
    logger.info("trained generator saved to %s/final", config.output_dir)
    measures = [h for h in trainer.history if any(k.startswith("val/") for k in h)]
    return measures[-1] if measures else None


def main(argv=None) -> None:
    """``python -m pyterrier_lateint.doc2query.cli ...`` (the same as ``lateint doc2query-train ...``)."""
    parser = argparse.ArgumentParser(prog="lateint")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run(args)


if __name__ == "__main__":
    main()
