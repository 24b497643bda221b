"""Chunking by a vector budget (:mod:`pyterrier_lateint.index.chunks`): whole documents / items, each once, in order;
an oversized one alone; nothing for nothing. Expectations computed by hand."""
from __future__ import annotations

import numpy as np
import pytest

from pyterrier_lateint.index.chunks import budget_groups, doc_chunks

# documents of 3, 0, 5, 2, 9, 1, 1 vectors
OFFSETS = np.array([0, 3, 3, 8, 10, 19, 20, 21], dtype=np.int64)


def _covers_each_document_once(chunks, start, stop):
    assert [d for d0, d1 in chunks for d in range(d0, d1)] == list(range(start, stop))


@pytest.mark.parametrize("max_vectors,want", [
    (10, [(0, 4), (4, 6), (6, 7)]),  # 3+0+5+2 = 10; 9+1 = 10; 1
    (8, [(0, 3), (3, 4), (4, 5), (5, 7)]),  # 3+0+5 = 8; 2 (2+9 > 8); 9 > 8 alone; 1+1
    (3, [(0, 2), (2, 3), (3, 4), (4, 5), (5, 7)]),  # the empty document rides with the first; 5 and 9 alone
    (1, [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 6), (6, 7)]),  # each alone (the empty one follows a full one)
    (100, [(0, 7)]),
])
def test_doc_chunks_by_hand(max_vectors, want):
    got = list(doc_chunks(OFFSETS, max_vectors))
    assert got == want
    _covers_each_document_once(got, 0, 7)
    for d0, d1 in got:  # within the budget, or one document longer than it
        assert OFFSETS[d1] - OFFSETS[d0] <= max_vectors or d1 - d0 == 1


def test_doc_chunks_oversized_documents_go_alone():
    offsets = np.array([0, 50, 51, 151], dtype=np.int64)  # 50, 1, 100 vectors
    assert list(doc_chunks(offsets, 10)) == [(0, 1), (1, 2), (2, 3)]


def test_doc_chunks_start_stop():
    assert list(doc_chunks(OFFSETS, 10, start=2)) == [(2, 4), (4, 6), (6, 7)]  # 0+5+2 = 7 (+9 > 10); 9+1; 1
    assert list(doc_chunks(OFFSETS, 10, start=1, stop=3)) == [(1, 3)]  # 0+5, cut at stop (document 3 would fit)
    assert list(doc_chunks(OFFSETS, 4, start=3, stop=6)) == [(3, 4), (4, 5), (5, 6)]
    assert list(doc_chunks(OFFSETS, 10, start=5, stop=5)) == []
    _covers_each_document_once(list(doc_chunks(OFFSETS, 6, start=2, stop=7)), 2, 7)


def test_doc_chunks_empty_input_and_bad_budget():
    assert list(doc_chunks(np.zeros(1, dtype=np.int64), 10)) == []  # no documents
    assert list(doc_chunks(np.zeros(4, dtype=np.int64), 10)) == [(0, 3)]  # three empty documents
    with pytest.raises(ValueError, match="max_vectors"):
        list(doc_chunks(OFFSETS, 0))


@pytest.mark.parametrize("sizes,budget,want", [
    ([3, 4, 2, 6, 1], 7, [(0, 2), (2, 3), (3, 5)]),  # 3+4 = 7; 2 (2+6 > 7); 6+1 = 7
    ([3, 4, 2, 6, 1], 6, [(0, 1), (1, 3), (3, 4), (4, 5)]),  # 3 (3+4 > 6); 4+2; 6; 1
    ([10, 1, 1, 12, 0], 5, [(0, 1), (1, 3), (3, 4), (4, 5)]),  # oversized items alone; 1+1; then 0 (12+0 > 5)
    ([0, 0, 5, 0], 5, [(0, 4)]),
    ([2, 2, 2], 100, [(0, 3)]),
    ([], 5, []),
])
def test_budget_groups_by_hand(sizes, budget, want):
    got = budget_groups(sizes, budget)
    assert got == want
    assert [b for b0, b1 in got for b in range(b0, b1)] == list(range(len(sizes)))
    for b0, b1 in got:
        assert sum(sizes[b0:b1]) <= budget or b1 - b0 == 1
