"""Fault suite: writers killed with SIGKILL at random points, concurrent readers and writers, bad input.

Writers run in processes forked from a forkserver that imported the package once (so each trial costs a fork, not
an import). A profiler hook counts the calls the writer makes into ``pyterrier_lateint.index`` and SIGKILLs the
process at call number N: N is drawn at random (seeded) over the whole write path, from streaming the documents to
the final commit and clean-up.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import signal
import sys
import time
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyterrier as pt
import pytest

from pyterrier_lateint.index import ColBERTIndex, IndexNotFoundError
from test_index import FakeModel, make_corpus, make_queries

POOL = make_corpus(80, seed=11, empty=(4,))
QUERIES = make_queries(8, seed=12)
INDEX_PKG = os.sep + os.path.join("pyterrier_lateint", "index") + os.sep


def _ctx():
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["pyterrier_lateint.index", "test_index"])
    return ctx


# --- what a writer does (run in the child) -------------------------------------------------------------------------
def _write(op: str, path: str) -> None:
    model = FakeModel()
    idx = ColBERTIndex(path, model)
    if op == "build":
        idx.indexer(model, n_centroids=8, store_token_ids=True, verbose=False).index(POOL.iloc[:30])
    elif op == "rebuild":
        idx.indexer(model, n_centroids=8, store_token_ids=True, overwrite=True, verbose=False).index(POOL.iloc[30:60])
    elif op == "add":
        idx.add(POOL.iloc[30:45])
    elif op == "replace":
        idx.add(pd.DataFrame({"docno": ["d1", "d2"], "text": [POOL.text[50], POOL.text[51]]}), replace=True)
    elif op == "delete":
        idx.delete(list(POOL.docno.iloc[5:15]))
    elif op == "compact":
        idx.compact()
    elif op == "compact_retrain":
        idx.compact(retrain=True, n_centroids=4)
    else:
        raise ValueError(op)


def _child(op: str, path: str, kill_at: int, out: str) -> None:
    """Run ``op``; SIGKILL self at the ``kill_at``-th call into the index package (never, when 0); write the count."""
    calls = [0]

    def prof(frame, event, arg):
        if event == "call" and INDEX_PKG in frame.f_code.co_filename:
            calls[0] += 1
            if calls[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
    sys.setprofile(prof)
    try:
        _write(op, path)
    finally:
        sys.setprofile(None)
    Path(out).write_text(str(calls[0]))


def _run_child(ctx, op: str, path: Path, kill_at: int, tmp: Path) -> tuple[int, int]:
    out = tmp / f"count-{os.getpid()}-{kill_at}"
    p = ctx.Process(target=_child, args=(op, str(path), kill_at, str(out)))
    p.start()
    p.join(120)
    return p.exitcode, (int(out.read_text()) if out.exists() else -1)


# --- states -------------------------------------------------------------------------------------------------------
def state_of(path: Path):
    """What a reader sees: live docnos and the ranked results of both search modes (scores rounded to 1e-5)."""
    model = FakeModel()
    idx = ColBERTIndex(path, model)
    pinned = idx.reader()  # one committed state for all three looks (each transform alone is one state anyway)
    idx.reader = lambda: pinned
    rows = []
    for mode in ("plaid", "exhaustive"):
        r = idx.retriever(model, mode=mode, num_results=10)(QUERIES)
        rows += [(mode, q, d, round(float(s), 5)) for q, d, s in zip(r.qid, r.docno, r.score)]
    return tuple(idx.docnos()), tuple(rows)


def look(path: Path):
    """What a reader sees (:func:`state_of`) and which commit it reads (a compaction changes only the latter)."""
    meta = ColBERTIndex(path).metadata()
    return state_of(path), (meta["generation"], meta["n_docs"], meta["n_vectors"], meta["n_deleted"])


def _base(tmp: Path, with_deletes: bool = False) -> Path:
    path = tmp / "base.lateint"
    _write("build", str(path))
    if with_deletes:
        idx = ColBERTIndex(path, FakeModel())
        idx.add(POOL.iloc[60:70])
        idx.delete(list(POOL.docno.iloc[:30:3]) + ["d61"])
    return path


def _clean(path: Path, where: str = "") -> None:
    """After the next writer: no stale temporary folder, no unreferenced file, appendable arrays at their committed
    size, every checksum right. ``where``: the trial, for the messages."""
    idx = ColBERTIndex(path)
    meta = idx.metadata()
    stale = [p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}.")]
    assert not stale, f"{where}: stale {stale}"
    names = {p.name for p in path.iterdir()}
    assert names == set(meta["files"]) | {"lateint.json"}, \
        f"{where}: {names ^ (set(meta['files']) | {'lateint.json'})}"
    for spec in meta["arrays"].values():
        assert (path / spec["file"]).stat().st_size == meta["files"][spec["file"]]["size"], f"{where}: {spec}"
    try:
        idx.verify()
    except Exception as e:
        raise AssertionError(f"{where}: {e}") from e


@pytest.mark.parametrize("op", ["build", "rebuild", "add", "replace", "delete", "compact", "compact_retrain"])
def test_killed_writer_leaves_old_or_new_state(tmp_path, op):
    ctx = _ctx()
    seed = zlib.crc32(op.encode())  # stable across processes (hash() is salted per process): a failure replays
    fresh_build = op == "build"
    base = None if fresh_build else _base(tmp_path, with_deletes=op.startswith("compact"))
    old = None if fresh_build else look(base)
    # the new state, and how many calls the write makes
    done = tmp_path / "done.lateint"
    if base is not None:
        shutil.copytree(base, done)
    code, total = _run_child(ctx, op, done, 0, tmp_path)
    assert code == 0 and total > 10, f"{op} (seed {seed}): exit code {code}, {total} calls"
    new = look(done)
    assert new != old, f"{op} (seed {seed}): the write changed nothing"
    rng = np.random.default_rng(seed)
    outcomes = {}
    # two points drawn at random, and the last calls (around and after the commit)
    points = sorted(set(rng.choice(np.arange(1, total - 3), size=2, replace=False).tolist()) | {total - 2, total})
    for kill_at in points:
        where = f"{op} (seed {seed}) killed at call {kill_at} of {total}"
        trial = tmp_path / f"trial{kill_at}.lateint"
        if base is not None:
            shutil.copytree(base, trial)
        code, _ = _run_child(ctx, op, trial, int(kill_at), tmp_path)
        assert code == -signal.SIGKILL, f"{where}: exit code {code}"
        try:
            seen = look(trial)
        except IndexNotFoundError:
            # a build killed before its rename (nothing at the path), or a replacement killed between its two
            # renames: an error, never a wrong index; the next writer rolls the replacement back
            seen = "missing"
        if seen == "missing" and not fresh_build:  # killed between the two renames of a replacement
            from pyterrier_lateint.index.folders import recover
            from pyterrier_lateint.index.commit import writer_lock
            with writer_lock(trial):
                recover(trial)
            seen = look(trial)
            assert seen == old, f"{where}: the roll-back did not restore the old state"
            print(f"{where}: between the renames; the next writer rolled back")
        assert seen in ((None, new) if fresh_build else (old, new)) or (fresh_build and seen == "missing"), \
            f"{where}: neither the old nor the new state"
        outcomes[int(kill_at)] = "old state" if seen in (old, "missing") else "new state"
        print(f"{where}: {'missing' if seen == 'missing' else outcomes[int(kill_at)]}")  # shown with pytest -s
        # the next writer completes from whatever state it finds (and cleans up)
        if fresh_build and seen == "missing":
            _write("build", str(trial))
        elif seen == old:
            _write(op, str(trial))
        else:
            ColBERTIndex(trial, FakeModel()).add([{"docno": "extra", "text": "t1 t2"}])
            ColBERTIndex(trial).delete("extra")
        if not (seen == new and not fresh_build):
            assert state_of(trial) == new[0], f"{where}: the next writer did not reach the new state"
        _clean(trial, where)
    # the kill points straddle the commit: killed before it, readers see the old state; after it, the new one
    assert set(outcomes.values()) == {"old state", "new state"}, f"{op} (seed {seed}): outcomes {outcomes}"


def test_replacement_killed_between_its_renames_rolls_back(tmp_path):
    """The one window where the index path is empty: a rebuild or compaction killed after moving the old folder
    aside and before moving the new one in. Readers get an error (never a wrong index); the next writer restores
    the old folder and removes the new, uncommitted one."""
    path = _base(tmp_path)
    old = state_of(path)
    other = tmp_path / "other.lateint"
    shutil.copytree(path, other)
    ColBERTIndex(other, FakeModel()).delete("d1")
    dead = 999999999  # no such process
    os.replace(path, tmp_path / f".base.lateint.old-{dead}-aaaa")
    os.replace(other, tmp_path / f".base.lateint.tmp-{dead}-bbbb")
    with pytest.raises(IndexNotFoundError, match="no index"):
        len(ColBERTIndex(path))
    ColBERTIndex(path, FakeModel()).add([{"docno": "extra", "text": "t3 t4"}])  # the next writer
    ColBERTIndex(path).delete("extra")
    assert state_of(path) == old
    _clean(path)


# --- concurrency --------------------------------------------------------------------------------------------------
def _digest(state) -> str:
    import hashlib
    return hashlib.sha1(repr(state).encode()).hexdigest()


def _reader(path: str, out: str, rounds: int, reads=None, stop=None) -> None:
    """Read ``rounds`` times, and on until ``stop`` (an event) is set; count each finished read in ``reads`` (a shared
    integer) and write ``[start, end, digest]`` of each (``time.time()``: one clock for all processes)."""
    seen = []
    while len(seen) < rounds or (stop is not None and not stop.is_set()):
        t0 = time.time()
        digest = _digest(state_of(Path(path)))
        seen.append((t0, time.time(), digest))
        if reads is not None:
            with reads.get_lock():
                reads.value += 1
    Path(out).write_text(json.dumps(seen))


def _write_steps(idx: ColBERTIndex, after_each=lambda: None, before_each=lambda: None) -> None:
    """The writer's sequence: two adds and two deletes, interleaved, then a compaction (``before_each`` and
    ``after_each`` around each of the five)."""
    for i in range(5):
        before_each()
        if i == 4:
            idx.compact()
        elif i % 2 == 0:
            idx.add(POOL.iloc[30 + 5 * i:35 + 5 * i])
        else:
            idx.delete(list(POOL.docno.iloc[3 * i:3 * i + 3]))
        after_each()


def _writer(path: str, out: str, reads, n_readers: int) -> None:
    """The writer's steps, timed (``[start, end]`` of each). Before the first and after each it waits for
    ``n_readers + 1`` more finished reads: each reader reads one state at a time, so one of those reads began after
    the step, and the readers read every state the writer commits."""
    def wait_for_a_read():
        target, deadline = reads.value + n_readers + 1, time.time() + 120
        while reads.value < target:
            if time.time() > deadline:
                raise TimeoutError("the readers stopped reading")
            time.sleep(0.002)

    steps = []
    wait_for_a_read()
    _write_steps(ColBERTIndex(path, FakeModel()), before_each=lambda: steps.append([time.time()]),
                 after_each=lambda: (steps[-1].append(time.time()), wait_for_a_read()))
    Path(out).write_text(json.dumps(steps))


def test_concurrent_readers_and_writer(tmp_path):
    ctx = _ctx()
    path = _base(tmp_path)
    # every state the writer goes through, computed in this process
    replay = tmp_path / "replay.lateint"
    shutil.copytree(path, replay)
    states = {_digest(state_of(replay))}
    _write_steps(ColBERTIndex(replay, FakeModel()), lambda: states.add(_digest(state_of(replay))))
    final = _digest(state_of(replay))
    assert len(states) >= 4  # the adds and deletes each change what a reader sees
    # readers alone: identical to this process
    procs = [ctx.Process(target=_reader, args=(str(path), str(tmp_path / f"r{i}"), 2)) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    first = _digest(state_of(path))
    for i in range(2):
        assert {d for _, _, d in json.loads((tmp_path / f"r{i}").read_text())} == {first}
    # readers reading without a pause while a writer adds, deletes and compacts: each read sees one committed state,
    # never a mix
    reads, stop = ctx.Value("i", 0), ctx.Event()
    procs = [ctx.Process(target=_reader, args=(str(path), str(tmp_path / f"w{i}"), 1, reads, stop)) for i in range(2)]
    writer = ctx.Process(target=_writer, args=(str(path), str(tmp_path / "writer"), reads, len(procs)))
    for p in procs + [writer]:
        p.start()
    writer.join(180)
    stop.set()
    for p in procs:
        p.join(120)
    assert writer.exitcode == 0 and all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs + [writer]]
    steps = json.loads((tmp_path / "writer").read_text())
    done = [r for i in range(2) for r in json.loads((tmp_path / f"w{i}").read_text())]
    seen = {d for _, _, d in done}
    assert seen <= states | {final}, seen - states
    assert seen == states | {final}  # every committed state was read (the writer waited for it)
    # and reads ran while the writer was writing: some read was in flight during a step (a commit in progress)
    during = [(r0, r1) for r0, r1, _ in done if any(r0 < end and r1 > start for start, end in steps)]
    assert len(steps) == 5 and during, f"no read overlapped a write step: steps {steps}, reads {done}"
    assert _digest(state_of(path)) == final


# --- bad input ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_index(tmp_path_factory):
    path = tmp_path_factory.mktemp("bad") / "idx.lateint"
    _write("build", str(path))
    return ColBERTIndex(path, FakeModel())


@pytest.fixture
def bad(tmp_path, small_index):
    """What the bad-input cases call: the model, the index, two queries, their results, a new index's indexer."""
    m, idx = FakeModel(), small_index
    q = QUERIES.iloc[:2]
    return SimpleNamespace(m=m, idx=idx, q=q, res=idx.retriever(m, num_results=3)(q), tmp_path=tmp_path,
                           new=lambda name: ColBERTIndex(tmp_path / name, m).indexer(m, verbose=False))


