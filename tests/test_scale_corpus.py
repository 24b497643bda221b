"""The scale ladder's generator and references (``benchmarks/scale_corpus.py``, ``benchmarks/bench_scale.py``) on a
tiny pool written here: reproducible streamed chunks, the pool's document lengths, unit vectors near their source,
and the streamed exact MaxSim equal to brute force; plus :class:`VectorFile`, which the build reads its spill with."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bench_scale import exact_fp32, recall  # noqa: E402
from scale_corpus import CHUNK, Pool, SyntheticCorpus  # noqa: E402

from pyterrier_lateint.index.vectorfile import VectorFile  # noqa: E402
from pyterrier_lateint.maxsim import maxsim  # noqa: E402

DIM = 16


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> Pool:
    folder = tmp_path_factory.mktemp("pool")
    rng = np.random.default_rng(3)
    lens = rng.integers(0, 12, 50)
    lens[7] = 0  # an empty document
    v = rng.standard_normal((int(lens.sum()), DIM)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    v.astype(np.float16).tofile(folder / "docs.f16")
    offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    np.save(folder / "offsets.npy", offsets)
    queries = [v[offsets[i]:offsets[i] + 3] for i in (1, 2, 3) if lens[i] >= 3] + [v[:2]]
    np.savez(folder / "queries.npz", **{f"q{i}": q for i, q in enumerate(queries)})
    (folder / "pool.json").write_text(json.dumps({"dim": DIM, "qids": [f"x:{i}" for i in range(len(queries))]}))
    return Pool.load(folder)


def test_chunks_are_reproducible_streamed_and_keep_the_pool_lengths(pool):
    n = 2 * CHUNK + 5
    a, b = SyntheticCorpus(pool, n, 0.1, seed=1), SyntheticCorpus(pool, n, 0.1, seed=1)
    chunks = list(a.chunks())
    assert [len(c[0]) for c in chunks] == [CHUNK, CHUNK, 5]
    docnos, v, offs = b.chunk(2)  # a chunk made on its own equals the streamed one
    assert docnos == chunks[2][0] and np.array_equal(v, chunks[2][1]) and np.array_equal(offs, chunks[2][2])
    lens = np.concatenate([np.diff(c[2]) for c in chunks])
    assert np.array_equal(lens, a.doclens())
    pool_lens = np.diff(pool.offsets)
    src = np.concatenate([a.sources(c) for c in range(3)])
    assert np.array_equal(lens, pool_lens[src])  # every document has its source's length
    other = SyntheticCorpus(pool, n, 0.1, seed=2).chunk(0)[1]
    assert not np.array_equal(other[:len(chunks[0][1])], chunks[0][1][:len(other)])


def test_vectors_are_unit_length_near_their_source_and_never_equal(pool):
    corpus = SyntheticCorpus(pool, 300, 0.1, seed=0)
    docnos, v, offs = corpus.chunk(0)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1, rtol=1e-5)
    src = corpus.sources(0)
    real = np.concatenate([pool.vectors[pool.offsets[s]:pool.offsets[s + 1]] for s in src]).astype(np.float32)
    cos = (v * real).sum(1)
    assert cos.min() > 0.95 and np.isclose(cos.mean(), 1 / np.sqrt(1 + 0.1 ** 2), atol=0.01)
    assert len(np.unique(v.round(6), axis=0)) == len(v)  # no two vectors (so no two documents) equal


def test_streamed_exact_maxsim_equals_brute_force(pool):
    corpus = SyntheticCorpus(pool, CHUNK + 40, 0.3, seed=0)
    docs = [v[o0:o1] for _, v, offs in corpus.chunks() for o0, o1 in zip(offs[:-1], offs[1:])]
    top = exact_fp32(corpus, pool.queries, depth=20)
    for q, got in zip(pool.queries, top):
        s = maxsim(q, docs)
        s = np.where([len(d) > 0 for d in docs], s, -np.inf)
        want = np.lexsort((np.arange(len(s)), -s))[:20]
        np.testing.assert_allclose(s[got], s[want], rtol=1e-5)  # same scores (ties may swap)
        assert recall([got], [want], 20) >= 0.95


def test_vectorfile_reads_slices_and_sorted_rows(tmp_path):
    a = np.arange(300 * 4, dtype=np.float16).reshape(300, 4)
    a.tofile(tmp_path / "v.f16")
    vf = VectorFile(tmp_path / "v.f16", 300, 4)
    assert np.array_equal(vf[10:20], a[10:20]) and vf[290:400].shape == (10, 4) and len(vf) == 300
    rows = np.array([0, 0, 5, 70, 71, 200, 299])
    assert np.array_equal(vf[rows], a[rows])
    with pytest.raises(IndexError, match="sorted"):
        vf[np.array([5, 1])]
    with pytest.raises(ValueError, match="fewer than"):
        VectorFile(tmp_path / "v.f16", 301, 4)
