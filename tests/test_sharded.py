"""Sharded indexes (pyterrier_lateint.sharded): results equal a single index's, builds survive failed workers.

Every search test compares against an independent expectation: a single ColBERTIndex of the same documents built
with the sharded index's codec (``codec_from=``), or brute-force MaxSim over the stored vectors.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyterrier as pt
import pytest

from pyterrier_lateint import ColBERT, ColBERTIndex, ShardedColBERTIndex
from pyterrier_lateint.index import IndexNotFoundError
from pyterrier_lateint.sharded.layout import DONE_FILE, META_FILE, shard_dir
from test_search_torch import assert_same_ranking, score_tol

DIM = 24


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def make_docs(n: int, seed: int = 0) -> list[dict]:
    """Clustered random unit vectors (so probing matters), some documents empty."""
    rng = np.random.default_rng(seed)
    centres = unit(rng.normal(size=(12, DIM)))
    docs = []
    for i in range(n):
        m = int(rng.integers(0, 20)) if i % 37 else 0
        c = centres[rng.integers(0, len(centres), size=m)]
        docs.append({"docno": f"d{i}", "doc_embs": unit(c + 0.3 * rng.normal(size=(m, DIM))) if m else
                     np.zeros((0, DIM), dtype=np.float32)})
    return docs


def make_queries(n: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"qid": [f"q{i}" for i in range(n)],
                         "query_embs": [unit(rng.normal(size=(int(rng.integers(1, 33)), DIM))) for _ in range(n)]})


DOCS = make_docs(700)
QUERIES = make_queries(24)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A 3-shard index and the single index of the same documents with its codec, per nbits."""
    out = {}
    for nbits in (2, 16):
        root = tmp_path_factory.mktemp(f"sharded{nbits}")
        sh = ShardedColBERTIndex(root / "s.lateint").indexer(n_shards=3, nbits=nbits, n_centroids=32,
                                                             verbose=False).index(DOCS)
        single = ColBERTIndex(root / "single.lateint").indexer(codec_from=sh.codec(), verbose=False).index(DOCS)
        out[nbits] = (sh, single)
    return out


def assert_same(a: pd.DataFrame, b: pd.DataFrame, k: int) -> None:
    """The same top-``k`` rankings, up to float rounding: a shard scores its candidates in products of other shapes
    than a single index (nbits=16 decompresses them into one BLAS product per shard), so documents whose scores tie
    within it may swap or trade places at the cut (:func:`test_search_torch.assert_same_ranking`). The candidate
    stages' scores are the same numbers (one document at a time, same kernels), so no candidate set differs."""
    assert len(a) == len(b) > 0
    assert a.qid.tolist() == b.qid.tolist()
    assert a["rank"].tolist() == b["rank"].tolist()
    for (qid, x), (_, y) in zip(a.groupby("qid", sort=False), b.groupby("qid", sort=False)):
        got, want = (x.docno.to_numpy(), x.score.to_numpy()), (y.docno.to_numpy(), y.score.to_numpy())
        assert_same_ranking(got, want, k, score_tol(got[1], want[1]), what=f"query {qid}")


SETTINGS = [dict(), dict(nprobe=1, ncandidates=8, nexact=4), dict(nprobe=2, ncandidates=40, nexact=10),
            dict(mode="exhaustive")]


@pytest.mark.parametrize("nbits", [2, 16])
@pytest.mark.parametrize("settings", SETTINGS, ids=["default", "tight", "medium", "exhaustive"])
def test_merged_results_equal_single_index(built, nbits, settings):
    sh, single = built[nbits]
    for k in (1, 10, 1000):
        assert_same(single.retriever(num_results=k, **settings)(QUERIES),
                    sh.retriever(num_results=k, **settings)(QUERIES), k)


