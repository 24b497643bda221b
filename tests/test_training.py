"""Training: the readers of every data format (and the real T2Ranking sample files), negative sampling and the
training stream, the losses against hand computations, and the trainer on a tiny random BERT (learning, exact
resume, checkpoints, distillation, mixed precision, gradient checkpointing, validation, hard-negative mining)."""
from __future__ import annotations

import itertools
import json
import math
import random
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from training_fixtures import (T2RANK, T2RANK_DISTILL, build_tiny_checkpoint, interrupt_after_checkpoint,  # noqa: F401
                               load_tiny, one_thread, tiny_model_dir, toy_records, write_lines)

from pyterrier_lateint import ColBERT
from pyterrier_lateint.training import (Example, Trainer, TrainingConfig, TrainingStream, combined_loss,
                                        contrastive_loss, detect_format, distillation_loss, maxsim_scores,
                                        mine_hard_negatives, pyterrier_validation, read_examples, write_jsonl)
from pyterrier_lateint.training.data import Group, make_group

pytestmark = pytest.mark.usefixtures("one_thread")


def examples_of(records) -> list[Example]:
    return [Example(r["query"], list(r["pos"]), list(r["neg"]), r.get("pos_scores"), r.get("neg_scores"))
            for r in records]


# ============================================================================================ readers
@pytest.fixture
def lookups(tmp_path):
    queries = tmp_path / "queries.tsv"
    queries.write_text("1\twhat is a cat\n2\thow tall is mount everest\nq3\tthird query\n", encoding="utf-8")
    collection = tmp_path / "collection.tsv"
    collection.write_text("10\tA cat is a small animal.\n11\tThe stock market fell.\n12\tEverest is 8849 m tall.\n"
                          "13\tBananas are yellow.\np14\tCafé crème, ünïcode – text\n", encoding="utf-8")
    return queries, collection


def test_triples_of_texts(tmp_path):
    path = tmp_path / "triples.tsv"
    path.write_text("what is a cat\tA cat is a small animal.\tThe stock market fell.\n\n"
                    "second query\tpositive, two\tnegative two\n", encoding="utf-8")
    assert detect_format(path) == "triples"
    assert list(read_examples(path)) == [
        Example("what is a cat", ["A cat is a small animal."], ["The stock market fell."], None, None),
        Example("second query", ["positive, two"], ["negative two"], None, None)]


def test_triples_of_ids(tmp_path, lookups):
    queries, collection = lookups
    path = tmp_path / "triples.ids.tsv"
    path.write_text("1\t10\t11\n2\t12\t13\nq3\tp14\t10\n", encoding="utf-8")
    assert detect_format(path) == "triples"
    got = list(read_examples(path, queries=queries, collection=collection))
    assert got == [Example("what is a cat", ["A cat is a small animal."], ["The stock market fell."]),
                   Example("how tall is mount everest", ["Everest is 8849 m tall."], ["Bananas are yellow."]),
                   Example("third query", ["Café crème, ünïcode – text"], ["A cat is a small animal."])]


def test_colbertv2(tmp_path, lookups):
    queries, collection = lookups
    path = tmp_path / "examples.json"
    write_lines(path, [[1, [10, 9.5], [11, 3], [13, -1.25]], ["2", ["12", 7.0]], ["q3", ["p14", 1.5], [10, 2.5]]])
    assert detect_format(path) == "colbertv2"
    got = list(read_examples(path, queries=queries, collection=collection))
    assert got == [
        Example("what is a cat", ["A cat is a small animal."], ["The stock market fell.", "Bananas are yellow."],
                [9.5], [3.0, -1.25]),
        Example("how tall is mount everest", ["Everest is 8849 m tall."], [], [7.0], []),
        Example("third query", ["Café crème, ünïcode – text"], ["A cat is a small animal."], [1.5], [2.5])]
    assert all(isinstance(s, float) for ex in got for s in ex.pos_scores + ex.neg_scores)


def test_colbertv2_needs_queries_and_collection(tmp_path, lookups):
    queries, collection = lookups
    path = write_lines(tmp_path / "examples.json", [[1, [10, 9.5], [11, 3]]])
    for kwargs in ({}, {"queries": queries}, {"collection": collection}):
        with pytest.raises(ValueError, match="queries.tsv"):
            list(read_examples(path, **kwargs))


def test_pos_neg(tmp_path):
    path = write_lines(tmp_path / "train.jsonl", [
        {"query": "q one", "pos": ["p1", "p2"], "neg": ["n1", "n2", "n3"]},
        {"query": "q two", "pos": ["p3"], "neg": ["n4"], "pos_scores": [0.75], "neg_scores": [-0.5]},
        {"query": "q three", "pos": ["p4"]},
        {"query": "中文查询", "pos": ["正例"], "neg": []},
    ])
    assert detect_format(path) == "pos-neg"
    assert list(read_examples(path)) == [
        Example("q one", ["p1", "p2"], ["n1", "n2", "n3"], None, None),
        Example("q two", ["p3"], ["n4"], [0.75], [-0.5]),
        Example("q three", ["p4"], [], None, None),
        Example("中文查询", ["正例"], [], None, None)]


def test_positive_negative(tmp_path):
    path = write_lines(tmp_path / "train.jsonl", [
        {"query": "q one", "positive": "p1", "negative": "n1"},
        {"query": "q two", "positive": ["p2", "p3"], "negative": ["n2", "n3"]},
        {"query": "q three", "positive": ["p4"]},
    ])
    assert detect_format(path) == "positive-negative"
    assert list(read_examples(path)) == [
        Example("q one", ["p1"], ["n1"], None, None),
        Example("q two", ["p2", "p3"], ["n2", "n3"], None, None),
        Example("q three", ["p4"], [], None, None)]


def test_pointwise_groups_consecutive_lines(tmp_path):
    rows = [("q1", "d1", 0.2), ("q1", "d2", 0.9), ("q1", "d3", 0.5), ("q2", "e1", 1.0), ("q2", "e2", 3.0),
            ("q1", "f1", 0.7)]
    path = write_lines(tmp_path / "distill.jsonl", [{"query": q, "content": c, "score": s} for q, c, s in rows])
    assert detect_format(path) == "pointwise"
    got = list(read_examples(path))
    assert [(e.query, e.positives, e.pos_scores) for e in got] == [
        ("q1", ["d2"], [0.9]), ("q2", ["e2"], [3.0]), ("q1", ["f1"], [0.7])]
    assert [sorted(zip(e.negatives, e.neg_scores)) for e in got] == [
        [("d1", 0.2), ("d3", 0.5)], [("e1", 1.0)], []]
    assert got[2].negatives == [] and got[2].neg_scores == []


