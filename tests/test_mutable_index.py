"""Adding, deleting and compacting: search after any sequence of changes equals a fresh index of the live documents
built with the same centroids and buckets (``codec_from``)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pyterrier_lateint.index import ColBERTIndex, ModelMismatchError
from pyterrier_lateint.index.integrity import IndexCorruptError
from test_index import FakeModel, make_corpus, make_queries


@pytest.fixture(scope="module")
def model():
    return FakeModel()


@pytest.fixture(scope="module")
def pool():
    return make_corpus(160, seed=5, empty=(7,))


@pytest.fixture(scope="module")
def queries():
    return make_queries(12)


def build(path, model, docs, **kw):
    idx = ColBERTIndex(path, model)
    idx.indexer(model, n_centroids=16, store_token_ids=True, verbose=False, **kw).index(docs)
    return idx


def ranked(idx, model, queries, **kw) -> pd.DataFrame:
    return idx.retriever(model, **kw)(queries)[["qid", "docno", "score", "rank"]]


def assert_same_results(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Same docnos and scores (rtol 1e-5) per query; equal scores may come in either order."""
    assert sorted(a.qid.unique()) == sorted(b.qid.unique())
    for qid, ga in a.groupby("qid"):
        gb = b[b.qid == qid]
        np.testing.assert_allclose(ga.score.to_numpy(), gb.score.to_numpy(), rtol=1e-5)
        key = lambda g: sorted(zip(np.round(g.score, 4), g.docno))  # noqa: E731
        assert key(ga) == key(gb), qid


def fresh_equal(tmp_path, name, idx, model, live: dict, queries) -> None:
    """``idx`` searches exactly as a fresh index of ``live`` (docno -> text, in index order) with its codec."""
    fresh = build(tmp_path / name, model, [{"docno": d, "text": t} for d, t in live.items()], codec_from=idx)
    assert list(idx.docnos()) == list(live) == list(fresh.docnos())
    assert len(idx) == len(live)
    for kw in ({}, {"num_results": 5}, {"mode": "exhaustive"}, {"nprobe": 1, "ncandidates": 8, "nexact": 4,
                                                                 "num_results": 3}):
        assert_same_results(ranked(idx, model, queries, **kw), ranked(fresh, model, queries, **kw))
    # scorer, vec loader and stored token ids agree too
    res = ranked(fresh, model, queries, num_results=20).merge(queries, on="qid")
    np.testing.assert_allclose(idx.scorer(model)(res).sort_values(["qid", "docno"]).score.to_numpy(),
                               fresh.scorer(model)(res).sort_values(["qid", "docno"]).score.to_numpy(), rtol=1e-5)
    some = list(live)[-3:]
    for d in some:
        np.testing.assert_array_equal(idx.vectors(d), fresh.vectors(d))
        np.testing.assert_array_equal(idx.token_ids(d), fresh.token_ids(d))


@pytest.mark.parametrize("seed", [0, 1])
def test_random_adds_and_deletes_equal_a_fresh_index(tmp_path, model, pool, queries, seed):
    rng = np.random.default_rng(seed)
    texts = dict(zip(pool.docno, pool.text))
    names = list(texts)
    live = {d: texts[d] for d in names[:50]}
    idx = build(tmp_path / "idx", model, [{"docno": d, "text": t} for d, t in live.items()])
    unused = names[50:]
    deleted: list[str] = []
    for step in range(6):
        op = ["add", "delete", "readd", "replace"][step % 4] if step < 4 else rng.choice(["add", "delete"])
        if op == "add":
            batch = [unused.pop(0) for _ in range(int(rng.integers(1, 12)))]
            assert idx.add(pd.DataFrame({"docno": batch, "text": [texts[d] for d in batch]})) == len(batch)
            live.update({d: texts[d] for d in batch})
        elif op == "delete":
            victims = list(rng.choice(list(live), size=int(rng.integers(1, 8)), replace=False))
            assert idx.delete(victims) == len(victims)
            for d in victims:
                del live[d]
            deleted += victims
        elif op == "readd":  # a deleted docno comes back with other text: new doc id, found by lookup
            d = deleted.pop()
            new_text = texts[unused.pop(0)]
            idx.add([{"docno": d, "text": new_text}])
            live[d] = new_text
        else:  # replace a live document in place of its docno
            d = list(live)[int(rng.integers(0, len(live)))]
            new_text = texts[unused.pop(0)]
            with pytest.raises(ValueError, match="replace=True"):
                idx.add([{"docno": d, "text": new_text}])
            idx.add([{"docno": d, "text": new_text}], replace=True)
            del live[d]
            live[d] = new_text
    assert len(idx.metadata()["segments"]) > 1 and idx.metadata()["n_deleted"] > 0
    fresh_equal(tmp_path, "fresh", idx, model, live, queries)
    # a second handle opened before the changes sees them at its next use (the metadata changed)
    idx.verify()
    idx.compact()
    meta = idx.metadata()
    assert len(meta["segments"]) == 1 and meta["n_deleted"] == 0 and meta["n_docs"] == len(live)
    fresh_equal(tmp_path, "fresh2", idx, model, live, queries)
    idx.verify()