def test_exhaustive_equals_brute_force(built):
    """Independent of the index code: MaxSim by numpy over every document's stored vectors."""
    sh, _ = built[16]
    res = sh.retriever(num_results=5, mode="exhaustive")(QUERIES)
    shards = sh.shards()
    stored = {d: s.vectors(d) for s in shards for d in s.docnos()}
    for qi, q in enumerate(QUERIES.query_embs):
        scores = {d: (q @ v.T).max(axis=1).sum() for d, v in stored.items() if len(v)}
        best = sorted(scores, key=lambda d: (-scores[d], int(d[1:])))[:5]
        got = res[res.qid == f"q{qi}"]
        want = np.array([scores[d] for d in best], dtype=np.float32)
        # numpy sums in another order: ties within rounding may swap (test_search_torch.assert_same_ranking)
        assert_same_ranking((got.docno.to_numpy(), got.score.to_numpy()), (np.array(best), want), 5,
                            score_tol(got.score.to_numpy(), want), what=f"q{qi}")


@pytest.mark.parametrize("n_shards", [1, 2, 7])
def test_any_shard_count(tmp_path, n_shards):
    sh = ShardedColBERTIndex(tmp_path / "s").indexer(n_shards=n_shards, n_centroids=16, verbose=False).index(DOCS[:300])
    single = ColBERTIndex(tmp_path / "one").indexer(codec_from=sh.codec(), verbose=False).index(DOCS[:300])
    assert len(sh) == 300 and sh.metadata()["n_shards"] == n_shards
    assert [s["n_docs"] for s in sh.metadata()["shards"]] == [len(s) for s in sh.shards()]
    assert_same(single.retriever(num_results=20, nprobe=1, ncandidates=16, nexact=8)(QUERIES),
                sh.retriever(num_results=20, nprobe=1, ncandidates=16, nexact=8)(QUERIES), 20)


def test_codec_from_shares_the_codec(built, tmp_path):
    """``codec_from=`` a sharded index: a sharded index of other shard counts and a single index reuse its codec
    (nothing trained) and so return the same results."""
    sh, _ = built[2]
    other = ShardedColBERTIndex(tmp_path / "s5").indexer(n_shards=5, codec_from=sh, verbose=False).index(DOCS)
    single = ColBERTIndex(tmp_path / "one").indexer(codec_from=sh, verbose=False).index(DOCS)
    np.testing.assert_array_equal(other.codec().centroids, sh.codec().centroids)
    assert_same(single.retriever(num_results=10)(QUERIES), other.retriever(num_results=10)(QUERIES), 10)
    assert_same(sh.retriever(num_results=10)(QUERIES), other.retriever(num_results=10)(QUERIES), 10)


def test_changed_shards_are_picked_up(tmp_path):
    """Documents added to or deleted from a shard (``index.shards()[i]``) are searched at the next call, as by a
    single index of the same documents in the same order."""
    docs = make_docs(300, seed=9)
    sh = ShardedColBERTIndex(tmp_path / "s").indexer(n_shards=3, n_centroids=16, verbose=False).index(docs)
    retriever = sh.retriever(num_results=10, nprobe=2, ncandidates=40, nexact=10)
    retriever(QUERIES)  # opens the shard table
    extra = make_docs(20, seed=10)
    for d in extra:
        d["docno"] = "new" + d["docno"]
    sh.shards()[1].add(extra)
    sh.shards()[0].delete(["d3", "d4"])
    live = [d for d in docs[:100] if d["docno"] not in ("d3", "d4")] + docs[100:200] + extra + docs[200:]
    single = ColBERTIndex(tmp_path / "one").indexer(codec_from=sh, verbose=False).index(live)
    assert len(sh) == len(live)
    assert_same(single.retriever(num_results=10, nprobe=2, ncandidates=40, nexact=10)(QUERIES), retriever(QUERIES),
                10)
    assert_same(single.retriever(num_results=10, mode="exhaustive")(QUERIES),
                sh.retriever(num_results=10, mode="exhaustive")(QUERIES), 10)


def test_scorer_equals_single_index(built):
    sh, single = built[2]
    res = single.retriever(num_results=30)(QUERIES)
    assert_same(single.scorer()(res), sh.scorer()(res), 30)
    bad = pd.concat([res.head(3), res.head(1).assign(docno="nope")], ignore_index=True)
    with pytest.raises(KeyError, match="nope"):
        sh.scorer()(bad)
    assert len(sh.scorer(on_unknown="drop")(bad)) == 3


