"""The ranking rule (:mod:`pyterrier_lateint.index.ranking`): score descending, then lower id, the same in its numpy
form (CPU paths, shard merges) and its torch form (batches on a device)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pyterrier_lateint.index.ranking import rank_order, select_top, select_top_positions, top_by_key, top_k

IDS = np.array([9, 4, 2, 0, 1, 8, 5, 3], dtype=np.int64)
SCORES = np.array([1.0, -0.0, 0.0, -2.5, 1.0, -np.inf, 3.0, 1.0], dtype=np.float32)
BEST_FIRST = [5, 1, 3, 9, 2, 4, 0, 8]  # 3.0; the three 1.0 by id; 0.0 and -0.0 tie: by id; -2.5; -inf


def test_rank_order_by_hand():
    assert IDS[rank_order(IDS, SCORES)].tolist() == BEST_FIRST


def test_top_k_drops_empty_documents_and_cuts_ties_by_id():
    ids, scores = top_k(IDS, SCORES, 3)
    assert ids.tolist() == [5, 1, 3] and scores.tolist() == [3.0, 1.0, 1.0]
    assert top_k(IDS, SCORES, 100)[0].tolist() == BEST_FIRST[:-1]  # -inf: no result
    assert top_k(IDS[:0], SCORES[:0], 5)[0].size == 0


def test_select_top_keeps_the_lower_ids_at_the_cut():
    assert sorted(select_top(IDS, SCORES, 2).tolist()) == [1, 5]
    assert sorted(IDS[select_top_positions(IDS, SCORES, 4)].tolist()) == [1, 3, 5, 9]
    assert select_top_positions(IDS, SCORES, 8).tolist() == list(range(8))


@pytest.mark.parametrize("seed", range(5))
def test_torch_key_orders_as_numpy(seed):
    """Random rows with many ties (scores from a few values, signed zeros, -inf): every prefix of the torch order is
    the numpy order's."""
    rng = np.random.default_rng(seed)
    B, m = 4, 300
    values = np.array([-np.inf, -1.5, -0.0, 0.0, 0.25, 0.25000003, 2.0], dtype=np.float32)
    scores = values[rng.integers(0, len(values), (B, m))]
    ids = np.stack([rng.choice(2 ** 31 - 1 if b == 0 else 10 * m, size=m, replace=False) for b in range(B)])
    ids = ids.astype(np.int64)
    for n in (1, 17, m):
        pos = top_by_key(torch.from_numpy(scores), torch.from_numpy(ids), n).numpy()
        for b in range(B):
            want = rank_order(ids[b], scores[b])[:n]
            assert ids[b, pos[b]].tolist() == ids[b, want].tolist()


@pytest.mark.parametrize("seed", range(3))
def test_histogram_cut_keeps_the_same_entries_as_a_sort(seed):
    """From HISTOGRAM_MIN entries the cut is found by a histogram of the scores: the same entries as the first n of
    rank_order (ties at the cut to the lower ids), for many ties, skewed scores, a spike of equal scores, and
    non-finite scores (the partition's path)."""
    from pyterrier_lateint.index import ranking
    rng = np.random.default_rng(seed)
    for trial in range(60):
        m = int(rng.integers(ranking.HISTOGRAM_MIN, 3 * ranking.HISTOGRAM_MIN))
        n = int(rng.integers(1, m))
        kind = trial % 4
        if kind == 0:
            scores = rng.integers(0, 7, m).astype(np.float32)  # ties everywhere
        elif kind == 1:
            scores = (rng.normal(size=m) ** 3).astype(np.float32)  # skewed: most in a few bins
        elif kind == 2:
            scores = np.where(rng.random(m) < 0.9, 1.5, rng.normal(size=m)).astype(np.float32)  # a spike
        else:
            scores = rng.normal(size=m).astype(np.float32)
            scores[rng.integers(0, m, 3)] = [np.inf, -np.inf, np.nan][trial % 3]
        ids = rng.permutation(10 * m)[:m].astype(np.int64)
        got = select_top_positions(ids, scores, n)
        want = rank_order(ids, scores)[:n]
        if kind < 3 or trial % 3 != 2:  # (NaN has no place in rank_order's order: only the count is compared)
            assert sorted(got.tolist()) == sorted(want.tolist()), (trial, kind)
        assert len(got) == n == len(set(got.tolist()))
