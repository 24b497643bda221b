"""The batched torch search (the GPU path), run on the CPU, against the numba path and brute force."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pyterrier_lateint.index import ColBERTIndex, SearchParams
from pyterrier_lateint.index import search
from pyterrier_lateint.index import search_torch
from pyterrier_lateint.index.backends import NumbaBackend, TorchBackend
from pyterrier_lateint.index.layout import IndexReader
from pyterrier_lateint.maxsim import maxsim

DIM = 32
EMPTY = (0, 7, 150)  # documents without vectors


def _vectors(rng, n, topics):
    v = topics[rng.integers(0, len(topics), n)] + 0.5 * rng.normal(size=(n, DIM))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    topics = rng.normal(size=(12, DIM))
    docs = [_vectors(rng, 0 if i in EMPTY else int(rng.integers(1, 30)), topics) for i in range(220)]
    lens = [5, 1, 0, 17, 9, 3, 12, 0, 7, 2, 30, 6]  # mixed lengths, two empty queries
    queries = [_vectors(rng, n, topics).reshape(n, DIM) for n in lens]
    return docs, queries


@pytest.fixture(scope="module", params=[(1, None, True), (2, None, True), (4, None, True), (16, None, True),
                                        (2, "scalar", True), (2, "scalar", False)],
                ids=["nbits1", "nbits2", "nbits4", "nbits16", "scalar2", "scalar2-not-unit"])
def reader(request, tmp_path_factory, data):
    """Indexes of the default codec at each nbits, and of the scalar codec (unit vectors: with scale bytes;
    vectors of other lengths: without)."""
    nbits, codec, unit = request.param
    docs, _ = data
    if not unit:
        docs = [d * np.float32(1.5 + (i % 3)) for i, d in enumerate(docs)]
    kw = {} if codec is None else {"codec": codec}
    idx = ColBERTIndex(tmp_path_factory.mktemp("t") / f"n{nbits}.lateint")
    idx.indexer(nbits=nbits, n_centroids=32, verbose=False, **kw).index(
        [{"docno": f"d{i}", "doc_embs": d} for i, d in enumerate(docs)])
    return IndexReader(idx.path)


NUMBA, TORCH = NumbaBackend(), TorchBackend("cpu")

# Rankings by float32 sums in different orders (numba's kernels, torch's reductions, BLAS products of other shapes)
# agree up to rounding, which depends on the CPU: documents whose scores tie within the rounding may swap, or trade
# places at a cut. Here the two backends' scores differ by at most 3e-7 of a query's largest |score|.
RTOL = 1e-5


def score_tol(*scores: np.ndarray) -> float:
    """The rounding tolerance of one query's scores: RTOL times the largest finite |score| (a float32 sum's error
    scales with its terms, not with the sum, which may cancel to near 0)."""
    finite = [np.abs(s[np.isfinite(s)]) for s in scores]
    return RTOL * max((float(f.max()) for f in finite if f.size), default=0.0)


def assert_same_ranking(a, b, k: int, tol: float, cut_ties=frozenset(), what="") -> None:
    """``a`` and ``b`` (ids, scores; best first) are the same top-``k`` ranking up to ties within ``tol``:

    - as many results; each document ranked by both has the same score within ``tol``;
    - two documents ranked in opposite orders tie (scores within ``tol``);
    - a document ranked by one only is in ``cut_ties`` (documents tying within ``tol`` at a candidate stage's cut:
      :func:`stage_ties`), or ties, within ``tol``, the other's last score at the final cut (``k`` results), or,
      when such a stage tie is ranked by one only, scores at most that last score (pushed below the cut by it).
    """
    (ia, sa), (ib, sb) = a, b
    ia, ib = np.asarray(ia).tolist(), np.asarray(ib).tolist()
    sa, sb = np.asarray(sa, dtype=np.float64), np.asarray(sb, dtype=np.float64)
    for ids, sc in ((ia, sa), (ib, sb)):
        assert len(set(ids)) == len(ids) and (np.diff(sc) <= 0).all(), f"{what}: not a ranking, best first"
    assert len(ia) == len(ib), f"{what}: {len(ia)} != {len(ib)} results"
    pos_b = {d: j for j, d in enumerate(ib)}
    common = [i for i, d in enumerate(ia) if d in pos_b]  # positions in a of the documents in both
    ca, cb = sa[common], sb[[pos_b[ia[i]] for i in common]]
    diff = np.abs(ca - cb)
    assert (diff <= tol).all(), \
        f"{what}: scores differ by up to {diff.max():.3g} > {tol:.3g} (document {ia[common[int(diff.argmax())]]})"
    rb = np.array([pos_b[ia[i]] for i in common])
    swapped = np.triu(rb[:, None] > rb[None, :], 1) & (ca[:, None] - ca[None, :] > tol)
    assert not swapped.any(), \
        f"{what}: documents {[(ia[common[x]], ia[common[y]]) for x, y in zip(*np.nonzero(swapped))][:3]} swapped " \
        f"though their scores differ by more than {tol:.3g}"
    only = (set(ia) ^ set(ib)) - cut_ties
    # a tie at a stage's cut lets a document into one candidate set and not the other; it may push the other's
    # last documents below the final cut (else a document ranked by one only ties the other's last score)
    pushed = bool((set(ia) ^ set(ib)) & cut_ties)
    for mine, theirs, other in ((ia, sa, sb), (ib, sb, sa)):
        for d, s in zip(mine, theirs):
            if d in only:
                assert len(other) == k and s - other[-1] <= tol and (pushed or other[-1] - s <= tol), \
                    f"{what}: document {d} (score {s}) ranked by one only, tying neither the other's final cut " \
                    f"({other[-1]}) nor a candidate stage's cut"


def stage_ties(reader, query: np.ndarray, k: int, params: SearchParams, tol: float) -> set:
    """The documents whose score at one of the candidate stages (the numba path's kernels) ties, within ``tol``, the
    score at that stage's cut: stage 1 keeps ``ncandidates`` of the documents its probes touch, stage 2 ``nexact``
    of those. Only these may be a candidate for one backend and not the other."""
    p = params.for_k(k, reader.n_live)
    Qp, _, lens = search.pad_queries([query], reader.codec)
    St = search.centroid_scores(reader, Qp)
    # every touched document with its stage-1 score (no cut), then the cuts as search_plaid makes them
    touched, approx = search.stage_candidates(reader, St, int(lens[0]),
                                              SearchParams(p.nprobe, reader.n_docs, p.nexact))
    ties = set()

    def cut(ids: np.ndarray, sc: np.ndarray, n: int) -> np.ndarray:
        if len(ids) <= n:
            return ids
        thr = np.sort(sc)[::-1][n - 1]  # the n-th best score
        ties.update(int(d) for d in ids[np.abs(sc - thr) <= tol])
        return search.select_top(ids, sc, n)

    kept = cut(touched, approx, p.ncandidates)
    cut(kept, search.stage_interaction(reader, St, kept), p.nexact)
    return ties


def _same(a, b, k, reader=None, queries=None, params=None, what=""):
    """Per query, :func:`assert_same_ranking` of two backends' (or batchings') results; for a PLAID search
    (``reader``, ``queries``, ``params`` given), documents tying at a candidate stage's cut may differ."""
    assert len(a) == len(b)
    for qi, ((ia, sa), (ib, sb)) in enumerate(zip(a, b)):
        assert ia.dtype == ib.dtype == np.int64 and sa.dtype == sb.dtype == np.float32
        tol = score_tol(sa, sb)
        ties = frozenset() if params is None or not len(queries[qi]) else \
            stage_ties(reader, queries[qi], k, params, tol)
        assert_same_ranking((ia, sa), (ib, sb), k, tol, ties, what=f"{what} query {qi}")