def test_transformer_conventions(built):
    sh, single = built[2]
    r = sh.retriever(num_results=50)
    assert r == sh.retriever(num_results=50) and hash(r) == hash(sh.retriever(num_results=50))
    assert r != sh.retriever(num_results=50, nprobe=2)
    fused = (r % 5).compile()
    assert fused.num_results == 5
    assert_same((single.retriever(num_results=50) % 5).compile()(QUERIES), fused(QUERIES), 5)
    out = r(QUERIES.iloc[:0])
    assert list(out.columns) == ["qid", "query_embs", "docno", "score", "rank"] and len(out) == 0
    with pytest.raises(ValueError, match="mode"):
        sh.retriever(mode="fast")
    loaded = pt.Artifact.load(str(sh.path))
    assert isinstance(loaded, ShardedColBERTIndex) and len(loaded) == len(sh)


TestShardedRetrieverContract = pt.testing.transformer_test_class(
    lambda: _contract_index().retriever(num_results=5))


def _contract_index() -> ShardedColBERTIndex:
    import tempfile
    global _CONTRACT
    if "_CONTRACT" not in globals():
        path = Path(tempfile.mkdtemp()) / "contract"
        _CONTRACT = ShardedColBERTIndex(path).indexer(n_shards=2, n_centroids=8, verbose=False).index(DOCS[:100])
    return _CONTRACT


# ------------------------------------------------------------------------------------------------ text and models
@pytest.fixture(scope="module")
def tiny_model(stanford_v2):
    return ColBERT.from_pretrained(str(stanford_v2.path), device="cpu")


TEXTS = [f"document {i} about {w} and {v}" for i, (w, v) in enumerate(
    (w, v) for w in ("physics", "solar energy", "quantum fields", "protein folding", "ocean tides", "graph theory")
    for v in ("measurement", "theory", "models", "error bounds", "simulation", "review", "history", "data"))]


def text_docs() -> list[dict]:
    return [{"docno": f"t{i}", "text": t} for i, t in enumerate(TEXTS)]


def test_text_with_model(tmp_path, tiny_model):
    sh = ShardedColBERTIndex(tmp_path / "s", tiny_model).indexer(n_shards=3, n_centroids=16, verbose=False) \
        .index(pd.DataFrame(text_docs()))
    single = ColBERTIndex(tmp_path / "one", tiny_model).indexer(codec_from=sh.codec(), verbose=False) \
        .index(text_docs())
    topics = pd.DataFrame({"qid": ["1", "2"], "query": ["solar energy theory", "protein folding data"]})
    want = single.retriever(num_results=10)(topics)
    assert_same(want, sh.retriever(num_results=10)(topics), 10)
    assert sh.metadata()["model"] == tiny_model.signature()
    # reopened from its path, given the model it records: the same results
    assert_same(want, ShardedColBERTIndex(tmp_path / "s").retriever(tiny_model, num_results=10)(topics), 10)
    from pyterrier_lateint.index import ModelMismatchError
    default = ColBERT.from_pretrained(device="cpu")
    with pytest.raises(ModelMismatchError):
        sh.retriever(default)


def test_query_pruning_equals_single_index(tmp_path, tiny_model):
    """Pruning by collection frequency counts tokens over every shard: the same kept query vectors, so the same
    results, as a single index of the same documents (whose statistics the shards' add up to)."""
    sh = ShardedColBERTIndex(tmp_path / "s", tiny_model).indexer(n_shards=3, n_centroids=16, store_token_ids=True,
                                                                 verbose=False).index(pd.DataFrame(text_docs()))
    single = ColBERTIndex(tmp_path / "one", tiny_model).indexer(codec_from=sh.codec(), store_token_ids=True,
                                                                verbose=False).index(text_docs())
    combined, whole = sh.token_stats(), single.token_stats()
    assert (combined.n_docs, combined.n_vectors) == (whole.n_docs, whole.n_vectors)
    np.testing.assert_array_equal(combined.stats[:len(whole.stats)], whole.stats[:len(combined.stats)])
    topics = pd.DataFrame({"qid": ["1", "2"], "query": ["solar energy theory and measurement", "protein folding"]})
    for by in ("cf", "position"):
        want = single.retriever(num_results=10, query_pruning=2, query_pruning_by=by)(topics)
        got = sh.retriever(num_results=10, query_pruning=2, query_pruning_by=by)(topics)
        assert_same(want, got, 10)
        unpruned = sh.retriever(num_results=10)(topics)
        assert not np.allclose(got.score.to_numpy()[:5], unpruned.score.to_numpy()[:5])  # pruning changed scores
    r = sh.retriever(query_pruning=2)
    assert r.fuse_rank_cutoff(5) == sh.retriever(num_results=5, query_pruning=2) and r != sh.retriever()
    with pytest.raises(ValueError, match="query_pruning"):
        sh.retriever(query_pruning=0)
    with pytest.raises(ValueError, match="token ids"):  # cf pruning needs stored token ids
        ShardedColBERTIndex(tmp_path / "s2", tiny_model).indexer(n_shards=2, n_centroids=16, verbose=False).index(
            pd.DataFrame(text_docs())).retriever(query_pruning=2)(topics)


