"""ColBERT-PRF and the token statistics behind it, against hand-built examples and brute-force weighted MaxSim."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pyterrier as pt
import pytest
from test_index import FakeModel, make_corpus, make_queries

from pyterrier_lateint.index import ColBERTIndex
from pyterrier_lateint.index.prf import ColBERTPRF, expansion_embeddings
from pyterrier_lateint.index.token_stats import TokenStats, count_tokens


class IdModel(FakeModel):
    """FakeModel whose queries come with token ids too (as ``ColBERT.encode_queries(return_ids=True)``);
    ``position_noise=False``: a token's vector is the same wherever it occurs."""

    def __init__(self, position_noise: bool = True, **kw):
        super().__init__(**kw)
        if not position_noise:
            self.pos = np.zeros_like(self.pos)

    def encode_queries(self, texts, batch_size=64, show_progress=False, return_ids=False):
        out = [self._encode(t) for t in texts]
        vecs = [v for v, _ in out]
        return (vecs, [i for _, i in out]) if return_ids else vecs


def weighted_maxsim(q: np.ndarray, w: np.ndarray, d: np.ndarray) -> float:
    """``sum_i w_i max_j <q_i, d_j>``, computed directly."""
    return float(sum(wi * max(float(qi @ dj) for dj in d) for qi, wi in zip(q, w)))


@pytest.fixture(scope="module")
def model():
    return IdModel()


@pytest.fixture(scope="module")
def corpus():
    return make_corpus(120, empty=(7,))


@pytest.fixture(scope="module")
def index(tmp_path_factory, model, corpus):
    idx = ColBERTIndex(tmp_path_factory.mktemp("prf") / "i.lateint")
    idx.indexer(model, nbits=2, store_token_ids=True, verbose=False).index(corpus)
    return idx


def test_token_stats_match_hand_count(index, corpus):
    docs = [[int(t[1:]) for t in text.split()] for text in corpus.text]
    cf = Counter(t for d in docs for t in d)
    df = Counter(t for d in docs for t in set(d))
    stats = index.token_stats()
    ids = np.arange(450)
    assert stats.cf(ids).tolist() == [cf.get(i, 0) for i in ids]
    assert stats.df(ids).tolist() == [df.get(i, 0) for i in ids]
    assert stats.n_docs == len(corpus) and stats.n_vectors == sum(map(len, docs))
    np.testing.assert_allclose(stats.idf(ids), [np.log((len(corpus) + 1) / (df.get(i, 0) + 1)) for i in ids])
    assert index.metadata()["has_token_stats"]
    deleted = np.zeros(len(corpus), dtype=bool)
    deleted[:10] = True  # counting without deleted documents (what an index with deletions uses)
    df_live = Counter(t for d in docs[10:] for t in set(d))
    r = index.reader()
    assert count_tokens(r.token_ids, r.offsets, deleted)[:, 0].tolist() == \
        [df_live.get(i, 0) for i in range(len(stats.stats))]


def test_token_stats_file_used_only_while_it_describes_the_index(index, monkeypatch, tmp_path):
    from pyterrier_lateint.index import layout, token_stats
    expected = index.token_stats().stats.copy()
    with np.load(index.path / token_stats.STATS_FILE) as f:
        np.testing.assert_array_equal(f["stats"], expected)  # written at indexing
        saved = {k: f[k] for k in f.files}
    monkeypatch.setattr(token_stats, "count_tokens", lambda *a: pytest.fail("should read the file"))
    np.testing.assert_array_equal(token_stats.load_token_stats(layout.IndexReader(index.path)).stats, expected)
    monkeypatch.undo()
    stale = dict(saved, stats=np.zeros_like(saved["stats"]), fingerprint=saved["fingerprint"] + 1)
    copy = tmp_path / "copy.lateint"
    import shutil
    shutil.copytree(index.path, copy)
    np.savez(copy / token_stats.STATS_FILE, **stale)  # a file that no longer matches the stored token ids
    np.testing.assert_array_equal(token_stats.load_token_stats(layout.IndexReader(copy)).stats, expected)


def test_scaled_query_vectors_give_weighted_maxsim(index, model, corpus):
    """Weights folded into the query vectors (w_i q_i): every kernel then computes sum_i w_i max_j <q_i, d_j>."""
    q = model.encode_queries(["t5 t17 t200"])[0]
    w = np.array([1.0, 2.5, 0.3], dtype=np.float32)
    frame = pd.DataFrame({"qid": ["q"], "query_embs": [q * w[:, None]]})
    docs = {d: index.vectors(d) for d in corpus.docno if len(index.vectors(d))}
    expected = {d: weighted_maxsim(q, w, v) for d, v in docs.items()}
    exhaustive = index.retriever(num_results=len(corpus), mode="exhaustive")(frame)
    plaid = index.retriever(num_results=10)(frame)
    for res in (exhaustive, plaid):
        for docno, score in zip(res.docno, res.score):
            assert score == pytest.approx(expected[docno], abs=1e-4)
    best = sorted(expected, key=lambda d: -expected[d])[:10]
    assert exhaustive.docno.tolist()[:10] == best


