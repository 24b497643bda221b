"""Builds without the float16 spill (``indexer(spill=False)``: the documents read twice) against spilled builds, and
the stream sample they train the codec on (index/sampling.py)."""
from __future__ import annotations

import numpy as np
import pytest

from pyterrier_lateint.index import ColBERTIndex, build
from pyterrier_lateint.index.sampling import StreamSample
from pyterrier_lateint.maxsim import maxsim
from test_index import FakeModel, make_corpus, make_queries


# --- the sample -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("pieces", [[5000], [1] * 300 + [4700], [0, 37, 1000, 3, 2000, 0, 1960]])
def test_sample_is_the_rows_of_smallest_key_whatever_the_pieces(pieces):
    rng = np.random.default_rng(9)
    x = rng.normal(size=(sum(pieces), 4)).astype(np.float16)
    s = StreamSample(capacity=400, seed=3)
    start = 0
    for n in pieces:
        s.add(x[start:start + n])
        start += n
    rows, pos = s.result()
    keys = np.random.default_rng(3).random(len(x))  # one key per row, in stream order
    expected = np.sort(np.argsort(keys)[:400])
    np.testing.assert_array_equal(pos, expected)
    np.testing.assert_array_equal(rows, x[expected])
    assert s.n_seen == 5000
    # a smaller sample cut from it is the rows of the smallest keys too
    rows2, pos2 = s.result(limit=50)
    np.testing.assert_array_equal(pos2, np.sort(np.argsort(keys)[:50]))
    np.testing.assert_array_equal(rows2, x[pos2])


def test_sample_keeps_everything_of_a_short_stream_in_order():
    x = np.arange(60, dtype=np.float32).reshape(30, 2)
    s = StreamSample(capacity=100, seed=0)
    s.add(x[:10])
    s.add(x[10:])
    rows, pos = s.result()
    np.testing.assert_array_equal(pos, np.arange(30))
    np.testing.assert_array_equal(rows, x.astype(np.float16))


def test_sample_positions_are_uniform():
    s = StreamSample(capacity=2000, seed=1)
    for _ in range(100):
        s.add(np.zeros((1000, 1), dtype=np.float16))
    _, pos = s.result()
    counts = np.bincount(pos // 10_000, minlength=10)  # ten equal stretches of the stream
    chi2 = (((counts - 200) ** 2) / 200).sum()
    assert chi2 < 27.9  # p = 0.001 for 9 degrees of freedom


def test_sample_refuses_nothing_and_bad_capacity():
    with pytest.raises(ValueError, match="no vectors"):
        StreamSample(10).result()
    with pytest.raises(ValueError, match="capacity"):
        StreamSample(0)


# --- builds ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model():
    return FakeModel()


@pytest.fixture(scope="module")
def corpus():
    return make_corpus(n_docs=400, empty=(5, 200))


def test_same_index_as_a_spilled_build_given_the_codec(tmp_path, model, corpus, monkeypatch):
    monkeypatch.setattr(build, "COMPRESS_CHUNK_VECTORS", 500)  # several chunks
    spilled = ColBERTIndex(tmp_path / "a").indexer(model, store_token_ids=True, verbose=False).index(corpus)
    seen = []

    def docs():  # a function returning a fresh iterable; notes what the temporary folder holds at each call
        seen.append(sorted(p.name for p in tmp_path.glob(".b.tmp-*/*")))
        return corpus.to_dict("records")
    two = ColBERTIndex(tmp_path / "b").indexer(model, store_token_ids=True, verbose=False, codec_from=spilled,
                                               spill=False).index(docs)
    assert len(seen) == 2 and "raw.f16" not in seen[1] and "codec.json" in seen[1]  # read twice, never spilled
    names = sorted(p.name for p in (tmp_path / "a").iterdir() if p.name != "lateint.json")  # (timings differ)
    assert {"codes.bin", "residuals.bin", "ivf.0.docs.npy", "token_ids.npy"} <= set(names)
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir() if p.name != "lateint.json")
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert two.metadata()["build"]["spill"] is False and spilled.metadata()["build"]["spill"] is True
    assert two.metadata()["n_vectors"] == spilled.metadata()["n_vectors"]