def test_detect_format_errors(tmp_path):
    unknown = write_lines(tmp_path / "unknown.jsonl", [{"question": "q", "answer": "a"}])
    with pytest.raises(ValueError, match="unknown training format"):
        detect_format(unknown)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(ValueError, match="empty"):
        detect_format(empty)
    with pytest.raises(ValueError, match="unknown format"):
        list(read_examples(unknown, format="csv"))


MALFORMED = {  # case: (format, lines, number of the bad line)
    "triples": ("triples", ["a\tb\tc", "", "only\ttwo"], 3),
    "pos-neg-json": ("pos-neg", [json.dumps({"query": "q", "pos": ["p"], "neg": []}), "{not json"], 2),
    "pos-neg-no-query": ("pos-neg", [json.dumps({"query": "q", "pos": ["p"]}), json.dumps({"pos": ["p"]})], 2),
    "pos-neg-no-positive": ("pos-neg", [json.dumps({"query": "q", "pos": ["p"]}),
                                        json.dumps({"query": "q", "pos": []})], 2),
    "positive-negative": ("positive-negative", [json.dumps({"query": "q", "positive": "p"}),
                                                json.dumps({"query": "q", "negative": "n"})], 2),
    "pointwise": ("pointwise", [json.dumps({"query": "q", "content": "c", "score": 1}),
                                json.dumps({"query": "q", "content": "d", "score": 0.5}),
                                json.dumps({"query": "q", "content": "e", "score": "high"})], 3),
    "colbertv2-unknown-pid": ("colbertv2", [json.dumps([1, [10, 1.0], [11, 0.5]]),
                                            json.dumps([1, [10, 1.0], [999, 0.5]])], 2),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_lines_name_file_and_line(tmp_path, lookups, case):
    fmt, lines, bad = MALFORMED[case]
    path = write_lines(tmp_path / ("train.tsv" if fmt == "triples" else "train.jsonl"), lines)
    queries, collection = lookups if fmt == "colbertv2" else (None, None)
    with pytest.raises(ValueError, match=re.escape(f"{path}:{bad}:")):
        list(read_examples(path, format=fmt, queries=queries, collection=collection))


@pytest.mark.parametrize("record", [
    {"query": "q", "pos": ["a", "b"], "neg": ["n"], "pos_scores": [1.0], "neg_scores": [0.5]},
    {"query": "q", "pos": ["a"], "neg": ["n", "m"], "pos_scores": [1.0], "neg_scores": [0.5, 0.4, 0.3]},
])
def test_pos_neg_scores_must_match_the_documents(tmp_path, record):
    path = write_lines(tmp_path / "train.jsonl", [record])
    with pytest.raises(ValueError, match=re.escape(f"{path}:1:")):
        list(read_examples(path))


@pytest.mark.parametrize("fmt", ["pos-neg", "triples", "pointwise"])
def test_reading_is_lazy(tmp_path, fmt):
    """Examples before a malformed line are yielded before the reader ever gets to it."""
    if fmt == "pos-neg":
        lines = [json.dumps({"query": f"q{i}", "pos": [f"p{i}"], "neg": [f"n{i}"]}) for i in range(2)] + ["{broken"]
        expected = [Example("q0", ["p0"], ["n0"]), Example("q1", ["p1"], ["n1"])]
    elif fmt == "triples":
        lines = ["q0\tp0\tn0", "q1\tp1\tn1", "broken line"]
        expected = [Example("q0", ["p0"], ["n0"]), Example("q1", ["p1"], ["n1"])]
    else:  # the first query's group is complete once the second query starts
        lines = [json.dumps({"query": "q0", "content": c, "score": s}) for c, s in (("a", 1.0), ("b", 2.0))] + \
                [json.dumps({"query": "q1", "content": "c", "score": 1.0}), "{broken"]
        expected = [Example("q0", ["b"], ["a"], [2.0], [1.0])]
    path = write_lines(tmp_path / ("t.tsv" if fmt == "triples" else "t.jsonl"), lines)
    it = read_examples(path, format=fmt)
    assert [next(it) for _ in expected] == expected
    with pytest.raises(ValueError, match=re.escape(f"{path}:{len(lines)}:")):
        next(it)


def own_json_lines(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def test_real_t2rank_pos_neg_file():
    assert detect_format(T2RANK) == "pos-neg"
    got = list(read_examples(T2RANK))
    assert len(got) == 100
    assert sum(len(e.positives) for e in got) == 505
    assert sum(len(e.negatives) for e in got) == 1500
    records = own_json_lines(T2RANK)
    assert [(e.query, e.positives, e.negatives, e.pos_scores, e.neg_scores) for e in got] == \
        [(r["query"], r["pos"], r["neg"], None, None) for r in records]


def test_real_t2rank_distillation_file():
    assert detect_format(T2RANK_DISTILL) == "pointwise"
    records = own_json_lines(T2RANK_DISTILL)
    # 2,005 records: `wc -l` says 2,004 only because the last line has no trailing newline
    assert len(records) == 2005
    groups = [list(g) for _, g in itertools.groupby(records, key=lambda r: r["query"])]
    got = list(read_examples(T2RANK_DISTILL))
    assert sum(len(e.positives) + len(e.negatives) for e in got) == len(records)
    assert len(got) == len(groups) == 100
    for ex, group in zip(got, groups):
        assert ex.query == group[0]["query"]
        assert len(ex.positives) == 1 and len(ex.pos_scores) == 1
        assert ex.pos_scores[0] == max(r["score"] for r in group)
        pairs = sorted(zip(ex.positives + ex.negatives, ex.pos_scores + ex.neg_scores))
        assert pairs == sorted((r["content"], float(r["score"])) for r in group)
        assert dict(pairs)[ex.positives[0]] == ex.pos_scores[0]


# ============================================================================================ sampling
def test_make_group_samples_without_replacement_when_enough():
    ex = Example("q", ["p0", "p1"], [f"n{i}" for i in range(6)], [10.0, 11.0], [float(i) for i in range(6)])
    for seed in range(20):
        g = make_group(ex, 4, random.Random(seed))
        assert len(g.docs) == 5 and g.docs[0] in ex.positives
        assert len(set(g.docs[1:])) == 4 and set(g.docs[1:]) <= set(ex.negatives)
        score_of = dict(zip(ex.positives + ex.negatives, ex.pos_scores + ex.neg_scores))
        assert g.teacher == [score_of[d] for d in g.docs]
        assert g.query == "q"


def test_make_group_resamples_with_replacement_when_too_few():
    ex = Example("q", ["p"], ["n0", "n1"], [1.0], [0.25, 0.5])
    seen = set()
    for seed in range(20):
        g = make_group(ex, 5, random.Random(seed))
        assert g.docs[0] == "p" and len(g.docs) == 6 and set(g.docs[1:]) <= {"n0", "n1"}
        assert g.teacher == [1.0] + [{"n0": 0.25, "n1": 0.5}[d] for d in g.docs[1:]]
        seen |= set(g.docs[1:])
    assert seen == {"n0", "n1"}


def test_make_group_edge_cases():
    ex = Example("q", ["p"], ["n0", "n1"])
    assert make_group(ex, 0, random.Random(0)) == Group("q", ["p"], None)
    assert make_group(Example("q", ["p"], []), 3, random.Random(0)) == Group("q", ["p"], None)
    with pytest.raises(ValueError, match="not negatives"):
        make_group(Example("q", ["p"], ["n"], [1.0], None), 1, random.Random(0))
    with pytest.raises(ValueError, match="no positive"):
        Example("q", [], ["n"])


def _examples(n: int, n_neg: int = 4) -> list[Example]:
    return [Example(f"q{i}", [f"p{i}"], [f"n{i}-{j}" for j in range(n_neg)]) for i in range(n)]


def test_training_stream_is_deterministic_and_cycles_epochs():
    exs = _examples(10)
    calls = []

    def source():
        calls.append(1)
        return iter(exs)

    take = lambda s, k: list(itertools.islice(iter(s), k))  # noqa: E731
    a = take(TrainingStream(source, 2, seed=1, shuffle_buffer=100), 35)
    b = take(TrainingStream(source, 2, seed=1, shuffle_buffer=100), 35)
    assert a == b
    assert len(calls) == 8  # the source is re-read for each of the 4 epochs started, per stream
    queries = [g.query for g in a]
    epochs = [queries[i:i + 10] for i in range(0, 30, 10)]
    for epoch in epochs:
        assert sorted(epoch) == sorted(e.query for e in exs)  # every example once per epoch
    assert epochs[0] != epochs[1] and epochs[1] != epochs[2]  # reshuffled per epoch
    assert epochs[0] != [e.query for e in exs]  # shuffled at all
    for g in a:
        i = int(g.query[1:])
        assert g.docs[0] == f"p{i}" and len(g.docs) == 3 and set(g.docs[1:]) <= set(exs[i].negatives)
    # negatives are sampled per position: the same query draws differently in different epochs
    per_query = {}
    for g in a[:30]:
        per_query.setdefault(g.query, []).append(tuple(g.docs[1:]))
    assert any(len(set(v)) > 1 for v in per_query.values())

    c = take(TrainingStream(source, 2, seed=2, shuffle_buffer=100), 35)
    assert [g.query for g in c] != queries


def test_training_stream_file_order_and_buffer_window():
    exs = _examples(12)
    stream = list(itertools.islice(iter(TrainingStream(lambda: iter(exs), 1, seed=0, shuffle_buffer=1)), 24))
    assert [g.query for g in stream] == [e.query for e in exs] * 2
    buffered = list(itertools.islice(iter(TrainingStream(lambda: iter(exs), 1, seed=0, shuffle_buffer=3)), 12))
    order = [int(g.query[1:]) for g in buffered]
    assert sorted(order) == list(range(12))
    # a sliding buffer of 3 can only yield example i once it has read it: output t comes from input <= t + 2
    assert all(i <= t + 2 for t, i in enumerate(order))
    assert order != list(range(12))


def test_training_stream_streams_from_its_source():
    """With a small buffer, groups come out before the source has been read to the end."""
    def source():
        yield from _examples(5)
        raise RuntimeError("read too far")

    it = iter(TrainingStream(source, 1, seed=0, shuffle_buffer=2))
    assert len([next(it) for _ in range(3)]) == 3
    with pytest.raises(RuntimeError, match="read too far"):
        list(itertools.islice(it, 10))


def test_training_stream_zero_negatives_and_empty_source():
    groups = list(itertools.islice(iter(TrainingStream(lambda: iter(_examples(3)), 0, seed=0)), 7))
    assert all(len(g.docs) == 1 and g.docs[0] == "p" + g.query[1:] for g in groups)
    with pytest.raises(ValueError, match="no examples"):
        next(iter(TrainingStream(lambda: iter([]), 1)))


def test_training_stream_skip_as_documented():
    exs = _examples(6)
    full = list(itertools.islice(iter(TrainingStream(lambda: iter(exs), 2, seed=3, shuffle_buffer=4)), 10))
    stream = TrainingStream(lambda: iter(exs), 2, seed=3, shuffle_buffer=4)
    stream.skip(4)
    assert list(itertools.islice(iter(stream), 6)) == full[4:]


# ============================================================================================ losses
def loop_maxsim(Q, q_mask, D, d_mask, divide=False) -> np.ndarray:
    B, N = Q.shape[0], D.shape[0]
    out = np.zeros((B, N))
    for b in range(B):
        for n in range(N):
            total = 0.0
            for i in range(Q.shape[1]):
                if not q_mask[b, i]:
                    continue
                total += max(float(np.dot(Q[b, i], D[n, t])) for t in range(D.shape[1]) if d_mask[n, t])
            out[b, n] = total / (max(int(q_mask[b].sum()), 1) if divide else 1)
    return out


@pytest.mark.parametrize("divide", [False, True])
def test_maxsim_scores_against_a_loop(divide):
    g = torch.Generator().manual_seed(0)
    Q = torch.randn(3, 5, 4, generator=g, dtype=torch.float64)
    D = torch.randn(4, 6, 4, generator=g, dtype=torch.float64)
    q_mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 1, 0, 0]], dtype=torch.bool)
    d_mask = torch.tensor([[1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1], [0, 1, 0, 1, 0, 0], [1, 0, 0, 0, 0, 0]],
                          dtype=torch.bool)
    # masked positions hold vectors that would win every max and add a lot: they must change nothing
    Q[~q_mask] = 50.0
    D[~d_mask] = 50.0
    got = maxsim_scores(Q, q_mask, D, d_mask, divide_by_query_length=divide)
    assert got.shape == (3, 4)
    np.testing.assert_allclose(got.numpy(), loop_maxsim(Q.numpy(), q_mask.numpy(), D.numpy(), d_mask.numpy(), divide),
                               rtol=1e-12, atol=1e-12)
    # negative similarities: a padded doc token (dot 0 after masking) must not beat all-negative real tokens
    Qn = torch.ones(1, 1, 2, dtype=torch.float64)
    Dn = torch.tensor([[[-1.0, -1.0], [0.0, 0.0]]], dtype=torch.float64)
    got = maxsim_scores(Qn, torch.tensor([[True]]), Dn, torch.tensor([[True, False]]))
    assert got.item() == -2.0