def test_prf_equals_single_index(tmp_path, tiny_model):
    """ColBERT-PRF over shards: feedback vectors from their shards, statistics summed over them, the expanded query
    searched by the shard searchers: the same expansion and results as a single index of the same documents."""
    sh = ShardedColBERTIndex(tmp_path / "s", tiny_model).indexer(n_shards=3, n_centroids=16, store_token_ids=True,
                                                                 verbose=False).index(pd.DataFrame(text_docs()))
    single = ColBERTIndex(tmp_path / "one", tiny_model).indexer(codec_from=sh.codec(), store_token_ids=True,
                                                                verbose=False).index(text_docs())
    topics = pd.DataFrame({"qid": ["1", "2"], "query": ["solar energy theory and measurement", "protein folding"]})
    settings = dict(fb_docs=3, fb_embs=3, n_clusters=6, num_results=10)
    for rerank in (False, True):
        want = (single.retriever(num_results=8) >> single.prf(rerank=rerank, **settings))(topics)
        got = (sh.retriever(num_results=8) >> sh.prf(rerank=rerank, **settings))(topics)
        assert_same(want, got, 10)
        for a, b in zip(want.groupby("qid").head(1).itertuples(), got.groupby("qid").head(1).itertuples()):
            np.testing.assert_array_equal(a.prf_toks, b.prf_toks)
            np.testing.assert_allclose(a.query_embs, b.query_embs, rtol=1e-6)
            assert len(a.prf_toks) == 3
    prf = sh.prf(**settings)
    assert prf == sh.prf(**settings) != sh.prf(**{**settings, "fb_docs": 2})
    assert prf.fuse_rank_cutoff(5) == sh.prf(**{**settings, "num_results": 5}) and "ShardedColBERTPRF" in repr(prf)
    assert sh.prf(k=6, fb_embs=3) == sh.prf(n_clusters=6, fb_embs=3)
    with pytest.raises(TypeError, match="fb_dcos"):
        sh.prf(fb_dcos=3)
    with pytest.raises(ValueError, match="single ColBERTIndex"):
        sh.prf(backend="torch")
    with pytest.raises(KeyError, match="put it after a retriever"):
        sh.prf(**settings)(pd.DataFrame({"qid": ["1"], "query": ["solar"], "docno": ["nope"], "rank": [0]}))


def test_backend_and_device_settings(built):
    sh, _ = built[2]
    assert sh.retriever(backend="numba", device="cpu") == sh.retriever()
    for bad in (dict(backend="torch"), dict(device="cuda"), dict(backend="faiss")):
        with pytest.raises(ValueError, match="single ColBERTIndex"):
            sh.retriever(**bad)