# each case: what is called, the error type, and the words that name the problem and the fix
BAD_INPUT = [
    ("indexer: misnamed docno column", lambda b: b.new("a").index(pd.DataFrame({"id": ["a"], "text": ["t1"]})),
     KeyError, "need a 'docno'"),
    ("indexer: no text column", lambda b: b.new("b").index(pd.DataFrame({"docno": ["a"], "body": ["t1"]})),
     KeyError, "'text'.*or 'doc_embs'"),
    ("indexer: None text", lambda b: b.new("c").index([{"docno": "a", "text": None}]), TypeError, "fillna"),
    ("indexer: NaN text", lambda b: b.new("d").index(pd.DataFrame({"docno": ["a"], "text": [np.nan]})),
     TypeError, "docno 'a'.*fillna"),
    ("indexer: number as text", lambda b: b.new("e").index([{"docno": "a", "text": 5}]), TypeError, "not int"),
    ("indexer: empty corpus", lambda b: b.new("f").index([]), ValueError, "input is empty"),
    ("indexer: only empty documents", lambda b: b.new("g").index([{"docno": "a", "text": " "}]), ValueError,
     "every document is empty"),
    ("indexer: duplicate docnos", lambda b: b.new("h").index([{"docno": "a", "text": "t1"},
                                                              {"docno": "a", "text": "t2"}]),
     ValueError, "duplicate docno 'a'.*drop or rename"),
    ("indexer: NaN vectors", lambda b: b.new("i").index([{"docno": "a", "doc_embs": np.full((2, 32), np.nan)}]),
     ValueError, "NaN"),
    ("indexer: existing index", lambda b: b.idx.indexer(b.m, verbose=False).index([{"docno": "a", "text": "t1"}]),
     FileExistsError, "overwrite=True"),
    ("retriever: result frame given", lambda b: b.idx.retriever(b.m)(b.res), pt.validate.InputValidationError,
     "docno"),
    ("retriever: misnamed query column", lambda b: b.idx.retriever(b.m)(b.q.rename(columns={"query": "text"})),
     pt.validate.InputValidationError, "query"),
    ("scorer: query frame given", lambda b: b.idx.scorer(b.m)(b.q), pt.validate.InputValidationError, "docno"),
    ("scorer: unknown docno", lambda b: b.idx.scorer(b.m)(b.res.assign(docno="nope")), KeyError,
     "on_unknown='drop'"),
    ("vec_loader: query frame given", lambda b: b.idx.vec_loader()(b.q), pt.validate.InputValidationError, "docno"),
    ("another model", lambda b: b.idx.retriever(FakeModel(name="other")), ValueError, "different model"),
    ("add: misnamed columns", lambda b: b.idx.add(pd.DataFrame({"id": ["x"], "body": ["t1"]})), KeyError,
     "'docno' and 'text'"),
    ("add: one dict instead of a list", lambda b: b.idx.add({"docno": "x", "text": "t1"}), TypeError, "wrap it"),
    ("add: existing docno", lambda b: b.idx.add([{"docno": "d1", "text": "t1"}]), ValueError, "replace=True"),
    ("delete: unknown docno", lambda b: b.idx.delete(["nope"]), KeyError, "on_unknown='drop'"),
    ("delete: bad on_unknown", lambda b: b.idx.delete(["d1"], on_unknown="skip"), ValueError, "'drop'"),
    ("open: not an index", lambda b: len(ColBERTIndex(b.tmp_path)), IndexNotFoundError, "half-written"),
]


