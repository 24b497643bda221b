"""Every backend scores queries in the codec's query space (:meth:`ResidualCodec.query_space`, applied once, by
:func:`pyterrier_lateint.index.search.pad_queries`): over a codec that rotates queries, the numba and the torch
backends return the same documents, in the same order, with the same scores, and those are MaxSim over the decoded
vectors.

The rotating codec is the index's own, read differently: its stored codes and residual bytes are taken to encode the
rotated vectors ``x = v @ R.T`` (``R`` orthogonal), so ``decompress`` returns ``x @ R`` and ``query_space`` maps a
query to ``q @ R.T``: then ``<q @ R.T, x> = <q, v>``. A kernel that skipped ``query_space`` would score ``<q, x>``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pyterrier_lateint.index import ColBERTIndex
from pyterrier_lateint.index.codec import ResidualCodec

DIM = 32
N_CENTROIDS = 32
K = 10
FULL = dict(nprobe=N_CENTROIDS, ncandidates=10_000, nexact=10_000)  # every document reaches the exact stage


class RotatedCodec(ResidualCodec):
    """``base``'s tables, its stored vectors read as rotated ones: ``v = x @ R`` for a stored ``x``; queries map by
    ``q @ R.T``."""

    def __init__(self, base: ResidualCodec, R: np.ndarray):
        super().__init__(base.centroids, base.nbits, base.cutoffs, base.weights, kind=base.kind,
                         codebooks=base.codebooks, scale_range=base.scale_range)
        self.R = np.ascontiguousarray(R, dtype=np.float32)

    def query_space(self, Q: np.ndarray) -> np.ndarray:
        return np.asarray(Q, dtype=np.float32) @ self.R.T

    def decompress(self, codes: np.ndarray, residuals: np.ndarray) -> np.ndarray:
        return super().decompress(codes, residuals) @ self.R

    def decompress_docs(self, *args, **kwargs) -> tuple[np.ndarray, np.ndarray]:
        vectors, offsets = super().decompress_docs(*args, **kwargs)
        return vectors @ self.R, offsets


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module", params=[(2, "pq"), (2, "scalar"), (16, "scalar")], ids=["pq2", "scalar2", "f16"])
def rotated(request, tmp_path_factory):
    """An index whose open reader's codec rotates queries, and a query frame (1 to 20 tokens: one and two SIMD
    lane groups)."""
    nbits, kind = request.param
    rng = np.random.default_rng(nbits)
    topics = rng.normal(size=(12, DIM))
    docs = [_unit(topics[rng.integers(0, 12, n)] + 0.5 * rng.normal(size=(n, DIM)))
            for n in rng.integers(1, 30, 200)]
    idx = ColBERTIndex(tmp_path_factory.mktemp("qs") / "i.lateint")
    idx.indexer(nbits=nbits, codec=kind, n_centroids=N_CENTROIDS, verbose=False).index(
        [{"docno": f"d{i}", "doc_embs": d} for i, d in enumerate(docs)])
    reader = idx.reader()
    R, _ = np.linalg.qr(rng.normal(size=(DIM, DIM)))
    reader.codec = RotatedCodec(reader.codec, R)
    queries = pd.DataFrame({"qid": [str(i) for i in range(8)],
                            "query_embs": [_unit(topics[rng.integers(0, 12, n)] + 0.5 * rng.normal(size=(n, DIM)))
                                           for n in (1, 5, 8, 16, 17, 20, 3, 11)]})
    return idx, queries


def _ranked(res: pd.DataFrame) -> dict[str, tuple[list[str], np.ndarray]]:
    return {q: (g.docno.tolist(), g.score.to_numpy()) for q, g in res.groupby("qid", sort=False)}


def _assert_same(a: pd.DataFrame, b: pd.DataFrame, what: str) -> None:
    ra, rb = _ranked(a), _ranked(b)
    assert ra.keys() == rb.keys(), what
    for q in ra:
        assert ra[q][0] == rb[q][0], f"{what}: query {q}: other documents or order"
        np.testing.assert_allclose(ra[q][1], rb[q][1], rtol=0, atol=1e-4, err_msg=f"{what}: query {q}")


@pytest.mark.parametrize("mode,settings", [("plaid", FULL), ("plaid", {}), ("exhaustive", {})],
                         ids=["plaid-full", "plaid-default", "exhaustive"])
def test_numba_and_torch_agree_over_a_rotating_codec(rotated, mode, settings):
    idx, queries = rotated
    numba = idx.retriever(num_results=K, mode=mode, backend="numba", **settings).transform(queries)
    torch_ = idx.retriever(num_results=K, mode=mode, backend="torch", device="cpu", **settings).transform(queries)
    assert len(numba) == K * len(queries)
    _assert_same(numba, torch_, f"{mode} numba vs torch")


def test_scores_are_maxsim_over_the_decoded_vectors(rotated):
    """Staged search with every document kept, exhaustive search and the scorers of both backends all give MaxSim
    of the query against the decoded (un-rotated) vectors; the stored (rotated) ones would give other scores."""
    idx, queries = rotated
    full = idx.retriever(num_results=K, backend="numba", **FULL).transform(queries)
    _assert_same(full, idx.retriever(num_results=K, mode="exhaustive", backend="numba").transform(queries),
                 "numba plaid vs exhaustive")
    codec = idx.reader().codec
    off = 0.0
    for _, row in full.iterrows():
        q = np.asarray(queries.query_embs[int(row.qid)])
        v = idx.vectors(row.docno)
        assert abs((q @ v.T).max(1).sum() - row.score) < 1e-4
        off = max(off, abs((q @ codec.query_space(v).T).max(1).sum() - row.score))  # q against the stored vectors
    assert off > 1e-2  # the rotation changes scores: skipping query_space cannot pass the tests above
    inp = full[["qid", "docno"]].merge(queries, on="qid")
    for backend, device in (("numba", None), ("torch", "cpu")):
        scored = idx.scorer(backend=backend, device=device).transform(inp)
        _assert_same(full, scored.sort_values(["qid", "rank"]), f"{backend} scorer")
