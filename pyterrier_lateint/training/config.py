"""Training settings as dataclass fields that document themselves, the settings every trainer shares, and those
dataclasses as command-line flags.

:class:`LoopConfig` holds the settings of the training loop (:class:`~pyterrier_lateint.training.loop.TrainingLoop`)
and their validation; :class:`~pyterrier_lateint.training.TrainingConfig` (``lateint train``) and
:class:`~pyterrier_lateint.doc2query.GeneratorTrainingConfig` (``lateint doc2query-train``) extend it with their own
settings, so their flags are spelled and documented alike: ``--output-dir`` (the underscore spelling is accepted too),
boolean settings as switches (``--flag`` / ``--no-flag``), each help text stating its default once. A setting that
was renamed (:func:`renamed_settings`) keeps its old name as a hidden, deprecated alias.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import typing
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar, Union

C = TypeVar("C")


def setting(default: Any, help: str) -> Any:
    """A dataclass field whose ``help`` text documents it (and the command line's ``--help``)."""
    return dataclasses.field(default=default, metadata={"help": help})


@dataclass
class LoopConfig:
    """The settings of the training loop that every trainer shares, and their validation; a trainer's config
    extends it with its own settings (and may declare a shared one again to change its default or its help).

    Raises:
        ValueError: on an unknown ``mixed_precision`` or a count out of range.
    """

    output_dir: str = setting("lateint-model", "where checkpoints and the final model (output_dir/final) go")
    max_steps: int = setting(1000, "optimiser steps")
    batch_size: int = setting(16, "training items per micro-batch (per process)")
    learning_rate: float = setting(3e-5, "peak AdamW learning rate")
    weight_decay: float = setting(0.01, "AdamW weight decay")
    warmup_ratio: float = setting(0.1, "linear warmup over this share of max_steps, then linear decay to 0")
    grad_accum: int = setting(1, "micro-batches per optimiser step")
    max_grad_norm: float = setting(1.0, "gradient clipping norm (0: no clipping)")
    mixed_precision: str = setting("no", '"no", "fp16" (GPU) or "bf16"')
    gradient_checkpointing: bool = setting(False, "recompute activations in the backward pass (less memory, slower)")
    freeze_encoder: bool = setting(False, "keep the encoder as loaded and train only what follows it (a projection "
                                          "head, a decoder)")
    seed: int = setting(42, "seed of model RNGs and of the training items' shuffling and sampling")
    shuffle_buffer: int = setting(1000, "training items shuffled within a sliding buffer of this size (1: file order)")
    save_every: int = setting(500, "steps between checkpoints (0: only at the end)")
    keep_checkpoints: int = setting(2, "newest checkpoints kept on disk")
    eval_every: int = setting(0, "steps between validations, the last step included (0: never)")
    log_every: int = setting(10, "steps between loss log lines")
    report_to: str = setting("none", '"none", "tensorboard" or "wandb"')

    def __post_init__(self) -> None:
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise ValueError(f"mixed_precision must be 'no', 'fp16' or 'bf16', not {self.mixed_precision!r}")
        if min(self.batch_size, self.max_steps, self.grad_accum, self.log_every, self.keep_checkpoints) < 1:
            raise ValueError("batch_size, max_steps, grad_accum, log_every and keep_checkpoints must be >= 1")
        if min(self.save_every, self.eval_every) < 0:
            raise ValueError("save_every and eval_every must be >= 0")

    @classmethod
    def from_json(cls: type[C], path: Union[str, Path]) -> C:
        """Read settings from a JSON file (an object of setting names; settings not given keep their defaults).

        Args:
            path: the JSON file.

        Returns:
            the configuration, of the class this is called on.

        Raises:
            ValueError: on an unknown setting name, or a value out of range.
        """
        with open(path) as f:
            data = json.load(f)
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)} - set(_renamed(cls))
        if unknown:
            raise ValueError(f"{path}: unknown training settings {sorted(unknown)}")
        return cls(**data)


def renamed_settings(**renamed: str) -> Callable[[type[C]], type[C]]:
    """A class decorator (above ``@dataclass``) keeping the old names of renamed settings (``old="new"``) as
    deprecated aliases: the constructor and ``from_json`` take them with a ``DeprecationWarning``, and
    :func:`add_config_arguments` adds their flags, hidden from ``--help``."""

    def decorate(cls: type[C]) -> type[C]:
        init = cls.__init__

        @functools.wraps(init)
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            for old, new in renamed.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(f"{cls.__name__}: give {new} only ({old} is its deprecated name)")
                    warnings.warn(f"{cls.__name__}({old}=...) is deprecated: use {new}", DeprecationWarning,
                                  stacklevel=2)
                    kwargs[new] = kwargs.pop(old)
            init(self, *args, **kwargs)

        cls.__init__ = __init__
        cls._renamed_settings = {**_renamed(cls), **renamed}
        return cls

    return decorate


def _renamed(config_cls: type) -> dict[str, str]:
    """Old setting name -> current name, for the settings of ``config_cls`` that were renamed."""
    return getattr(config_cls, "_renamed_settings", {})


def _flag_names(name: str) -> list[str]:
    """``--output-dir`` and, for compatibility with config-file keys, ``--output_dir``."""
    dashed = f"--{name.replace('_', '-')}"
    return [dashed] if "_" not in name else [dashed, f"--{name}"]


def _help(field: dataclasses.Field) -> str:
    """The field's help, with its default appended unless the help already states it."""
    text = field.metadata.get("help", "")
    return text if "default" in text else f"{text} (default: {field.default})"


def add_config_arguments(parser: argparse.ArgumentParser, config_cls: type, title: str) -> None:
    """One flag per field of the dataclass ``config_cls``, defaulting to ``None`` (= keep the config's value); the
    old names of renamed fields as hidden flags setting the same value."""
    hints = typing.get_type_hints(config_cls)
    renamed = _renamed(config_cls)
    group = parser.add_argument_group(title)
    for f in dataclasses.fields(config_cls):
        hint = hints[f.name]
        base = next((a for a in typing.get_args(hint) if a is not type(None)), hint)
        aliases = [(name, argparse.SUPPRESS) for name, new in renamed.items() if new == f.name]
        for name, help in [(f.name, _help(f)), *aliases]:
            if base is bool:
                group.add_argument(*_flag_names(name), dest=f.name, action=argparse.BooleanOptionalAction,
                                   default=None, help=help)
            else:
                group.add_argument(*_flag_names(name), dest=f.name, type=base, default=None,
                                   metavar=f.name.upper(), help=help)


def config_from_args(args: argparse.Namespace, config_cls: type[C], config_file: Optional[str] = None) -> C:
    """``config_cls`` from ``config_file`` (JSON, read by ``config_cls.from_json``) if given, else its defaults, with
    every flag that was set overriding it."""
    base = config_cls.from_json(config_file) if config_file else config_cls()
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(config_cls)
                 if getattr(args, f.name, None) is not None}
    return dataclasses.replace(base, **overrides)
