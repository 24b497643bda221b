"""PyTerrier transformers of the real default model: query_encoder, doc_encoder, scorer, text_scorer."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyterrier as pt
import pytest

from conftest import load_default_model
from pyterrier_lateint import ColBERT
from pyterrier_lateint.colbert import DocEncoder, MaxSimScorer, QueryEncoder

DIM = 384


# ---------------------------------------------------------------------------------------------- pt.testing
class TestQueryEncoderContract(pt.testing.TransformerTestCase):
    @staticmethod
    def get_transformer():
        return load_default_model().query_encoder()


class TestDocEncoderContract(pt.testing.TransformerTestCase):
    @staticmethod
    def get_transformer():
        return load_default_model().doc_encoder()


TestScorerContract = pt.testing.transformer_test_class(lambda: load_default_model().scorer())
TestTextScorerContract = pt.testing.transformer_test_class(lambda: load_default_model().text_scorer())


def test_inspect_io(default_model):
    """The columns each transformer declares (checked by value, not only by type as TransformerTestCase does)."""
    cases = [
        (default_model.query_encoder(), ["qid", "query"], {"query_embs"}),
        (default_model.doc_encoder(), ["docno", "text"], {"doc_embs"}),
        (default_model.scorer(), ["qid", "docno", "query_embs", "doc_embs"], {"score", "rank"}),
        (default_model.text_scorer(), ["qid", "docno", "query", "text"], {"score", "rank"}),
    ]
    for t, cols, added in cases:
        out = pt.inspect.transformer_outputs(t, cols)
        assert set(out) == set(cols) | added, t


# ---------------------------------------------------------------------------------------------- helpers
def hand_maxsim(q: np.ndarray, d: np.ndarray) -> float:
    if len(d) == 0:
        return float("-inf")
    sims = q.astype(np.float64) @ d.astype(np.float64).T
    return float(sum(max(row) for row in sims))


@pytest.fixture(scope="module")
def results() -> pd.DataFrame:
    """A small result frame, qids out of order, with an empty and a whitespace-only document."""
    rows = [
        ("2", "solar energy storage", "d1", "batteries store energy from solar panels for use at night"),
        ("2", "solar energy storage", "d2", "the history of the roman empire"),
        ("2", "solar energy storage", "d3", ""),
        ("2", "solar energy storage", "d4", "photovoltaic cells convert sunlight into electricity"),
        ("10", "protein folding", "d2", "the history of the roman empire"),
        ("10", "protein folding", "d5", "how proteins fold into three dimensional structures"),
        ("10", "protein folding", "d6", "   "),
        ("1", "football world cup", "d7", "the world cup final was played in a packed stadium"),
        ("1", "football world cup", "d1", "batteries store energy from solar panels for use at night"),
    ]
    df = pd.DataFrame(rows, columns=["qid", "query", "docno", "text"])
    df["score"] = np.arange(len(df), dtype=np.float64)  # a previous stage's scores, to be replaced
    df["rank"] = np.arange(len(df))
    return df


def check_ranked(out: pd.DataFrame) -> None:
    """Sorted by qid; within a qid by descending score; ranks 0..n-1."""
    assert out["qid"].tolist() == sorted(out["qid"].tolist())
    for _, g in out.groupby("qid", sort=False):
        assert g["rank"].tolist() == list(range(len(g)))
        scores = g["score"].to_numpy()
        assert np.all(scores[:-1] >= scores[1:])


# ---------------------------------------------------------------------------------------------- scoring
def test_text_scorer_is_hand_maxsim(default_model, results):
    out = default_model.text_scorer()(results)
    assert len(out) == len(results)
    assert set(out.columns) == set(results.columns)
    check_ranked(out)
    qv = dict(zip(results["query"].unique(), default_model.encode_queries(list(results["query"].unique()))))
    for row in out.itertuples():
        dv = default_model.encode_docs([row.text])[0]
        expected = hand_maxsim(qv[row.query], dv)
        if math.isinf(expected):
            assert row.score == float("-inf")
        else:
            assert row.score == pytest.approx(expected, abs=1e-4)
    # the relevant document wins for each query; the empty ones come last
    top = out[out["rank"] == 0].set_index("qid")["docno"].to_dict()
    assert top == {"1": "d7", "10": "d5", "2": "d1"}
    for docno in ("d3", "d6"):
        row = out[out["docno"] == docno].iloc[0]
        assert row["score"] == float("-inf")
        assert row["rank"] == (out["qid"] == row["qid"]).sum() - 1


def test_pipeline_equals_text_scorer(default_model, results):
    pipe = default_model.query_encoder() >> default_model.doc_encoder() >> default_model.scorer()
    a = pipe(results)
    b = default_model.text_scorer()(results)
    check_ranked(a)
    assert a["qid"].tolist() == b["qid"].tolist()
    assert a["docno"].tolist() == b["docno"].tolist()
    assert a["rank"].tolist() == b["rank"].tolist()
    np.testing.assert_allclose(a["score"].to_numpy(), b["score"].to_numpy(), atol=1e-5, rtol=0)
    assert {"query_embs", "doc_embs"} <= set(a.columns)
    # scorer's MaxSim over the frame's own vectors, by hand
    for row in a.itertuples():
        assert row.score == pytest.approx(hand_maxsim(row.query_embs, row.doc_embs), abs=1e-4)


def test_encoders_add_vectors(default_model, results):
    topics = results[["qid", "query"]].drop_duplicates().reset_index(drop=True)
    q = default_model.query_encoder()(topics)
    assert q["qid"].tolist() == topics["qid"].tolist()
    tok = default_model.tokenizer
    for row in q.itertuples():
        assert row.query_embs.dtype == np.float32
        assert row.query_embs.shape == (len(tok(row.query)["input_ids"]) - 2, DIM)  # CLS/SEP dropped
        np.testing.assert_allclose(np.linalg.norm(row.query_embs, axis=1), 1.0, atol=1e-5)
    docs = results[["docno", "text"]].drop_duplicates("docno").reset_index(drop=True)
    d = default_model.doc_encoder()(docs)
    assert d["docno"].tolist() == docs["docno"].tolist()
    for row in d.itertuples():
        assert row.doc_embs.shape == (len(tok(row.text)["input_ids"]) - 2, DIM)


def test_query_encoder_keeps_index(default_model):
    topics = pd.DataFrame({"qid": ["a", "b"], "query": ["first query", "second one"]}, index=[7, 3])
    out = default_model.query_encoder()(topics)
    assert out.index.tolist() == [7, 3]
    np.testing.assert_allclose(out.loc[3, "query_embs"], default_model.encode_queries(["second one"])[0], atol=1e-6)


# ---------------------------------------------------------------------------------------------- validation, edge cases
@pytest.mark.parametrize("which,frame,missing", [
    ("query_encoder", pd.DataFrame({"qid": ["1"]}), "query"),
    ("doc_encoder", pd.DataFrame({"docno": ["1"]}), "text"),
    ("scorer", pd.DataFrame({"qid": ["1"], "docno": ["d"], "query_embs": [None]}), "doc_embs"),
    ("text_scorer", pd.DataFrame({"qid": ["1"], "docno": ["d"], "query": ["x"]}), "text"),
    ("text_scorer", pd.DataFrame({"qid": ["1"], "docno": ["d"], "text": ["x"]}), "query"),
])
def test_missing_columns(default_model, which, frame, missing):
    t = getattr(default_model, which)()
    with pytest.raises(pt.validate.InputValidationError, match=f"'{missing}'"):
        t(frame)


@pytest.mark.parametrize("which,columns,added", [
    ("query_encoder", ["qid", "query"], ["query_embs"]),
    ("doc_encoder", ["docno", "text"], ["doc_embs"]),
    ("scorer", ["qid", "docno", "query_embs", "doc_embs"], ["score", "rank"]),
    ("text_scorer", ["qid", "query", "docno", "text"], ["score", "rank"]),
])
def test_empty_frames(default_model, which, columns, added):
    out = getattr(default_model, which)()(pd.DataFrame(columns=columns))
    assert isinstance(out, pd.DataFrame)
    assert len(out) == 0
    assert set(columns + added) <= set(out.columns)


def test_empty_and_whitespace_texts_have_no_vectors(default_model):
    docs = pd.DataFrame({"docno": ["a", "b", "c", "d"], "text": ["", "   ", "\n\t", "real text"]})
    out = default_model.doc_encoder()(docs)
    assert [v.shape for v in out["doc_embs"]] == [(0, DIM), (0, DIM), (0, DIM), (2, DIM)]


@pytest.mark.parametrize("dtype", [None, object], ids=["inferred-dtype", "object-dtype"])
@pytest.mark.parametrize("bad", [None, float("nan"), 42])
def test_non_string_text_names_the_docno(default_model, bad, dtype):
    docs = pd.DataFrame({"docno": ["ok1", "bad7"], "text": ["fine text", bad]}, dtype=dtype)
    with pytest.raises(TypeError, match="bad7"):
        default_model.doc_encoder()(docs)
    res = pd.DataFrame({"qid": ["1", "1"], "query": ["q", "q"], "docno": ["ok1", "bad7"],
                        "text": ["fine text", bad]}, dtype=dtype)
    with pytest.raises(TypeError, match="bad7"):
        default_model.text_scorer()(res)


@pytest.mark.parametrize("bad", [None, 3])
def test_non_string_query_names_the_qid(default_model, bad):
    topics = pd.DataFrame({"qid": ["q1", "q9"], "query": ["fine", bad]}, dtype=object)
    with pytest.raises(TypeError, match="q9"):
        default_model.query_encoder()(topics)
    res = pd.DataFrame({"qid": ["q9"], "query": [bad], "docno": ["d"], "text": ["x"]}, dtype=object)
    with pytest.raises(TypeError, match="q9"):
        default_model.text_scorer()(res)


def test_unicode_text(default_model):
    texts = ["café naïve résumé Ångström", "東京タワーの高さ", "party time 🎉🚀 tonight", "Ελληνικά и русский"]
    tok = default_model.tokenizer
    docs = pd.DataFrame({"docno": [f"u{i}" for i in range(len(texts))], "text": texts})
    out = default_model.doc_encoder()(docs)
    for text, vecs in zip(texts, out["doc_embs"]):
        assert vecs.shape == (len(tok(text)["input_ids"]) - 2, DIM)
        assert len(vecs) > 0 and np.isfinite(vecs).all()
    res = docs.assign(qid="1", query="東京 café 🎉")
    scored = default_model.text_scorer()(res)
    assert np.isfinite(scored["score"]).all()
    check_ranked(scored)


def test_duplicate_texts_encoded_once(default_model, monkeypatch):
    seen = []
    original = default_model.encode_docs

    def spy(texts, *args, **kwargs):
        seen.append(list(texts))
        return original(texts, *args, **kwargs)

    monkeypatch.setattr(default_model, "encode_docs", spy)
    docs = pd.DataFrame({"docno": ["a", "b", "c", "d"], "text": ["same words", "other", "same words", "same words"]})
    out = default_model.doc_encoder()(docs)
    assert seen == [["same words", "other"]]
    np.testing.assert_array_equal(out["doc_embs"][0], out["doc_embs"][2])
    np.testing.assert_array_equal(out["doc_embs"][0], out["doc_embs"][3])
    # batch composition does not change a text's vectors
    alone = original(["same words"])[0]
    np.testing.assert_allclose(out["doc_embs"][0], alone, atol=1e-5)


# ---------------------------------------------------------------------------------------------- equality
def test_equality_and_hash(default_model):
    other = ColBERT.from_pretrained(device="cpu")
    changed = ColBERT.from_pretrained(device="cpu", doc_maxlen=64)
    for make in ("query_encoder", "doc_encoder", "text_scorer", "scorer"):
        a, b = getattr(default_model, make)(), getattr(other, make)()
        assert a == b and hash(a) == hash(b), make
        assert len({a, b}) == 1
    for make in ("query_encoder", "doc_encoder", "text_scorer"):
        assert getattr(default_model, make)() != getattr(changed, make)(), make
    assert default_model.query_encoder() != default_model.doc_encoder()
    assert default_model.doc_encoder(batch_size=8) != default_model.doc_encoder(batch_size=16)
    assert MaxSimScorer(divide_by_query_length=True) != MaxSimScorer(divide_by_query_length=False)
    assert isinstance(default_model.query_encoder(), QueryEncoder)
    assert isinstance(default_model.doc_encoder(), DocEncoder)
    assert isinstance(default_model.text_scorer(), MaxSimScorer) and default_model.text_scorer() == default_model.scorer()


# ---------------------------------------------------------------------------------------------- real data
def test_vaswani_rerank(default_model):
    from pyterrier_lateint.data import load_collection
    from pyterrier_lateint.experiments import pisa_bm25
    collection = load_collection("vaswani")
    topics = collection.get_topics().head(10)
    qrels = collection.get_qrels()
    first = pisa_bm25(collection, num_results=20) >> pt.text.get_text(collection, "text")
    res = first(topics)
    assert res.groupby("qid").size().max() == 20
    reranked = default_model.text_scorer()(res)
    assert sorted(zip(reranked["qid"], reranked["docno"])) == sorted(zip(res["qid"], res["docno"]))
    check_ranked(reranked)
    assert np.isfinite(reranked["score"]).all()
    metrics = pt.Evaluate(reranked, qrels, metrics=["ndcg_cut_10"])
    assert 0.0 < metrics["ndcg_cut_10"] <= 1.0