def own_log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def test_contrastive_loss_against_hand_computation():
    g = torch.Generator().manual_seed(1)
    B, n = 3, 4
    scores = torch.randn(B, B * n, generator=g, dtype=torch.float64) * 3
    s = scores.numpy()
    for temperature in (1.0, 0.25):
        in_batch = np.mean([-own_log_softmax(s[b] / temperature)[b * n] for b in range(B)])
        own = np.mean([-own_log_softmax(s[b, b * n:(b + 1) * n] / temperature)[0] for b in range(B)])
        assert contrastive_loss(scores, n, temperature, in_batch=True).item() == pytest.approx(in_batch, rel=1e-6)
        assert contrastive_loss(scores, n, temperature, in_batch=False).item() == pytest.approx(own, rel=1e-6)
    assert in_batch != pytest.approx(own)
    # a query whose positive wins by far has almost no loss; one whose negative wins has a large loss
    easy = torch.tensor([[100.0, 0.0, 0.0, 0.0]])
    assert contrastive_loss(easy, 4, in_batch=False).item() < 1e-6
    assert contrastive_loss(torch.tensor([[0.0, 100.0]]), 2, in_batch=False).item() == pytest.approx(100.0)


def test_distillation_loss_against_hand_computation():
    g = torch.Generator().manual_seed(2)
    B, n = 2, 3
    scores = torch.randn(B, B * n, generator=g, dtype=torch.float64)
    teacher = torch.randn(B, n, generator=g, dtype=torch.float64) * 2
    s, t = scores.numpy(), teacher.numpy()
    for temp, t_temp in ((1.0, 1.0), (0.5, 2.0)):
        expected = 0.0
        for b in range(B):
            p = np.exp(own_log_softmax(t[b] / t_temp))
            log_q = own_log_softmax(s[b, b * n:(b + 1) * n] / temp)
            expected += float(np.sum(p * (np.log(p) - log_q)))
        got = distillation_loss(scores, teacher, n, temp, t_temp).item()
        assert got == pytest.approx(expected / B, rel=1e-5)
    # a student matching the teacher exactly has zero loss (other queries' documents are ignored)
    same = torch.tensor([[1.0, 2.0, 3.0, 9.0, 9.0, 9.0]])
    assert distillation_loss(same, torch.tensor([[1.0, 2.0, 3.0]]), 3).item() == pytest.approx(0.0, abs=1e-7)


