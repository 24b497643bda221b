"""Sharded late-interaction indexes: built by workers, searched by fanning out to shard searchers (in this
process or on Ray) and merging exactly. See :class:`ShardedColBERTIndex`."""
from .artifact import ShardedColBERTIndex
from .build import ShardedIndexer
from .executors import LocalExecutor, RayExecutor
from .retriever import ShardedRetriever, ShardedScorer, ShardedVecLoader

__all__ = ["ShardedColBERTIndex", "ShardedIndexer", "ShardedRetriever", "ShardedScorer", "ShardedVecLoader",
           "LocalExecutor", "RayExecutor"]