# ------------------------------------------------------------------------------------------------ bad input
def test_bad_input(tmp_path):
    idx = ShardedColBERTIndex(tmp_path / "s")
    with pytest.raises(ValueError, match="empty"):
        idx.indexer(n_shards=2, verbose=False).index([])
    dup = DOCS[:50] + [dict(DOCS[3])]
    with pytest.raises(ValueError, match="d3"):
        ShardedColBERTIndex(tmp_path / "dup").indexer(n_shards=2, verbose=False).index(dup)
    with pytest.raises(ValueError, match="n_shards"):
        ShardedColBERTIndex(tmp_path / "many").indexer(n_shards=20, verbose=False).index(DOCS[:10])
    with pytest.raises(KeyError, match="text"):
        ShardedColBERTIndex(tmp_path / "cols").indexer(verbose=False).index([{"docno": "a", "body": "x"}])
    with pytest.raises(ValueError, match="executor"):
        ShardedColBERTIndex(tmp_path / "ex").indexer(executor="spark")
    with pytest.raises(IndexNotFoundError, match="no sharded index"):
        ShardedColBERTIndex(tmp_path / "none").retriever()
    ok = ShardedColBERTIndex(tmp_path / "ok").indexer(n_shards=2, n_centroids=8, verbose=False).index(DOCS[:40])
    with pytest.raises(FileExistsError, match="overwrite"):
        ShardedColBERTIndex(tmp_path / "ok").indexer(n_shards=2, verbose=False).index(DOCS[:40])
    with pytest.raises(ValueError, match="d3"):  # a failed rebuild leaves the old index as it was
        ShardedColBERTIndex(tmp_path / "ok").indexer(n_shards=2, overwrite=True, verbose=False).index(dup)
    assert len(ShardedColBERTIndex(tmp_path / "ok")) == 40
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".ok")] == []  # no temporary folder left
    ShardedColBERTIndex(tmp_path / "ok").indexer(n_shards=2, n_centroids=8, overwrite=True, verbose=False) \
        .index(DOCS[:60])
    assert len(ShardedColBERTIndex(tmp_path / "ok")) == 60 and ok.built()


# ------------------------------------------------------------------------------------------------ failures
class FlakyDocs:
    """Document vectors whose conversion fails in a shard build while ``armed`` exists (then removes it): a worker
    failing once. The codec task never meets it (it is the last document of the sampling order, beyond the pilot).
    ``exit``: kill the worker process instead of raising."""

    def __init__(self, arr: np.ndarray, armed: Path, exit: bool = False):
        self.arr, self.armed, self.exit = arr, str(armed), exit
        self.shape = arr.shape

    def __array__(self, dtype=None, copy=None):
        if os.path.exists(self.armed):
            os.remove(self.armed)
            if self.exit:
                os._exit(1)
            raise RuntimeError("injected worker failure")
        return self.arr if dtype is None else self.arr.astype(dtype)

    def __len__(self):
        return len(self.arr)


def flaky_corpus(n: int, armed: Path, exit: bool = False) -> tuple[list[dict], int]:
    docs = make_docs(n, seed=5)
    order = np.random.default_rng(0).permutation(n)  # the codec sample's order (seed 0), pilot of 256 first
    i = int(order[-1])
    assert i not in order[:256]
    docs[i] = {"docno": docs[i]["docno"], "doc_embs": FlakyDocs(docs[i]["doc_embs"], armed, exit)}
    return docs, i


def shard_stamps(root: Path, shard: int) -> dict[str, tuple]:
    """Every file of a shard's folder: (inode, mtime, size). Rebuilding a shard replaces them (new inodes)."""
    folder = shard_dir(root, shard)
    return {str(p.relative_to(folder)): (st.st_ino, st.st_mtime_ns, st.st_size)
            for p in sorted(folder.rglob("*")) if p.is_file() for st in [p.stat()]}


