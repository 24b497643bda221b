"""The ``lateint`` command line. ``lateint COMMAND --help`` documents each command.

- ``lateint train``: train a late-interaction model (every :class:`TrainingConfig` setting is a flag).
- ``lateint cleanup``: remove temporary folders left by interrupted index builds.

Flags are spelled with dashes (``--output-dir``; the underscore spelling is accepted too); boolean settings are
switches (``--in-batch-negatives`` / ``--no-in-batch-negatives``).
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import typing
from pathlib import Path
from typing import Optional, Sequence

logger = logging.getLogger("lateint")


def _flag_names(name: str) -> list[str]:
    """``--output-dir`` and, for compatibility with config-file keys, ``--output_dir``."""
    dashed = f"--{name.replace('_', '-')}"
    return [dashed] if "_" not in name else [dashed, f"--{name}"]


def _help(field: dataclasses.Field) -> str:
    """The field's help, with its default appended unless the help already states it."""
    text = field.metadata.get("help", "")
    return text if "default" in text else f"{text} (default: {field.default})"


def add_config_arguments(parser: argparse.ArgumentParser, config_cls, title: str) -> None:
    """One flag per field of the dataclass ``config_cls``, defaulting to ``None`` (= keep the config's value)."""
    hints = typing.get_type_hints(config_cls)
    group = parser.add_argument_group(title)
    for f in dataclasses.fields(config_cls):
        hint = hints[f.name]
        base = next((a for a in typing.get_args(hint) if a is not type(None)), hint)
        if base is bool:
            group.add_argument(*_flag_names(f.name), dest=f.name, action=argparse.BooleanOptionalAction,
                               default=None, help=_help(f))
        else:
            group.add_argument(*_flag_names(f.name), dest=f.name, type=base, default=None, metavar=f.name.upper(),
                               help=_help(f))


def config_from_args(args: argparse.Namespace, config_cls, config_file: Optional[str]):
    """``config_cls`` from ``config_file`` (JSON) if given, with every flag that was set overriding it."""
    base = config_cls.from_json(config_file) if config_file else config_cls()
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(config_cls)
                 if getattr(args, f.name) is not None}
    return dataclasses.replace(base, **overrides)


# ------------------------------------------------------------------------------------------------------ train
def _add_train(sub) -> None:
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

    config = config_from_args(args, TrainingConfig, args.config)
    model = ColBERT.from_pretrained(args.model, dim=args.dim, layout=args.layout)
    Trainer(model, config).train(args.data, format=args.format, queries=args.queries, collection=args.collection,
                                 resume=not args.no_resume)
    logger.info("trained model saved to %s/final", config.output_dir)


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
    _add_train(sub)
    _add_cleanup(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args.run(args)


if __name__ == "__main__":
    main(sys.argv[1:])
