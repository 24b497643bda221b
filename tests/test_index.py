"""Tests of the compressed ColBERTIndex on tiny synthetic corpora, against brute-force MaxSim."""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pandas as pd
import pyterrier as pt
import pytest

from pyterrier_lateint.index import ColBERTIndex, IndexNotFoundError, ModelMismatchError, ResidualCodec, SearchParams
from pyterrier_lateint.index.kmeans import kmeans
from pyterrier_lateint.maxsim import maxsim


class FakeModel:
    """Deterministic stand-in for a ColBERT model: text ``"t12 t7 ..."`` -> one vector per token.

    Token vectors are clustered: ``n_topics`` topic directions, each token near its topic's direction, plus a
    position-dependent perturbation, all L2-normalised.
    """

    def __init__(self, dim: int = 32, vocab: int = 400, n_topics: int = 20, seed: int = 0, name: str = "fake"):
        rng = np.random.default_rng(seed)
        topics = rng.normal(size=(n_topics, dim))
        self.emb = topics[rng.integers(0, n_topics, vocab)] + 0.6 * rng.normal(size=(vocab, dim))
        self.pos = 0.25 * rng.normal(size=(256, dim))
        self.dim = dim
        self.name = name

    def _encode(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        toks = np.array([int(t[1:]) for t in text.split()], dtype=np.int32)
        v = self.emb[toks] + self.pos[: len(toks)]
        v = v / np.linalg.norm(v, axis=1, keepdims=True)
        return v.astype(np.float32).reshape(-1, self.dim), toks

    def encode_queries(self, texts, batch_size=64, show_progress=False):
        return [self._encode(t)[0] for t in texts]

    def encode_docs(self, texts, batch_size=64, show_progress=False, return_ids=False):
        out = [self._encode(t) for t in texts]
        vecs = [v for v, _ in out]
        return (vecs, [i for _, i in out]) if return_ids else vecs

    def signature(self):
        return {"name": self.name, "dim": self.dim}

    def score_divisor(self, n_query_tokens):
        return 1.0

    def __repr__(self):
        return f"FakeModel({self.name!r})"


def make_corpus(n_docs: int = 300, vocab: int = 400, seed: int = 1, empty: tuple[int, ...] = ()) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    texts = []
    for i in range(n_docs):
        if i in empty:
            texts.append("")
            continue
        n = int(rng.integers(5, 40))
        # documents are about 1-2 "themes": tokens drawn from a narrow id range, so topics repeat across docs
        base = int(rng.integers(0, vocab - 40))
        toks = np.where(rng.random(n) < 0.7, base + rng.integers(0, 40, n), rng.integers(0, vocab, n))
        texts.append(" ".join(f"t{t}" for t in toks))
    return pd.DataFrame({"docno": [f"d{i}" for i in range(n_docs)], "text": texts})


def make_queries(n: int = 20, vocab: int = 400, seed: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    qs = []
    for _ in range(n):
        base = int(rng.integers(0, vocab - 40))
        qs.append(" ".join(f"t{t}" for t in base + rng.integers(0, 40, int(rng.integers(3, 9)))))
    return pd.DataFrame({"qid": [f"q{i}" for i in range(n)], "query": qs})


def brute_force(model, docs: pd.DataFrame, queries: pd.DataFrame, k: int) -> dict[str, list[str]]:
    dvecs = model.encode_docs(docs.text.tolist())
    out = {}
    for qid, q in zip(queries.qid, model.encode_queries(queries["query"].tolist())):
        s = maxsim(q, dvecs)
        order = np.lexsort((np.arange(len(s)), -s))
        out[qid] = [docs.docno.iloc[i] for i in order[:k] if np.isfinite(s[i])]
    return out


@pytest.fixture(scope="module")
def model():
    return FakeModel()


@pytest.fixture(scope="module")
def corpus():
    return make_corpus(empty=(3, 150))


@pytest.fixture(scope="module")
def queries():
    return make_queries()


@pytest.fixture(scope="module")
def index2(tmp_path_factory, model, corpus):
    idx = ColBERTIndex(tmp_path_factory.mktemp("idx") / "nbits2.lateint")
    idx.indexer(model, nbits=2, store_token_ids=True, verbose=False).index(corpus.to_dict("records"))
    return idx


@pytest.fixture(scope="module")
def index16(tmp_path_factory, model, corpus):
    idx = ColBERTIndex(tmp_path_factory.mktemp("idx") / "fp16.lateint")
    idx.indexer(model, nbits=16, verbose=False).index(corpus)
    return idx


def test_layout_and_inspection(index2, model, corpus):
    assert len(index2) == len(corpus)
    assert list(index2.docnos()) == corpus.docno.tolist()
    with open(index2.path / "pt_meta.json") as f:
        meta = json.load(f)
    assert meta["type"] == "late_interaction_index" and meta["format"] == "lateint"
    md = index2.metadata()
    assert md["model"] == model.signature() and md["nbits"] == 2 and md["n_empty_docs"] == 2
    lens = [len(t.split()) for t in corpus.text]
    assert index2.doclens().tolist() == lens
    assert md["n_vectors"] == sum(lens)
    # memory-mapped, not loaded
    r = index2.reader()
    assert isinstance(r.codes, np.memmap) and isinstance(r.residuals, np.memmap)
    scale_byte = int(r.codec.scaled)  # unit-length vectors: one scale byte per vector
    assert r.codec.kind == "pq" and scale_byte == int(np.allclose(np.linalg.norm(index2.vectors("d7"), axis=1), 1,
                                                                  atol=1e-2))
    assert r.codes.dtype == np.uint16 and r.residuals.shape == (sum(lens), model.dim * 2 // 8 + scale_byte)
    # vectors(docno) approximates the encoder's vectors; token ids are stored row by row
    true_v, true_ids = model._encode(corpus.text.iloc[7])
    got = index2.vectors("d7")
    assert got.shape == true_v.shape
    assert np.abs(got - true_v).mean() < 0.1
    assert index2.token_ids("d7").tolist() == true_ids.tolist()
    assert index2.vectors("d3").shape == (0, model.dim)  # the empty document is kept
    with pytest.raises(KeyError, match="not in the index"):
        index2.vectors("nope")


def test_ivf_lists_every_doc_of_each_centroid(index2):
    r = index2.reader()
    expected: dict[int, set] = {}
    codes = np.asarray(r.codes)
    for d in range(r.n_docs):
        for c in codes[r.offsets[d]:r.offsets[d + 1]]:
            expected.setdefault(int(c), set()).add(d)
    for c in range(r.codec.n_centroids):
        lst = r.ivf_docs[r.ivf_offsets[c]:r.ivf_offsets[c + 1]].tolist()
        assert lst == sorted(expected.get(c, set()))


def test_exhaustive_equals_brute_force_on_fp16(index16, model, corpus, queries):
    res = index16.retriever(model, mode="exhaustive", num_results=10).transform(queries)
    ref = brute_force(model, corpus, queries, 10)
    assert set(res.columns) >= {"qid", "query", "docno", "score", "rank"}
    dvecs = model.encode_docs(corpus.text.tolist())
    qvecs = dict(zip(queries.qid, model.encode_queries(queries["query"].tolist())))
    for qid, g in res.groupby("qid"):
        assert g["rank"].tolist() == list(range(len(g)))
        # fp16 residuals: scores within float16 rounding of the exact MaxSim
        exact = maxsim(qvecs[qid], [dvecs[int(d[1:])] for d in g.docno])
        np.testing.assert_allclose(g.score.to_numpy(), exact, atol=2e-3)
        overlap = len(set(g.docno) & set(ref[qid])) / 10
        assert overlap >= 0.9


def test_exhaustive_equals_maxsim_over_decompressed(index2, model, queries):
    r = index2.reader()
    all_vecs = [index2.vectors(d) for d in index2.docnos()]
    res = index2.retriever(model, mode="exhaustive", num_results=5).transform(queries)
    for qid, q in zip(queries.qid, model.encode_queries(queries["query"].tolist())):
        s = maxsim(q, all_vecs)
        order = np.lexsort((np.arange(len(s)), -s))[:5]
        g = res[res.qid == qid]
        assert g.docno.tolist() == [f"d{i}" for i in order]
        np.testing.assert_allclose(g.score.to_numpy(), s[order], rtol=1e-5, atol=1e-5)
    assert r.n_docs == len(all_vecs)


@pytest.mark.parametrize("k", [10, 50])
def test_plaid_recall_generous_settings(index2, model, queries, k):
    exact = index2.retriever(model, mode="exhaustive", num_results=k).transform(queries)
    approx = index2.retriever(model, num_results=k, nprobe=16, ncandidates=300, nexact=300).transform(queries)
    for qid, g in exact.groupby("qid"):
        a = approx[approx.qid == qid]
        assert a.docno.tolist() == g.docno.tolist()
        np.testing.assert_allclose(a.score.to_numpy(), g.score.to_numpy(), rtol=1e-5)


def test_plaid_default_settings_close_to_exact(index2, model, queries):
    exact = index2.retriever(model, mode="exhaustive", num_results=10).transform(queries)
    approx = index2.retriever(model, num_results=10).transform(queries)
    recall = np.mean([len(set(approx[approx.qid == q].docno) & set(g.docno)) / 10 for q, g in exact.groupby("qid")])
    assert recall >= 0.95


def test_empty_docs_never_retrieved(index2, model, queries):
    res = index2.retriever(model, mode="exhaustive", num_results=300).transform(queries)
    assert not ({"d3", "d150"} & set(res.docno))
    assert (res.groupby("qid").size() == 298).all()
    res = index2.retriever(model, num_results=300, nprobe=64).transform(queries)
    assert not ({"d3", "d150"} & set(res.docno))


@pytest.mark.parametrize("split", [False, True])
def test_scorer_matches_brute_force_on_decompressed(index2, model, queries, split, monkeypatch):
    from pyterrier_lateint.index import search
    if split:  # one query's exact stage split over the thread pool, as for deep rankings of long documents
        monkeypatch.setattr(search, "PARALLEL_MIN_WORK", 0)
        monkeypatch.setenv("LATEINT_NUM_THREADS", "2")
    rng = np.random.default_rng(0)
    rows = []
    for qid, q in zip(queries.qid, queries["query"]):
        for d in rng.choice(300, 30, replace=False):
            rows.append({"qid": qid, "query": q, "docno": f"d{d}", "score": 0.0, "rank": 0})
    inp = pd.DataFrame(rows)
    out = index2.scorer(model).transform(inp)
    assert len(out) == len(inp)
    qv = dict(zip(queries.qid, model.encode_queries(queries["query"].tolist())))
    for qid, g in out.groupby("qid", sort=False):
        expected = maxsim(qv[qid], [index2.vectors(d) for d in g.docno])
        np.testing.assert_allclose(g.score.to_numpy(), expected, rtol=1e-5)
        assert g["rank"].tolist() == list(range(len(g)))
        assert (np.diff(g.score.to_numpy()) <= 0).all()
    # query_embs instead of query text, no model needed
    toks = inp.assign(query_embs=[qv[q] for q in inp.qid]).drop(columns=["query"])
    out2 = index2.scorer().transform(toks)
    pd.testing.assert_frame_equal(out.drop(columns=["query"]), out2.drop(columns=["query_embs"]))


def test_scorer_unknown_docnos(index2, model):
    inp = pd.DataFrame({"qid": ["q1", "q1"], "query": ["t1 t2", "t1 t2"], "docno": ["d1", "missing"]})
    with pytest.raises(KeyError, match="missing"):
        index2.scorer(model).transform(inp)
    out = index2.scorer(model, on_unknown="drop").transform(inp)
    assert out.docno.tolist() == ["d1"] and np.isfinite(out.score).all()


def test_scorer_empty_doc_ranks_last(index2, model):
    inp = pd.DataFrame({"qid": ["q1"] * 3, "query": ["t1 t2"] * 3, "docno": ["d3", "d1", "d2"]})
    out = index2.scorer(model).transform(inp)
    assert out.docno.iloc[-1] == "d3" and out.score.iloc[-1] == -np.inf


def test_missing_columns(index2, model):
    with pytest.raises(pt.validate.InputValidationError):
        index2.retriever(model).transform(pd.DataFrame({"qid": ["1"]}))
    with pytest.raises(pt.validate.InputValidationError):
        index2.scorer(model).transform(pd.DataFrame({"qid": ["1"], "query": ["t1"]}))


def test_query_embs_input_and_rank_cutoff(index2, model, queries):
    r = index2.retriever(model, num_results=20)
    a = r.transform(queries)
    b = index2.retriever(num_results=20).transform(
        queries.assign(query_embs=model.encode_queries(queries["query"].tolist())))
    assert a.docno.tolist() == b.docno.tolist()
    fused = (r % 5).compile()
    assert isinstance(fused, type(r)) and fused.num_results == 5
    c = fused.transform(queries)
    assert (c.groupby("qid").size() == 5).all()
    assert c.docno.tolist() == a[a["rank"] < 5].docno.tolist()
    assert r == index2.retriever(model, num_results=20) and hash(r) == hash(index2.retriever(model, num_results=20))
    assert r != index2.retriever(model, num_results=21)


def test_pipeline_doc_encoder_then_indexer(tmp_path, model, corpus, queries):
    class DocEnc(pt.Transformer):
        def transform(self, df):
            return df.assign(doc_embs=model.encode_docs(df.text.tolist()))
    idx = ColBERTIndex(tmp_path / "pipe.lateint")
    (DocEnc() >> idx.indexer(model, nbits=16, verbose=False)).index(corpus.to_dict("records"))
    assert len(idx) == len(corpus)
    ref = brute_force(model, corpus, queries, 5)
    res = idx.retriever(model, num_results=5, mode="exhaustive").transform(queries)
    agree = np.mean([len(set(g.docno) & set(ref[q])) / 5 for q, g in res.groupby("qid")])
    assert agree >= 0.95


def test_reconstruction_error_ordering(tmp_path, model, corpus):
    errs = {}
    true = np.concatenate(model.encode_docs(corpus.text.tolist()))
    for nbits in (1, 2, 4, 16):
        idx = ColBERTIndex(tmp_path / f"n{nbits}")
        idx.indexer(model, nbits=nbits, n_centroids=64, verbose=False).index(corpus)
        got = np.concatenate([idx.vectors(d) for d in idx.docnos()])
        errs[nbits] = float(np.mean(np.sum((got - true) ** 2, axis=1)))
        codec = idx.reader().codec
        assert codec.bytes_per_vector() == 2 + (model.dim * nbits // 8 + codec.scaled if nbits < 16 else 2 * model.dim)
    assert errs[16] < 1e-5 < errs[4] < errs[2] < errs[1] < 0.5, errs


def test_codec_roundtrip_and_packing():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 16)).astype(np.float32)
    cents = kmeans(x, 8, iters=5, use_faiss=False)
    for nbits in (1, 2, 4):
        codec = ResidualCodec.train(cents, x, nbits, kind="scalar")
        codes, packed = codec.compress(x)
        assert packed.shape == (2000, 16 * nbits // 8) and packed.dtype == np.uint8
        # unpack by hand: dimension d lives in byte d // per at bit offset (d % per) * nbits
        per = 8 // nbits
        d = np.arange(16)
        buckets = (packed[:, d // per] >> ((d % per) * nbits).astype(np.uint8)) & ((1 << nbits) - 1)
        expected = cents[codes] + codec.weights[d, buckets]
        np.testing.assert_allclose(codec.decompress(codes, packed), expected, rtol=1e-6)
        # each bucket really holds the residuals between its cut-offs
        res = x - cents[codes]
        lo = np.concatenate([np.full((16, 1), -np.inf), codec.cutoffs], 1)[d, buckets]
        hi = np.concatenate([codec.cutoffs, np.full((16, 1), np.inf)], 1)[d, buckets]
        assert ((res > lo) | np.isclose(res, lo)).all() and (res <= hi).all()


def test_kmeans_finds_separated_clusters():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(5, 8)) * 10
    x = (centers[rng.integers(0, 5, 1000)] + rng.normal(size=(1000, 8)) * 0.1).astype(np.float32)
    c = kmeans(x, 5, iters=10, use_faiss=False, seed=3)
    dist = np.linalg.norm(centers[:, None] - c[None], axis=2).min(axis=1)
    assert (dist < 0.5).all() or len(np.unique(np.argmin(np.linalg.norm(x[:, None] - c[None], axis=2), 1))) >= 4


def test_duplicate_docnos_refused(tmp_path, model):
    idx = ColBERTIndex(tmp_path / "dup")
    docs = [{"docno": "a", "text": "t1 t2"}, {"docno": "b", "text": "t3"}, {"docno": "a", "text": "t4"}]
    with pytest.raises(ValueError, match="duplicate docno 'a'"):
        idx.indexer(model, verbose=False).index(docs)
    assert not (tmp_path / "dup").exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # the temporary directory was removed


def test_overwrite_refused_then_allowed(tmp_path, model, corpus):
    idx = ColBERTIndex(tmp_path / "ow")
    idx.indexer(model, nbits=2, n_centroids=16, verbose=False).index(corpus.iloc[:50])
    with pytest.raises(FileExistsError, match="overwrite=True"):
        idx.indexer(model, verbose=False).index(corpus.iloc[:60])
    assert len(idx) == 50
    idx.indexer(model, n_centroids=16, overwrite=True, verbose=False).index(corpus.iloc[:60])
    assert len(idx) == 60
    assert len(ColBERTIndex(tmp_path / "ow")) == 60


def test_half_written_index_refused(tmp_path, index2):
    broken = tmp_path / "broken"
    shutil.copytree(index2.path, broken)
    os.remove(broken / "lateint.json")
    with pytest.raises(IndexNotFoundError, match="half-written"):
        len(ColBERTIndex(broken))
    with pytest.raises(IndexNotFoundError, match="no index"):
        ColBERTIndex(tmp_path / "nothing").retriever()


def test_crash_during_build_leaves_nothing(tmp_path, model, corpus):
    def docs():
        yield from corpus.iloc[:20].to_dict("records")
        raise RuntimeError("boom")
    with pytest.raises(RuntimeError, match="boom"):
        ColBERTIndex(tmp_path / "crash").indexer(model, verbose=False).index(docs())
    assert list(tmp_path.iterdir()) == []


def test_model_mismatch(index2, model):
    other = FakeModel(name="other")
    with pytest.raises(ModelMismatchError, match="name"):
        index2.retriever(other)
    with pytest.raises(ModelMismatchError):
        index2.scorer(other)


def test_artifact_load_via_metadata(index2):
    from pyterrier_lateint.index.layout import ARTIFACT_FORMAT, ARTIFACT_TYPE
    assert pt.inspect.artifact_type_format(index2) == (ARTIFACT_TYPE, ARTIFACT_FORMAT)
    loaded = ColBERTIndex.load(str(index2.path))
    assert isinstance(loaded, ColBERTIndex) and len(loaded) == len(index2)


def test_dim_mismatch_query(index2):
    bad = pd.DataFrame({"qid": ["1"], "query_embs": [np.ones((3, 7), dtype=np.float32)]})
    with pytest.raises(ValueError, match="dim"):
        index2.retriever().transform(bad)


@pytest.mark.parametrize("nbits_fixture", ["index2", "index16"])
def test_torch_path_matches_numba_path(request, nbits_fixture, model, queries):
    """The GPU (torch) kernels, run here on the CPU, give the same rankings and scores as the numba path."""
    idx = request.getfixturevalue(nbits_fixture)
    for kw in ({"mode": "exhaustive"}, {"nprobe": 4, "ncandidates": 64, "nexact": 32}, {"nprobe": 16}):
        a = idx.retriever(model, num_results=10, backend="numba", **kw).transform(queries)
        b = idx.retriever(model, num_results=10, backend="torch", device="cpu", **kw).transform(queries)
        assert a.docno.tolist() == b.docno.tolist(), kw
        np.testing.assert_allclose(a.score.to_numpy(), b.score.to_numpy(), rtol=1e-4, atol=1e-5)
    inp = a.assign(score=0.0)
    sa = idx.scorer(model, backend="numba").transform(inp)
    sb = idx.scorer(model, backend="torch", device="cpu").transform(inp)
    np.testing.assert_allclose(sa.score.to_numpy(), sb.score.to_numpy(), rtol=1e-4, atol=1e-5)


def test_artifact_entry_point_if_installed(index2):
    eps = [ep for ep in pt.utils.entry_points("pyterrier.artifact") if ep.name == "late_interaction_index.lateint"]
    if not eps:
        pytest.skip("package not installed with its pyterrier.artifact entry point")
    loaded = pt.Artifact.load(str(index2.path))
    assert isinstance(loaded, ColBERTIndex) and len(loaded) == len(index2)


# ---------------------------------------------------------------- PyTerrier contract (pt.inspect, schematic)
def _contract_index() -> ColBERTIndex:
    import tempfile
    index = ColBERTIndex(os.path.join(tempfile.mkdtemp(prefix="lateint-contract-"), "c.lateint"))
    index.indexer(FakeModel(), nbits=2, verbose=False).index(make_corpus(60).to_dict("records"))
    return index


@pt.testing.transformer_test_class
def test_retriever_contract():
    return _contract_index().retriever(FakeModel(), num_results=5)


@pt.testing.transformer_test_class
def test_scorer_contract():
    return _contract_index().scorer(FakeModel())


def test_retriever_equality_and_rank_cutoff_fusion(tmp_path):
    index = ColBERTIndex(tmp_path / "e.lateint")
    index.indexer(FakeModel(), nbits=2, verbose=False).index(make_corpus(60).to_dict("records"))
    a, b = index.retriever(FakeModel(), num_results=10), index.retriever(FakeModel(), num_results=10)
    assert a == b and hash(a) == hash(b)
    assert a != index.retriever(FakeModel(), num_results=20)
    fused = (a % 3).compile()
    assert type(fused) is type(a) and fused.num_results == 3  # the cutoff fused into the retriever
    queries = make_queries(4)
    out = fused(queries)
    assert out.groupby("qid").size().max() <= 3
    full = a(queries)
    pd.testing.assert_frame_equal(out.reset_index(drop=True)[["qid", "docno"]],
                                  full[full["rank"] < 3].reset_index(drop=True)[["qid", "docno"]])


def test_stage1_imputes_best_unprobed_centroid():
    """Hand-built stage 1 with ``nprobe=1``: a token that misses a document is imputed with its best *unprobed*
    centroid, so a document matching both tokens beats one matching one token (the old ``nprobe``-th imputation
    scored every candidate alike)."""
    from pyterrier_lateint.index.search import _probe_candidates, _top_probes, select_top
    St = np.array([[0.9, 0.1],   # centroid 0: token 0's best
                   [0.2, 0.8],   # centroid 1: token 1's best
                   [0.5, 0.6]],  # centroid 2: second best of both = the imputed score
                  dtype=np.float32)
    probes = _top_probes(St, 2, 1)
    assert probes.tolist() == [[0, 2], [1, 2]]
    # documents: 0 holds centroid 0; 1 holds centroids 0 and 1; 2 holds centroid 1
    ivf_offsets = np.array([0, 2, 4, 4], dtype=np.int64)
    ivf_docs = np.array([0, 1, 1, 2], dtype=np.int32)
    # approximate scores above the all-miss baseline: doc0 0.4, doc1 0.4 + 0.2, doc2 0.2
    ids, approx = _probe_candidates(St, 2, probes, 1, ivf_offsets, ivf_docs, 3)
    np.testing.assert_allclose(dict(zip(ids.tolist(), approx.tolist()))[1], 0.6, rtol=1e-6)
    np.testing.assert_allclose([dict(zip(ids.tolist(), approx.tolist()))[d] for d in (0, 2)], [0.4, 0.2], rtol=1e-6)
    assert select_top(ids, approx, 1).tolist() == [1]
    assert sorted(select_top(ids, approx, 2).tolist()) == [0, 1]
    assert select_top(np.array([5, 3, 4]), np.array([1.0, 1.0, 2.0]), 2).tolist() == [4, 3]  # ties: lower id


def test_nprobe_1_finds_what_exhaustive_finds(index2, model, queries):
    exact = index2.retriever(model, num_results=10, mode="exhaustive").transform(queries)
    one = index2.retriever(model, num_results=10, nprobe=1).transform(queries)
    overlap = [len(set(g.docno) & set(one[one.qid == q].docno)) / len(g) for q, g in exact.groupby("qid")]
    assert np.mean(overlap) >= 0.8


def test_search_settings_validated(index2, model):
    with pytest.raises(ValueError, match="nprobe must be >= 1"):
        index2.retriever(model, nprobe=0)
    with pytest.raises(ValueError, match="nexact"):
        SearchParams(4, 512, 0)


def test_default_settings_follow_the_collection_size():
    from pyterrier_lateint.index.search import default_nexact, default_nprobe
    d = SearchParams()
    assert d.nprobe is None and d.ncandidates is None and d.nexact is None
    assert d.for_k(10, 3_000) == SearchParams(8, 1024, 256)
    assert d.for_k(10, 100_000) == SearchParams(8, 1536, 384)  # 256 * 10 ** 0.18 = 387.9 -> 384
    assert default_nexact(1_000_000) == 576  # 256 * 100 ** 0.18 = 588.4 -> 576
    assert [default_nexact(n) for n in (1, 10_000, 20_000, 300_000)] == [256, 256, 288, 480]
    # nprobe: 8 up to 100,000 documents, then 8 * (n / 100,000) ** 0.6: 3 ** 0.6 = 1.93 -> 15.5 -> 15;
    # 10 ** 0.6 = 3.98 -> 31.8 -> 32
    assert [default_nprobe(n) for n in (1, 100_000, 300_000, 1_000_000)] == [8, 8, 15, 32]
    assert d.for_k(10, 1_000_000) == SearchParams(32, 2304, 576)
    # given settings are kept; num_results still raises nexact, and ncandidates to 4 * nexact
    assert SearchParams(2, 100, 50).for_k(10, 10 ** 6) == SearchParams(2, 200, 50)
    assert SearchParams(nexact=64).for_k(1000, 10) == SearchParams(8, 4000, 1000)
    assert SearchParams(ncandidates=5000).for_k(10, 100_000) == SearchParams(8, 5000, 384)


def test_retriever_repr_names_automatic_settings(index2, model):
    assert "nprobe=auto, ncandidates=auto, nexact=auto" in repr(index2.retriever(model))
    assert "nexact=64" in repr(index2.retriever(model, nexact=64))
