"""k-means for the index's centroids: faiss when installed, a chunked torch Lloyd's fallback otherwise."""
from __future__ import annotations

import logging
import math

import numpy as np

logger = logging.getLogger(__name__)


CENTROIDS_PER_SQRT = 8  # centroids per square root of the number of vectors (before rounding down to a power of 2)


def default_n_centroids(n_vectors: int) -> int:
    """Number of centroids for ``n_vectors`` token vectors: ``2**floor(log2(8 * sqrt(n)))``, in ``[1, 2**16]``.

    Half of PLAID's ``16 * sqrt(n)``, twice the ``4 * sqrt(n)`` of the first indexes. Measured on 10,000 synthetic
    documents of real token vectors (``benchmarks/bench_scale.py``, 863k vectors, 200 real queries), R@10 against
    exhaustive search at ``nprobe=4, ncandidates=512, nexact=128`` / ``1024, 256`` / ``2048, 512``: 2,048 centroids
    (4 sqrt(n)) 0.954 / 0.980 / 0.992, 4,096 (8 sqrt(n)) 0.979 / 0.990 / 0.995, 8,192 (16 sqrt(n)) 0.984 / 0.997 /
    0.9995, with builds of 97, 128 and 258 s and median latencies at ``1024, 256`` of 20.8, 20.5 and 21.7 ms: finer
    centroids rank the candidates of the centroid-interaction stage better at little search cost, and k-means and
    vector assignment cost ``O(K)`` per vector at build time.
    """
    if n_vectors <= 1:
        return 1
    k = 2 ** int(math.floor(math.log2(CENTROIDS_PER_SQRT * math.sqrt(n_vectors))))
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


ASSIGN_BLOCK = 2 ** 24  # similarities per block of the assignment: (rows x centroids) float32, 64 MiB


def assign_nearest(x: np.ndarray, centroids: np.ndarray, *, chunk: int = 65536) -> np.ndarray:
    """Index of the L2-nearest centroid of each row of ``x`` ``(n, dim)``; returns int64 ``(n,)``.

    Rows go ``chunk`` at a time, fewer when the ``(rows, K)`` similarity block would exceed ``ASSIGN_BLOCK``
    values (a 65,536 x 16,384 block was 4 GiB, the largest allocation of a large build)."""
    import torch
    chunk = max(1, min(chunk, ASSIGN_BLOCK // max(1, len(centroids))))
    c = torch.from_numpy(np.ascontiguousarray(centroids, dtype=np.float32))
    half_norms = 0.5 * (c * c).sum(1)
    out = np.empty(len(x), dtype=np.int64)
    for s in range(0, len(x), chunk):
        xs = torch.from_numpy(np.ascontiguousarray(x[s:s + chunk], dtype=np.float32))
        # argmin |x - c|^2  ==  argmax <x, c> - |c|^2 / 2
        out[s:s + chunk] = torch.argmax(xs @ c.T - half_norms, dim=1).numpy()
    return out
