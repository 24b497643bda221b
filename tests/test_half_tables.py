"""The exact stage's cheaper tables (:func:`~pyterrier_lateint.index.search.exact_top_k`): the kernels with a float16
table and with an int8 table against independent float64 computations over the rounded tables; each error bound
against the largest error seen; and the whole stage against scoring every document with the float32 tables (same
ids, same scores, bit for bit).
"""
from __future__ import annotations

import numpy as np
import pytest

from pyterrier_lateint.index import ColBERTIndex, search
from pyterrier_lateint.index.codec import ResidualCodec
from pyterrier_lateint.index.ranking import top_k
from pyterrier_lateint.index.search import (_exact_adc, _exact_adc8, centroid_scores, exact_tables, half_error_bound,
                                            half_tables, int8_tables, pad_queries)
from pyterrier_lateint.index.simd import LANES


class _Reader:  # what centroid_scores() reads
    def __init__(self, codec):
        self.codec = codec


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _collection(rng, dim: int, nbits: int, kind: str, scale: bool):
    """A codec trained on 60 documents of 0-11 vectors around 32 centroids (document 5 empty) and those documents
    compressed: ``(codec, lens, offsets, codes, packed)``."""
    cents = _unit(rng.normal(size=(32, dim)))
    lens = rng.integers(0, 12, 60)
    lens[5] = 0  # an empty document
    offsets = np.zeros(len(lens) + 1, dtype=np.int64)
    np.cumsum(lens, out=offsets[1:])
    x = _unit(cents[rng.integers(0, 32, offsets[-1])] + 0.4 * rng.normal(size=(offsets[-1], dim)))
    codec = ResidualCodec.train(cents, x, nbits, kind=kind, scale=scale)
    codes, packed = codec.compress(x)
    return codec, lens, offsets, codes, packed


def _reference(St, L16, codes, packed, offsets, scale_lut):
    """float64 ``sum_t max_v s_v (St[c_v, t] + sum_p L16[p, packed[v, p], t])`` with ``L16`` the float16 table read
    as float64: what the kernel must compute up to float32 rounding."""
    L = L16.view(np.float16).astype(np.float64)
    n_bytes = L.shape[0]
    out = []
    for a, b in zip(offsets[:-1], offsets[1:]):
        if b == a:
            out.append(-np.inf)
            continue
        s = St[codes[a:b]].astype(np.float64)  # (n, T)
        s = s + sum(L[p, packed[a:b, p]] for p in range(n_bytes))
        if scale_lut is not None:
            s = s * scale_lut[packed[a:b, n_bytes]][:, None]
        out.append(s.max(axis=0).sum())
    return np.array(out)