@pytest.mark.parametrize("k,params", [
    (10, SearchParams()),
    (10, SearchParams(nprobe=1, ncandidates=16, nexact=8)),  # imputation ranks, stage 2 cuts
    (5, SearchParams(nprobe=2, ncandidates=40, nexact=10)),
    (10, SearchParams(nprobe=64)),  # more probes than centroids: everything probed
    (500, SearchParams(nprobe=3)),  # k larger than the collection
])
def test_plaid_matches_numba(reader, data, k, params):
    _, queries = data
    _same(NUMBA.plaid(reader, queries, k, params), TORCH.plaid(reader, queries, k, params), k, reader, queries,
          params, "numba vs torch")
    # one query at a time gives the batch's answers
    one = [TORCH.plaid(reader, [q], k, params)[0] for q in queries[:4]]
    _same(TORCH.plaid(reader, queries[:4], k, params), one, k, reader, queries, params, "batch vs one at a time")


def test_plaid_results_are_exact_and_never_empty_documents(reader, data):
    _, queries = data
    res = TORCH.plaid(reader, queries, 400, SearchParams(nprobe=64))
    assert res[2][0].size == 0 and res[7][0].size == 0  # empty queries find nothing (as the numba path)
    vecs, offs = reader.decompress_docs(np.arange(reader.n_docs))
    docs = [vecs[offs[i]:offs[i + 1]] for i in range(reader.n_docs)]
    for q, (ids, sc) in zip(queries, res):
        assert not set(ids.tolist()) & set(EMPTY)
        np.testing.assert_allclose(sc, maxsim(q, [docs[i] for i in ids]), rtol=1e-4, atol=1e-5)
        assert (np.diff(sc) <= 0).all()


