"""k-means for the index's centroids: faiss when installed, a chunked torch Lloyd's fallback otherwise."""
from __future__ import annotations

import logging
import math
from typing import Callable, Optional

import numba
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


AssignFactory = Callable[[np.ndarray, int], Callable[[np.ndarray], np.ndarray]]  # (centroids, iteration) -> x -> codes


def kmeans(x: np.ndarray, k: int, *, iters: int = 8, seed: int = 0, use_faiss: bool | None = None,
           assign: Optional[AssignFactory] = None) -> np.ndarray:
    """Cluster ``x`` ``(n, dim)`` (float32, or float16: kept as it is, converted a chunk at a time, so a build's
    k-means sample costs half the memory) into ``k`` centroids; returns float32 ``(k, dim)``.

    Centroids are cluster means (not re-normalised): ``<q, centroid>`` is then the expected ``<q, v>`` of the
    cluster's vectors, the best centroid-only estimate. Empty clusters are re-seeded with random points.
    ``assign``: how the torch iterations assign vectors to centroids, ``assign(centroids, iteration)`` giving the
    nearest-centroid function of that iteration (``None``: exact, :func:`assign_nearest`; a build's two-level one
    comes from :func:`.coarse.train_centroids`); faiss assigns exactly.
    """
    x = np.ascontiguousarray(x, dtype=np.float16 if np.asarray(x).dtype == np.float16 else np.float32)
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
        km.train(np.ascontiguousarray(x, dtype=np.float32))
        return np.ascontiguousarray(km.centroids, dtype=np.float32)
    return _torch_kmeans(x, k, iters=iters, seed=seed, assign=assign)


KMEANS_SUM_CHUNK = 2 ** 16  # rows added to the cluster sums per step (float16 samples are converted per step)


