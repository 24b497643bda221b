"""k-means for the index's centroids: faiss when installed, a chunked torch Lloyd's fallback otherwise."""
from __future__ import annotations

import logging
import math

import numpy as np

logger = logging.getLogger(__name__)


def default_n_centroids(n_vectors: int) -> int:
    """Number of centroids for ``n_vectors`` token vectors: ``2**floor(log2(4 * sqrt(n)))``, in ``[1, 2**16]``.

    A quarter of PLAID's ``16 * sqrt(n)``: k-means, vector assignment and the query-centroid product all cost
    ``O(K)``, and on Vaswani (547k vectors -> 2048 centroids, ``benchmarks/bench_index.py sweep``) the default
    search settings already reach R@10 = 0.997 against exhaustive search, so more centroids buy no recall there.
    """
    if n_vectors <= 1:
        return 1
    k = 2 ** int(math.floor(math.log2(4 * math.sqrt(n_vectors))))
    return int(max(1, min(k, n_vectors, 2 ** 16)))


def _have_faiss() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def kmeans(x: np.ndarray, k: int, *, iters: int = 8, seed: int = 0, use_faiss: bool | None = None) -> np.ndarray:
    """Cluster ``x`` ``(n, dim)`` float32 into ``k`` centroids; returns float32 ``(k, dim)``.

    Centroids are cluster means (not re-normalised): ``<q, centroid>`` is then the expected ``<q, v>`` of the
    cluster's vectors, the best centroid-only estimate. Empty clusters are re-seeded with random points.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    n, dim = x.shape
    if k <= 0:
        raise ValueError(f"k must be positive, not {k}")
    if n < k:
        raise ValueError(f"cannot make {k} centroids from {n} vectors")
    if use_faiss is None:
        use_faiss = _have_faiss()
    if use_faiss:
        import faiss
        km = faiss.Kmeans(dim, k, niter=iters, seed=seed, verbose=False, spherical=False,
                          max_points_per_centroid=max(256, -(-n // k)))
        km.train(x)
        return np.ascontiguousarray(km.centroids, dtype=np.float32)
    return _torch_kmeans(x, k, iters=iters, seed=seed)


def _torch_kmeans(x: np.ndarray, k: int, *, iters: int, seed: int) -> np.ndarray:
    import torch
    gen = np.random.default_rng(seed)
    xt = torch.from_numpy(x)
    cent = xt[torch.from_numpy(gen.choice(len(x), k, replace=False))].clone()
    chunk = max(1, 2 ** 26 // max(k, 1))  # bound the (chunk, k) similarity block to ~256 MB
    for it in range(iters):
        assign = assign_nearest(x, cent.numpy(), chunk=chunk)
        a = torch.from_numpy(assign)
        sums = torch.zeros_like(cent).index_add_(0, a, xt)
        counts = torch.bincount(a, minlength=k).to(torch.float32)
        empty = counts == 0
        cent = sums / counts.clamp_min(1).unsqueeze(1)
        if bool(empty.any()):
            n_empty = int(empty.sum())
            cent[empty] = xt[torch.from_numpy(gen.choice(len(x), n_empty, replace=False))]
            logger.debug("k-means iteration %d: re-seeded %d empty clusters", it, n_empty)
    return np.ascontiguousarray(cent.numpy(), dtype=np.float32)


def assign_nearest(x: np.ndarray, centroids: np.ndarray, *, chunk: int = 65536) -> np.ndarray:
    """Index of the L2-nearest centroid of each row of ``x`` ``(n, dim)``; returns int64 ``(n,)``."""
    import torch
    c = torch.from_numpy(np.ascontiguousarray(centroids, dtype=np.float32))
    half_norms = 0.5 * (c * c).sum(1)
    out = np.empty(len(x), dtype=np.int64)
    for s in range(0, len(x), chunk):
        xs = torch.from_numpy(np.ascontiguousarray(x[s:s + chunk], dtype=np.float32))
        # argmin |x - c|^2  ==  argmax <x, c> - |c|^2 / 2
        out[s:s + chunk] = torch.argmax(xs @ c.T - half_norms, dim=1).numpy()
    return out