def test_trained_without_spill_retrieves_as_well(tmp_path, model, corpus, monkeypatch):
    monkeypatch.setattr(build, "sample_capacity", lambda cfg: 1500)  # a sample smaller than the collection's vectors
    monkeypatch.setattr(build, "BUCKET_SAMPLE", 1000)
    kw = dict(n_centroids=64, kmeans_sample=1200, verbose=False)
    a = ColBERTIndex(tmp_path / "a").indexer(model, **kw).index(corpus)
    b = ColBERTIndex(tmp_path / "b").indexer(model, spill=False, **kw).index(corpus)
    ma, mb = a.metadata(), b.metadata()
    assert mb["n_vectors"] > 1500 and mb["build"]["kmeans_sample"] == ma["build"]["kmeans_sample"] == 1200
    assert mb["n_centroids"] == 64
    assert not np.array_equal(a.reader().codec.centroids, b.reader().codec.centroids)  # its own sample
    queries = make_queries(30)
    dvecs = model.encode_docs(corpus.text.tolist())
    truth = {}
    for qid, q in zip(queries.qid, model.encode_queries(queries["query"].tolist())):
        s = maxsim(q, dvecs)
        truth[qid] = set(corpus.docno.iloc[np.argsort(-s, kind="stable")[:10]])
    recall = {}
    for name, idx in (("spill", a), ("no spill", b)):
        res = idx.retriever(model, num_results=10).transform(queries)
        recall[name] = np.mean([len(set(g.docno) & truth[q]) / 10 for q, g in res.groupby("qid")])
    assert recall["no spill"] >= 0.85 and abs(recall["no spill"] - recall["spill"]) <= 0.05, recall


def test_inputs_that_can_be_read_twice(tmp_path, model, corpus):
    small = corpus.iloc[:60]
    ref = ColBERTIndex(tmp_path / "ref").indexer(model, n_centroids=16, verbose=False).index(small)
    for i, inp in enumerate([small, small.to_dict("records"), lambda: small, lambda: iter(small.to_dict("records"))]):
        idx = ColBERTIndex(tmp_path / f"i{i}").indexer(model, codec_from=ref, spill=False, verbose=False).index(inp)
        assert (tmp_path / f"i{i}" / "codes.bin").read_bytes() == (tmp_path / "ref" / "codes.bin").read_bytes()
        assert idx.metadata()["n_docs"] == 60


def test_a_one_shot_iterator_is_refused_before_anything_is_written(tmp_path, model, corpus):
    gen = (d for d in corpus.to_dict("records"))
    with pytest.raises(TypeError, match=r"spill=False.*one-shot iterator.*lambda: dataset.get_corpus_iter\(\)"):
        ColBERTIndex(tmp_path / "x").indexer(model, spill=False, verbose=False).index(gen)
    assert not (tmp_path / "x").exists() and not list(tmp_path.iterdir())
    assert next(gen)["docno"] == "d0"  # not consumed


@pytest.mark.parametrize("change", ["docno", "length", "fewer", "more"])
def test_a_second_reading_that_differs_is_refused_and_leaves_nothing(tmp_path, model, corpus, change):
    calls = []

    def docs():
        calls.append(1)
        records = corpus.iloc[:80].to_dict("records")
        if len(calls) == 2:
            if change == "docno":
                records[41]["docno"] = "other"
            elif change == "length":
                records[41]["text"] += " t1"
            elif change == "fewer":
                records = records[:-1]
            else:
                records.append({"docno": "extra", "text": "t1 t2"})
        return records
    with pytest.raises(ValueError, match="second reading of the documents") as e:
        ColBERTIndex(tmp_path / "x").indexer(model, n_centroids=16, spill=False, verbose=False).index(docs)
    assert ("document 41" in str(e.value)) == (change in ("docno", "length"))
    assert not (tmp_path / "x").exists() and not list(tmp_path.iterdir())  # no index, no temporary folder


def test_pooling_figures_count_one_reading(tmp_path, model, corpus):
    kw = dict(n_centroids=32, pool_factor=2, verbose=False)
    a = ColBERTIndex(tmp_path / "a").indexer(model, **kw).index(corpus)
    b = ColBERTIndex(tmp_path / "b").indexer(model, spill=False, **kw).index(corpus)
    assert a.metadata()["pooling"] == b.metadata()["pooling"]
    assert b.metadata()["pooling"]["vectors_out"] == b.metadata()["n_vectors"]


def test_spill_must_be_a_bool(tmp_path, model):
    with pytest.raises(TypeError, match="spill must be True or False"):
        ColBERTIndex(tmp_path / "x").indexer(model, spill="no")
