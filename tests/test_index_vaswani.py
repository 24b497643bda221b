"""ColBERTIndex with the real default model on a Vaswani subset (300 docs, 15 queries; ~30 s on 2 cores)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pyterrier_lateint.data import load_collection
from pyterrier_lateint.index import ColBERTIndex
from pyterrier_lateint.maxsim import maxsim
from pyterrier_lateint import ColBERT

N_DOCS, N_QUERIES = 300, 15


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    model = ColBERT.from_pretrained()
    docs = pd.DataFrame(list(load_collection("vaswani").get_corpus_iter())[:N_DOCS])
    # queries: the first sentence fragment of some documents, so that every query has strong matches
    queries = pd.DataFrame({"qid": [str(i) for i in range(N_QUERIES)],
                            "query": [" ".join(t.split()[:6]) for t in docs.text.iloc[::N_DOCS // N_QUERIES][:N_QUERIES]]})
    idx = ColBERTIndex(tmp_path_factory.mktemp("vaswani") / "v.lateint")
    idx.indexer(model, nbits=2, verbose=False).index(docs.to_dict("records"))
    return model, docs, queries, idx


def test_real_model_index_quality(setup):
    model, docs, queries, idx = setup
    assert len(idx) == N_DOCS and idx.metadata()["model"] == model.signature()
    assert idx.metadata()["dim"] == model.dim
    r = idx.reader()
    assert (r.codes.nbytes + r.residuals.nbytes) / r.n_vectors <= 100  # 384-d at nbits=2: 2 + 96 bytes
    dvecs = model.encode_docs(docs.text.tolist())
    exh = idx.retriever(model, mode="exhaustive", num_results=10).transform(queries)
    e2e = idx.retriever(model, num_results=10).transform(queries)
    qv = model.encode_queries(queries["query"].tolist())
    overlap_true, recall = [], []
    for (qid, q) in zip(queries.qid, qv):
        s = maxsim(q, dvecs)
        true_top = set(docs.docno.iloc[np.argsort(-s)[:10]])
        g = exh[exh.qid == qid]
        overlap_true.append(len(true_top & set(g.docno)) / 10)
        recall.append(len(set(e2e[e2e.qid == qid].docno) & set(g.docno)) / 10)
        # the source document of the query ranks first
        assert g.docno.iloc[0] == docs.docno.iloc[int(qid) * (N_DOCS // N_QUERIES)]
    assert np.mean(overlap_true) >= 0.85, overlap_true  # 2-bit compression keeps the ranking
    assert np.mean(recall) >= 0.95, recall


def test_real_model_scorer_matches_decompressed_maxsim(setup):
    model, docs, queries, idx = setup
    inp = pd.DataFrame({"qid": "0", "query": queries["query"].iloc[0], "docno": docs.docno.iloc[:50]})
    out = idx.scorer(model).transform(inp)
    q = model.encode_queries([queries["query"].iloc[0]])[0]
    expected = maxsim(q, [idx.vectors(d) for d in out.docno]) / model.score_divisor(len(q))
    np.testing.assert_allclose(out.score.to_numpy(), expected, rtol=1e-4, atol=1e-6)  # float32 summation order
