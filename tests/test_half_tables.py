"""The exact stage's float16 tables (:func:`~pyterrier_lateint.index.search.exact_top_k`): the kernel with a float16
table against an independent float64 computation over the rounded table; the error bound against the largest error
seen; and the whole stage against scoring every document with the float32 tables (same ids, same scores, bit for bit).
"""
from __future__ import annotations

import numpy as np
import pytest

from pyterrier_lateint.index import ColBERTIndex, search
from pyterrier_lateint.index.codec import ResidualCodec
from pyterrier_lateint.index.ranking import top_k
from pyterrier_lateint.index.search import (_exact_adc, centroid_scores, exact_tables, half_error_bound, half_tables,
                                            pad_queries)
from pyterrier_lateint.index.simd import LANES


class _Reader:  # what centroid_scores() reads
    def __init__(self, codec):
        self.codec = codec


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


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
    cents = _unit(rng.normal(size=(32, dim)))
    lens = rng.integers(0, 12, 60)
    lens[5] = 0  # an empty document
    offsets = np.zeros(len(lens) + 1, dtype=np.int64)
    np.cumsum(lens, out=offsets[1:])
    x = _unit(cents[rng.integers(0, 32, offsets[-1])] + 0.4 * rng.normal(size=(offsets[-1], dim)))
    codec = ResidualCodec.train(cents, x, nbits, kind=kind, scale=scale)
    codes, packed = codec.compress(x)
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
    """Same ids, same float32 scores, same order as scoring every document with float32 tables; only a few documents
    are rescored (the float16 pass prunes), and lists at most HALF_MIN_DOCS long skip it."""
    rng = np.random.default_rng(0)
    rescored = []
    real = search._adc_scores

    def spy(rd, ids, tables, parallel):
        rescored.append((len(ids), tables[0][1].dtype))
        return real(rd, ids, tables, parallel)
    monkeypatch.setattr(search, "_adc_scores", spy)
    all_ids = np.arange(reader.n_docs, dtype=np.int64)
    for i in range(40):
        query = _unit(rng.normal(size=(int(rng.integers(1, 40)), 48)))
        Qp, _, _ = pad_queries([query], reader.codec)
        ids = np.sort(rng.choice(all_ids, int(rng.integers(1, reader.n_docs)), replace=False))
        if i % 10 == 0:
            ids = np.union1d(ids, np.arange(390, 400))  # the duplicates
        for k in (1, 10, 1000):
            monkeypatch.setattr(search, "_adc_scores", real)
            want = top_k(ids, search.exact_padded(reader, Qp, ids), k)
            monkeypatch.setattr(search, "_adc_scores", spy)
            rescored.clear()
            got = search.exact_top_k(reader, Qp, ids, k, parallel=bool(i % 2))
            np.testing.assert_array_equal(got[0], want[0])
            np.testing.assert_array_equal(got[1], want[1])
            if reader.nbits == 16 or len(ids) <= max(k, search.HALF_MIN_DOCS):
                assert all(dt == np.float32 for _, dt in rescored)  # (nbits=16 decompresses: no table at all)
            else:  # one float16 pass over every document, then float32 over the survivors
                assert [dt for _, dt in rescored] == [np.uint16, np.float32] and rescored[0][0] == len(ids)
                if k == 1:
                    assert rescored[1][0] < len(ids) / 4


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