def _torch_kmeans(x: np.ndarray, k: int, *, iters: int, seed: int, assign: Optional[AssignFactory] = None
                  ) -> np.ndarray:
    import torch
    gen = np.random.default_rng(seed)
    cent = torch.from_numpy(np.asarray(x[gen.choice(len(x), k, replace=False)], dtype=np.float32))
    chunk = max(1, 2 ** 26 // max(k, 1))  # bound the (chunk, k) similarity block to ~256 MB
    for it in range(iters):
        if assign is not None:  # e.g. many centroids: two-level assignment (index/coarse.py)
            codes = assign(cent.numpy(), it)(x)
        else:
            codes = assign_nearest(x, cent.numpy(), chunk=chunk)
        a = torch.from_numpy(codes)
        sums = torch.zeros_like(cent)
        for s in range(0, len(x), KMEANS_SUM_CHUNK):
            rows = torch.from_numpy(np.asarray(x[s:s + KMEANS_SUM_CHUNK], dtype=np.float32))
            sums.index_add_(0, a[s:s + KMEANS_SUM_CHUNK], rows)
        counts = torch.bincount(a, minlength=k).to(torch.float32)
        empty = counts == 0
        cent = sums / counts.clamp_min(1).unsqueeze(1)
        if bool(empty.any()):
            n_empty = int(empty.sum())
            cent[empty] = torch.from_numpy(np.asarray(x[gen.choice(len(x), n_empty, replace=False)], dtype=np.float32))
            logger.debug("k-means iteration %d: re-seeded %d empty clusters", it, n_empty)
    return np.ascontiguousarray(cent.numpy(), dtype=np.float32)


ASSIGN_BLOCK = 2 ** 24  # similarities per block of the assignment: (rows x centroids), 64 MiB in float32
SHORTLIST = 4  # candidates per vector kept from the bfloat16 scores and re-scored in float32
BF16_MIN_CENTROIDS = 256  # below this the float32 product is cheap and the shortlist pays no dividend


def _fast_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 matrices in hardware (AMX or AVX-512 BF16): there a bfloat16 product
    ran 2.7x the float32 rate (385 vs 144 GFLOPS, 2 cores of a Xeon with AMX); elsewhere it is emulated and slower."""
    import torch
    try:
        return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())
    except AttributeError:  # a torch without these probes
        return False


@numba.njit(cache=True, nogil=True)
def _top4_bf16(scores, out):
    """Column indices of the 4 largest values of each row of ``scores`` ``(n, K)``, bfloat16 bit patterns viewed as
    int16, into int64 ``out`` ``(n, 4)`` (any order among equals). ``b ^ ((b >> 15) & 0x7FFF)`` maps a
    sign-magnitude pattern to an integer of the same order as the float it encodes."""
    n, k = scores.shape
    low = -(1 << 30)
    for i in range(n):
        b0 = low
        b1 = low
        b2 = low
        b3 = low
        i0 = 0
        i1 = 0
        i2 = 0
        i3 = 0
        for j in range(k):
            b = np.int32(scores[i, j])
            key = b ^ ((b >> 15) & 0x7FFF)
            if key > b3:
                if key > b1:
                    if key > b0:
                        b3, i3, b2, i2, b1, i1, b0, i0 = b2, i2, b1, i1, b0, i0, key, j
                    else:
                        b3, i3, b2, i2, b1, i1 = b2, i2, b1, i1, key, j
                elif key > b2:
                    b3, i3, b2, i2 = b2, i2, key, j
                else:
                    b3, i3 = key, j
        out[i, 0] = i0
        out[i, 1] = i1
        out[i, 2] = i2
        out[i, 3] = i3


def assign_nearest(x: np.ndarray, centroids: np.ndarray, *, chunk: int = 65536,
                   bf16: bool | None = None) -> np.ndarray:
    """Index of the L2-nearest centroid of each row of ``x`` ``(n, dim)``; returns int64 ``(n,)``.

    Rows go ``chunk`` at a time, fewer when the ``(rows, K)`` similarity block would exceed ``ASSIGN_BLOCK``
    values (a 65,536 x 16,384 block was 4 GiB, the largest allocation of a large build).

    ``bf16`` (default: with at least ``BF16_MIN_CENTROIDS`` centroids on a CPU with bfloat16 hardware): score all
    centroids in bfloat16, keep each row's ``SHORTLIST`` best and pick among them in float32. On 65,536 synthetic
    token vectors and 16,384 k-means centroids (``benchmarks/bench_assign.py``, 2 cores with AMX) it chose the
    float32 nearest for every row, and the assignment took 3.5 s (float32: ~10 s); whole processes, 5 interleaved
    runs each, took 0.64x the float32 wall time (0.53-0.82, start-up and data included)."""
    import torch
    c = torch.from_numpy(np.ascontiguousarray(centroids, dtype=np.float32))
    half_norms = 0.5 * (c * c).sum(1)
    out = np.empty(len(x), dtype=np.int64)
    if bf16 is None:
        bf16 = len(centroids) >= BF16_MIN_CENTROIDS and _fast_bf16()
    if bf16 and len(centroids) >= SHORTLIST:
        return _assign_shortlist(x, c, half_norms, out, chunk)
    chunk = max(1, min(chunk, ASSIGN_BLOCK // max(1, len(centroids))))
    for s in range(0, len(x), chunk):
        xs = torch.from_numpy(np.ascontiguousarray(x[s:s + chunk], dtype=np.float32))
        # argmin |x - c|^2  ==  argmax <x, c> - |c|^2 / 2
        out[s:s + chunk] = torch.argmax(xs @ c.T - half_norms, dim=1).numpy()
    return out


def _assign_shortlist(x, c, half_norms, out: np.ndarray, chunk: int) -> np.ndarray:
    """bfloat16 scores ``<[x, 1], [c, -|c|^2/2]>`` (one product, no pass to subtract the norms), the best
    ``SHORTLIST`` of each row (numba, rows split over the thread pool), then exact float32 scores of those."""
    import torch

    from .threads import pmap
    from ..settings import n_threads
    k, dim = c.shape
    cb = torch.cat([c, -half_norms[:, None]], 1).to(torch.bfloat16)
    chunk = max(1, min(chunk, 2 * ASSIGN_BLOCK // k))  # bfloat16: twice the rows of the float32 block
    for s in range(0, len(x), chunk):
        xs = torch.from_numpy(np.ascontiguousarray(x[s:s + chunk], dtype=np.float32))
        scores = (torch.cat([xs, torch.ones(len(xs), 1)], 1).to(torch.bfloat16) @ cb.T).view(torch.int16).numpy()
        top = np.empty((len(xs), SHORTLIST), dtype=np.int64)
        bounds = np.linspace(0, len(xs), n_threads() + 1).astype(np.int64)
        pmap(lambda j: _top4_bf16(scores[bounds[j]:bounds[j + 1]], top[bounds[j]:bounds[j + 1]]),
             range(len(bounds) - 1))
        tt = torch.from_numpy(top)
        exact = torch.einsum("nd,nkd->nk", xs, c[tt]) - half_norms[tt]
        out[s:s + chunk] = tt.gather(1, exact.argmax(1, keepdim=True)).squeeze(1).numpy()
    return out