def test_failed_shard_is_retried_alone(tmp_path, monkeypatch):
    """The shard task that fails is run again at once, alone: the shards finished before it keep their files (not
    rebuilt), the later ones are built once."""
    from pyterrier_lateint.sharded import build
    armed = tmp_path / "armed"
    docs, i = flaky_corpus(600, armed)
    failed = i * 3 // 600
    assert failed > 0  # shards finished before the failure: what the retry must leave alone
    root = tmp_path / "s"
    calls, at_failure = [], {}
    task = build.build_shard_task

    def watched(root_arg, shard, *args):
        calls.append(shard)
        try:
            return task(root_arg, shard, *args)
        except RuntimeError:  # the finished shards, as the failure leaves them
            at_failure.update({s: shard_stamps(root, s) for s in range(3)
                               if (shard_dir(root, s) / DONE_FILE).exists()})
            raise

    monkeypatch.setattr(build, "build_shard_task", watched)
    armed.touch()
    sh = ShardedColBERTIndex(root).indexer(n_shards=3, n_centroids=16, kmeans_sample=512, max_retries=1,
                                           verbose=False).index(docs)
    assert not armed.exists() and len(sh) == 600  # failed once, retried, complete
    assert calls == [s for s in range(3) for _ in range(2 if s == failed else 1)], calls
    assert sorted(at_failure) == list(range(failed))
    assert {s: shard_stamps(root, s) for s in at_failure} == at_failure  # not rebuilt, not touched
    assert (shard_dir(root, failed) / DONE_FILE).exists() and sh.metadata()["build"]["shards_built"] == 3


def test_interrupted_build_resumes_keeping_finished_shards(tmp_path):
    armed = tmp_path / "armed"
    docs, i = flaky_corpus(600, armed)
    root = tmp_path / "s"
    make = lambda: ShardedColBERTIndex(root).indexer(n_shards=3, n_centroids=16, kmeans_sample=512,  # noqa: E731
                                                      max_retries=0, verbose=False)
    armed.touch()
    with pytest.raises(RuntimeError, match="injected"):
        make().index(docs)
    failed = i * 3 // 600
    assert not (root / META_FILE).exists()
    with pytest.raises(IndexNotFoundError, match="interrupted"):
        ShardedColBERTIndex(root).retriever()
    finished = [s for s in range(3) if (shard_dir(root, s) / DONE_FILE).exists()]
    assert failed not in finished and finished == [s for s in range(3) if s < failed]
    before = {s: os.stat(shard_dir(root, s) / DONE_FILE).st_mtime_ns for s in finished}
    codec_before = os.stat(root / "codec" / "codec.json").st_mtime_ns
    sh = make().index(docs)  # same corpus, same settings: resumes
    assert {s: os.stat(shard_dir(root, s) / DONE_FILE).st_mtime_ns for s in finished} == before
    assert os.stat(root / "codec" / "codec.json").st_mtime_ns == codec_before
    assert sh.metadata()["build"]["shards_built"] == 3 - len(finished)
    single = ColBERTIndex(tmp_path / "one").indexer(codec_from=sh.codec(), verbose=False).index(
        make_docs(600, seed=5))
    assert_same(single.retriever(num_results=10)(QUERIES), sh.retriever(num_results=10)(QUERIES), 10)


# ------------------------------------------------------------------------------------------------ Ray
@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    old = os.environ.get("PYTHONPATH")
    # the workers unpickle this module's FlakyDocs from the spilled corpus: let them import it (they inherit this
    # environment when ray.init starts the local cluster)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(Path(__file__).parent), old) if p)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()
    if old is None:
        os.environ.pop("PYTHONPATH")
    else:
        os.environ["PYTHONPATH"] = old


def test_ray_build_and_search(tmp_path, ray_cluster):
    """On a local Ray cluster (2 CPUs): a worker killed mid-shard is retried by Ray, the finished shards are not
    redone, and Ray shard searchers return the single index's results."""
    armed = tmp_path / "armed"
    docs, _ = flaky_corpus(600, armed, exit=True)
    armed.touch()
    sh = ShardedColBERTIndex(tmp_path / "s").indexer(n_shards=4, executor="ray", workers=2, n_centroids=16,
                                                      kmeans_sample=512, max_retries=2, verbose=False).index(docs)
    assert not armed.exists()  # a worker process died once
    assert sh.metadata()["build"]["executor"] == "ray" and sh.metadata()["build"]["shards_built"] == 4
    assert [s["n_docs"] for s in sh.metadata()["shards"]] == [150] * 4
    single = ColBERTIndex(tmp_path / "one").indexer(codec_from=sh.codec(), verbose=False).index(
        make_docs(600, seed=5))
    for settings in (dict(), dict(nprobe=1, ncandidates=8, nexact=4), dict(mode="exhaustive")):
        ray_r = sh.retriever(num_results=10, executor="ray", workers=2, **settings)
        assert_same(single.retriever(num_results=10, **settings)(QUERIES), ray_r(QUERIES), 10)
    assert_same(single.retriever(num_results=10)(QUERIES.iloc[:1]),
                sh.retriever(num_results=10, executor="ray", workers=2)(QUERIES.iloc[:1]), 10)
    sh.close()


