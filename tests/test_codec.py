"""The residual codecs (scalar buckets, product quantisation, scale bytes): stated error bounds on synthetic data,
persistence, and search over each codec against exhaustive search over the same codec."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyterrier_lateint.index import ColBERTIndex
from pyterrier_lateint.index import pq
from pyterrier_lateint.index.codec import ResidualCodec
from pyterrier_lateint.index.kmeans import kmeans


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _data(seed: int, n: int = 1500, dim: int = 16, spread: float = 0.5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(6, dim))
    return _unit(centers[rng.integers(0, 6, n)] + spread * rng.normal(size=(n, dim)))


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), nbits=st.sampled_from([1, 2, 4]), spread=st.floats(0.05, 2.0))
def test_pq_assigns_each_subvector_its_nearest_codeword(seed, nbits, spread):
    """PQ's bound: each ``per``-dimension slice of the residual is reconstructed by the closest of its 256 codewords
    (checked against a brute-force search over the codebook)."""
    x = _data(seed, spread=spread)
    cents = kmeans(x, 4, iters=3, seed=seed, use_faiss=False)
    codec = ResidualCodec.train(cents, x, nbits, kind="pq", scale=False)
    codes, packed = codec.compress(x)
    res = x - codec.centroids[codes.astype(np.int64)]
    per = 8 // nbits
    books = codec.codebooks  # (M, 256, per)
    sub = res.reshape(len(x), -1, per)  # (n, M, per)
    dist = ((sub[:, :, None, :] - books[None]) ** 2).sum(-1)  # (n, M, 256)
    got = np.take_along_axis(dist, packed[:, :, None].astype(np.int64), axis=2)[..., 0]
    np.testing.assert_allclose(got, dist.min(axis=2), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(codec.decompress(codes, packed), codec.centroids[codes.astype(np.int64)]
                               + pq.decode(packed, books), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("per", [2, 4, 8])
def test_pq_code_of_a_vector_does_not_depend_on_its_companions(per):
    """The encoder runs across blocks of rows: a row's codes are the same alone, at any position of a block, and in a
    partial last block (fresh, edited and sharded indexes store equal bytes), and equal a float64 brute force."""
    rng = np.random.default_rng(per)
    x = (0.1 * rng.standard_normal((700, 32))).astype(np.float32)
    books = (0.1 * rng.standard_normal((32 // per, 256, per))).astype(np.float32)
    together = pq.encode(x, books)
    for i in (0, 1, 255, 256, 257, 511, 699):
        np.testing.assert_array_equal(pq.encode(x[i:i + 1], books)[0], together[i])
    np.testing.assert_array_equal(pq.encode(x[::-1], books), together[::-1])
    dist = (0.5 * (books.astype(np.float64) ** 2).sum(-1)[None]
            - np.einsum("npk,pjk->npj", x.reshape(len(x), -1, per).astype(np.float64), books.astype(np.float64)))
    assert (together == dist.argmin(-1)).mean() > 0.999  # float32 near-ties may go either way


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), nbits=st.sampled_from([1, 2, 4]))
def test_scalar_reconstruction_stays_in_its_bucket(seed, nbits):
    """Scalar's bound: each dimension is reconstructed inside the bucket that holds it, so its error is at most that
    bucket's width (the outer buckets: at most the distance to the inner cut-off plus the bucket's value)."""
    x = _data(seed)
    cents = kmeans(x, 4, iters=3, seed=seed, use_faiss=False)
    codec = ResidualCodec.train(cents, x, nbits, kind="scalar", scale=False)
    codes, packed = codec.compress(x)
    res = x - codec.centroids[codes.astype(np.int64)]
    rec = codec.decompress(codes, packed) - codec.centroids[codes.astype(np.int64)]
    lo = np.concatenate([np.full((x.shape[1], 1), -np.inf), codec.cutoffs], 1)
    hi = np.concatenate([codec.cutoffs, np.full((x.shape[1], 1), np.inf)], 1)
    b = (res[:, :, None] > codec.cutoffs[None]).sum(-1)  # bucket of each value
    d = np.arange(x.shape[1])
    inner = np.isfinite(lo[d, b]) & np.isfinite(hi[d, b])
    width = np.where(inner, hi[d, b] - lo[d, b], 0)
    assert (np.abs(rec - res)[inner] <= width[inner] + 1e-6).all()


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), kind=st.sampled_from(["pq", "scalar"]), nbits=st.sampled_from([1, 2, 4]))
def test_scale_byte_gives_unit_length_reconstructions(seed, kind, nbits):
    """Unit-length input -> a scale byte per vector; decoded vectors have length 1 up to half a step of the 256
    log-spaced levels, and are the unscaled reconstruction's direction."""
    x = _data(seed)
    cents = kmeans(x, 4, iters=3, seed=seed, use_faiss=False)
    codec = ResidualCodec.train(cents, x, nbits, kind=kind)
    assert codec.scaled  # detected: the training vectors have unit length
    codes, packed = codec.compress(x)
    assert packed.shape[1] == x.shape[1] * nbits // 8 + 1
    rec = codec.decompress(codes, packed)
    step = np.log(codec.scale_range[1] / codec.scale_range[0]) / 255
    norms = np.linalg.norm(rec, axis=1)
    assert (np.abs(np.log(norms)) <= step / 2 + 1e-5).all()
    plain = ResidualCodec(codec.centroids, nbits, codec.cutoffs, codec.weights, kind=kind,
                          codebooks=codec.codebooks)  # the same codes without the scale
    unscaled = plain.decompress(codes, packed[:, :-1])
    np.testing.assert_allclose(_unit(unscaled), _unit(rec), atol=1e-5)
    # not unit length -> no scale byte
    assert not ResidualCodec.train(cents, 2 * x, nbits, kind=kind).scaled