def test_other_handles_see_changes(tmp_path, model, pool, queries):
    idx = build(tmp_path / "idx", model, pool.iloc[:40])
    other = ColBERTIndex(tmp_path / "idx", model)
    ret = other.retriever(model, num_results=5)
    before = ret(queries)
    idx.add(pool.iloc[40:60])
    idx.delete(list(pool.docno.iloc[:5]))
    assert len(other) == 55 and "d0" not in other.docnos() and "d45" in other.docnos()
    after = ret(queries)
    assert not set(after.docno) & set(pool.docno.iloc[:5])
    assert not before.equals(after)


def test_deleted_docnos_are_unknown(tmp_path, model, pool, queries):
    idx = build(tmp_path / "idx", model, pool.iloc[:40])
    idx.delete("d3")
    with pytest.raises(KeyError, match="d3"):
        idx.vectors("d3")
    res = pd.DataFrame({"qid": ["q0", "q0"], "query": ["t1 t2", "t1 t2"], "docno": ["d3", "d4"]})
    with pytest.raises(KeyError, match="d3"):
        idx.scorer(model)(res)
    assert idx.scorer(model, on_unknown="drop")(res).docno.tolist() == ["d4"]
    assert idx.vec_loader(on_unknown="drop")(res).docno.tolist() == ["d4"]
    assert "d3" not in idx.docnos() and len(idx) == 39
    assert [d["docno"] for d in idx.get_corpus_iter()] == [d for d in pool.docno.iloc[:40] if d != "d3"]
    with pytest.raises(KeyError, match="already deleted"):
        idx.delete("d3")
    assert idx.delete(["d3", "nope"], on_unknown="drop") == 0
    assert idx.delete(["d3", "nope"], on_unknown="ignore") == 0  # the former name of "drop"
    with pytest.raises(ValueError, match="on_unknown"):
        idx.delete(["d3"], on_unknown="skip")
    for mode in ("plaid", "exhaustive"):
        assert "d3" not in set(idx.retriever(model, mode=mode, num_results=1000)(queries).docno)


def test_bad_adds(tmp_path, model, pool):
    idx = build(tmp_path / "idx", model, pool.iloc[:30])
    with pytest.raises(ValueError, match="duplicate docno 'x'"):
        idx.add([{"docno": "x", "text": "t1"}, {"docno": "x", "text": "t2"}])
    with pytest.raises(KeyError, match="docno"):
        idx.add(pd.DataFrame({"id": ["a"], "text": ["t1"]}))
    with pytest.raises(TypeError, match="fillna"):
        idx.add(pd.DataFrame({"docno": ["a"], "text": [None]}))
    with pytest.raises(ModelMismatchError):
        idx.add([{"docno": "a", "text": "t1"}], model=FakeModel(name="other"))
    with pytest.raises(ValueError, match="has dim 8, expected 32; encode"):
        idx.add([{"docno": "a", "doc_embs": np.ones((2, 8), np.float32), "doc_toks": np.ones(2, np.int32)}])
    assert len(idx) == 30 and idx.metadata()["generation"] == 0  # nothing was committed
    assert idx.add([]) == 0
    # documents with no vectors are kept (never retrieved)
    assert idx.add([{"docno": "empty", "text": ""}]) == 1 and "empty" in idx.docnos() and len(idx) == 31
    idx.verify()


def test_all_deleted_then_compact_refused(tmp_path, model, pool, queries):
    idx = build(tmp_path / "idx", model, pool.iloc[:10])
    idx.delete(list(pool.docno.iloc[:10]))
    assert len(idx) == 0 and len(idx.retriever(model)(queries)) == 0
    with pytest.raises(ValueError, match="every document"):
        idx.compact()


def test_compact_retrain(tmp_path, model, pool, queries):
    idx = build(tmp_path / "idx", model, pool.iloc[:60])
    idx.add(pool.iloc[60:100])
    idx.delete(list(pool.docno.iloc[:20]))
    idx.compact(retrain=True, n_centroids=8)
    meta = idx.metadata()
    assert meta["n_centroids"] == 8 and meta["n_docs"] == 80 and meta["compacted"]["retrained"]
    assert list(idx.docnos()) == list(pool.docno.iloc[20:100])
    exact = ranked(idx, model, queries, mode="exhaustive", num_results=5)
    assert set(exact.docno) <= set(pool.docno.iloc[20:100]) and len(exact) == 5 * len(queries)
    idx.verify()


