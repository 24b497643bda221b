"""Process-wide settings read from the environment: where caches and collections live, encoding precision, threads.

Every environment variable the package reads is named here, so users find them in one place:

- ``LATEINT_CACHE``: cache folder (indices built by experiments, ONNX exports); default ``~/.cache/pyterrier_lateint``.
- ``LATEINT_DATA``: a folder holding test collections (``vaswani/``, ``scifact/``, ...), searched first.
- ``LATEINT_PRECISION``: forces the encoding precision (``fp32``, ``bf16``, ``fp16``, ``int8``).
- ``LATEINT_NUM_THREADS``: size of the CPU search thread pool; default the CPUs this process may use.
- ``LATEINT_BATCH_INVARIANT``: ``1`` makes every model encode batch-invariantly by default (a text's vectors then do
  not depend on the texts encoded with it, at every precision; see ``models.runtime.EncodePlan.rows``).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

CACHE_ENV = "LATEINT_CACHE"
DATA_ENV = "LATEINT_DATA"
PRECISION_ENV = "LATEINT_PRECISION"
THREADS_ENV = "LATEINT_NUM_THREADS"
BATCH_INVARIANT_ENV = "LATEINT_BATCH_INVARIANT"


def cache_dir() -> Path:
    """Where indices built by experiments and ONNX exports are kept.

    Returns:
        pathlib.Path: ``$LATEINT_CACHE``, or ``~/.cache/pyterrier_lateint`` when unset (not created here).
    """
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "pyterrier_lateint")


def data_dir() -> Optional[Path]:
    """``$LATEINT_DATA`` as a path, or ``None`` when unset."""
    value = os.environ.get(DATA_ENV)
    return Path(value) if value else None


def forced_precision() -> Optional[str]:
    """``$LATEINT_PRECISION``, or ``None`` when unset."""
    return os.environ.get(PRECISION_ENV) or None


def batch_invariant_default() -> bool:
    """``$LATEINT_BATCH_INVARIANT`` as a bool (``1``/``true``/``yes``; unset: False)."""
    value = (os.environ.get(BATCH_INVARIANT_ENV) or "").strip().lower()
    if value in ("", "0", "false", "no"):
        return False
    if value in ("1", "true", "yes"):
        return True
    raise ValueError(f"{BATCH_INVARIANT_ENV}={value!r}: use 1 or 0")


def n_threads() -> int:
    """Threads of the CPU search pool: ``$LATEINT_NUM_THREADS``, else the CPUs this process may use."""
    env = os.environ.get(THREADS_ENV)
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise ValueError(f"{THREADS_ENV}={env!r} is not an integer; unset it or give a thread count") from None
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)
