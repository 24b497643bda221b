"""Training settings as dataclass fields that document themselves, and those dataclasses as command-line flags.

Both ``lateint train`` (:class:`~pyterrier_lateint.training.TrainingConfig`) and ``lateint doc2query-train``
(:class:`~pyterrier_lateint.doc2query.GeneratorTrainingConfig`) are built from these, so their flags are spelled and
documented alike: ``--output-dir`` (the underscore spelling is accepted too), boolean settings as switches
(``--flag`` / ``--no-flag``), each help text stating its default once.
"""
from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any, Optional, TypeVar

C = TypeVar("C")


def setting(default: Any, help: str) -> Any:
    """A dataclass field whose ``help`` text documents it (and the command line's ``--help``)."""
    return dataclasses.field(default=default, metadata={"help": help})


def _flag_names(name: str) -> list[str]:
    """``--output-dir`` and, for compatibility with config-file keys, ``--output_dir``."""
    dashed = f"--{name.replace('_', '-')}"
    return [dashed] if "_" not in name else [dashed, f"--{name}"]


def _help(field: dataclasses.Field) -> str:
    """The field's help, with its default appended unless the help already states it."""
    text = field.metadata.get("help", "")
    return text if "default" in text else f"{text} (default: {field.default})"


def add_config_arguments(parser: argparse.ArgumentParser, config_cls: type, title: str) -> None:
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


def config_from_args(args: argparse.Namespace, config_cls: type[C], config_file: Optional[str] = None) -> C:
    """``config_cls`` from ``config_file`` (JSON, read by ``config_cls.from_json``) if given, else its defaults, with
    every flag that was set overriding it."""
    base = config_cls.from_json(config_file) if config_file else config_cls()
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(config_cls)
                 if getattr(args, f.name, None) is not None}
    return dataclasses.replace(base, **overrides)
