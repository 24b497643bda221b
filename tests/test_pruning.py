"""Query-embedding pruning and token pooling, against hand-picked query vectors and hand-built documents."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pyterrier as pt
import pytest
from test_index import make_corpus, make_queries
from test_prf import IdModel

from pyterrier_lateint.index import ColBERTIndex
from pyterrier_lateint.index.pruning import TokenPooler, pool_vectors


@pytest.fixture(scope="module")
def model():
    return IdModel()


@pytest.fixture(scope="module")
def corpus():
    return make_corpus(150)


@pytest.fixture(scope="module")
def index(tmp_path_factory, model, corpus):
    idx = ColBERTIndex(tmp_path_factory.mktemp("prune") / "p.lateint")
    idx.indexer(model, nbits=2, store_token_ids=True, verbose=False).index(corpus)
    return idx


def test_pruning_that_keeps_every_token_is_no_pruning(index, model):
    queries = make_queries(8)
    plain = index.retriever(model, num_results=20)(queries)
    for by in ("cf", "position"):
        kept = index.retriever(model, num_results=20, query_pruning=64, query_pruning_by=by)(queries)
        pd.testing.assert_frame_equal(plain, kept)


@pytest.mark.parametrize("by", ["cf", "position"])
def test_pruned_query_equals_hand_picked_vectors(index, model, corpus, by):
    cf = Counter(int(t[1:]) for text in corpus.text for t in text.split())
    queries = pd.DataFrame({"qid": ["a", "b"], "query": ["t12 t7 t30 t390 t55", "t1 t2 t3"]})
    picked = []
    for text in queries["query"]:
        toks = [int(t[1:]) for t in text.split()]
        pos = sorted(range(len(toks)), key=lambda i: (cf[toks[i]], i))[:2] if by == "cf" else [0, 1]
        picked.append(model.encode_queries([text])[0][sorted(pos)])
    expected = index.retriever(model, num_results=15)(queries.assign(query_embs=picked))
    got = index.retriever(model, num_results=15, query_pruning=2, query_pruning_by=by)(queries)
    pd.testing.assert_frame_equal(got, expected.drop(columns=["query_embs"]))
    # from query vectors with their token ids (model.query_encoder(token_ids=True) gives both)
    vecs, ids = model.encode_queries(queries["query"].tolist(), return_ids=True)
    from_vecs = index.retriever(num_results=15, query_pruning=2, query_pruning_by=by)(
        queries.assign(query_embs=vecs, query_toks=ids))
    pd.testing.assert_frame_equal(from_vecs[["qid", "docno", "score"]], got[["qid", "docno", "score"]])


def test_query_pruning_settings(tmp_path, index, model, corpus):
    r = index.retriever(model, query_pruning=3)
    assert r == index.retriever(model, query_pruning=3) and hash(r) == hash(index.retriever(model, query_pruning=3))
    assert r != index.retriever(model) and r != index.retriever(model, query_pruning=3, query_pruning_by="position")
    fused = (r % 5).compile()
    assert fused.num_results == 5 and fused.query_pruning == 3 and fused.query_pruning_by == "cf"
    with pytest.raises(ValueError, match="query_pruning must be"):
        index.retriever(model, query_pruning=0)
    with pytest.raises(ValueError, match="query_pruning_by"):
        index.retriever(model, query_pruning=2, query_pruning_by="idf")
    with pytest.raises(ValueError, match="query_toks"):
        index.retriever(query_pruning=2)(make_queries(2).assign(query_embs=model.encode_queries(
            make_queries(2)["query"].tolist())))
    plain = ColBERTIndex(tmp_path / "plain.lateint")
    plain.indexer(model, nbits=2, verbose=False).index(corpus.head(30))
    with pytest.raises(ValueError, match="store_token_ids=True"):
        plain.retriever(model, query_pruning=2)
    assert len(plain.retriever(model, query_pruning=2, query_pruning_by="position")(make_queries(2)))


# ------------------------------------------------------------------------------------------------ token pooling
def test_pool_vectors_merges_duplicates_first():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(5, 8)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    doubled = np.repeat(base, 2, axis=0)  # every vector twice, in order
    ids = np.repeat(np.arange(10, 15), 2)
    pooled, pooled_ids = pool_vectors(doubled, 2, ids)
    np.testing.assert_allclose(pooled, base, atol=1e-6)  # the duplicates merged, in order of first occurrence
    assert pooled_ids.tolist() == [10, 11, 12, 13, 14]


def test_pool_vectors_means_of_close_pairs():
    a, b = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    v = np.array([a, b, a + 0.05 * b, b + 0.05 * a], dtype=np.float32)
    pooled, ids = pool_vectors(v, 2, np.array([1, 2, 3, 4]))
    mean_a, mean_b = (v[0] + v[2]) / 2, (v[1] + v[3]) / 2
    np.testing.assert_allclose(pooled, [mean_a / np.linalg.norm(mean_a), mean_b / np.linalg.norm(mean_b)], atol=1e-6)
    assert ids.tolist() == [3, 4]  # the member nearest the pooled vector (a + 0.05 b is nearer to the mean)
    raw, _ = pool_vectors(v, 2, normalize=False)
    np.testing.assert_allclose(raw, [mean_a, mean_b], atol=1e-6)
    same, same_ids = pool_vectors(v, 1, np.array([1, 2, 3, 4]))
    np.testing.assert_array_equal(same, v)
    np.testing.assert_array_equal(same_ids, [1, 2, 3, 4])
    assert len(pool_vectors(np.zeros((0, 3), np.float32), 2)[0]) == 0
    assert len(pool_vectors(v[:3], 3)[0]) == 1


def test_pooled_index_and_pooler_pipeline(tmp_path, model, corpus):
    docs = corpus.head(60)
    pooled = ColBERTIndex(tmp_path / "pooled.lateint")
    pooled.indexer(model, nbits=16, store_token_ids=True, pool_factor=2, verbose=False).index(docs)
    lens = [len(t.split()) for t in docs.text]
    assert pooled.doclens().tolist() == [-(-n // 2) for n in lens]
    info = pooled.metadata()["pooling"]
    assert info["vectors_in"] == sum(lens) and info["vectors_out"] == int(pooled.doclens().sum())
    assert info["fraction_removed"] == pytest.approx(1 - info["vectors_out"] / info["vectors_in"], abs=1e-4)

    class Enc:  # doc_embs and doc_toks as model.doc_encoder(token_ids=True) gives them
        def __call__(self, df):
            vecs, ids = model.encode_docs(df.text.tolist(), return_ids=True)
            return df.assign(doc_embs=vecs, doc_toks=ids)
    pooler = TokenPooler(2)
    by_pipe = pooler(Enc()(docs))
    for docno, v, t in zip(by_pipe.docno, by_pipe.doc_embs, by_pipe.doc_toks):
        np.testing.assert_allclose(pooled.vectors(docno), v, atol=2e-3)  # float16 storage
        np.testing.assert_array_equal(pooled.token_ids(docno), t)
    assert pooler.stats()["fraction_removed"] == info["fraction_removed"]
    assert TokenPooler(2) == TokenPooler(2) and TokenPooler(2) != TokenPooler(3)
    with pytest.raises(ValueError, match="pool_factor"):
        TokenPooler(0.5)
    assert pooled.metadata()["n_vectors"] == info["vectors_out"]
    # documents added later are pooled with the index's pool factor too
    extra = corpus.iloc[60:64].assign(docno=lambda d: d.docno + "-new")
    pooled.add(extra, model)
    assert [len(pooled.vectors(d)) for d in extra.docno] == [-(-len(t.split()) // 2) for t in extra.text]


@pt.testing.transformer_test_class
def test_token_pooler_contract():
    return TokenPooler(2)
