"""The named steps of ``LateInteractionEncoder._encode``: splitting a landed batch by row, the double-buffered copies
back to the host (the CUDA order of copy, event and landing checked with a recording event on the CPU), and the
regrouping of sequences into texts, each against a hand-computed expectation."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pyterrier_lateint.models.encoder import _per_text, _text_ids, _text_vectors
from pyterrier_lateint.models.transfer import HostCopies, split_rows


def test_split_rows_follows_the_kept_positions_row_by_row():
    keep = np.array([[True, False, True], [False, False, False], [False, True, False]])
    flat = np.arange(6, dtype=np.float32).reshape(3, 2)  # the 3 kept positions, row-major
    parts = split_rows(flat, keep)
    assert [p.tolist() for p in parts] == [[[0, 1], [2, 3]], [], [[4, 5]]]
    assert parts[1].shape == (0, 2)


def batch(first: int, n_rows: int, n_seqs: int, dtype=torch.float32):
    """A batch of ``n_seqs`` sequences numbered from ``first`` in ``n_rows`` rows (fillers keep nothing): row r keeps
    its first r + 1 positions; vector j of the batch is ``[first + j, -(first + j)]``."""
    keep = np.zeros((n_rows, 4), dtype=bool)
    for r in range(n_seqs):
        keep[r, :r + 1] = True
    n = int(keep.sum())
    kept = torch.stack([torch.arange(n) + first, -(torch.arange(n) + first)], dim=1).to(dtype)
    return np.arange(first, first + n_seqs), keep, kept


def test_host_copies_land_each_batch_at_the_next_push():
    copies = HostCopies(torch.device("cpu"), pinned=False)
    seqs0, keep0, kept0 = batch(0, 3, 2, torch.bfloat16)  # a filler row
    seqs1, keep1, kept1 = batch(10, 1, 1)
    assert copies.push(seqs0, keep0, kept0) is None
    assert copies.vectors == {}
    assert copies.push(seqs1, keep1, kept1).tolist() == [0, 1]
    assert sorted(copies.vectors) == [0, 1]
    assert copies.vectors[0].tolist() == [[0, 0]] and copies.vectors[1].tolist() == [[1, -1], [2, -2]]
    assert all(v.dtype == np.float32 for v in copies.vectors.values())
    assert copies.flush().tolist() == [10]
    assert copies.vectors[10].tolist() == [[10, -10]]
    assert copies.flush() is None


def test_host_copies_on_cuda_queue_the_copy_before_landing_the_previous_batch(monkeypatch):
    """The CUDA path, with a recording event in place of ``torch.cuda.Event`` (no GPU needed)."""
    log: list[str] = []

    class Event:
        def __init__(self):
            self.n = sum(e.startswith("record") for e in log)

        def record(self):
            log.append(f"record {self.n}")

        def synchronize(self):
            log.append(f"wait {self.n}")

    monkeypatch.setattr(torch.cuda, "Event", Event)
    copies = HostCopies(torch.device("cuda"), pinned=False)
    batches = [batch(0, 2, 2, torch.float16), batch(5, 1, 1)]
    for seqs, keep, kept in batches:
        landed = copies.push(seqs, keep, kept)
        log.append(f"landed {None if landed is None else landed.tolist()}")
    log.append(f"landed {copies.flush().tolist()}")
    assert log == ["record 0", "landed None", "record 1", "wait 0", "landed [0, 1]", "wait 1", "landed [5]"]
    assert copies.vectors[1].tolist() == [[1, -1], [2, -2]] and copies.vectors[1].dtype == np.float32
    # each array owns its memory (out of the staging buffer), not a view of it
    assert all(v.base is None or v.base.base is None for v in copies.vectors.values())


def test_regrouping_puts_each_text_s_sequences_in_order():
    # sequences 0 and 2 belong to text 0 (a split document), sequence 1 to text 2; text 1 has none
    owners = [0, 2, 0]
    seq_vecs = {0: np.ones((2, 3), np.float32), 1: np.full((1, 3), 2, np.float32), 2: np.full((1, 3), 3, np.float32)}
    vecs = _text_vectors(_per_text(3, owners, seq_vecs), dim=3)
    assert [v.shape for v in vecs] == [(3, 3), (0, 3), (1, 3)]
    assert vecs[0][:, 0].tolist() == [1, 1, 3] and vecs[0].flags.c_contiguous
    assert vecs[1].dtype == np.float32
    assert vecs[2] is seq_vecs[1]  # a lone sequence's array as it is
    ids = _text_ids(_per_text(3, owners, [np.array([7, 8], np.int32), np.array([9], np.int32),
                                          np.array([6], np.int32)]))
    assert [i.tolist() for i in ids] == [[7, 8, 6], [], [9]]
    assert ids[1].dtype == np.int32


@pytest.mark.parametrize("n_texts", [0, 1])
def test_regrouping_without_sequences(n_texts):
    assert [v.shape for v in _text_vectors(_per_text(n_texts, [], {}), dim=4)] == [(0, 4)] * n_texts
