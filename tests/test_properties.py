"""Property-based tests (hypothesis): MaxSim, the codec's round trip, and the search stages against brute force."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from pyterrier_lateint.index import ColBERTIndex, ResidualCodec  # noqa: E402
from pyterrier_lateint.maxsim import maxsim  # noqa: E402

SETTINGS = dict(deadline=None, max_examples=25, database=None, suppress_health_check=[HealthCheck.too_slow])


def unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    v = rng.normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@settings(**SETTINGS)
@given(seed=st.integers(0, 2 ** 31), nq=st.integers(1, 9), lens=st.lists(st.integers(0, 12), min_size=1, max_size=8),
       dim=st.sampled_from([4, 16, 33]))
def test_maxsim_is_sum_of_per_token_maxima(seed, nq, lens, dim):
    rng = np.random.default_rng(seed)
    q = unit(rng, nq, dim)
    docs = [unit(rng, n, dim) for n in lens]
    got = maxsim(q, docs)
    for d, s in zip(docs, got):
        if len(d) == 0:
            assert s == -np.inf  # empty documents rank last
        else:
            want = sum(max(float(qi @ dj) for dj in d) for qi in q)
            assert s == pytest.approx(want, rel=1e-5, abs=1e-5)
            # invariant under the order of the document's tokens, and bounded by nq for unit vectors
            assert maxsim(q, [d[::-1]])[0] == pytest.approx(s, rel=1e-5, abs=1e-5)
            assert abs(s) <= nq + 1e-4


@settings(**SETTINGS)
@given(seed=st.integers(0, 2 ** 31), nbits=st.sampled_from([1, 2, 4, 16]), k=st.integers(1, 8))
def test_codec_round_trip_bounds(seed, nbits, k):
    rng = np.random.default_rng(seed)
    dim = 16
    x = unit(rng, 300, dim)
    codec = ResidualCodec.train(x[rng.choice(300, k, replace=False)], x, nbits)
    codes, packed = codec.compress(x)
    y = codec.decompress(codes, packed)
    assert y.shape == x.shape and np.isfinite(y).all() and codes.min() >= 0 and codes.max() < k
    # decompressing twice gives the same vectors (codes and bytes are the whole stored state)
    np.testing.assert_array_equal(codec.decompress(codes, packed), y)
    cent = codec.centroids[np.asarray(codes, dtype=np.int64)]
    res, rec = x - cent, y - cent
    if nbits == 16:
        np.testing.assert_allclose(rec, res, atol=2e-3)  # float16 residuals
        return
    # the stored residual never loses more than the residual itself holds, by more than a bucket's width
    assert ((rec - res) ** 2).sum(1).mean() <= (res ** 2).sum(1).mean() + 0.5
    if getattr(codec, "weights", None) is None:  # a codec without per-dimension buckets (e.g. product codes)
        return
    for d in range(dim):
        # every reconstructed component is one of that dimension's bucket values ...
        assert (np.abs(rec[:, d, None] - codec.weights[d][None, :]).min(axis=1) <= 1e-5).all()
        # ... the one of the bucket the true residual falls in (cut-offs: strictly above the lower one)
        b = (res[:, d, None] > codec.cutoffs[d][None, :]).sum(axis=1)
        clear = np.abs(res[:, d, None] - codec.cutoffs[d][None, :]).min(axis=1) > 1e-6  # not on a cut-off
        np.testing.assert_allclose(rec[clear, d], codec.weights[d][b[clear]], atol=1e-5)


@settings(**SETTINGS)
@given(seed=st.integers(0, 2 ** 31))
def test_codec_error_shrinks_with_bits(seed):
    """More bits per dimension never reconstruct worse on average (same vectors, same centroids)."""
    rng = np.random.default_rng(seed)
    x = unit(rng, 400, 16)
    cents = x[rng.choice(400, 4, replace=False)]
    err = {}
    for nbits in (1, 2, 4, 16):
        codec = ResidualCodec.train(cents, x, nbits)
        err[nbits] = float(((codec.decompress(*codec.compress(x)) - x) ** 2).sum(1).mean())
    assert err[16] <= err[4] * 1.05 + 1e-6 and err[4] <= err[2] * 1.05 and err[2] <= err[1] * 1.05, err


class _VecModel:
    """A model for vectors given directly (``doc_embs`` / ``query_embs``)."""

    def __init__(self, dim):
        self.dim = dim

    def signature(self):
        return {"name": "vectors", "dim": self.dim}

    def score_divisor(self, n):
        return 1.0

    def encode_queries(self, texts, batch_size=64, show_progress=False):
        raise NotImplementedError

    def encode_docs(self, texts, batch_size=64, show_progress=False, return_ids=False):
        raise NotImplementedError


@settings(**dict(SETTINGS, max_examples=12))
@given(seed=st.integers(0, 2 ** 31), n_docs=st.integers(1, 25), nbits=st.sampled_from([2, 16]),
       k=st.integers(1, 6), deletes=st.integers(0, 5))
def test_search_stages_equal_brute_force(seed, n_docs, nbits, k, deletes):
    import pandas as pd
    rng = np.random.default_rng(seed)
    dim = 16
    docs = [unit(rng, int(rng.integers(0, 7)), dim) for _ in range(n_docs)]
    if sum(len(d) for d in docs) == 0:
        docs[0] = unit(rng, 2, dim)
    queries = [unit(rng, int(rng.integers(1, 5)), dim) for _ in range(3)]
    model = _VecModel(dim)
    with tempfile.TemporaryDirectory() as tmp:
        idx = ColBERTIndex(Path(tmp) / "i", model)
        idx.indexer(model, nbits=nbits, n_centroids=int(rng.integers(1, 6)), verbose=False).index(
            [{"docno": f"d{i}", "doc_embs": d} for i, d in enumerate(docs)])
        gone = set(rng.choice(n_docs, size=min(deletes, n_docs - 1), replace=False).tolist())
        if gone:
            idx.delete([f"d{i}" for i in gone])
        stored = {d: idx.vectors(d) for d in idx.docnos()}  # what the index holds, decompressed
        qf = pd.DataFrame({"qid": ["a", "b", "c"], "query_embs": queries})
        names = list(stored)
        for mode, kw in (("exhaustive", {}), ("plaid", {"nprobe": 8, "ncandidates": 64, "nexact": 64})):
            res = idx.retriever(model, mode=mode, num_results=k, **kw)(qf)
            for qid, q in zip(qf.qid, queries):
                s = maxsim(q, [stored[d] for d in names])
                order = [i for i in np.lexsort((np.arange(len(s)), -s)) if np.isfinite(s[i])][:k]
                got = res[res.qid == qid]
                assert set(got.docno) <= set(names) and not {f"d{i}" for i in gone} & set(got.docno)
                np.testing.assert_allclose(got.score.to_numpy(), s[order], rtol=1e-4, atol=1e-4)