@pytest.mark.parametrize("dim,nbits,nq", [(64, 2, 5), (40, 2, 17), (24, 1, 33), (36, 4, 16)])
@pytest.mark.parametrize("kind,scale", [("pq", True), ("pq", False), ("scalar", True), ("scalar", False)])
def test_half_table_kernel_and_error_bound(dim, nbits, nq, kind, scale):
    rng = np.random.default_rng(dim * nbits + nq)
    codec, lens, offsets, codes, packed = _collection(rng, dim, nbits, kind, scale)
    scale_lut = codec.scale_lut if scale else None
    # queries of unit tokens, and one of large tokens (the bound scales with their norms)
    for query in (_unit(rng.normal(size=(nq, dim))), 7.5 * rng.normal(size=(nq, dim)).astype(np.float32)):
        Qp, _, _ = pad_queries([query], codec)
        St = centroid_scores(_Reader(codec), Qp)
        ids = np.arange(len(lens), dtype=np.int64)
        exact = np.zeros(len(ids), dtype=np.float32)
        half = np.zeros(len(ids), dtype=np.float32)
        ref = np.zeros(len(ids))
        part = np.empty(len(ids), dtype=np.float32)
        tables = exact_tables(_Reader(codec), Qp, St)
        halves = half_tables(tables)
        assert len(halves) == -(-nq // LANES)
        for (St_g, L_g), (St_h, H) in zip(tables, halves):
            assert St_h is St_g and H.dtype == np.uint16 and H.shape == L_g.shape and H.ctypes.data % 64 == 0
            np.testing.assert_array_equal(H.view(np.float16), L_g.astype(np.float16))  # round to nearest
            _exact_adc(St_g, L_g, ids, offsets, codes, packed, part, scale_lut)
            exact += part
            _exact_adc(St_g, H, ids, offsets, codes, packed, part, scale_lut)
            half += part
            ref += _reference(St_g, H, codes, packed, offsets, scale_lut)
        assert half[5] == exact[5] == -np.inf
        live = lens > 0
        np.testing.assert_allclose(half[live], ref[live], rtol=1e-5, atol=1e-5 * np.abs(ref[live]).max())
        bound = half_error_bound(codec, Qp)
        err = np.abs(half[live].astype(np.float64) - exact[live]).max()
        assert 0 < err <= bound
        assert bound < 0.05 * np.abs(exact[live]).max()  # and a bound that prunes: a small part of a score


def _reference8(St16, L8, steps, codes, packed, offsets, scale_lut):
    """float64 ``sum_t max_v s_v (St16[c_v, t] + steps[t] sum_p L8[p, packed[v, p], t])``, ``St16`` read as float16:
    what the int8 kernel must compute up to float32 rounding."""
    St = St16.view(np.float16).astype(np.float64)
    L = L8.astype(np.int64)
    n_bytes = L.shape[0]
    out = []
    for a, b in zip(offsets[:-1], offsets[1:]):
        if b == a:
            out.append(-np.inf)
            continue
        ints = sum(L[p, packed[a:b, p]] for p in range(n_bytes))  # (n, T) exact integers
        s = St[codes[a:b]] + ints * steps.astype(np.float64)
        if scale_lut is not None:
            s = s * scale_lut[packed[a:b, n_bytes]][:, None]
        out.append(s.max(axis=0).sum())
    return np.array(out)


@pytest.mark.parametrize("dim,nbits,nq", [(64, 2, 5), (40, 2, 17), (24, 1, 33), (36, 4, 16), (600, 4, 20)])
@pytest.mark.parametrize("kind,scale", [("pq", True), ("scalar", False)])
def test_int8_table_kernel_and_error_bound(dim, nbits, nq, kind, scale):
    """Groups of 32 tokens (nq 17-32) and of 16 (16 and 48 padded rows); 600-d at 4 bits has 300 bytes per vector,
    so the steps are chosen for sums of 300 entries to fit int16 (at most 109 each, not 127)."""
    rng = np.random.default_rng(dim * nbits + nq)
    codec, lens, offsets, codes, packed = _collection(rng, dim, nbits, kind, scale)
    scale_lut = codec.scale_lut if scale else None
    ids = np.arange(len(lens), dtype=np.int64)
    for query in (_unit(rng.normal(size=(nq, dim))), 7.5 * rng.normal(size=(nq, dim)).astype(np.float32)):
        Qp, _, _ = pad_queries([query], codec)
        St = centroid_scores(_Reader(codec), Qp)
        tables = exact_tables(_Reader(codec), Qp, St)
        exact = np.zeros(len(ids), dtype=np.float32)
        part = np.empty(len(ids), dtype=np.float32)
        for St_g, L_g in tables:
            _exact_adc(St_g, L_g, ids, offsets, codes, packed, part, scale_lut)
            exact += part
        St16, L8, steps, bound = int8_tables(codec, Qp, St, tables)
        assert L8.dtype == np.int8 and L8.shape == (codec.lut.shape[0], 256, len(Qp)) and L8.ctypes.data % 64 == 0
        assert np.abs(L8).max() == min(127, 32767 // codec.lut.shape[0])  # each token's largest entry: the top step
        np.testing.assert_array_equal(St16.view(np.float16), St.astype(np.float16))
        L = np.concatenate([L_g for _, L_g in tables], axis=2).astype(np.float64)
        assert np.abs(L8 * steps.astype(np.float64) - L).max() <= steps.max() / 2 * (1 + 1e-6)  # nearest steps
        got = np.empty(len(ids), dtype=np.float32)
        _exact_adc8(St16, L8, steps, ids, offsets, codes, packed, got, scale_lut)
        ref = _reference8(St16, L8, steps, codes, packed, offsets, scale_lut)
        assert got[5] == -np.inf
        live = lens > 0
        np.testing.assert_allclose(got[live], ref[live], rtol=1e-5, atol=1e-5 * np.abs(ref[live]).max())
        err = np.abs(got[live].astype(np.float64) - exact[live]).max()
        assert 0 < err <= bound
        if codec.lut.shape[0] <= search.INT8_MAX_BYTES:  # the codecs exact_top_k gives an int8 pass
            assert bound < 0.15 * np.abs(exact[live]).max()  # and a bound that prunes: a small part of a score


def test_int8_tables_refuse_centroid_scores_beyond_float16():
    """Query tokens so long that ``c |q_t|`` could overflow float16: no int8 pass (None), and exact_top_k still
    returns the exact top k."""
    rng = np.random.default_rng(3)
    cents = _unit(rng.normal(size=(16, 32)))
    x = _unit(cents[rng.integers(0, 16, 400)] + 0.4 * rng.normal(size=(400, 32)))
    codec = ResidualCodec.train(cents, x, 2, kind="pq", scale=True)
    Qp, _, _ = pad_queries([1e5 * _unit(rng.normal(size=(4, 32)))], codec)
    St = centroid_scores(_Reader(codec), Qp)
    assert int8_tables(codec, Qp, St, exact_tables(_Reader(codec), Qp, St)) is None


@pytest.fixture(scope="module", params=[(2, "pq"), (1, "scalar"), (16, "scalar")], ids=["pq2", "scalar1", "f16"])
def reader(request, tmp_path_factory):
    """An open index of 400 documents in 10 topics (near-duplicates tie at the exact stage), empty ones included."""
    nbits, kind = request.param
    rng = np.random.default_rng(nbits)
    topics = rng.normal(size=(10, 48))
    docs = [_unit(topics[rng.integers(0, 10, n)] + 0.6 * rng.normal(size=(n, 48))) for n in rng.integers(1, 40, 390)]
    docs += [docs[7]] * 5 + [docs[123]] * 5  # identical documents: equal scores, ordered by id
    idx = ColBERTIndex(tmp_path_factory.mktemp("half") / "i.lateint")
    idx.indexer(nbits=nbits, codec=kind, n_centroids=32, verbose=False).index(
        [{"docno": f"d{i}", "doc_embs": d} for i, d in enumerate(docs)])
    return idx.reader()


def test_exact_top_k_is_top_k_of_exact_scores(reader, monkeypatch):
    """Same ids, same float32 scores, same order as scoring every document with float32 tables; the passes run as
    documented (int8 over more than INT8_MIN_DOCS, float16 over more than HALF_MIN_DOCS, float32 last) and prune."""
    rng = np.random.default_rng(0)
    passes = []
    real, real8 = search._adc_scores, search._adc8_scores

    def spy(rd, ids, tables, parallel, min_work=search.PARALLEL_MIN_WORK):
        passes.append((tables[0][1].dtype, len(ids)))
        return real(rd, ids, tables, parallel, min_work)

    def spy8(rd, ids, t8, parallel):
        passes.append((t8[1].dtype, len(ids)))
        return real8(rd, ids, t8, parallel)
    all_ids = np.arange(reader.n_docs, dtype=np.int64)
    for i in range(40):
        query = _unit(rng.normal(size=(int(rng.integers(1, 40)), 48)))
        if i == 39:
            query *= 1e6  # scores beyond float16: no int8 pass, no float16 pass
        Qp, _, _ = pad_queries([query], reader.codec)
        ids = np.sort(rng.choice(all_ids, int(rng.integers(1, reader.n_docs)), replace=False))
        if i % 10 == 0:
            ids = np.union1d(ids, np.arange(390, 400))  # the duplicates
        for k in (1, 10, 1000):
            monkeypatch.setattr(search, "_adc_scores", real)
            want = top_k(ids, search.exact_padded(reader, Qp, ids), k)
            monkeypatch.setattr(search, "_adc_scores", spy)
            monkeypatch.setattr(search, "_adc8_scores", spy8)
            passes.clear()
            got = search.exact_top_k(reader, Qp, ids, k, parallel=bool(i % 2))
            np.testing.assert_array_equal(got[0], want[0])
            np.testing.assert_array_equal(got[1], want[1])
            if reader.nbits == 16 or len(ids) <= max(k, search.HALF_MIN_DOCS):
                assert all(dt == np.float32 for dt, _ in passes)  # (nbits=16 decompresses: no table at all)
                continue
            kinds = [dt for dt, _ in passes]
            if i == 39:  # neither table can hold such scores
                assert kinds == [np.float32]
                continue
            assert kinds[-1] == np.float32 and passes[0][1] == len(ids)
            assert (kinds[0] == np.int8) == (len(ids) > max(k, search.INT8_MIN_DOCS))
            assert kinds in ([np.int8, np.float32], [np.int8, np.uint16, np.float32], [np.uint16, np.float32])
            for (_, before), (dt, after) in zip(passes, passes[1:]):  # each later pass sees the survivors only
                assert after <= before and (dt == np.float32 or after > max(k, search.HALF_MIN_DOCS))
            if k == 1 and len(ids) > 200:
                assert passes[-1][1] < len(ids) / 4


def test_round_to_half_rounds_as_numpy():
    """Nearest with ties to even, subnormals, overflow to infinity, signed zeros: the bits numpy's cast gives."""
    rng = np.random.default_rng(1)
    edge = [0.0, -0.0, 1.0, 65504.0, 65519.99, 65520.0, -1e6, 6.1e-5, 6.0e-5, 3e-8, 2.9e-8, -1e-9,
            1 + 2.0 ** -11, 1 + 3 * 2.0 ** -11, np.inf, -np.inf]  # the two 1 + ... are ties: down, then up
    x = np.concatenate([np.array(edge, dtype=np.float32), rng.normal(size=16 * 40).astype(np.float32)])
    h = np.empty(len(x), dtype=np.uint16)
    search._round_to_half(x, h)
    with np.errstate(over="ignore"):  # 65520 and -1e6 overflow to infinity, as they should
        np.testing.assert_array_equal(h, x.astype(np.float16).view(np.uint16))
    assert h.view(np.float16)[12] == 1 and h.view(np.float16)[13] == 1 + 2.0 ** -9


def test_tables_built_on_a_worker_give_the_same_search(reader, monkeypatch):
    """search_plaid builds one query's exact-stage tables on a worker during stages 1-2 (threads.spawn): the same
    documents and score bits as building them on the way, with the int8 pass (nexact > 128) and without."""
    from pyterrier_lateint.index.search import SearchParams, search_plaid
    from pyterrier_lateint.index.threads import Pending
    monkeypatch.setenv("LATEINT_NUM_THREADS", "2")
    rng = np.random.default_rng(5)
    queries = [_unit(rng.normal(size=(int(rng.integers(1, 40)), 48))) for _ in range(12)]
    for params in (SearchParams(nprobe=4, nexact=200), SearchParams(nprobe=4, nexact=80)):
        overlapped = [search_plaid(reader, [q], 10, params)[0] for q in queries]
        monkeypatch.setattr(search, "spawn", lambda fn: Pending(fn, None))
        inline = [search_plaid(reader, [q], 10, params)[0] for q in queries]
        monkeypatch.undo()
        monkeypatch.setenv("LATEINT_NUM_THREADS", "2")
        for (ia, sa), (ib, sb) in zip(overlapped, inline):
            np.testing.assert_array_equal(ia, ib)
            np.testing.assert_array_equal(sa, sb)
        for q, (ids, scores) in zip(queries, overlapped):  # and what they return is the exact MaxSim
            assert len(ids) == 10
            np.testing.assert_array_equal(scores, search.exact_padded(reader, pad_queries([q], reader.codec)[0], ids))


def test_stage_interaction_split_over_threads_is_the_same(reader, monkeypatch):
    """Stage 2 of one query split over the thread pool gives each document the same score bits as one thread."""
    monkeypatch.setenv("LATEINT_NUM_THREADS", "2")
    monkeypatch.setattr(search, "INTERACTION_PARALLEL_MIN", 1)
    rng = np.random.default_rng(9)
    ids = rng.permutation(reader.n_docs)[:300]
    for nq in (3, 20, 40):
        Qp, _, _ = pad_queries([_unit(rng.normal(size=(nq, 48)))], reader.codec)
        St = centroid_scores(reader, Qp)
        one = search.stage_interaction(reader, St, ids)
        np.testing.assert_array_equal(search.stage_interaction(reader, St, ids, parallel=True), one)
        offsets = reader.offsets  # and they are centroid-only MaxSim
        want = [(St[reader.codes[offsets[d]:offsets[d + 1]]].max(axis=0).sum() if offsets[d + 1] > offsets[d]
                 else -np.inf) for d in ids]
        np.testing.assert_allclose(one, want, rtol=1e-5, atol=1e-5)
