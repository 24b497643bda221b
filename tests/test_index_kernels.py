"""The explicit-SIMD scoring kernels against a brute-force decode + MaxSim (independent numpy computation)."""
import numpy as np
import pytest

from pyterrier_lateint.index.codec import ResidualCodec
from pyterrier_lateint.index.search import (_centroid_interaction, _exact_adc, adc_table, centroid_scores,
                                            pad_queries)
from pyterrier_lateint.index.simd import LANES, aligned_empty


class _Reader:  # the two attributes centroid_scores() reads
    def __init__(self, codec):
        self.codec = codec


def _brute(query, vectors, offsets):
    out = []
    for a, b in zip(offsets[:-1], offsets[1:]):
        out.append((query @ vectors[a:b].T).max(axis=1).sum() if b > a else -np.inf)
    return np.array(out)


@pytest.mark.parametrize("dim,nbits,nq,code_dtype", [
    (64, 2, 5, np.uint16),     # 16 bytes per vector, one lane group
    (40, 2, 17, np.int32),     # 10 bytes: a remainder after the 4-way unrolled loop; 2 lane groups; int32 codes
    (24, 1, 33, np.uint16),    # 3 bytes per vector, 3 lane groups
    (36, 4, 16, np.uint16),    # 18 bytes, exactly one full lane group
])
@pytest.mark.parametrize("kind,scale", [("pq", True), ("pq", False), ("scalar", True), ("scalar", False)])
def test_adc_and_centroid_kernels_match_brute_force(dim, nbits, nq, code_dtype, kind, scale):
    rng = np.random.default_rng(dim + nbits + nq)
    cents = rng.normal(size=(32, dim)).astype(np.float32)
    lens = rng.integers(0, 9, 40)
    lens[3] = 0  # an empty document
    offsets = np.zeros(len(lens) + 1, dtype=np.int64)
    np.cumsum(lens, out=offsets[1:])
    x = (cents[rng.integers(0, 32, offsets[-1])] + 0.3 * rng.normal(size=(offsets[-1], dim))).astype(np.float32)
    codec = ResidualCodec.train(cents, x, nbits, kind=kind, scale=scale)
    cents = codec.centroids  # (pq rounds them to float16)
    codes, packed = codec.compress(x)
    assert packed.shape == (len(x), dim * nbits // 8 + scale)
    codes = codes.astype(code_dtype)
    decoded = codec.decompress(codes, packed)
    query = rng.normal(size=(nq, dim)).astype(np.float32)

    Qp, q_off, lens_q = pad_queries([query], codec)
    assert Qp.shape[0] % LANES == 0 and Qp.shape[0] >= nq and lens_q[0] == nq
    np.testing.assert_array_equal(Qp[nq:], 0)
    St = centroid_scores(_Reader(codec), Qp)
    np.testing.assert_allclose(St, cents @ Qp.T, rtol=1e-5, atol=1e-5)
    L = adc_table(Qp, codec.lut)
    assert L.ctypes.data % 64 == 0 and St.ctypes.data % 64 == 0

    ids = np.arange(len(lens), dtype=np.int64)
    out = np.empty(len(ids), dtype=np.float32)
    _exact_adc(St, L, ids, offsets, codes, packed, out, codec.scale_lut if scale else None)
    np.testing.assert_allclose(out, _brute(query, decoded, offsets), rtol=1e-4, atol=1e-4)
    if scale:  # decoded vectors have unit length, to the scale byte's resolution (1/255 of the log range)
        np.testing.assert_allclose(np.linalg.norm(decoded, axis=1), 1, atol=float(np.log(
            codec.scale_range[1] / codec.scale_range[0])) / 255)
    assert out[3] == -np.inf

    # centroid interaction: MaxSim against the centroids of the vectors only
    ci = _centroid_interaction(St, ids, offsets, codes)
    np.testing.assert_allclose(ci, _brute(query, cents[codes.astype(np.int64)], offsets), rtol=1e-4, atol=1e-4)


def test_aligned_empty():
    for shape in [(3,), (7, 5), (2, 256, 16)]:
        a = aligned_empty(shape)
        assert a.shape == shape and a.dtype == np.float32 and a.ctypes.data % 64 == 0 and a.flags.c_contiguous


def test_pmap_order_exceptions_and_threads(monkeypatch):
    import threading

    from pyterrier_lateint.index import threads
    monkeypatch.setenv("LATEINT_NUM_THREADS", "2")
    seen = set()

    def square(x):
        seen.add(threading.get_ident())
        return x * x
    assert threads.pmap(square, range(50)) == [x * x for x in range(50)]
    assert threads.pmap(square, []) == [] and threads.pmap(square, [3]) == [9]

    def boom(x):
        if x == 7:
            raise RuntimeError("item 7")
        return x
    with pytest.raises(RuntimeError, match="item 7"):
        threads.pmap(boom, range(20))


def test_spawn_runs_on_a_worker_while_the_caller_goes_on(monkeypatch):
    """spawn() starts its function on a pool worker (another thread) and result() waits for it; a pmap meanwhile
    still completes (its items on the caller while the worker is busy); a worker's exception reaches result(); with
    one thread, or called from a worker, the function runs in result() on the caller's thread."""
    import threading

    from pyterrier_lateint.index import threads
    monkeypatch.setenv("LATEINT_NUM_THREADS", "2")
    started, release = threading.Event(), threading.Event()

    def slow():
        started.set()
        release.wait(10)
        return threading.get_ident()
    pending = threads.spawn(slow)
    assert started.wait(10)  # running before anyone asks for the result
    assert threads.pmap(lambda x: x + 1, range(6)) == list(range(1, 7))  # the worker is busy: done by the caller
    release.set()
    assert pending.result() != threading.get_ident()

    def boom():
        raise ValueError("in the worker")
    with pytest.raises(ValueError, match="in the worker"):
        threads.spawn(boom).result()

    def nested(i):  # from a worker: inline (queued, it would wait for the worker that waits for it)
        inline = threads.spawn(threading.get_ident).result() == threading.get_ident()
        return inline or not threading.current_thread().name.startswith(threads._PREFIX)
    assert all(threads.pmap(nested, range(8)))
    monkeypatch.setenv("LATEINT_NUM_THREADS", "1")
    assert threads.spawn(threading.get_ident).result() == threading.get_ident()


def test_pmap_nested_in_a_worker_runs_inline(monkeypatch):
    """A pmap called from one of the pool's workers (e.g. centroid_scores inside a batch's per-query map) runs its
    items on that worker: queued on the pool, they would wait for the worker that waits for them."""
    from pyterrier_lateint.index import threads
    monkeypatch.setenv("LATEINT_NUM_THREADS", "2")

    def outer(i):
        return sum(threads.pmap(lambda j: i * j, range(5)))
    assert threads.pmap(outer, range(8)) == [10 * i for i in range(8)]


@pytest.mark.parametrize("K,T,dim", [(37, 16, 24), (16, 48, 40), (70, 32, 384), (5, 16, 7)])
def test_centroid_block_scores_match_float64(K, T, dim):
    """Float16 centroid blocks x float32 queries, summed in float32: within float32 rounding of the float64 product;
    the blocks hold each centroid once, zero-padded; one thread or several give the same bits; only the given
    columns are computed (any number of them: groups of 16, 8, 4, 2, 1), the others set to 0, and each column's
    bits do not depend on which others are computed."""
    import numba

    from pyterrier_lateint.index.simd import centroid_block_scores, half_centroid_blocks

    @numba.njit(nogil=True)
    def run(blocks, Qt, St, b0, b1, cols, zero_cols):
        centroid_block_scores(blocks, Qt, St, b0, b1, cols, zero_cols)

    rng = np.random.default_rng(K * T + dim)
    C = rng.normal(size=(K, dim)).astype(np.float16)
    Q = rng.normal(size=(T, dim)).astype(np.float32)
    blocks = half_centroid_blocks(C)
    n_blocks = -(-K // LANES)
    assert blocks.shape == (n_blocks, dim, LANES) and blocks.ctypes.data % 64 == 0
    flat = blocks.view(np.float16).transpose(0, 2, 1).reshape(n_blocks * LANES, dim)
    np.testing.assert_array_equal(flat[:K], C)
    np.testing.assert_array_equal(flat[K:], 0)

    exact = C.astype(np.float64) @ Q.T.astype(np.float64)
    bound = dim * 2.0 ** -24 * (np.abs(C.astype(np.float64)) @ np.abs(Q.T.astype(np.float64)))  # float32 sums
    every, none = np.arange(T), np.zeros(0, dtype=np.int64)
    whole = aligned_empty((n_blocks * LANES, T))
    Qt = np.ascontiguousarray(Q.T)
    run(blocks, Qt, whole, 0, n_blocks, every, none)
    assert np.all(np.abs(whole[:K] - exact) <= bound)
    np.testing.assert_array_equal(whole[K:], 0)  # padding centroids score 0
    split = aligned_empty((n_blocks * LANES, T))
    for b in range(n_blocks):
        run(blocks, Qt, split, b, b + 1, every, none)
    np.testing.assert_array_equal(split, whole)
    for n in {1, 3, 7, 15, T - 1}:  # a subset of the columns, in any order; the rest zeroed
        cols = rng.permutation(T)[:n]
        part = aligned_empty((n_blocks * LANES, T))
        part[:] = np.nan
        run(blocks, np.ascontiguousarray(Q[cols].T), part, 0, n_blocks, cols, np.setdiff1d(every, cols))
        np.testing.assert_array_equal(part[:, cols], whole[:, cols])
        assert np.all(part[:, np.setdiff1d(every, cols)] == 0)


def test_centroid_scores_reads_float16_centroids_when_they_are_float16(monkeypatch):
    from pyterrier_lateint.index import search
    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, 32)).astype(np.float32)
    cents = x[:40] + 1e-3  # not float16 values
    pq = ResidualCodec.train(cents, x, 2, kind="pq")
    scalar = ResidualCodec.train(cents, x, 2, kind="scalar")
    assert pq.centroid_blocks is not None and scalar.centroid_blocks is None
    Q, _, _ = pad_queries([rng.normal(size=(20, 32)).astype(np.float32)], pq)
    for codec in (pq, scalar):
        St = centroid_scores(_Reader(codec), Q)
        assert St.shape == (40, 32) and St.flags.c_contiguous and St.ctypes.data % 64 == 0
        np.testing.assert_allclose(St, codec.centroids.astype(np.float64) @ Q.T.astype(np.float64), rtol=0,
                                   atol=1e-5)
    Q5 = np.ascontiguousarray(Q[:5])  # rows not a multiple of LANES: the float32 product
    np.testing.assert_allclose(centroid_scores(_Reader(pq), Q5), pq.centroids.astype(np.float64) @ Q5.T, rtol=0,
                               atol=1e-5)
    monkeypatch.setenv("LATEINT_NUM_THREADS", "2")
    monkeypatch.setattr(search, "BLOCK_SCORES_MIN_WORK", 10 ** 9)  # one thread
    one = centroid_scores(_Reader(pq), Q)
    monkeypatch.setattr(search, "BLOCK_SCORES_MIN_WORK", 1)  # the blocks split over both threads
    np.testing.assert_array_equal(centroid_scores(_Reader(pq), Q), one)


@pytest.mark.parametrize("seed", range(4))
def test_top_probes_are_the_best_centroids_per_token(seed):
    """Per token, the nprobe best centroids best first then the best unprobed one, ties to the lower id (an
    independent stable sort), with many tied scores (odd seeds: 6 distinct values)."""
    from pyterrier_lateint.index.search import _top_probes
    rng = np.random.default_rng(seed)
    for _ in range(60):
        K, nq, nprobe = int(rng.integers(1, 80)), int(rng.integers(1, 33)), int(rng.integers(1, 12))
        St = rng.integers(0, 6 if seed % 2 else 1000, size=(K, -(-nq // 16) * 16)).astype(np.float32)
        got = _top_probes(St, nq, nprobe)
        width = min(nprobe + 1, K)
        assert got.shape == (nq, width)
        for t in range(nq):
            want = np.lexsort((np.arange(K), -St[:, t]))[:width]  # score descending, then lower id
            np.testing.assert_array_equal(got[t], want)