def test_format1_index_opens_and_upgrades(tmp_path, model, pool, queries):
    """A format-1 index (the layout before this version) still searches, and a change rewrites it as format 2."""
    idx = build(tmp_path / "v2", model, pool.iloc[:40])
    expected = ranked(idx, model, queries, num_results=10)
    r = idx.reader()
    old = tmp_path / "v1"
    old.mkdir()
    for name, arr in (("offsets", r.offsets), ("doclens", r.doclens), ("codes", r.codes),
                      ("residuals", r.residuals), ("token_ids", r.token_ids)):
        np.save(old / f"{name}.npy", np.asarray(arr))
    np.save(old / "ivf.offsets.npy", np.asarray(r.ivf_offsets))
    np.save(old / "ivf.docs.npy", np.asarray(r.ivf_docs))
    r.codec.save(old)
    import npids
    npids.Lookup.build(list(pool.docno.iloc[:40]), old / "docnos.npids")
    meta = {k: v for k, v in r.meta.items() if k not in ("files", "arrays", "segments", "tombstones", "n_deleted",
                                                         "generation")}
    meta["format_version"] = 1
    (old / "lateint.json").write_text(json.dumps(meta))
    v1 = ColBERTIndex(old, model)
    assert_same_results(ranked(v1, model, queries, num_results=10), expected)
    with pytest.raises(ValueError, match="format 1"):
        v1.verify()
    v1.add(pool.iloc[40:45])
    assert v1.metadata()["format_version"] == 2 and len(v1) == 45
    v1.verify()


def test_one_document_and_single_char_docnos(tmp_path, model, queries):
    idx = build(tmp_path / "one", model, [{"docno": "a", "text": "t1 t2 t3"}])
    assert list(idx.docnos()) == ["a"] and idx.retriever(model)(queries.iloc[:1]).docno.tolist() == ["a"]
    idx.add([{"docno": "b", "text": "t4"}])
    assert list(idx.docnos()) == ["a", "b"]


def test_truncated_and_altered_files(tmp_path, model, pool, queries):
    import shutil
    idx = build(tmp_path / "idx", model, pool.iloc[:40])
    bad = tmp_path / "bad"
    shutil.copytree(idx.path, bad)
    res = bad / "residuals.bin"
    res.write_bytes(res.read_bytes()[:-10])
    with pytest.raises(IndexCorruptError, match="'residuals.bin'.*truncated.*overwrite=True"):
        ColBERTIndex(bad, model).retriever(model)(queries)
    shutil.rmtree(bad)
    shutil.copytree(idx.path, bad)
    data = bytearray((bad / "codes.bin").read_bytes())
    data[5] ^= 0xFF
    (bad / "codes.bin").write_bytes(bytes(data))
    assert len(ColBERTIndex(bad)) == 40  # sizes match: the cheap check at open passes ...
    with pytest.raises(IndexCorruptError, match="'codes.bin' fails its checksum"):
        ColBERTIndex(bad).verify()  # ... the full one does not
    with pytest.raises(IndexCorruptError, match="codes.bin"):
        ColBERTIndex(bad, verify=True).retriever(model)
    (bad / "ivf.0.docs.npy").unlink()
    with pytest.raises(IndexCorruptError, match="'ivf.0.docs.npy' is missing"):
        len(ColBERTIndex(bad))


def test_add_text_to_an_index_opened_without_a_model_uses_the_recorded_one(tmp_path, stanford_v2):
    """``ColBERTIndex(path).add(docs)`` encodes text with the model the index records (what ``lateint search``
    loads), giving the vectors and rankings of adding with that model given; an index built from vectors has no model
    to load, and adding text to it still names the missing model."""
    from pyterrier_lateint import ColBERT
    model = ColBERT.from_pretrained(str(stanford_v2.path), device="cpu")
    first = [{"docno": f"d{i}", "text": f"document {i} about {w}"} for i, w in
             enumerate(["physics", "solar energy", "quantum fields", "protein folding", "ocean tides", "graphs"] * 3)]
    more = [{"docno": "n1", "text": "the physics of ocean tides"}, {"docno": "n2", "text": "protein folding models"}]
    for name in ("given", "recorded"):
        ColBERTIndex(tmp_path / name, model).indexer(n_centroids=8, verbose=False).index(first)
    ColBERTIndex(tmp_path / "given").add(more, model)
    assert ColBERTIndex(tmp_path / "recorded").add(more) == 2          # no model: the recorded one
    given, recorded = ColBERTIndex(tmp_path / "given"), ColBERTIndex(tmp_path / "recorded")
    for docno in ("n1", "n2"):
        np.testing.assert_array_equal(recorded.vectors(docno), given.vectors(docno))
    topics = pd.DataFrame({"qid": ["1"], "query": ["ocean physics"]})
    pd.testing.assert_frame_equal(recorded.retriever(model, num_results=5)(topics),
                                  given.retriever(model, num_results=5)(topics))
    vec = ColBERTIndex(tmp_path / "vectors")
    vec.indexer(n_centroids=8, verbose=False).index(
        [{"docno": d["docno"], "doc_embs": v} for d, v in zip(first, model.encode_docs([d["text"] for d in first]))])
    with pytest.raises(Exception, match="model"):
        vec.add(more)