def test_combined_loss_weights_and_errors():
    g = torch.Generator().manual_seed(3)
    scores = torch.randn(2, 6, generator=g)
    teacher = torch.randn(2, 3, generator=g)
    ce = contrastive_loss(scores, 3, 0.5, True).item()
    kl = distillation_loss(scores, teacher, 3, 0.5, 2.0).item()
    parts = combined_loss(scores, 3, teacher, "ce+kl", 0.5, True, kl_weight=0.3, ce_weight=2.0,
                          teacher_temperature=2.0)
    assert set(parts) == {"ce", "kl", "total"}
    assert parts["ce"].item() == pytest.approx(ce) and parts["kl"].item() == pytest.approx(kl)
    assert parts["total"].item() == pytest.approx(2.0 * ce + 0.3 * kl, rel=1e-6)
    only_kl = combined_loss(scores, 3, teacher, "kl", 0.5, True, teacher_temperature=2.0)
    assert set(only_kl) == {"kl", "total"} and only_kl["total"].item() == pytest.approx(kl)
    only_ce = combined_loss(scores, 3, None, "ce", 0.5, False)
    assert set(only_ce) == {"ce", "total"}
    assert only_ce["total"].item() == pytest.approx(contrastive_loss(scores, 3, 0.5, False).item())
    for loss in ("kl", "ce+kl"):
        with pytest.raises(ValueError, match="teacher"):
            combined_loss(scores, 3, None, loss, 1.0, True)
    with pytest.raises(ValueError, match="unknown loss"):
        combined_loss(scores, 3, teacher, "mse", 1.0, True)


def test_weights_apply_only_to_ce_plus_kl():
    scores = torch.randn(2, 6, generator=torch.Generator().manual_seed(4))
    ce = contrastive_loss(scores, 3, 1.0, True).item()
    assert combined_loss(scores, 3, None, "ce", 1.0, True, ce_weight=0.5)["total"].item() == pytest.approx(ce)


# ============================================================================================ trainer
def run(model, data, out, **settings) -> Trainer:
    defaults = dict(output_dir=str(out), max_steps=2, batch_size=4, n_negatives=2, learning_rate=1e-3,
                    log_every=1, save_every=0)
    trainer = Trainer(model, TrainingConfig(**{**defaults, **settings}))
    trainer.train(data)
    return trainer


def losses(trainer: Trainer, key: str = "total") -> dict[int, float]:
    return {h["step"]: h[key] for h in trainer.history if key in h}


def ranking_accuracy(model, examples) -> float:
    """Share of (positive, negative) pairs where MaxSim scores the positive higher."""
    pairs = [(e.query, d) for e in examples for n in e.negatives for d in (e.positives[0], n)]
    s = model.score_pairs(pairs)
    return float(np.mean(s[0::2] > s[1::2]))


