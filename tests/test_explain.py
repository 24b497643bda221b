"""Token-level explanations: shares and similarities against MaxSim (pyterrier_lateint.maxsim), from text and from
the index's stored vectors, and the heat map."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_prf import IdModel

from pyterrier_lateint import ColBERTIndex, maxsim
from pyterrier_lateint.explain import explain_texts, explain_vectors


class Tokenizer:
    def convert_ids_to_tokens(self, ids):
        return [f"t{i}" for i in ids]


class TokModel(IdModel):
    """IdModel with a tokenizer, as ColBERT has."""
    tokenizer = Tokenizer()


def test_explanation_sums_to_maxsim():
    model = TokModel()
    query, text = "t5 t17 t200 t3", "t17 t9 t5 t5 t88 t301 t42"
    table = explain_texts(model, query, text)
    q, d = model.encode_queries([query])[0], model.encode_docs([text])[0]
    score = float(maxsim(q, [d])[0])
    assert table["contribution"].sum() == pytest.approx(score, abs=1e-5)
    assert table["similarity"].sum() == pytest.approx(score, abs=1e-5)
    assert table["share"].sum() == pytest.approx(1.0, abs=1e-9)
    assert table.attrs["score"] == pytest.approx(score, abs=1e-5)
    sims = q @ d.T
    np.testing.assert_array_equal(table["doc_pos"], sims.argmax(axis=1))
    np.testing.assert_allclose(table["similarity"], sims.max(axis=1), atol=1e-6)
    assert table["query_token"].tolist() == ["t5", "t17", "t200", "t3"]
    doc_tokens = text.split()
    assert table["doc_token"].tolist() == [doc_tokens[j] for j in table["doc_pos"]]
    expected_exact = [doc_tokens[j] == t for j, t in zip(table["doc_pos"], table["query_token"])]
    assert table["exact_match"].tolist() == expected_exact
    assert table["in_doc"].tolist() == [True, True, False, False]
    assert table["exact_match"].iloc[:2].all()  # a token present in the document matches itself (near-identical)


def test_explanation_divisor_and_errors():
    q = np.eye(2, 3, dtype=np.float32)
    d = np.array([[1, 0, 0], [0, 0.5, 0]], dtype=np.float32)
    t = explain_vectors(q, [1, 2], d, [1, 7], divisor=2.0)
    assert t["similarity"].tolist() == [1.0, 0.5] and t["contribution"].tolist() == [0.5, 0.25]
    assert t["share"].tolist() == pytest.approx([2 / 3, 1 / 3]) and t["doc_token"].tolist() == ["1", "7"]
    assert t["exact_match"].tolist() == [True, False]
    with pytest.raises(ValueError, match="empty text"):
        explain_vectors(q, [1, 2], np.zeros((0, 3), np.float32), [])
    with pytest.raises(ValueError, match="one token id per vector"):
        explain_vectors(q, [1], d, [1, 7])
    with pytest.raises(TypeError, match="late-interaction model"):
        explain_texts(object(), "a", "b")


def test_default_model_explain(default_model):
    table = default_model.explain("electron spin", "the spin of the electron is measured")
    assert table["query_token"].tolist() == ["electron", "spin"]
    assert table["doc_token"].tolist() == ["electron", "spin"] and table["exact_match"].all()
    score = default_model.score_pairs([("electron spin", "the spin of the electron is measured")])[0]
    assert table["contribution"].sum() == pytest.approx(float(score), abs=1e-4)


def test_index_explain_matches_index_scorer(tmp_path):
    model = TokModel()
    docs = pd.DataFrame({"docno": ["a", "b", "c"], "text": ["t1 t2 t3 t4", "t5 t6 t1", "t9 t10 t11 t12 t2"]})
    index = ColBERTIndex(tmp_path / "x.lateint", model)
    index.indexer(nbits=2, store_token_ids=True, n_centroids=4, verbose=False).index(docs)
    table = index.explain("t2 t6 t40", docno="b")
    scored = index.scorer()(pd.DataFrame({"qid": "q", "query": "t2 t6 t40", "docno": ["b"]}))
    assert table["contribution"].sum() == pytest.approx(float(scored.score.iloc[0]), abs=1e-4)
    assert table["share"].sum() == pytest.approx(1.0)
    assert table.loc[1, "doc_token"] == "t6" and table.loc[1, "exact_match"] and table.loc[1, "doc_pos"] == 1
    plain = ColBERTIndex(tmp_path / "y.lateint", model)
    plain.indexer(nbits=2, n_centroids=4, verbose=False).index(docs)
    with pytest.raises(ValueError, match="store_token_ids=True"):
        plain.explain("t2", docno="a")
    with pytest.raises(KeyError):
        index.explain("t2", docno="zzz")


def test_explain_plot(tmp_path):
    pytest.importorskip("matplotlib")
    model = TokModel()
    from pyterrier_lateint.explain import explain_plot
    fig = explain_plot(model, "t5 t17 t200", "t17 t9 t5 t88", path=tmp_path / "h.png")
    assert (tmp_path / "h.png").stat().st_size > 1000
    heat = fig.axes[0]
    outlined = [p for p in heat.patches if p.get_label() in ("winner", "exact match")]
    assert len(outlined) == 3 and sum(p.get_label() == "exact match" for p in outlined) == 2
    assert [t.get_text() for t in heat.get_yticklabels()] == ["t5", "t17", "t200"]
