"""No silent wrong answer, every error names its fix (issue 23).

- The index path: ``overwrite=True`` replaces an index, uses an empty folder, and refuses (never renames or deletes)
  a file or a folder of other files; opening a file or a foreign folder says what is there.
- Damaged files: a byte flipped anywhere in any file of an index raises
  :class:`~pyterrier_lateint.index.integrity.IndexCorruptError` naming that file, from ``index.verify()`` always,
  and from opening / searching as follows (see :class:`~pyterrier_lateint.index.layout.IndexReader`):

  * checked at every open (``len(index)`` already raises): ``lateint.json`` (it carries its own checksum),
    ``pt_meta.json``, ``codec.json``, ``centroids.npy``, ``codebooks.npy`` / ``buckets.npz``, ``offsets.i64``,
    ``doclens.i32``, ``docnos.S.{fwd,sorted,order}.npy``, ``ivf.S.offsets.npy``, ``tombstones.G.npy`` (their
    checksums), and the ``.npy`` headers of ``token_ids.npy`` and ``ivf.S.docs.npy``;
  * checked at first search, for the values the kernels index with: ``codes.bin`` (every centroid id < K) and
    ``ivf.S.docs.npy`` (every posting inside its segment); a changed value still in range is found by ``verify()``
    only, as is any change in ``residuals.bin`` and in the ids of ``token_ids.npy`` (every byte value is a valid
    residual / token id), so searching such a copy returns results;
  * ``token_stats.npz`` is read only by ``index.token_stats()`` (query pruning, PRF): search never reads it;
    reading it checks its checksum when the file fails to load.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from pyterrier_lateint import ColBERTIndex, ShardedColBERTIndex
from pyterrier_lateint.index import IndexNotFoundError
from pyterrier_lateint.index.integrity import SEAL_CRC_KEY, SEAL_KIND_KEY, IndexCorruptError
from test_index import FakeModel, make_corpus, make_queries

CORPUS = make_corpus(60, seed=5, empty=(2,))
QUERIES = make_queries(2, seed=6)

# which check finds a flipped byte in each file (the module docstring); every file of the test indexes is listed
AT_OPEN = ("lateint.json", "pt_meta.json", "codec.json", "centroids.npy", "codebooks.npy", "buckets.npz",
           "offsets.i64", "doclens.i32", "docnos.*.fwd.npy", "docnos.*.sorted.npy", "docnos.*.order.npy",
           "ivf.*.offsets.npy", "tombstones.*.npy")
AT_SEARCH_OR_VERIFY = ("codes.bin", "residuals.bin", "token_ids.npy", "ivf.*.docs.npy")
ON_USE = ("token_stats.npz",)


def kind_of(name: str) -> str:
    for kind, patterns in (("open", AT_OPEN), ("search", AT_SEARCH_OR_VERIFY), ("use", ON_USE)):
        if any(Path(name).match(p) for p in patterns):
            return kind
    raise AssertionError(f"{name}: a file kind this test does not know; add it to the lists (and the docs)")


@pytest.fixture(scope="module")
def model():
    return FakeModel()


def _build(path: Path, model, **kwargs) -> ColBERTIndex:
    idx = ColBERTIndex(path, model)
    idx.indexer(model, n_centroids=8, verbose=False, **kwargs).index(CORPUS.iloc[:40])
    return idx


@pytest.fixture(scope="module")
def pq_index(tmp_path_factory, model):
    """Two segments, tombstones, token ids and statistics: every kind of file a pq index has."""
    idx = _build(tmp_path_factory.mktemp("safety") / "pq.lateint", model, store_token_ids=True)
    idx.add(CORPUS.iloc[40:])
    idx.delete(["d3", "d45"])
    return idx


@pytest.fixture(scope="module")
def scalar_index(tmp_path_factory, model):
    return _build(tmp_path_factory.mktemp("safety") / "scalar.lateint", model, codec="scalar", nbits=4)


# --- the index path ------------------------------------------------------------------------------------------------
def test_overwrite_never_deletes_a_folder_that_is_not_an_index(tmp_path, model):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "a.txt").write_text("keep me")
    (folder / "b.csv").write_text("1,2")
    (folder / "sub").mkdir()
    for overwrite in (False, True):
        with pytest.raises(FileExistsError, match=r"exists and is not a lateint index \(it holds 3 entries, e\.g\. "
                                                  r"a\.txt, b\.csv, sub/\); choose another path or remove it "
                                                  r"yourself"):
            ColBERTIndex(folder, model).indexer(overwrite=overwrite, verbose=False).index(CORPUS.iloc[:5])
    assert sorted(p.name for p in folder.iterdir()) == ["a.txt", "b.csv", "sub"]
    assert (folder / "a.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # no temporary or renamed folder left
    # opening it says what is there and does not suggest overwrite=True
    with pytest.raises(IndexNotFoundError, match="3 entries, e.g. a.txt.*half-written.*remove it yourself") as e:
        len(ColBERTIndex(folder))
    assert "overwrite=True" not in str(e.value)
    assert not ColBERTIndex(folder).built()


def test_an_empty_folder_is_used_and_an_index_needs_overwrite(tmp_path, model):
    folder = tmp_path / "empty"
    folder.mkdir()
    idx = ColBERTIndex(folder, model)
    idx.indexer(n_centroids=8, verbose=False).index(CORPUS.iloc[:10])
    assert len(idx) == 10
    with pytest.raises(FileExistsError, match="an index already exists at .*overwrite=True"):
        idx.indexer(verbose=False)  # refused when the indexer is made, before any document is read
    idx.indexer(n_centroids=8, overwrite=True, verbose=False).index(CORPUS.iloc[:20])
    assert len(idx) == 20 and sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def test_an_index_with_a_lost_marker_is_still_an_index(tmp_path, model):
    """Without ``lateint.json`` but with its ``pt_meta.json``, a folder is a damaged index: overwrite replaces it."""
    idx = _build(tmp_path / "lost", model)
    os.remove(idx.path / "lateint.json")
    with pytest.raises(IndexNotFoundError, match="half-written.*overwrite=True"):
        len(ColBERTIndex(idx.path))
    idx.indexer(n_centroids=8, overwrite=True, verbose=False).index(CORPUS.iloc[:7])
    assert len(ColBERTIndex(idx.path)) == 7


def test_a_file_at_the_index_path_is_never_touched(tmp_path, model):
    path = tmp_path / "x.lateint"
    path.write_text("my notes")
    idx = ColBERTIndex(path, model)
    assert not idx.built()
    for overwrite in (False, True):
        with pytest.raises(FileExistsError, match="x.lateint' is a file, not an index folder; choose another path"):
            idx.indexer(overwrite=overwrite, verbose=False).index(CORPUS.iloc[:5])
    for call in (lambda: len(idx), idx.verify, lambda: idx.retriever(model), lambda: idx.add(CORPUS.iloc[:2])):
        with pytest.raises(IndexNotFoundError, match="is a file, not an index folder"):
            call()
    assert path.read_text() == "my notes" and sorted(p.name for p in tmp_path.iterdir()) == ["x.lateint"]
    # a file where the index's parent folder should be
    with pytest.raises(NotADirectoryError, match="x.lateint' is a file, not a folder"):
        ColBERTIndex(path / "sub", model).indexer(verbose=False).index(CORPUS.iloc[:5])
    broken = tmp_path / "link"
    broken.symlink_to(tmp_path / "nowhere")
    with pytest.raises(FileExistsError, match="is a broken symbolic link"):
        ColBERTIndex(broken, model).indexer(overwrite=True, verbose=False)
    assert not ColBERTIndex(broken).built()


def test_sharded_build_refuses_a_foreign_folder_and_a_file(tmp_path, model):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "a.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match=r"not a lateint index \(it holds 1 entry, e\.g\. a\.txt\)"):
        ShardedColBERTIndex(folder).indexer(model, n_shards=2, overwrite=True, verbose=False).index(CORPUS.iloc[:6])
    assert [p.name for p in folder.iterdir()] == ["a.txt"]
    path = tmp_path / "f"
    path.write_text("x")
    with pytest.raises(FileExistsError, match="is a file, not an index folder"):
        ShardedColBERTIndex(path).indexer(model, n_shards=2, overwrite=True, verbose=False).index(CORPUS.iloc[:6])
    assert path.read_text() == "x" and sorted(p.name for p in tmp_path.iterdir()) == ["f", "mine"]


def test_indexer_settings_checked_when_given(tmp_path, model):
    idx = ColBERTIndex(tmp_path / "s", model)
    with pytest.raises(ValueError, match="n_centroids must be >= 1"):
        idx.indexer(n_centroids=0)
    with pytest.raises(TypeError, match="batch_size must be an int"):
        idx.indexer(batch_size="8")
    with pytest.raises(ValueError, match="kmeans_iters must be >= 0"):
        idx.indexer(kmeans_iters=-1)
    assert not (tmp_path / "s").exists()


def test_compact_settings_checked(pq_index):
    with pytest.raises(ValueError, match="n_centroids=4 needs compact\\(retrain=True\\)"):
        pq_index.compact(n_centroids=4)
    with pytest.raises(TypeError, match="n_centroids must be an int"):
        pq_index.compact(retrain=True, n_centroids=4.5)
    assert pq_index.metadata()["generation"] == 2  # nothing was rewritten


# --- messages -------------------------------------------------------------------------------------------------------
def test_unknown_docno_errors_suggest_what_works(pq_index):
    with pytest.raises(KeyError, match=r"not in the index .*'nope' in index\.docnos\(\)") as e:
        pq_index.vectors("nope")
    assert "use on_unknown='drop'" not in str(e.value)  # vectors() takes no on_unknown
    with pytest.raises(KeyError, match=r"index\.docnos\(\)"):
        pq_index.token_ids("d3")  # deleted
    with pytest.raises(TypeError, match="takes one docno.*vec_loader"):
        pq_index.vectors(["d1", "d4"])
    assert pq_index.vectors(pd.Series(["d1"])[0]).shape[1] == 32
    r = pq_index.reader()
    with pytest.raises(ValueError, match="on_unknown must be"):
        r.doc_ids(["d1"], on_unknown="skip")
    assert r.doc_ids(["d1", "nope"], on_unknown="drop").tolist() == [1, -1]


def test_metadata_is_sealed_and_unsealed_metadata_still_opens(tmp_path, pq_index, model):
    raw = json.loads((pq_index.path / "lateint.json").read_text())
    assert list(raw)[0] == SEAL_KIND_KEY and list(raw)[-1] == SEAL_CRC_KEY
    assert SEAL_CRC_KEY not in pq_index.metadata() and SEAL_KIND_KEY not in pq_index.metadata()
    old = tmp_path / "old"
    shutil.copytree(pq_index.path, old)
    del raw[SEAL_KIND_KEY], raw[SEAL_CRC_KEY]
    (old / "lateint.json").write_text(json.dumps(raw))  # as written before the seal
    assert len(ColBERTIndex(old)) == len(pq_index)
    ColBERTIndex(old).verify()
    raw["n_docs"] += 1  # unsealed metadata that disagrees with the files is still caught, naming it
    (old / "lateint.json").write_text(json.dumps(raw))
    with pytest.raises(IndexCorruptError, match="'lateint.json' records 488 bytes for 'offsets.i64', but its 62 "
                                                "rows"):
        len(ColBERTIndex(old))
    raw["n_docs"] -= 1
    del raw["segments"]
    (old / "lateint.json").write_text(json.dumps(raw))
    with pytest.raises(IndexCorruptError, match="'lateint.json' has no segments"):
        len(ColBERTIndex(old))


# --- damaged files --------------------------------------------------------------------------------------------------
def _positions(path: Path) -> list[int]:
    """Bytes to flip: the first ones (magic, header length), inside and at the end of a ``.npy`` header, the middle
    and the last bytes."""
    n = path.stat().st_size
    pos = {0, 1, n // 2, n - 2, n - 1}
    if path.suffix == ".npy":
        data = path.read_bytes()
        header = 10 + int.from_bytes(data[8:10], "little") if data[6:7] == b"\x01" else n
        pos |= {6, 8, 9, 12, 30, header - 2, header - 1, min(header, n - 1)}
    return sorted(p for p in pos if 0 <= p < n)


def _flip(path: Path, pos: int, mask: int) -> None:
    with open(path, "r+b") as f:
        f.seek(pos)
        b = f.read(1)[0]
        f.seek(pos)
        f.write(bytes([b ^ mask]))


def _sweep(index: ColBERTIndex, work: Path, model) -> dict[str, int]:
    """Flip bytes of every file of a copy of ``index`` (each flip undone before the next); returns, per check
    kind, how many flips were caught at open / by search."""
    shutil.copytree(index.path, work)
    expected = index.retriever(model, num_results=5)(QUERIES)
    caught = {"open": 0, "search": 0, "search_missed": 0, "use": 0}
    for name in sorted(os.listdir(work)):
        kind = kind_of(name)
        path = work / name
        for pos in _positions(path):
            for mask in (0xFF, 0x01):
                _flip(path, pos, mask)
                where = f"{name} byte {pos} ^ {mask:#x}"
                try:
                    with pytest.raises(IndexCorruptError, match=f"'{name}'") as e:
                        ColBERTIndex(work).verify()
                    assert "overwrite=True" in str(e.value) and "from a copy" in str(e.value), where
                    idx = ColBERTIndex(work, model)
                    if kind == "open":
                        with pytest.raises(IndexCorruptError, match=f"'{name}'"):
                            len(idx)
                        caught["open"] += 1
                        continue
                    try:
                        res = idx.retriever(model, num_results=5)(QUERIES)
                        idx.scorer(model)(expected)
                    except IndexCorruptError as err:
                        assert kind == "search" and f"'{name}'" in str(err), (where, err)
                        caught["search"] += 1
                    else:
                        assert len(res) and set(res.columns) >= {"qid", "docno", "score", "rank"}, where
                        caught["search_missed" if kind == "search" else "use"] += 1
                        if kind == "use":
                            try:
                                idx.token_stats()
                            except IndexCorruptError as err:
                                assert f"'{name}'" in str(err), (where, err)
                except BaseException as err:
                    raise AssertionError(f"{where}: {type(err).__name__}: {err}") from err
                finally:
                    _flip(path, pos, mask)
    ColBERTIndex(work).verify()  # every flip was undone
    return caught


def test_every_flipped_byte_is_caught(tmp_path, pq_index, scalar_index, model):
    """For every file, flips at its first bytes, its header, middle and end: verify() names the file; opening
    names it for the files checked at open; search names it or returns results for the per-vector data."""
    caught = _sweep(pq_index, tmp_path / "pq", model)
    assert caught["open"] > 200 and caught["search"] > 5 and caught["search_missed"] > 0, caught
    caught = _sweep(scalar_index, tmp_path / "scalar", model)
    assert caught["open"] > 50, caught


def test_truncated_header_and_swapped_files_name_the_file(tmp_path, pq_index):
    work = tmp_path / "w"
    shutil.copytree(pq_index.path, work)
    shutil.copy(work / "docnos.0.fwd.npy", work / "docnos.1.fwd.npy")  # a file of another segment
    with pytest.raises(IndexCorruptError, match="'docnos.1.fwd.npy'.*(fails its checksum|bytes)"):
        len(ColBERTIndex(work))
    shutil.rmtree(work)
    shutil.copytree(pq_index.path, work)
    (work / "ivf.0.docs.npy").write_bytes((work / "ivf.0.docs.npy").read_bytes()[:20])
    with pytest.raises(IndexCorruptError, match="'ivf.0.docs.npy'.*truncated"):
        len(ColBERTIndex(work))


def test_unreadable_token_stats_name_the_file_for_prf_and_pruning(tmp_path, model):
    """PRF and query pruning read token_stats.npz through the same path as index.token_stats(): a damaged file is an
    IndexCorruptError naming it (a BadZipFile or numpy error before), whether or not its checksum was recorded."""
    idx = _build(tmp_path / "s.lateint", model, store_token_ids=True)
    first = idx.retriever(model, num_results=5)(QUERIES)
    stats = idx.path / "token_stats.npz"
    good = stats.read_bytes()
    for damaged, problem in ((good[: len(good) // 2], r"has \d+ bytes, \d+ expected \(truncated\)"),
                             (good[:100] + bytes(len(good) - 100), r"cannot be read \(BadZipFile.*fails its checksum")):
        stats.write_bytes(damaged)
        for use in (lambda i: i.token_stats(), lambda i: i.prf(model, fb_docs=2)(first),
                    lambda i: i.retriever(model, query_pruning=2)(QUERIES)):
            with pytest.raises(IndexCorruptError, match=f"'token_stats.npz' {problem}"):
                use(ColBERTIndex(idx.path, model))
    stats.write_bytes(good)
    assert len(ColBERTIndex(idx.path, model).prf(model, fb_docs=2)(first))


def test_prf_names_feedback_documents_it_does_not_hold(pq_index, model):
    """Feedback documents come from the input ranking: a docno this index does not hold (another index's ranking,
    or deleted since) gets advice that fits PRF, not the scorers' on_unknown='drop'."""
    first = pq_index.retriever(model, num_results=5)(QUERIES)
    first.loc[first.index[0], "docno"] = "elsewhere"
    for rerank in (False, True):
        with pytest.raises(KeyError, match=r"'elsewhere'.*ColBERT-PRF reads the feedback documents") as e:
            pq_index.prf(model, fb_docs=3, rerank=rerank)(first)
        assert "on_unknown" not in str(e.value)