@pytest.fixture(scope="module")
def toy_run(tiny_model_dir, tmp_path_factory, one_thread):  # noqa: F811
    """30 steps on a task the tiny model can learn: query "w1 w2", positive holding w1 and w2."""
    examples = examples_of(toy_records(40, 3, seed=0))
    model = load_tiny(tiny_model_dir)
    before = ranking_accuracy(model, examples)
    out = tmp_path_factory.mktemp("toy-run")
    trainer = run(model, examples, out, max_steps=30, batch_size=8, n_negatives=3, save_every=10)
    return dict(model=model, trainer=trainer, examples=examples, before=before, out=out)


def test_training_learns_a_toy_task(toy_run):
    totals = losses(toy_run["trainer"])
    assert sorted(totals) == list(range(1, 31))
    assert all(math.isfinite(v) for v in totals.values())
    first, last = np.mean([totals[s] for s in range(1, 6)]), np.mean([totals[s] for s in range(26, 31)])
    assert last < first
    after = ranking_accuracy(toy_run["model"], toy_run["examples"])
    assert after > toy_run["before"]
    assert toy_run["model"].module.training is False


def test_final_model_loads_with_identical_vectors(toy_run, tiny_model_dir):
    final = toy_run["out"] / "final"
    loaded = ColBERT.from_pretrained(str(final), device="cpu")
    trained = toy_run["model"]
    assert loaded.dim == 16 and loaded.config == trained.config
    texts = ["apple river house", "a completely different document about metal and rockets."]
    queries = ["apple river", "green music"]
    for a, b in zip(loaded.encode_docs(texts) + loaded.encode_queries(queries),
                    trained.encode_docs(texts) + trained.encode_queries(queries)):
        np.testing.assert_array_equal(a, b)
    untrained = load_tiny(tiny_model_dir)
    assert not np.allclose(untrained.encode_docs(texts)[0], loaded.encode_docs(texts)[0], atol=1e-4)
    # save_every=10 over 30 steps, keep_checkpoints=2: only the two newest remain
    assert sorted(p.name for p in toy_run["out"].glob("checkpoint-*")) == ["checkpoint-20", "checkpoint-30"]


def test_learning_rate_schedule(tiny_model_dir, tmp_path):
    examples = examples_of(toy_records(8, 2))
    trainer = run(load_tiny(tiny_model_dir), examples, tmp_path, max_steps=10, warmup_ratio=0.2, batch_size=2)
    lrs = losses(trainer, "lr")
    # linear warmup over ceil(0.2 * 10) = 2 steps, then linear decay to 0 at step 10
    expected = {s: 1e-3 * (s / 2 if s < 2 else (10 - s) / 8) for s in range(1, 11)}
    assert lrs == pytest.approx(expected)


def test_head_learning_rate(tiny_model_dir, tmp_path):
    model = load_tiny(tiny_model_dir)
    before = {k: v.clone() for k, v in model.module.state_dict().items()}
    run(model, examples_of(toy_records(8, 2)), tmp_path, learning_rate=0.0, head_learning_rate=1e-2,
        warmup_ratio=0.0)
    after = model.module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in after if not k.startswith("head."))
    assert not torch.equal(before["head.weight"], after["head.weight"])


def test_head_learning_rate_zero_freezes_the_head(tiny_model_dir, tmp_path):
    model = load_tiny(tiny_model_dir)
    before = model.module.head.weight.detach().clone()
    run(model, examples_of(toy_records(8, 2)), tmp_path, learning_rate=1e-2, head_learning_rate=0.0,
        warmup_ratio=0.0)
    assert torch.equal(before, model.module.head.weight)


# ---------------------------------------------------------------- exact resume
RESUME = dict(max_steps=6, save_every=3, batch_size=4, n_negatives=2, shuffle_buffer=8, learning_rate=1e-3)


def interrupted_then_resumed(tiny_model_dir, examples, out, monkeypatch, settings, damage=None) -> tuple:
    with monkeypatch.context() as mp:
        interrupt_after_checkpoint(mp, Trainer, 3)
        with pytest.raises(KeyboardInterrupt):
            run(load_tiny(tiny_model_dir), examples, out, **settings)
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint-3"]
    if damage is not None:
        damage(out)
    torch.manual_seed(1234)  # nothing of this process's state may leak into the resumed run
    random.seed(1234)
    resumed_model = load_tiny(tiny_model_dir, dim=16)
    with torch.no_grad():  # a different starting point: everything must come from the checkpoint
        for p in resumed_model.module.parameters():
            p.add_(0.5)
    trainer = run(resumed_model, examples, out, **settings)
    return trainer, resumed_model


@pytest.mark.parametrize("grad_accum", [1, 2])
def test_exact_resume(tiny_model_dir, tmp_path, monkeypatch, grad_accum):
    examples = examples_of(toy_records(20, 3, seed=1))
    settings = {**RESUME, "grad_accum": grad_accum}
    model_a = load_tiny(tiny_model_dir)
    trainer_a = run(model_a, examples, tmp_path / "a", **settings)
    trainer_b, model_b = interrupted_then_resumed(tiny_model_dir, examples, tmp_path / "b", monkeypatch, settings)
    state_a, state_b = model_a.module.state_dict(), model_b.module.state_dict()
    assert state_a.keys() == state_b.keys()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    la, lb = losses(trainer_a), losses(trainer_b)
    assert sorted(lb) == list(range(1, 7))
    assert [lb[s] for s in (4, 5, 6)] == [la[s] for s in (4, 5, 6)]
    assert [lb[s] for s in (1, 2, 3)] == [la[s] for s in (1, 2, 3)]  # restored from the checkpoint's history
    assert losses(trainer_b, "lr") == losses(trainer_a, "lr")


def test_exact_resume_of_the_loss_log(tiny_model_dir, tmp_path, monkeypatch):
    examples = examples_of(toy_records(20, 3, seed=1))
    settings = {**RESUME, "log_every": 2}
    trainer_a = run(load_tiny(tiny_model_dir), examples, tmp_path / "a", **settings)
    trainer_b, _ = interrupted_then_resumed(tiny_model_dir, examples, tmp_path / "b", monkeypatch, settings)
    assert losses(trainer_b) == losses(trainer_a)