@pytest.mark.parametrize("call,exc,words", [c[1:] for c in BAD_INPUT],
                         ids=[c[0].replace(": ", "-").replace(" ", "-") for c in BAD_INPUT])
def test_bad_input_gets_clear_errors(bad, call, exc, words):
    """The error type and the words that name the problem and the fix; the index unchanged."""
    with pytest.raises(exc, match=words):
        call(bad)
    assert len(bad.idx) == 30 and bad.idx.metadata()["generation"] == 0  # the failed call changed nothing


def test_documented_policies(tmp_path, small_index):
    """Inputs with a documented policy rather than an error."""
    m, idx = FakeModel(), small_index
    # empty and whitespace-only queries: no query vectors, no results
    assert len(idx.retriever(m)(pd.DataFrame({"qid": ["1", "2"], "query": ["", "  "]}))) == 0
    # empty documents are kept (counted, listed) but never retrieved
    e = ColBERTIndex(tmp_path / "e", m)
    e.indexer(m, n_centroids=4, verbose=False).index([{"docno": "a", "text": "t1 t2"}, {"docno": "b", "text": ""}])
    assert list(e.docnos()) == ["a", "b"] and e.retriever(m)(QUERIES).docno.unique().tolist() == ["a"]
    # a one-document corpus (npids failed on it: ZeroDivisionError) and a single-character docno
    one = ColBERTIndex(tmp_path / "one", m)
    one.indexer(m, verbose=False).index([{"docno": "x", "text": "t5 t6"}])
    assert one.retriever(m)(QUERIES.iloc[:1]).docno.tolist() == ["x"]
    # a killed build's temporary folder is removed by the next writer of that path
    stale = tmp_path / ".one.tmp-999999999-deadbeef"
    stale.mkdir()
    one.add([{"docno": "y", "text": "t7"}])
    assert not stale.exists()