def test_pq_beats_scalar_at_equal_bytes():
    """On clustered data PQ's k-means codewords reconstruct better than per-dimension buckets at the same bytes."""
    x = _data(3, n=4000, dim=32)
    cents = kmeans(x, 8, iters=5, seed=0, use_faiss=False)
    err = {}
    for kind in ("pq", "scalar"):
        codec = ResidualCodec.train(cents, x[:2000], 2, kind=kind, scale=False)
        codes, packed = codec.compress(x[2000:])
        assert packed.shape[1] == 8
        err[kind] = float(((codec.decompress(codes, packed) - x[2000:]) ** 2).sum(1).mean())
    assert err["pq"] < 0.85 * err["scalar"], err


@pytest.mark.parametrize("kind", ["pq", "scalar"])
def test_codec_save_load_roundtrip(tmp_path, kind):
    x = _data(5)
    codec = ResidualCodec.train(kmeans(x, 4, iters=3, use_faiss=False), x, 2, kind=kind)
    codec.save(tmp_path)
    back = ResidualCodec.load(tmp_path)
    assert (back.kind, back.nbits, back.scale_range) == (codec.kind, codec.nbits, codec.scale_range)
    codes, packed = codec.compress(x)
    np.testing.assert_array_equal(back.decompress(codes, packed), codec.decompress(codes, packed))
    bc, bp = back.compress(x)
    np.testing.assert_array_equal(bc, codes)
    np.testing.assert_array_equal(bp, packed)


def test_old_scalar_codec_json_still_loads(tmp_path):
    """Indexes of the first format have a codec.json without ``kind``: they are scalar, without scale bytes."""
    import json
    x = _data(6)
    codec = ResidualCodec.train(kmeans(x, 4, iters=3, use_faiss=False), x, 2, kind="scalar", scale=False)
    codec.save(tmp_path)
    meta = json.loads((tmp_path / "codec.json").read_text())
    meta.pop("kind")
    (tmp_path / "codec.json").write_text(json.dumps(meta))
    back = ResidualCodec.load(tmp_path)
    assert back.kind == "scalar" and not back.scaled


@pytest.mark.parametrize("kind,nbits", [("pq", 2), ("pq", 4), ("pq", 1), ("scalar", 2), ("scalar", 16)])
def test_search_over_each_codec_equals_its_exhaustive_search(tmp_path, kind, nbits):
    """With every centroid probed and every candidate kept, staged search returns exactly what exhaustive search over
    the same codec returns (same documents, same scores); at default settings its top-5 mostly agrees."""
    rng = np.random.default_rng(nbits)
    x = _data(nbits, n=3000)
    lens = rng.integers(1, 20, 200)
    lens = lens[np.cumsum(lens) <= len(x)]
    offs = np.concatenate([[0], np.cumsum(lens)])
    docs = pd.DataFrame({"docno": [f"d{i}" for i in range(len(lens))],
                         "doc_embs": [x[offs[i]:offs[i + 1]] for i in range(len(lens))]})
    index = ColBERTIndex(tmp_path / "i")
    index.indexer(None, nbits=nbits, codec=kind, n_centroids=16, verbose=False).index(docs)
    assert index.reader().codec.kind == ("scalar" if nbits == 16 else kind)
    queries = pd.DataFrame({"qid": [str(i) for i in range(6)],
                            "query_embs": [_unit(rng.normal(size=(5, 16))) for _ in range(6)]})
    ex = index.retriever(num_results=10, mode="exhaustive").transform(queries)
    full = index.retriever(num_results=10, nprobe=16, ncandidates=10_000, nexact=10_000).transform(queries)
    assert ex.docno.tolist() == full.docno.tolist()
    np.testing.assert_allclose(ex.score.to_numpy(), full.score.to_numpy(), rtol=1e-5)
    # exact scores are those of the decoded vectors
    q0 = queries.query_embs[0]
    for docno, score in zip(ex[ex.qid == "0"].docno, ex[ex.qid == "0"].score):
        assert abs((q0 @ index.vectors(docno).T).max(1).sum() - score) < 1e-4