def test_half_written_checkpoints_are_ignored(tiny_model_dir, tmp_path, monkeypatch):
    examples = examples_of(toy_records(20, 3, seed=1))
    model_a = load_tiny(tiny_model_dir)
    trainer_a = run(model_a, examples, tmp_path / "a", **RESUME)

    def damage(out: Path) -> None:
        good = out / "checkpoint-3"
        # a save interrupted before its rename: complete-looking but still .tmp, and claiming a later step
        shutil.copytree(good, out / "checkpoint-5.tmp")
        state = json.loads((good / "trainer_state.json").read_text())
        (out / "checkpoint-5.tmp" / "trainer_state.json").write_text(json.dumps({**state, "step": 5}))
        # a checkpoint folder whose state file was never written, with garbage weights
        shutil.copytree(good, out / "checkpoint-4")
        (out / "checkpoint-4" / "trainer_state.json").unlink()
        for f in (out / "checkpoint-4").glob("*.safetensors"):
            f.write_bytes(b"garbage")

    trainer_b, model_b = interrupted_then_resumed(tiny_model_dir, examples, tmp_path / "b", monkeypatch, RESUME,
                                                  damage)
    assert all(torch.equal(v, model_b.module.state_dict()[k]) for k, v in model_a.module.state_dict().items())
    assert losses(trainer_b) == losses(trainer_a)
    assert [p.name for p in trainer_b.checkpoints()] == ["checkpoint-3", "checkpoint-6"]


def test_resume_false_starts_over(tiny_model_dir, tmp_path, monkeypatch):
    examples = examples_of(toy_records(20, 3, seed=1))
    model_a = load_tiny(tiny_model_dir)
    trainer_a = run(model_a, examples, tmp_path, **RESUME)
    model_b = load_tiny(tiny_model_dir)
    trainer_b = Trainer(model_b, TrainingConfig(**{**dict(output_dir=str(tmp_path), log_every=1), **RESUME}))
    trainer_b.train(examples, resume=False)
    assert losses(trainer_b) == losses(trainer_a)
    assert all(torch.equal(v, model_b.module.state_dict()[k]) for k, v in model_a.module.state_dict().items())


# ---------------------------------------------------------------- the loss of the first step, by hand
@pytest.fixture(scope="module")
def no_dropout_dir(tmp_path_factory):
    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny-no-dropout"), seed=0, hidden_dropout_prob=0.0,
                                 attention_probs_dropout_prob=0.0)


def hand_first_step_loss(model, examples, cfg: dict) -> float:
    """The loss of one batch holding every example with all its documents, from the model's own vectors."""
    queries = [e.query for e in examples]
    docs = [d for e in examples for d in e.positives[:1] + e.negatives]
    owners = [i for i, e in enumerate(examples) for _ in range(1 + len(e.negatives))]
    qv = model.encode_queries(queries)
    dv = model.encode_docs(docs)
    S = np.array([[float((q.astype(np.float64) @ d.astype(np.float64).T).max(axis=1).sum()) for d in dv]
                  for q in qv])
    if model.config.divide_by_query_length:
        S /= np.array([[len(q)] for q in qv])
    T = cfg.get("temperature", 1.0)
    ce_parts, kl_parts = [], []
    for i, e in enumerate(examples):
        own = [j for j, o in enumerate(owners) if o == i]
        if cfg.get("in_batch_negatives", True):
            ce_parts.append(-own_log_softmax(S[i] / T)[own[0]])
        else:
            ce_parts.append(-own_log_softmax(S[i, own] / T)[0])
        if e.pos_scores is not None:
            p = np.exp(own_log_softmax(np.array(e.pos_scores[:1] + e.neg_scores) / cfg.get("teacher_temperature", 1.0)))
            kl_parts.append(float(np.sum(p * (np.log(p) - own_log_softmax(S[i, own] / T)))))
    loss = cfg.get("loss", "ce")
    total = 0.0
    if "ce" in loss:
        total += cfg.get("ce_weight", 1.0) * np.mean(ce_parts)
    if "kl" in loss:
        total += cfg.get("kl_weight", 1.0) * np.mean(kl_parts)
    return float(total)


FIRST_STEP = {
    "ce-in-batch": dict(loss="ce"),
    "ce-own": dict(loss="ce", in_batch_negatives=False, temperature=0.5),
    "ce-divided": dict(loss="ce", divide_by_query_length=True),
    "kl": dict(loss="kl", teacher_temperature=2.0),
    "ce+kl": dict(loss="ce+kl", kl_weight=0.3, ce_weight=2.0, temperature=0.8),
}


@pytest.mark.parametrize("case", sorted(FIRST_STEP))
def test_first_step_loss_by_hand(no_dropout_dir, tmp_path, case):
    cfg = dict(FIRST_STEP[case])
    divide = cfg.pop("divide_by_query_length", False)
    model = load_tiny(no_dropout_dir, divide_by_query_length=divide)
    rng = random.Random(7)
    examples = [Example(r["query"], r["pos"], r["neg"], [rng.uniform(-3, 3)], [rng.uniform(-3, 3) for _ in r["neg"]])
                for r in toy_records(4, 2, seed=3)]
    expected = hand_first_step_loss(model, examples, FIRST_STEP[case])
    trainer = run(model, examples, tmp_path, max_steps=1, batch_size=4, n_negatives=2, shuffle_buffer=1, **cfg)
    assert trainer.history[0]["total"] == pytest.approx(expected, rel=1e-4)


def test_first_step_loss_with_a_query_without_negatives(no_dropout_dir, tmp_path):
    model = load_tiny(no_dropout_dir)
    recs = toy_records(3, 2, seed=4)
    recs[1]["neg"] = []
    examples = examples_of(recs)
    expected = hand_first_step_loss(model, examples, {"loss": "ce"})
    trainer = run(model, examples, tmp_path, max_steps=1, batch_size=3, n_negatives=2, shuffle_buffer=1)
    assert trainer.history[0]["total"] == pytest.approx(expected, rel=1e-4)


# ---------------------------------------------------------------- real files, distillation
@pytest.mark.parametrize("loss", ["kl", "ce+kl"])
def test_distillation_on_the_pointwise_file(tiny_model_dir, tmp_path, loss):
    trainer = run(load_tiny(tiny_model_dir), T2RANK_DISTILL, tmp_path, max_steps=3, batch_size=2, n_negatives=3,
                  loss=loss, shuffle_buffer=1)
    assert sorted(losses(trainer)) == [1, 2, 3]
    assert all(math.isfinite(h["total"]) and h["kl"] >= 0 for h in trainer.history)
    if loss == "ce+kl":
        assert all(h["total"] == pytest.approx(h["ce"] + h["kl"], rel=1e-6) for h in trainer.history)
    assert (tmp_path / "final" / "lateint_config.json").exists()


