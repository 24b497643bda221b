"""Files of a sharded index, and the table that maps global document ids to shards.

A sharded index is a folder::

    pt_meta.json        PyTerrier artifact type and format (``late_interaction_index`` / ``lateint-sharded``)
    sharded.json        the completion marker: shards, model signature, codec, build record (written last)
    plan.json           the build plan (settings, corpus fingerprint, shard ranges): kept so a failed build resumes
    codec/              centroids and residual quantiser, trained once and shared by every shard
    shards/NNNN/index   one complete :class:`~pyterrier_lateint.index.ColBERTIndex` per shard (its own folder, so
                        each has its own writer lock and shards build in parallel)
    shards/NNNN/done.json  written when the shard is complete (plan id, documents, seconds, host)
    inputs/part-NNNNN.pkl  the corpus spilled in parts of PART_DOCS documents while building (removed at the end)

Global document ids number the shards' documents one after the other (shard 0 first), so they equal the ids of a
single index built from the same documents in the same order; every stage's cut breaks ties by lower id, which is
what makes the merged results of the shards equal a single index's.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..index.layout import IndexReader

SHARDED_FORMAT = "lateint-sharded"
META_FILE = "sharded.json"
PLAN_FILE = "plan.json"
CODEC_DIR = "codec"
SHARDS_DIR = "shards"
INPUTS_DIR = "inputs"
DONE_FILE = "done.json"
PART_DOCS = 4096  # documents per spilled input part


def shard_dir(root: Path, shard: int) -> Path:
    """The folder of shard ``shard`` (holding ``index`` and ``done.json``)."""
    return Path(root) / SHARDS_DIR / f"{shard:04d}"


def shard_index_path(root: Path, shard: int) -> Path:
    """The :class:`~pyterrier_lateint.index.ColBERTIndex` path of shard ``shard``."""
    return shard_dir(root, shard) / "index"


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object at ``path``, or ``None`` when the file does not exist."""
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


@dataclass
class ShardTable:
    """Where each global document id lives: shard ``s`` holds ids ``bases[s] <= id < bases[s + 1]``."""
    paths: list[Path]
    bases: np.ndarray  # int64 (n_shards + 1,)

    @classmethod
    def of(cls, paths: Sequence[Path], readers: Sequence[IndexReader]) -> "ShardTable":
        bases = np.zeros(len(paths) + 1, dtype=np.int64)
        np.cumsum([r.n_docs for r in readers], out=bases[1:])
        return cls([Path(p) for p in paths], bases)

    def shard_of(self, ids: np.ndarray) -> np.ndarray:
        """Shard number (int64) of each global id."""
        return np.searchsorted(self.bases, np.asarray(ids, dtype=np.int64), side="right") - 1

    def split(self, ids: np.ndarray) -> list[np.ndarray]:
        """Positions of ``ids`` per shard: ``out[s]`` indexes the ids held by shard ``s``."""
        owner = self.shard_of(ids)
        order = np.argsort(owner, kind="stable")
        cuts = np.searchsorted(owner[order], np.arange(len(self.paths) + 1))
        return [order[cuts[s]:cuts[s + 1]] for s in range(len(self.paths))]