def test_tasks_get_absolute_paths(tmp_path, monkeypatch):
    """A sharded index opened by a relative path: its build tasks run elsewhere (Ray workers: another process, maybe
    another machine or folder), so they are given the absolute path, and the index is built where the caller meant."""
    from pyterrier_lateint.sharded.executors import LocalExecutor

    class Elsewhere(LocalExecutor):
        """Runs each task from another working directory, as a remote worker would."""

        def run(self, fn, calls, desc="tasks"):
            here = os.getcwd()
            os.chdir(tmp_path / "elsewhere")
            try:
                return super().run(fn, calls, desc)
            finally:
                os.chdir(here)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path)
    sh = ShardedColBERTIndex("rel").indexer(n_shards=2, n_centroids=16, executor=Elsewhere(),
                                            verbose=False).index(DOCS[:100])
    assert len(sh) == 100 and (tmp_path / "rel" / META_FILE).exists()
    assert not (tmp_path / "elsewhere" / "rel").exists()


def test_executor_settings_are_checked_where_the_retriever_is_made(built):
    """A misspelt executor keyword is refused by ``retriever()``, naming it and the known ones, instead of failing at
    the first search; Ray's settings are accepted (and ignored) by the local executor, so one string switches them."""
    sh, _ = built[2]
    with pytest.raises(TypeError, match=r"unknown setting\(s\) \['wrokers'\].*'workers'"):
        sh.retriever(wrokers=2)
    with pytest.raises(ValueError, match="executor must be one of"):
        sh.retriever(executor="dask")
    from pyterrier_lateint.sharded.executors import LocalExecutor
    with pytest.raises(TypeError, match="already configured"):
        sh.retriever(executor=LocalExecutor(), workers=2)
    queries = make_queries(2)
    plain = sh.retriever(num_results=5)(queries)
    with_ray_settings = sh.retriever(num_results=5, workers=2, cpus_per_worker=1)(queries)
    pd.testing.assert_frame_equal(plain, with_ray_settings)


def test_vec_loader_and_corpus_iter_equal_single_index(built):
    sh, single = built[2]
    docnos = [d["docno"] for d in DOCS[::23]] + ["d5", "d0"]  # repeats, an empty document (d0), shard order mixed
    frame = pd.DataFrame({"docno": docnos[::-1], "qid": "q"})
    got, want = sh.vec_loader()(frame), single.vec_loader()(frame)
    assert got.docno.tolist() == want.docno.tolist() == docnos[::-1]
    for a, b in zip(got.doc_embs, want.doc_embs):
        np.testing.assert_array_equal(a, b)  # same codec, same bytes: the same decompressed vectors
    assert got.doc_embs[0].shape == (0, DIM)  # d0 is empty
    with pytest.raises(KeyError, match="nope"):
        sh.vec_loader()(pd.DataFrame({"docno": ["d1", "nope"]}))
    dropped = sh.vec_loader(on_unknown="drop")(pd.DataFrame({"docno": ["d1", "nope"]}))
    assert dropped.docno.tolist() == ["d1"]
    with pytest.raises(ValueError, match="on_unknown"):
        sh.vec_loader(on_unknown="skip")
    assert sh.vec_loader() == sh.vec_loader() and sh.vec_loader() != sh.vec_loader(on_unknown="drop")

    corpus = list(sh.get_corpus_iter())
    assert sorted(d["docno"] for d in corpus) == sorted(d["docno"] for d in DOCS)
    by_docno = {d["docno"]: d["doc_embs"] for d in single.get_corpus_iter()}
    for d in corpus:
        np.testing.assert_array_equal(d["doc_embs"], by_docno[d["docno"]])
    with pytest.raises(ValueError, match="token ids"):
        next(sh.get_corpus_iter(token_ids=True))
