"""Changing a sharded index: docnos stay unique over all shards (add / delete route by docno), and a shard changed
directly so that a docno is live twice is detected at the next open. Expectations: brute-force MaxSim over the
documents' vectors, and the set of live docnos kept by hand."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pyterrier_lateint import ColBERTIndex, ShardedColBERTIndex

DIM = 16


def unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def docs(names, seed):
    rng = np.random.default_rng(seed)
    return [{"docno": d, "doc_embs": unit(rng.normal(size=(int(rng.integers(2, 9)), DIM)))} for d in names]


@pytest.fixture()
def sharded(tmp_path):
    base = docs([f"d{i}" for i in range(90)], 0)
    idx = ShardedColBERTIndex(tmp_path / "s.lateint").indexer(n_shards=3, nbits=16, n_centroids=8,
                                                               verbose=False).index(base)
    return idx, {d["docno"]: d["doc_embs"] for d in base}


def live(idx):
    return sorted(d for s in idx.shards() for d in s.docnos())


def maxsim(q, v):
    return float((q @ v.T).max(1).sum())


def test_add_routes_new_docnos_and_refuses_live_ones(sharded):
    idx, vecs = sharded
    sizes = [len(s) for s in idx.shards()]
    new = docs(["n1", "n2", "n3"], 1)
    assert idx.add(new) == 3
    after = [len(s) for s in idx.shards()]
    assert sum(after) == sum(sizes) + 3 and sorted(np.subtract(after, sizes)) == [0, 0, 3]  # one shard took them
    assert after[int(np.argmin(sizes))] == min(sizes) + 3  # the smallest one
    with pytest.raises(ValueError, match=r"already in .*'d5'.*replace=True"):
        idx.add(docs(["d5", "n9"], 2))
    assert len(idx) == 93 and "n9" not in live(idx)  # the refused call added nothing
    # replace: d5 gets new vectors in the shard that held it, and is live once
    owner = [i for i, s in enumerate(idx.shards()) if "d5" in s.docnos()]
    repl = docs(["d5"], 3)
    assert idx.add(repl, replace=True) == 1
    assert [i for i, s in enumerate(idx.shards()) if "d5" in s.docnos()] == owner
    assert len(idx) == 93 and live(idx).count("d5") == 1
    # exhaustive search scores d5 by its new vectors, and returns each docno once
    q = unit(np.random.default_rng(4).normal(size=(5, DIM)))
    res = idx.retriever(num_results=1000, mode="exhaustive")(pd.DataFrame({"qid": ["q"], "query_embs": [q]}))
    assert res.docno.is_unique and len(res) == 93
    assert res.set_index("docno").score["d5"] == pytest.approx(maxsim(q, repl[0]["doc_embs"]), rel=1e-3)


def test_delete_routes_and_is_all_or_nothing(sharded):
    idx, _ = sharded
    assert idx.delete(["d1", "d50", "d89"]) == 3
    assert len(idx) == 87 and not {"d1", "d50", "d89"} & set(live(idx))
    with pytest.raises(KeyError, match="nothing was deleted"):
        idx.delete(["d2", "d1"])  # d1 is deleted already
    assert "d2" in live(idx)
    assert idx.delete(["d2", "d1", "zz"], on_unknown="drop") == 1
    assert idx.delete(["d2", "zz"], on_unknown="ignore") == 0  # the former name of "drop"
    with pytest.raises(ValueError, match="on_unknown"):
        idx.delete(["d2"], on_unknown="skip")
    assert idx.add(docs(["d1"], 5)) == 1  # a deleted docno can come back
    assert live(idx).count("d1") == 1


def test_direct_shard_change_that_duplicates_a_docno_is_detected(sharded, tmp_path):
    idx, _ = sharded
    holder = next(i for i, s in enumerate(idx.shards()) if "d7" in s.docnos())
    other = (holder + 1) % 3
    shard_path = idx.shards()[other].path
    idx.shards()[other].add(docs(["d7"], 6))  # bypasses the routing
    with pytest.raises(ValueError, match=r"'d7'.*live in shards .*ColBERTIndex\(.*delete"):
        ShardedColBERTIndex(idx.path).retriever(mode="exhaustive")
    ColBERTIndex(shard_path).delete(["d7"])  # the fix the message names
    assert live(ShardedColBERTIndex(idx.path)).count("d7") == 1
