"""The experiment plots on small synthetic inputs, token contributions against the model's own MaxSim, and the
latency / recall sweep on a tiny index."""
from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest

import matplotlib  # noqa: F401,E402  (in the [test] extra: missing is an error, not a skip)

from pyterrier_lateint.experiments.plots import (contributions_from_matrix, latency_recall,  # noqa: E402
                                                 pareto_front, per_query_difference, similarity_heatmap,
                                                 token_contributions, token_heatmap)
from pyterrier_lateint.experiments.sweep import latency_recall_sweep, recall_at_k  # noqa: E402


def per_query_frame() -> pd.DataFrame:
    """pt.Experiment(perquery=True)'s layout: 2 systems x 6 queries x 2 measures (q6 only for system A)."""
    a = {"q1": 0.5, "q2": 0.2, "q3": 0.9, "q4": 0.4, "q5": 0.0, "q6": 0.3}
    b = {"q1": 0.7, "q2": 0.1, "q3": 0.9, "q4": 0.8, "q5": 0.3}
    rows = [("A", q, "nDCG@10", v) for q, v in a.items()] + [("B", q, "nDCG@10", v) for q, v in b.items()]
    rows += [(n, q, "AP", 0.5) for n in "AB" for q in a]
    return pd.DataFrame(rows, columns=["name", "qid", "measure", "value"])


def test_per_query_difference_bars_sorted_and_labelled(tmp_path):
    path = tmp_path / "sub" / "pq.png"
    fig = per_query_difference(per_query_frame(), "A", "B", "nDCG@10", path=path)
    ax = fig.axes[0]
    bars = ax.patches
    assert len(bars) == 5  # q6 has no value for B
    heights = [b.get_height() for b in bars]
    assert heights == pytest.approx([0.4, 0.3, 0.2, 0.0, -0.1])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["q4", "q5", "q1", "q3", "q2"]
    assert ax.get_ylabel() == "\u0394 nDCG@10 (B \u2212 A)"
    assert "query" in ax.get_xlabel()
    assert "3 better, 1 worse, 1 tied" in ax.get_title()
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_per_query_difference_errors_name_what_exists():
    with pytest.raises(ValueError, match="'A', 'B'"):
        per_query_difference(per_query_frame(), "A", "C")
    with pytest.raises(ValueError, match="nDCG@10"):
        per_query_difference(per_query_frame(), "A", "B", "P@5")
    with pytest.raises(ValueError, match="missing"):
        per_query_difference(per_query_frame().drop(columns="measure"), "A", "B")


def sweep_frame() -> pd.DataFrame:
    return pd.DataFrame({"nprobe": [1, 1, 2, 2, np.nan], "nexact": [16, 64, 16, 64, np.nan],
                         "ms_per_query": [1.0, 2.0, 1.5, 2.5, 40.0], "recall@10": [0.6, 0.8, 0.7, 0.95, 1.0],
                         "label": ["a", "b", "c", "d", "exhaustive"]})


def _points(ax) -> np.ndarray:
    return np.concatenate([c.get_offsets() for c in ax.collections])


def test_latency_recall_one_point_per_setting(tmp_path):
    frame = sweep_frame()
    fig = latency_recall(frame, group="nprobe", label="nexact", logx=True, path=tmp_path / "lr.png")
    ax = fig.axes[0]
    pts = _points(ax)
    assert len(pts) == len(frame)
    assert sorted(map(tuple, pts)) == sorted(zip(frame["ms_per_query"], frame["recall@10"]))
    assert ax.get_xlabel() == "median latency (ms per query)"
    assert ax.get_ylabel() == "R@10 against exhaustive search"
    assert ax.get_xscale() == "log"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["nprobe=1", "nprobe=2", "exhaustive"]
    assert sorted(t.get_text() for t in ax.texts) == ["16", "16", "64", "64"]  # the exhaustive row: no nexact
    assert (tmp_path / "lr.png").stat().st_size > 1000


def test_latency_recall_without_groups_draws_the_pareto_front():
    frame = sweep_frame()
    fig = latency_recall(frame, label="label")
    ax = fig.axes[0]
    assert len(_points(ax)) == len(frame)
    front = pareto_front(frame, "ms_per_query", "recall@10")
    assert front["label"].tolist() == ["a", "c", "b", "d", "exhaustive"]
    line = [ln for ln in ax.lines if ln.get_label() == "Pareto front"][0]
    assert list(line.get_xdata()) == front["ms_per_query"].tolist()
    with pytest.raises(ValueError, match="no column 'recall@100'"):
        latency_recall(frame, y="recall@100")


def test_pareto_front_drops_dominated_settings():
    frame = pd.DataFrame({"x": [1, 2, 3, 4], "y": [0.5, 0.4, 0.9, 0.9]})
    assert pareto_front(frame, "x", "y").index.tolist() == [0, 2]