@pytest.mark.parametrize("k", [1, 10, 1000])
def test_exhaustive_matches_numba_and_brute_force(reader, data, k):
    _, queries = data
    a, b = NUMBA.exhaustive(reader, queries, k), TORCH.exhaustive(reader, queries, k)
    _same(a, b, k, what="numba vs torch")
    vecs, offs = reader.decompress_docs(np.arange(reader.n_docs))
    docs = [vecs[offs[i]:offs[i + 1]] for i in range(reader.n_docs)]
    for qi, (q, got) in enumerate(zip(queries, b)):
        s = maxsim(q, docs)  # numpy's products: another summation order
        order = np.array([i for i in np.lexsort((np.arange(len(s)), -s)) if np.isfinite(s[i])][:k], dtype=np.int64)
        if not len(q):  # a query without vectors retrieves nothing (search_exhaustive's documented rule)
            order = order[:0]
        assert_same_ranking(got, (order, s[order]), k, score_tol(got[1], s[order]), what=f"brute force query {qi}")
    assert b[2][0].size == 0 and b[7][0].size == 0 and len(b[0][0]) == min(k, reader.n_docs - len(EMPTY))


def test_exact_scorer_matches_numba(reader, data):
    _, queries = data
    ids = np.array([3, 0, 150, 219, 3, 42], dtype=np.int64)  # empty documents and a repeat included
    for q in queries[:4]:
        a, b = NUMBA.exact(reader, q, ids), TORCH.exact(reader, q, ids)
        assert np.isneginf(b[[1, 2]]).all()
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert TORCH.exact(reader, queries[0], ids[:0]).shape == (0,)


def test_small_work_budget_splits_batches_identically(reader, data, monkeypatch):
    """Query groups (stage 2, exact stage) and exhaustive chunks bounded by a tiny budget give the same answers."""
    if reader.nbits not in (2, 16):
        pytest.skip("the layout of the work does not depend on the residual codec")
    queries = data[1][:6]
    p = SearchParams(nprobe=2, ncandidates=60, nexact=20)
    want_p, want_e = TORCH.plaid(reader, queries, 10, p), TORCH.exhaustive(reader, queries, 10)
    monkeypatch.setitem(search_torch.WORK_BUDGET, "cpu", 3000)
    _same(TORCH.plaid(reader, queries, 10, p), want_p, 10, reader, queries, p, "small budget")
    _same(search_torch.search_exhaustive_torch(reader, queries, 10, device="cpu", chunk_vectors=300), want_e, 10,
          what="small chunks")


class _Proxy:
    """A reader whose inverted file leaves out some documents (the numba reference for deletions)."""

    def __init__(self, reader, drop):
        self._r = reader
        keep = ~np.isin(np.asarray(reader.ivf_docs), drop)
        counts = np.add.reduceat(keep, reader.ivf_offsets[:-1]) if len(keep) else np.zeros(0, dtype=np.int64)
        counts[np.diff(reader.ivf_offsets) == 0] = 0
        self.ivf_offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.ivf_docs = np.ascontiguousarray(np.asarray(reader.ivf_docs)[keep])

    def __getattr__(self, name):
        return getattr(self._r, name)