def test_a_few_steps_on_the_real_pos_neg_file(tiny_model_dir, tmp_path):
    trainer = run(load_tiny(tiny_model_dir), str(T2RANK), tmp_path, max_steps=3, batch_size=2, n_negatives=3)
    assert sorted(losses(trainer)) == [1, 2, 3]
    # in-batch: 2 queries x 4 documents, so a random model's loss is near log(8)
    assert all(0 < h["total"] < 3 * math.log(8) for h in trainer.history)
    state = json.loads((tmp_path / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["step"] == 3 and state["groups_consumed"] == 6


def test_kl_without_teacher_scores_fails(tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="teacher"):
        run(load_tiny(tiny_model_dir), examples_of(toy_records(4, 2)), tmp_path, loss="kl")


# ---------------------------------------------------------------- precision, gradient checkpointing
@pytest.fixture
def fresh_accelerate_state():
    """accelerate keeps one process-wide AcceleratorState whose mixed precision cannot change once set."""
    from accelerate.state import AcceleratorState, GradientState
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    yield
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def test_bf16_on_cpu(tiny_model_dir, tmp_path, fresh_accelerate_state):
    model = load_tiny(tiny_model_dir)
    dtypes = []
    model.module.head.register_forward_hook(lambda module, inputs, output: dtypes.append(output.dtype))
    try:
        trainer = run(model, examples_of(toy_records(8, 2)), tmp_path, mixed_precision="bf16", batch_size=2)
    except (ValueError, RuntimeError) as ex:
        if "bf16" in str(ex).lower() or "bfloat16" in str(ex).lower():
            pytest.skip(f"accelerate refuses bf16 on this CPU: {ex}")
        raise
    assert sorted(losses(trainer)) == [1, 2] and all(math.isfinite(h["total"]) for h in trainer.history)
    assert dtypes and set(dtypes[:4]) == {torch.bfloat16}  # the forward passes of training ran in bf16
    assert model.module.head.weight.dtype == torch.float32


def test_two_precisions_in_one_process(tiny_model_dir, tmp_path, fresh_accelerate_state):
    examples = examples_of(toy_records(8, 2))
    run(load_tiny(tiny_model_dir), examples, tmp_path / "fp32", max_steps=1, batch_size=2)
    run(load_tiny(tiny_model_dir), examples, tmp_path / "bf16", max_steps=1, batch_size=2, mixed_precision="bf16")


def test_gradient_checkpointing_changes_nothing_but_memory(tiny_model_dir, tmp_path):
    examples = examples_of(toy_records(8, 2))
    plain, ckpt = load_tiny(tiny_model_dir), load_tiny(tiny_model_dir)
    t_plain = run(plain, examples, tmp_path / "plain", max_steps=2)
    t_ckpt = run(ckpt, examples, tmp_path / "ckpt", max_steps=2, gradient_checkpointing=True)
    assert t_ckpt.history[0]["total"] == pytest.approx(t_plain.history[0]["total"], abs=1e-5)
    for (name, a), b in zip(plain.module.named_parameters(), ckpt.module.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    assert ckpt.module.training is False
    assert not any(m.training for m in ckpt.module.modules())
    assert ckpt.module.backbone.is_gradient_checkpointing is False


# ---------------------------------------------------------------- validation
def test_validation_callback(tiny_model_dir, tmp_path):
    calls = []

    def validate(model):
        calls.append(model.module.training)
        return {"calls": len(calls), "acc": 0.5}

    model = load_tiny(tiny_model_dir)
    trainer = Trainer(model, TrainingConfig(output_dir=str(tmp_path), max_steps=4, batch_size=2, n_negatives=1,
                                            eval_every=2, log_every=1, save_every=0), validation=validate)
    trainer.train(examples_of(toy_records(8, 2)))
    assert calls == [False, False]  # validated in eval mode
    val = [h for h in trainer.history if any(k.startswith("val/") for k in h)]
    assert val == [{"step": 2, "val/calls": 1.0, "val/acc": 0.5}, {"step": 4, "val/calls": 2.0, "val/acc": 0.5}]
    assert sorted(losses(trainer)) == [1, 2, 3, 4]

    never = []
    Trainer(load_tiny(tiny_model_dir), TrainingConfig(output_dir=str(tmp_path / "never"), max_steps=2, batch_size=2,
                                                      n_negatives=1, eval_every=0),
            validation=lambda m: never.append(1) or {}).train(examples_of(toy_records(8, 2)))
    assert never == []


TEXTS = {f"d{i}": f"{w} {v}" for i, (w, v) in enumerate(zip(
    "apple river house green music table window garden paper stone bread light".split(),
    "water chair phone glass school money train horse cloud sugar metal doctor".split()))}


def first_stage_of(rows):
    import pyterrier as pt
    return pt.Transformer.from_df(pd.DataFrame(rows, columns=["qid", "query", "docno", "score", "rank"]),
                                  uniform=False)


def text_loader():
    import pyterrier as pt
    return pt.apply.generic(lambda df: df.assign(text=df["docno"].map(TEXTS)))


def test_pyterrier_validation(tiny_model_dir):
    topics = pd.DataFrame([("q1", "apple water"), ("q2", "garden horse")], columns=["qid", "query"])
    qrels = pd.DataFrame([("q1", "d0", 1), ("q1", "d1", 0), ("q2", "d7", 1), ("q2", "d8", 0)],
                         columns=["qid", "docno", "label"])
    first = first_stage_of([("q1", "apple water", "d1", 2.0, 0), ("q1", "apple water", "d0", 1.0, 1),
                            ("q2", "garden horse", "d8", 2.0, 0), ("q2", "garden horse", "d7", 1.0, 1)])
    model = load_tiny(tiny_model_dir)
    measures = pyterrier_validation(topics, qrels, first, text_loader())(model)
    assert list(measures) == ["nDCG@10"]
    expected = []
    for q, rel, non in (("apple water", "d0", "d1"), ("garden horse", "d7", "d8")):
        s_rel, s_non = model.score_pairs([(q, TEXTS[rel]), (q, TEXTS[non])])
        expected.append(1.0 if s_rel > s_non else 1.0 / math.log2(3))
    assert math.isfinite(measures["nDCG@10"])
    assert measures["nDCG@10"] == pytest.approx(np.mean(expected), abs=1e-6)


# ---------------------------------------------------------------- hard-negative mining
MINING_TOPICS = pd.DataFrame([("q1", "apple water"), ("q2", "table money"), ("q3", "judged but nothing relevant"),
                              ("q4", "not judged")], columns=["qid", "query"])
MINING_QRELS = pd.DataFrame([("q1", "d0", 2), ("q1", "d3", 1), ("q1", "d4", 0), ("q2", "d5", 1), ("q3", "d1", 0)],
                            columns=["qid", "docno", "label"])


def mining_first_stage():
    rows = [("q1", "apple water", f"d{i}", 10.0 - i, i) for i in range(10)]  # d3 (relevant) inside the window
    rows += [("q2", "table money", f"d{i}", 10.0 - i, i - 4) for i in range(4, 10)]  # d5 at rank 1
    rows += [("q3", "judged but nothing relevant", f"d{i}", 1.0, i) for i in range(6)]
    return first_stage_of(rows)


@pytest.mark.parametrize("with_teacher", [False, True])
def test_mine_hard_negatives(with_teacher):
    import pyterrier as pt
    teacher_scores = {text: float(i) / 4 for i, text in enumerate(TEXTS.values())}
    teacher = pt.apply.doc_score(lambda row: teacher_scores[row["text"]]) if with_teacher else None
    for seed in range(3):
        got = mine_hard_negatives(MINING_TOPICS, MINING_QRELS, mining_first_stage(), text_loader(),
                                  neg_ranks=(2, 6), n_negatives=2, teacher=teacher, seed=seed, verbose=False)
        by_query = {e.query: e for e in got}
        assert sorted(by_query) == ["apple water", "table money"]  # q3 has no relevant doc, q4 no judgements
        q1, q2 = by_query["apple water"], by_query["table money"]
        assert sorted(q1.positives) == sorted([TEXTS["d0"], TEXTS["d3"]])
        assert q2.positives == [TEXTS["d5"]]
        # q1's window: ranks 2..5 = d2, d3, d4, d5; d3 is relevant; d4 (label 0) may be a negative
        assert len(q1.negatives) == 2 and len(set(q1.negatives)) == 2
        assert set(q1.negatives) <= {TEXTS["d2"], TEXTS["d4"], TEXTS["d5"]}
        # q2's window: ranks 2..5 = d6..d9 (d5, relevant, is at rank 1)
        assert len(q2.negatives) == 2 and set(q2.negatives) <= {TEXTS[f"d{i}"] for i in range(6, 10)}
        for ex in got:
            assert not set(ex.negatives) & set(ex.positives)
            if with_teacher:
                assert ex.pos_scores == [teacher_scores[t] for t in ex.positives]
                assert ex.neg_scores == [teacher_scores[t] for t in ex.negatives]
            else:
                assert ex.pos_scores is None and ex.neg_scores is None


def test_mine_hard_negatives_small_window_and_seed():
    kw = dict(neg_ranks=(2, 6), n_negatives=10, verbose=False)
    got = mine_hard_negatives(MINING_TOPICS, MINING_QRELS, mining_first_stage(), text_loader(), **kw)
    q1 = next(e for e in got if e.query == "apple water")
    assert sorted(q1.negatives) == sorted([TEXTS["d2"], TEXTS["d4"], TEXTS["d5"]])  # all candidates, no more
    draws = {tuple(sorted(next(e for e in mine_hard_negatives(MINING_TOPICS, MINING_QRELS, mining_first_stage(),
                                                              text_loader(), neg_ranks=(2, 6), n_negatives=1,
                                                              seed=s, verbose=False)
                               if e.query == "apple water").negatives)) for s in range(12)}
    assert len(draws) > 1  # the seed changes the sample


@pytest.mark.parametrize("with_scores", [False, True])
def test_write_jsonl_round_trip(tmp_path, with_scores):
    examples = [Example("中文 query", ["正例 one", "pos two"], ["neg \"quoted\"", "neg\ttab"],
                        [1.5, 0.25] if with_scores else None, [-2.0, 0.0] if with_scores else None),
                Example("q2", ["p"], [], [3.0] if with_scores else None, [] if with_scores else None)]
    path = write_jsonl(examples, tmp_path / "mined.jsonl")
    assert detect_format(path) == "pos-neg"
    assert list(read_examples(path)) == examples
    assert "中文" in path.read_text(encoding="utf-8")


# ---------------------------------------------------------------- configuration
@pytest.mark.parametrize("bad", [dict(loss="mse"), dict(mixed_precision="fp8"), dict(batch_size=0),
                                 dict(max_steps=0), dict(grad_accum=0), dict(n_negatives=-1)])
def test_training_config_validation(bad):
    with pytest.raises(ValueError):
        TrainingConfig(**bad)


def test_log_every_zero_is_refused_or_harmless(tiny_model_dir, tmp_path):
    try:
        TrainingConfig(log_every=0)
    except ValueError:
        return  # refused up front: fine
    run(load_tiny(tiny_model_dir), examples_of(toy_records(4, 2)), tmp_path, log_every=0, batch_size=2)


def test_training_config_from_json(tmp_path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"max_steps": 7, "loss": "ce+kl", "in_batch_negatives": False,
                                "head_learning_rate": 0.001}))
    cfg = TrainingConfig.from_json(good)
    assert (cfg.max_steps, cfg.loss, cfg.in_batch_negatives, cfg.head_learning_rate) == (7, "ce+kl", False, 0.001)
    assert cfg.batch_size == TrainingConfig().batch_size
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"max_steps": 7, "lr": 0.1, "epochs": 2}))
    with pytest.raises(ValueError, match=r"\['epochs', 'lr'\]"):
        TrainingConfig.from_json(bad)
    invalid = tmp_path / "invalid.json"
    invalid.write_text(json.dumps({"loss": "hinge"}))
    with pytest.raises(ValueError, match="hinge"):
        TrainingConfig.from_json(invalid)


def test_tensorboard_logging(tiny_model_dir, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    run(load_tiny(tiny_model_dir), examples_of(toy_records(8, 2)), tmp_path, max_steps=3, batch_size=2,
        report_to="tensorboard")
    events = list(tmp_path.rglob("events.out.tfevents.*"))
    assert events, "no TensorBoard event file written"
    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    steps = [e.step for e in acc.Scalars("train/total")]
    assert steps == [1, 2, 3]
