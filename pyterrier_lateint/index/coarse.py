"""Two-level nearest-centroid assignment, for builds with many centroids.

A build assigns every token vector to its nearest of ``K`` centroids (:func:`.kmeans.assign_nearest`): ``K`` dot
products per vector, most of a large build (at 300,000 documents, 26.1M vectors and 32,768 centroids, 3,031 of
4,962 s). Here the centroids are first grouped by k-means into ``G ~ sqrt(K)`` groups; a vector is compared with the
``G`` group means, then only with the centroids of its ``probes`` nearest groups: ``G + probes * K / G`` dot
products (1,280 instead of 32,768 at ``K = 32,768``: ``G = 256`` groups of 128 on average, ``probes = 8``), as
matrix products per group.

It is an approximation: a vector whose nearest centroid lies in a group it did not probe gets the nearest centroid of
the groups it did. How often, and how much farther that centroid is, ``benchmarks/bench_assign.py --method coarse
--check`` measures. Builds and k-means use it from :data:`COARSE_MIN_CENTROIDS` centroids up (:func:`assigner`).
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import numpy as np

COARSE_MIN_CENTROIDS = 16_384  # with assignment="auto", builds of at least this many centroids assign two-level
ASSIGNMENTS = ("auto", "exact", "coarse")
GROUP_PROBES = 8  # groups of centroids searched per vector
CHUNK_ROWS = 32_768  # vectors per step (their (rows, groups) scores and gathered copies stay ~100 MB)


def n_groups(k: int) -> int:
    """Groups for ``k`` centroids: the power of two nearest ``sqrt(k)``, at most ``k``."""
    return int(min(k, 2 ** round(math.log2(max(1.0, math.sqrt(k))))))


class CoarseAssigner:
    """Nearest centroid by two levels (see the module docstring).

    Args:
        centroids: float32 ``(K, dim)``.
        probes: groups searched per vector (default :data:`GROUP_PROBES`); ``probes >= G`` is exact.
        seed: seed of the k-means that groups the centroids.

    Example:
        .. code-block:: python

            assigner = CoarseAssigner(centroids)       # once per build
            codes = assigner.assign(vectors)           # int64 (n,), like assign_nearest(vectors, centroids)
    """

    def __init__(self, centroids: np.ndarray, probes: int = GROUP_PROBES, seed: int = 0):
        import torch

        from .kmeans import assign_nearest, kmeans
        c = np.ascontiguousarray(centroids, dtype=np.float32)
        self.k = len(c)
        g = n_groups(self.k)
        means = kmeans(c, g, iters=10, seed=seed, use_faiss=False)
        group_of = assign_nearest(c, means, bf16=False)
        used = np.unique(group_of)  # a group mean no centroid is nearest to is dropped: nothing to probe there
        means = np.ascontiguousarray(means[used])
        group_of = np.searchsorted(used, group_of)
        g = len(used)
        self.probes = int(min(max(1, probes), g))
        order = np.argsort(group_of, kind="stable")
        starts = np.searchsorted(group_of[order], np.arange(g + 1))
        ct = torch.from_numpy(c)
        self.means = torch.from_numpy(means)
        self.mean_half_norms = 0.5 * (self.means * self.means).sum(1)
        # per group: its centroid ids and the centroids with -|c|^2/2 as a last column (one product scores them)
        self.members = [torch.from_numpy(order[starts[j]:starts[j + 1]].astype(np.int64)) for j in range(g)]
        half_norms = 0.5 * (ct * ct).sum(1)
        self.blocks = [torch.cat([ct[m], -half_norms[m][:, None]], 1).T.contiguous() for m in self.members]

    def assign(self, x: np.ndarray) -> np.ndarray:
        """Index of the (approximately) L2-nearest centroid of each row of ``x`` ``(n, dim)``: int64 ``(n,)``."""
        import torch
        out = np.empty(len(x), dtype=np.int64)
        for s in range(0, len(x), CHUNK_ROWS):
            xs = torch.from_numpy(np.ascontiguousarray(x[s:s + CHUNK_ROWS], dtype=np.float32))
            out[s:s + len(xs)] = self._assign_chunk(xs).numpy()
        return out

    def _assign_chunk(self, xs):
        """Nearest centroid ids (int64 tensor) of the rows of ``xs`` (float32 tensor ``(n, dim)``)."""
        import torch
        n, P = len(xs), self.probes
        top = torch.topk(xs @ self.means.T - self.mean_half_norms, P, dim=1).indices  # (n, probes)
        flat = top.reshape(-1)
        row_of = torch.arange(n).repeat_interleave(P)
        order = torch.argsort(flat, stable=True)
        counts = torch.bincount(flat, minlength=len(self.blocks)).tolist()
        xa = torch.cat([xs, torch.ones(n, 1)], 1)
        best = torch.full((n,), -torch.inf)
        arg = torch.zeros(n, dtype=torch.int64)
        a = 0
        for j, cnt in enumerate(counts):
            if cnt == 0:
                continue
            rows = row_of[order[a:a + cnt]]  # distinct: a vector probes a group once
            a += cnt
            val, idx = (xa[rows] @ self.blocks[j]).max(1)
            better = val > best[rows]
            best[rows] = torch.where(better, val, best[rows])
            arg[rows] = torch.where(better, self.members[j][idx], arg[rows])
        return arg


def check_assignment(assignment: str) -> str:
    """The checked ``assignment`` setting (``ValueError`` naming the choices)."""
    if assignment not in ASSIGNMENTS:
        raise ValueError(f"assignment must be one of {ASSIGNMENTS}, not {assignment!r}")
    return assignment


def is_coarse(k: int, assignment: str = "auto") -> bool:
    """Whether ``assignment`` (``"auto"``: from :data:`COARSE_MIN_CENTROIDS` centroids up) is two-level for ``k``
    centroids."""
    return check_assignment(assignment) == "coarse" or (assignment == "auto" and k >= COARSE_MIN_CENTROIDS)


def train_centroids(x: np.ndarray, k: int, *, iters: int = 8, seed: int = 0, use_faiss: Optional[bool] = None,
                    assignment: str = "auto") -> np.ndarray:
    """A build's k-means (:func:`~.kmeans.kmeans` of ``x`` ``(n, dim)`` into ``k`` float32 centroids) whose torch
    iterations assign two-level when :func:`is_coarse` (a :class:`CoarseAssigner` per iteration, seeded
    ``seed + iteration``), exactly otherwise."""
    from .kmeans import kmeans
    assign = (lambda centroids, it: CoarseAssigner(centroids, seed=seed + it).assign) \
        if is_coarse(k, assignment) else None
    return kmeans(x, k, iters=iters, seed=seed, use_faiss=use_faiss, assign=assign)


def assigner(centroids: np.ndarray, assignment: str = "auto") -> Callable[[np.ndarray], np.ndarray]:
    """The nearest-centroid function a build uses for ``centroids`` ``(K, dim)``: ``x (n, dim) -> int64 (n,)``;
    :class:`CoarseAssigner` when :func:`is_coarse`, else the exact :func:`~.kmeans.assign_nearest`."""
    if is_coarse(len(centroids), assignment):
        return CoarseAssigner(centroids).assign
    from .kmeans import assign_nearest
    return lambda x: assign_nearest(x, centroids)


def describe(k: int, assignment: str = "auto") -> str:
    """How a build assigns vectors to ``k`` centroids (recorded in the index metadata)."""
    if is_coarse(k, assignment):
        return f"coarse: {n_groups(k)} groups, {min(GROUP_PROBES, n_groups(k))} probed"
    return "exact"