@pytest.fixture(scope="module")
def hand(tmp_path_factory):
    """Two feedback documents with 8 distinct tokens (t1..t8), each in a known number of other documents, so that
    k=8 clusters are exactly the 8 stored vectors and the IDF order is known."""
    model = IdModel(position_noise=False)
    rng = np.random.default_rng(5)
    texts = ["t1 t2 t3 t4", "t5 t6 t7 t8"]
    extra = {1: 9, 2: 1, 3: 6, 4: 3, 5: 12, 6: 0, 7: 4, 8: 7}  # documents besides the feedback ones
    others = [[int(t) for t in rng.choice(np.arange(100, 400), 6, replace=False)] for _ in range(20)]
    for tok, n in extra.items():
        for j in rng.choice(20, n, replace=False):
            others[j].append(tok)
    texts += [" ".join(f"t{t}" for t in o) for o in others]
    corpus = pd.DataFrame({"docno": [f"h{i}" for i in range(len(texts))], "text": texts})
    idx = ColBERTIndex(tmp_path_factory.mktemp("hand") / "h.lateint")
    idx.indexer(model, nbits=16, store_token_ids=True, verbose=False).index(corpus)
    df = {tok: n + 1 for tok, n in extra.items()}
    return model, idx, corpus, df


def test_prf_hand_built_example(hand):
    model, idx, corpus, df = hand
    n = len(corpus)
    query = pd.DataFrame({"qid": ["q1"], "query": ["t9 t150"]})
    first = pd.DataFrame({"qid": "q1", "query": "t9 t150", "docno": ["h0", "h1", "h5"], "score": [3.0, 2.0, 1.0],
                          "rank": [0, 1, 2]})
    beta, fb_embs = 0.5, 3
    # expected by hand: the 3 rarest of t1..t8 (t6: df 1, t2: df 2, t4: df 4), weights beta * log((n+1)/(df+1))
    chosen = sorted(df, key=lambda t: df[t])[:fb_embs]
    assert chosen == [6, 2, 4]
    weights = np.array([beta * np.log((n + 1) / (df[t] + 1)) for t in chosen])
    stored = {int(t): v for t, v in zip(np.concatenate([idx.token_ids("h0"), idx.token_ids("h1")]),
                                        np.concatenate([idx.vectors("h0"), idx.vectors("h1")]))}
    q = model.encode_queries(["t9 t150"])[0]
    expanded = np.concatenate([q, np.stack([stored[t] for t in chosen])])
    w = np.concatenate([np.ones(len(q)), weights])

    prf = idx.prf(model, fb_docs=2, fb_embs=fb_embs, beta=beta, k=8, rerank=True)
    out = prf(first)
    assert out["prf_toks"].iloc[0].tolist() == chosen
    np.testing.assert_allclose(out["prf_weights"].iloc[0], weights, rtol=1e-5)
    np.testing.assert_allclose(out["query_embs"].iloc[0], expanded * w[:, None], atol=1e-5)
    for docno, score in zip(out.docno, out.score):
        assert score == pytest.approx(weighted_maxsim(expanded, w, idx.vectors(docno)), abs=1e-4)
    assert sorted(out.docno) == sorted(first.docno) and out["rank"].tolist() == [0, 1, 2]

    again = idx.prf(model, fb_docs=2, fb_embs=fb_embs, beta=beta, k=8, mode="exhaustive", num_results=n)(first)
    brute = {d: weighted_maxsim(expanded, w, idx.vectors(d)) for d in corpus.docno}
    assert again.docno.tolist() == sorted(brute, key=lambda d: (-brute[d], d))
    assert again.qid.tolist() == ["q1"] * n and (again["query"] == "t9 t150").all()
    # the same expansion, from the query text retrieved end to end first
    piped = (idx.retriever(model, num_results=2, mode="exhaustive") >> idx.prf(model, fb_docs=2, fb_embs=3, k=8))(query)
    assert len(piped) > 0


def test_expansion_embeddings_fewer_vectors_than_clusters():
    stats = TokenStats(np.array([[0, 0], [5, 5], [1, 1], [3, 3]]), n_docs=9, n_vectors=9)
    vecs = np.eye(3, 4, dtype=np.float32)
    e, t, w = expansion_embeddings(vecs, np.array([1, 2, 3]), stats, n_clusters=24, fb_embs=10, beta=2.0)
    assert t.tolist() == [2, 3, 1]  # by decreasing idf: df 1, 3, 5
    np.testing.assert_allclose(w, 2.0 * np.log(10 / np.array([2, 4, 6])), rtol=1e-6)
    np.testing.assert_allclose(e, vecs[[1, 2, 0]] * w[:, None], atol=1e-6)