def test_deleted_documents_are_never_returned(reader, data):
    _, queries = data
    r = IndexReader(reader.path)  # its own object: the device copy is made for it
    p = SearchParams(nprobe=2, ncandidates=40, nexact=10)
    top = {int(i) for ids, _ in NUMBA.plaid(r, queries, 5, p) for i in ids[:2]}
    drop = np.array(sorted(top), dtype=np.int64)
    r.deleted = np.zeros(r.n_docs, dtype=bool)
    r.deleted[drop] = True
    res = TORCH.plaid(r, queries, 10, p)
    assert not {int(i) for ids, _ in res for i in ids} & set(drop.tolist())
    _same(res, NUMBA.plaid(_Proxy(r, drop), queries, 10, p), 10, r, queries, p, "deleted")  # postings gone
    full = NUMBA.exhaustive(r, queries, r.n_docs)
    want = [(i[~np.isin(i, drop)][:10], s[~np.isin(i, drop)][:10]) for i, s in full]
    _same(TORCH.exhaustive(r, queries, 10), want, 10, what="deleted, exhaustive")
    r.deleted = None  # the mask follows the reader's attribute
    _same(TORCH.plaid(r, queries, 10, p), NUMBA.plaid(r, queries, 10, p), 10, r, queries, p, "undeleted")
    r.deleted = np.zeros(3, dtype=bool)
    with pytest.raises(ValueError, match="reader.deleted"):
        TORCH.plaid(r, queries, 10, p)


def test_order_key_breaks_ties_by_lower_id():
    s = torch.tensor([[1.0, -0.0, 0.0, -2.5, 1.0, float("-inf"), 3.0]])
    ids = torch.tensor([[9, 4, 2, 0, 1, 8, 5]])
    pos = search_torch._top_by_key(s, ids, 7)[0]
    assert ids[0, pos].tolist() == [5, 1, 9, 2, 4, 0, 8]


def test_empty_batch_and_no_queries(reader):
    assert TORCH.plaid(reader, [], 10, SearchParams()) == []
    assert TORCH.exhaustive(reader, [], 10) == []
    res = TORCH.plaid(reader, [np.zeros((0, DIM), dtype=np.float32)], 10, SearchParams())
    assert res[0][0].size == 0 and res[0][1].dtype == np.float32


# ---------------------------------------------------------------- the accelerator encoding plan, run on the CPU
def test_accelerator_encoding_plan_gives_the_cpu_plans_vectors(stanford_v2):
    """Length buckets, token-budget batches, chunked tokenisation in a background thread: same vectors and ids."""
    from pyterrier_lateint import ColBERT
    from pyterrier_lateint.models.runtime import EncodePlan, encode_plan
    assert encode_plan(torch.device("cpu")) == EncodePlan()
    model = ColBERT.from_pretrained(str(stanford_v2.path), device="cpu", long_docs="split", doc_maxlen=12,
                                    doc_overlap=2)
    rng = np.random.default_rng(3)
    words = ["alpha", "beta", "gamma", "delta", "retrieval", "late", "interaction", "index", "query", "the"]
    texts = [" ".join(rng.choice(words, int(rng.integers(0, 40)))) for _ in range(23)]
    want, want_ids = model.encode_docs(texts, batch_size=4, return_ids=True)
    model.plan = EncodePlan(bucket=8, tokens_per_batch=64, chunk=5, background=True)
    got, got_ids = model.encode_docs(texts, batch_size=2, return_ids=True)
    for w, g, wi, gi in zip(want, got, want_ids, got_ids):
        assert w.shape == g.shape and wi.tolist() == gi.tolist()
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)
    q = model.encode_queries(texts[:3])
    model.plan = EncodePlan()
    for a, b in zip(q, model.encode_queries(texts[:3])):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_background_tokeniser_raises_in_the_caller(stanford_v2):
    from pyterrier_lateint import ColBERT
    from pyterrier_lateint.models.runtime import EncodePlan
    model = ColBERT.from_pretrained(str(stanford_v2.path), device="cpu")
    model.plan = EncodePlan(chunk=2, background=True)
    with pytest.raises(TypeError, match="not str"):
        model.encode_docs(["a", "b", "c", 3])
    with pytest.raises(ValueError, match="bucket"):
        EncodePlan(bucket=0)
