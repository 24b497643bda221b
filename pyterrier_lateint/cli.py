"""The ``lateint`` command line: ``lateint train --help`` lists every training setting."""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import typing
from typing import Optional, Sequence


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, not {text!r}")


def _add_config_arguments(parser: argparse.ArgumentParser, config_cls) -> None:
    hints = typing.get_type_hints(config_cls)
    group = parser.add_argument_group("training settings (override --config)")
    for f in dataclasses.fields(config_cls):
        hint = hints[f.name]
        base = next((a for a in typing.get_args(hint) if a is not type(None)), hint)
        kind = _bool if base is bool else base
        group.add_argument(f"--{f.name}", type=kind, default=None,
                           help=f"{f.metadata.get('help', '')} (default: {f.default})")


def train_main(args: argparse.Namespace) -> None:
    from .models import ColBERT
    from .training import Trainer, TrainingConfig

    base = TrainingConfig.from_json(args.config) if args.config else TrainingConfig()
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainingConfig)
                 if getattr(args, f.name) is not None}
    config = dataclasses.replace(base, **overrides)
    model = ColBERT.from_pretrained(args.model, dim=args.dim, layout=args.layout)
    Trainer(model, config).train(args.data, format=args.format, queries=args.queries, collection=args.collection,
                                 resume=not args.no_resume)
    logging.getLogger("lateint").info("trained model saved to %s/final", config.output_dir)


def main(argv: Optional[Sequence[str]] = None) -> None:
    from .training.data import FORMATS
    from .training.trainer import TrainingConfig

    parser = argparse.ArgumentParser(prog="lateint", description="pyterrier-lateint command line")
    sub = parser.add_subparsers(dest="command", required=True)
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
    tr.add_argument("--no-resume", action="store_true", help="ignore checkpoints in output_dir")
    _add_config_arguments(tr, TrainingConfig)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "train":
        train_main(args)


if __name__ == "__main__":
    main(sys.argv[1:])
