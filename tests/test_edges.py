"""Edge cases of issue 23 that must neither give a silent wrong answer nor an unclear error: empty queries in every
mode and backend, settings of the wrong type, a GPU that is not there, text that is not valid Unicode, and model
folders that are missing or incomplete."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pyterrier_lateint import ColBERT, ColBERTIndex, ShardedColBERTIndex

DIM = 16


def unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def indexes(tmp_path_factory):
    rng = np.random.default_rng(0)
    docs = [{"docno": f"d{i}", "doc_embs": unit(rng.normal(size=(int(rng.integers(1, 8)), DIM)))} for i in range(60)]
    root = tmp_path_factory.mktemp("edges")
    single = ColBERTIndex(root / "one.lateint").indexer(n_centroids=8, verbose=False).index(docs)
    sharded = ShardedColBERTIndex(root / "s.lateint").indexer(n_shards=2, n_centroids=8, verbose=False).index(docs)
    return single, sharded


def _queries():
    q = unit(np.random.default_rng(1).normal(size=(3, DIM)))
    return pd.DataFrame({"qid": ["empty", "full"], "query_embs": [np.zeros((0, DIM), np.float32), q]})


@pytest.mark.parametrize("mode", ["plaid", "exhaustive"])
@pytest.mark.parametrize("which", ["numba", "torch", "sharded"])
def test_a_query_without_vectors_retrieves_nothing_in_every_mode(indexes, mode, which):
    single, sharded = indexes
    if which == "sharded":
        r = sharded.retriever(num_results=5, mode=mode)
    else:
        r = single.retriever(num_results=5, mode=mode, backend=which, device="cpu" if which == "torch" else None)
    res = r(_queries())
    assert res.qid.tolist() == ["full"] * 5  # the empty query has no rows, the other its five


def test_an_empty_text_query_retrieves_nothing_in_every_mode(tmp_path, default_model):
    idx = ColBERTIndex(tmp_path / "t.lateint", default_model)
    idx.indexer(n_centroids=4, verbose=False).index([{"docno": f"d{i}", "text": f"text number {i}"}
                                                     for i in range(20)])
    q = pd.DataFrame({"qid": ["1", "2", "3"], "query": ["", "   ", "text"]})
    for mode in ("plaid", "exhaustive"):
        res = idx.retriever(num_results=3, mode=mode)(q)
        assert res.qid.tolist() == ["3"] * 3, mode


@pytest.mark.parametrize("kw, err, match", [
    (dict(num_results=2.5), TypeError, r"num_results must be an int >= 1, not float 2.5"),
    (dict(num_results="5"), TypeError, r"num_results must be an int >= 1, not str '5' \(int\('5'\)"),
    (dict(num_results=0), ValueError, r"num_results must be >= 1, not 0"),
    (dict(nprobe=1.0), TypeError, r"nprobe must be an int"),
    (dict(nexact=True), TypeError, r"nexact must be an int >= 1, not bool"),
    (dict(ncandidates=-3), ValueError, r"ncandidates must be >= 1"),
    (dict(batch_size=None), TypeError, r"batch_size must be an int"),
])
def test_settings_of_the_wrong_type_fail_where_given(indexes, kw, err, match):
    single, sharded = indexes
    for idx in (single, sharded):
        with pytest.raises(err, match=match):
            idx.retriever(**kw)
    assert len(single.retriever(num_results=np.int64(3))(_queries())) == 3  # numpy integers are whole numbers


def test_prf_and_scorer_settings_checked(indexes):
    single, _ = indexes
    with pytest.raises(TypeError, match="fb_docs must be an int"):
        single.prf(fb_docs=2.0)
    with pytest.raises(TypeError, match="batch_size must be an int"):
        single.scorer(batch_size="64")


def test_indexer_settings_are_explicit_and_checked(tmp_path):
    idx = ColBERTIndex(tmp_path / "i.lateint")
    with pytest.raises(TypeError, match="chunksize"):  # an unknown keyword fails where the indexer is made
        idx.indexer(chunksize=100)
    with pytest.raises(TypeError, match="kmeans_sample must be an int"):
        idx.indexer(kmeans_sample=1e5)
    with pytest.raises(ValueError, match="codec must be one of"):
        idx.indexer(codec="opq")
    with pytest.raises(ValueError, match="pool_factor must be >= 1"):
        idx.indexer(pool_factor=0.5)
    indexer = idx.indexer(kmeans_sample=4096, seed=3, codec="scalar", pool_factor=2)
    assert (indexer.kmeans_sample, indexer.seed, indexer.codec, indexer.pooler.pool_factor) == (4096, 3, "scalar", 2)
    assert idx.indexer().pooler is None


def test_a_gpu_that_is_not_there_fails_when_the_retriever_is_made(indexes):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    single, _ = indexes
    with pytest.raises(ValueError, match=r"device='cuda', but this torch .* sees no GPU; use device='cpu'"):
        single.retriever(device="cuda")
    with pytest.raises(ValueError, match=r"device='gpu' is not a torch device"):
        single.retriever(device="gpu")
    with pytest.raises(ValueError, match="sees no GPU"):
        ColBERT.from_pretrained(device="cuda")


def test_lone_surrogates_are_named_with_their_document(tmp_path, default_model):
    with pytest.raises(ValueError, match=r"query text #1 .* holds '\\ud800' at character 4, a lone surrogate"):
        default_model.encode_queries(["fine", "bad \ud800 text"])
    q = pd.DataFrame({"qid": ["a", "b"], "query": ["fine", "x\udfff"]})
    with pytest.raises(ValueError, match=r"'query' of qid='b' holds '\\udfff' at character 1"):
        default_model.query_encoder()(q)
    idx = ColBERTIndex(tmp_path / "u.lateint", default_model)
    with pytest.raises(ValueError, match=r"docno 'd2': text holds '\\ud800'.*encode\('utf-8', 'replace'\)"):
        idx.indexer(verbose=False).index([{"docno": "d1", "text": "ok"}, {"docno": "d2", "text": "a\ud800"}])
    assert not (tmp_path / "u.lateint").exists()  # nothing half-built is left
    # valid non-ASCII text passes
    assert len(default_model.encode_queries(["café 東京 😀"])[0]) > 0


def test_model_folders_that_are_missing_or_incomplete(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no checkpoint at .*no such file or folder.*Hugging Face Hub id"):
        ColBERT.from_pretrained(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"not a complete checkpoint folder: it lacks config.json .*weights"
                                                r".*tokenizer .*holds nothing"):
        ColBERT.from_pretrained(str(tmp_path / "empty"))
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(FileNotFoundError, match=r"lacks weights .*; a tokenizer .*\(it holds config.json\)"):
        ColBERT.from_pretrained(str(tmp_path / "cfg"))