def test_prf_pipelines_deterministic_fused_and_compiled(index, model):
    queries = make_queries(6)
    r = index.retriever(model, num_results=50)
    pipe = r >> index.prf(model, fb_docs=3, fb_embs=10, beta=1.0, k=24)
    a, b = pipe(queries), pipe(queries)
    pd.testing.assert_frame_equal(a.drop(columns=["query_embs", "prf_toks", "prf_weights"]),
                                  b.drop(columns=["query_embs", "prf_toks", "prf_weights"]))
    assert {"qid", "query", "docno", "score", "rank", "query_embs"} <= set(a.columns)
    assert all(len(e) == len(q) + 10 for e, q in zip(a.drop_duplicates("qid")["query_embs"],
                                                     model.encode_queries(queries["query"].tolist())))
    cut = (pipe % 5).compile()
    assert "RankCutoff" not in repr(cut) and "num_results=5)" in repr(cut)  # the cutoff fused into the PRF stage
    c = cut(queries)
    pd.testing.assert_frame_equal(c[["qid", "docno", "rank"]].reset_index(drop=True),
                                  a[a["rank"] < 5][["qid", "docno", "rank"]].reset_index(drop=True))
    prf = index.prf(model, fb_docs=3, fb_embs=10, beta=1.0, k=24)
    assert prf == index.prf(model, fb_docs=3, fb_embs=10, beta=1.0, k=24) and hash(prf) == hash(
        index.prf(model, fb_docs=3, fb_embs=10, beta=1.0, k=24))
    assert prf != index.prf(model, fb_docs=3, fb_embs=10, beta=1.0, k=24, seed=1)
    fused = prf.fuse_rank_cutoff(7)
    assert isinstance(fused, ColBERTPRF) and fused.num_results == 7 and prf.fuse_rank_cutoff(1000) is None

    rr = r >> index.prf(model, fb_docs=3, fb_embs=10, beta=1.0, rerank=True)
    first, reranked = r(queries), rr(queries)
    for qid, g in reranked.groupby("qid"):
        assert set(g.docno) == set(first[first.qid == qid].docno)
    top = (rr % 3).compile()(queries)
    assert top.groupby("qid").size().max() == 3


def test_prf_beta_zero_is_the_plain_query(index, model):
    queries = make_queries(4)
    first = index.retriever(model, num_results=20)(queries)
    plain = index.scorer(model)(first)
    zero = index.prf(model, beta=0.0, rerank=True)(first)
    merged = plain.merge(zero, on=["qid", "docno"], suffixes=("", "_prf"))
    np.testing.assert_allclose(merged.score, merged.score_prf, atol=1e-4)


def test_prf_errors(tmp_path, index, model, corpus):
    plain = ColBERTIndex(tmp_path / "plain.lateint")
    plain.indexer(model, nbits=2, verbose=False).index(corpus.head(40))
    first = plain.retriever(model, num_results=5)(make_queries(1))
    with pytest.raises(ValueError, match="store_token_ids=True"):
        plain.prf(model)(first)
    with pytest.raises(ValueError, match="fb_embs"):
        index.prf(model, fb_embs=30, k=24)
    with pytest.raises(ValueError, match="beta"):
        index.prf(model, beta=-1)
    assert len(index.prf(model)(first.iloc[:0])) == 0


def _contract_prf() -> ColBERTPRF:
    import tempfile
    from pathlib import Path
    index = ColBERTIndex(Path(tempfile.mkdtemp(prefix="lateint-prf-contract-")) / "c.lateint")
    index.indexer(IdModel(), nbits=2, store_token_ids=True, verbose=False).index(make_corpus(60))
    return index.prf(IdModel(), fb_embs=5, k=8)


@pt.testing.transformer_test_class
def test_prf_contract():
    return _contract_prf()


def test_n_clusters_and_its_pyterrier_colbert_alias(index, model):
    def prf(**kw):
        return index.prf(model, fb_embs=4, **kw)
    assert prf(k=8) == prf(n_clusters=8) == prf(n_clusters=8, k=8) != prf()
    assert prf().n_clusters == 24 and prf(k=8).n_clusters == 8
    assert "n_clusters=8" in repr(prf(k=8))
    with pytest.raises(ValueError, match="name the same setting"):
        prf(n_clusters=8, k=12)
    with pytest.raises(ValueError, match="between 0 and the number of clusters"):
        prf(k=3)
    with pytest.raises(TypeError, match="fb_dcos"):  # a misspelt setting fails where the transformer is made
        prf(fb_dcos=3)