def test_similarity_heatmap_outlines_each_rows_argmax(tmp_path):
    sims = np.array([[0.1, 0.9, 0.2, 0.0],
                     [0.3, 0.2, 0.1, 0.8],
                     [0.7, 0.6, 0.65, 0.1]], dtype=np.float32)
    fig = similarity_heatmap(sims, ["q0", "q1", "q2"], ["d0", "d1", "d2", "d3"], path=tmp_path / "hm.png")
    ax = fig.axes[0]
    cells = sorted((int(p.get_y() + 0.5), int(p.get_x() + 0.5)) for p in ax.patches if p.get_label() == "argmax")
    assert cells == [(0, 1), (1, 3), (2, 0)]
    assert ax.images[0].get_array().shape == (3, 4)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["q0", "q1", "q2"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["d0", "d1", "d2", "d3"]
    assert ax.get_xlabel() == "document tokens" and ax.get_ylabel() == "query tokens"
    assert "MaxSim = 2.400" in ax.get_title()
    table = contributions_from_matrix(sims, ["q0", "q1", "q2"], ["d0", "d1", "d2", "d3"], divisor=2.0)
    assert table["doc_token"].tolist() == ["d1", "d3", "d0"]
    assert table["contribution"].sum() == pytest.approx(1.2)
    with pytest.raises(ValueError, match="no token vectors"):
        contributions_from_matrix(np.zeros((2, 0)), ["a", "b"], [])


PAIRS = [("electron spin resonance", "The spin of the electron is measured by resonance in a magnetic field."),
         ("heat flow in metals", "Thermal conductivity of copper at low temperatures.")]


@pytest.mark.parametrize("query,document", PAIRS)
def test_token_contributions_sum_to_score_pairs(default_model, query, document):
    table = token_contributions(default_model, query, document)
    expected = default_model.score_pairs([(query, document)])[0]
    assert table["contribution"].sum() == pytest.approx(float(expected), abs=1e-4)
    assert list(table.columns) == ["query_pos", "query_token", "doc_pos", "doc_token", "similarity", "contribution"]
    Q, D = default_model.encode_queries([query])[0], default_model.encode_docs([document])[0]
    assert len(table) == len(Q)
    assert table["doc_pos"].tolist() == (Q @ D.T).argmax(axis=1).tolist()
    assert ((table["similarity"] > -1.0001) & (table["similarity"] < 1.0001)).all()


def test_token_heatmap_labels_tokens_and_shows_the_score(default_model):
    query, document = PAIRS[0]
    fig = token_heatmap(default_model, query, document)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["electron", "spin", "resonance"]
    assert "electron" in [t.get_text() for t in ax.get_xticklabels()]
    score = default_model.score_pairs([(query, document)])[0]
    assert f"MaxSim = {score:.3f}" in ax.get_title()
    assert sum(p.get_label() == "argmax" for p in ax.patches) == 3


def test_sweep_on_a_tiny_index(tmp_path):
    from pyterrier_lateint.index import ColBERTIndex
    rng = np.random.default_rng(0)
    topics = rng.normal(size=(8, 16))

    def vecs(n):
        v = topics[rng.integers(0, 8, n)] + 0.3 * rng.normal(size=(n, 16))
        return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)

    docs = pd.DataFrame({"docno": [f"d{i}" for i in range(200)],
                         "doc_embs": [vecs(int(rng.integers(3, 12))) for _ in range(200)]})
    index = ColBERTIndex(tmp_path / "tiny.lateint")
    index.indexer(nbits=2, n_centroids=16, verbose=False).index(docs)
    queries = pd.DataFrame({"qid": [f"q{i}" for i in range(6)], "query_embs": [vecs(4) for _ in range(6)]})
    frame = latency_recall_sweep(index, queries, [(2, 10), {"nprobe": 4, "nexact": 64}], k=5, repeats=2)
    assert list(frame["label"]) == ["nprobe=2 nexact=10", "nprobe=4 nexact=64", "exhaustive"]
    assert list(frame["mode"]) == ["plaid", "plaid", "exhaustive"]
    assert (frame["ms_per_query"] > 0).all() and (frame["ms_p95"] >= frame["ms_per_query"]).all()
    assert frame["recall@5"].between(0, 1).all() and frame["recall@5"].iloc[-1] == 1.0
    assert frame["recall@5"].iloc[1] >= frame["recall@5"].iloc[0]
    batched = latency_recall_sweep(index, queries, [(2, 32)], k=5, repeats=1, one_at_a_time=False,
                                   include_exhaustive=False)
    assert len(batched) == 1 and batched["ms_p95"].isna().all()
    assert len(_points(latency_recall(frame, y="recall@5", group="nprobe").axes[0])) == 3
    with pytest.raises(ValueError, match="query_embs"):
        latency_recall_sweep(index, queries.drop(columns="query_embs").assign(query="x"), [(1, 10)])


def test_recall_at_k_counts_the_reference_top_k():
    ref = pd.DataFrame({"qid": ["1"] * 3 + ["2"] * 3, "docno": list("abcdef"), "rank": [0, 1, 2] * 2})
    got = pd.DataFrame({"qid": ["1"] * 3 + ["2"] * 3, "docno": list("bxcdyz"), "rank": [0, 1, 2] * 2})
    assert recall_at_k(got, ref, 2) == pytest.approx((1 / 2 + 1 / 2) / 2)
    assert recall_at_k(got, ref, 3) == pytest.approx((2 / 3 + 1 / 3) / 2)


def test_without_matplotlib_the_error_says_how_to_install_it(monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'pyterrier-lateint\[plots\]'"):
        per_query_difference(per_query_frame(), "A", "B")
