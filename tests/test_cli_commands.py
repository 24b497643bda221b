"""``lateint index``, ``lateint search`` and ``lateint experiment``: each has --help, does what the library does, and
refuses bad input (missing or wrong kind of path, malformed JSONL, a damaged index) with one line naming the fix."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pandas as pd
import pyterrier as pt
import pytest
from cli_helpers import cli_error

from pyterrier_lateint import ColBERTIndex, cli
from pyterrier_lateint.data import load_collection


@pytest.mark.parametrize("command", ["index", "search", "experiment", "train", "cleanup"])
def test_every_command_has_help(command):
    proc = subprocess.run([sys.executable, "-m", "pyterrier_lateint.cli", command, "--help"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and f"usage: lateint {command}" in proc.stdout, proc.stderr[-2000:]


@pytest.fixture(scope="module")
def jsonl_index(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    docs = list(load_collection("vaswani").get_corpus_iter())[:300]
    path = folder / "docs.jsonl"
    path.write_text("\n".join(json.dumps({"_id": d["docno"], "title": "", "text": d["text"]}) for d in docs))
    cli.main(["index", str(path), "--out", str(folder / "v.lateint")])
    return folder / "v.lateint", docs


def test_index_then_search(jsonl_index, default_model, capsys):
    path, docs = jsonl_index
    index = ColBERTIndex(path)
    assert len(index) == 300 and index.docnos()[:2] == [docs[0]["docno"], docs[1]["docno"]]
    capsys.readouterr()
    cli.main(["search", str(path), "magnetic field of the earth", "-k", "5", "--mode", "exhaustive"])
    out = capsys.readouterr().out
    expected = index.retriever(default_model, num_results=5, mode="exhaustive")(
        pd.DataFrame({"qid": ["1"], "query": ["magnetic field of the earth"]}))
    rows = [line.split("|") for line in out.splitlines() if line.startswith("|") and "magnetic" in line]
    assert [r[4].strip() for r in rows] == expected.docno.tolist()
    assert [float(r[5]) for r in rows] == pytest.approx(expected.score.tolist(), abs=1e-4)


def test_index_missing_file_says_it_does_not_exist(tmp_path, capsys):
    message = cli_error(capsys, "index", tmp_path / "missing.jsonl", "--out", tmp_path / "m.lateint")
    assert message.startswith(f"{tmp_path / 'missing.jsonl'} does not exist")
    for accepted in (".jsonl file of {\"docno\", \"text\"}", "TREC layout", "BEIR layout", "irds:NAME"):
        assert accepted in message
    assert not (tmp_path / "m.lateint").exists()


def test_index_latin1_jsonl_names_file_line_and_iconv(tmp_path, capsys):
    path = tmp_path / "latin.jsonl"
    path.write_bytes('{"docno": "1", "text": "fine"}\n{"docno": "2", "text": "café"}\n'.encode("latin-1"))
    message = cli_error(capsys, "index", path, "--out", tmp_path / "l.lateint")
    assert message.startswith(f"{path}:2: not UTF-8 text (byte 0xe9")
    assert f"iconv -f latin1 -t utf-8 {path} > {tmp_path / 'latin.utf8.jsonl'}" in message


@pytest.mark.parametrize("lines,expected", [
    (['{"docno": "1", "text": "a"}', '{"docno": "2", "text": "b"'], ":2: not valid JSON (Expecting ',' delimiter"),
    (['["docno", "text"]'], ":1: a JSON list, not an object"),
    (['{"docno": "1", "text": "a"}', '', '{"docno": "3"}'], ":3: missing field 'text' (the line has ['docno'])"),
    (['{"title": "t", "text": "a"}'], ":1: missing field 'docno' (the line has ['text', 'title'])"),
    (['{}'], ":1: missing field 'docno' and 'text' (the line has no fields)"),
    (['{"docno": "1", "text": 5}'], ":1: field 'text' is a JSON number, not a string"),
])
def test_index_malformed_jsonl_names_line_and_field(tmp_path, capsys, lines, expected):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    message = cli_error(capsys, "index", path, "--out", tmp_path / "b.lateint")
    assert message.startswith(f"{path}{expected}"), message
    assert not (tmp_path / "b.lateint").exists()


def test_index_refuses_empty_jsonl_and_wrong_kind_of_source(tmp_path, capsys):
    (tmp_path / "empty.jsonl").write_text("\n")
    assert cli_error(capsys, "index", tmp_path / "empty.jsonl", "--out", tmp_path / "e") == \
        f"{tmp_path / 'empty.jsonl'} holds no documents; write one {{\"docno\", \"text\"}} JSON object per line"
    (tmp_path / "docs.json").write_text('{"docno": "1", "text": "a"}\n')
    message = cli_error(capsys, "index", tmp_path / "docs.json", "--out", tmp_path / "e")
    assert message.startswith(f"{tmp_path / 'docs.json'} is a file but not a .jsonl file; `lateint index` takes a "
                              f".jsonl file") and message.endswith("name it .jsonl")
    (tmp_path / "folder").mkdir()
    message = cli_error(capsys, "index", tmp_path / "folder", "--out", tmp_path / "e")
    assert "holds neither doc-text.trec nor corpus.jsonl" in message and "TREC layout" in message


def test_index_refuses_wrong_out(jsonl_index, tmp_path, capsys):
    path, _ = jsonl_index
    docs = tmp_path / "docs.jsonl"
    docs.write_text('{"docno": "1", "text": "fine"}\n')
    (tmp_path / "afile").write_text("keep me")
    assert cli_error(capsys, "index", docs, "--out", tmp_path / "afile", "--overwrite") == \
        f"--out {tmp_path / 'afile'} is a file, not an index folder; choose a folder path (it is created)"
    assert cli_error(capsys, "index", docs, "--out", tmp_path / "afile" / "x") == \
        f"--out {tmp_path / 'afile' / 'x'}: {tmp_path / 'afile'} is a file, not a folder; choose another path"
    assert cli_error(capsys, "index", docs, "--out", path) == \
        f"an index already exists at {path}; add --overwrite to replace it, or choose another --out"
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    assert cli_error(capsys, "index", docs, "--out", other, "--overwrite") == \
        f"--out {other} is a folder that holds other things, not a lateint index; choose a new or empty folder " \
        f"(--overwrite only replaces an index)"
    assert (tmp_path / "afile").read_text() == "keep me" and (other / "notes.txt").read_text() == "keep me"
    assert len(ColBERTIndex(path)) == 300


def test_search_index_path_errors(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    assert cli_error(capsys, "search", tmp_path / "afile", "q") == \
        f"{tmp_path / 'afile'} is a file, not an index folder; give the folder `lateint index ... --out FOLDER` wrote"
    assert cli_error(capsys, "search", tmp_path / "none", "q") == \
        f"index {tmp_path / 'none'} does not exist; build one with `lateint index COLLECTION_OR_JSONL --out " \
        f"{tmp_path / 'none'}`"
    message = cli_error(capsys, "search", tmp_path, "q")
    assert message.startswith(f"{tmp_path} is a folder but not a lateint index (no lateint.json in it)")
    assert "Delete" not in message


def test_search_damaged_index_names_the_cli_fix(jsonl_index, tmp_path, capsys):
    path, _ = jsonl_index
    copy = tmp_path / "copy.lateint"
    shutil.copytree(path, copy)
    with open(copy / "codes.bin", "r+b") as f:
        f.truncate(10)
    message = cli_error(capsys, "search", copy, "q")
    assert message.startswith(f"index {str(copy)!r}: file 'codes.bin' has 10 bytes") and "(truncated)" in message
    assert "`lateint index COLLECTION_OR_JSONL --out INDEX --overwrite`" in message and "indexer(" not in message


@pytest.mark.parametrize("argv,expected", [
    (["search", "x.lateint", "q", "-k", "0"], "argument -k/--num-results: must be at least 1, got 0"),
    (["search", "x.lateint", "q", "-k", "ten"], "argument -k/--num-results: expected a positive whole number, got "
                                                "'ten'"),
    (["experiment", "med", "--max-queries", "-1"], "argument --max-queries: must be at least 1, got -1"),
    (["experiment", "med", "--rerank-depth", "0"], "argument --rerank-depth: must be at least 1, got 0"),
])
def test_counts_must_be_positive(capsys, argv, expected):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    assert f"lateint {argv[0]}: error: {expected}" in capsys.readouterr().err


def test_experiment_refuses_bad_output_paths_before_running(tmp_path, capsys, monkeypatch):
    import pyterrier_lateint.experiments.runner as runner
    monkeypatch.setattr(runner, "run_experiment", lambda settings: pytest.fail("the experiment ran"))
    assert cli_error(capsys, "experiment", "med", "--results", tmp_path) == \
        f"--results {tmp_path} is a folder; give a file name to write"
    (tmp_path / "afile").write_text("x")
    assert cli_error(capsys, "experiment", "med", "--save-dir", tmp_path / "afile") == \
        f"--save-dir {tmp_path / 'afile'} is a file, not a folder; choose a folder for runs and tables"
    assert cli_error(capsys, "experiment", "med", "--results", tmp_path / "afile" / "t.md").startswith(
        f"--results {tmp_path / 'afile' / 't.md'}: {tmp_path / 'afile'} is a file, not a folder")


def test_experiment_command(tmp_path, capsys):
    """The table's BM25 row equals pt.Experiment on the same queries; the text scorer row re-ranks BM25's top 20."""
    results = tmp_path / "table.md"
    argv = ["experiment", "med", "--systems", "bm25", "text", "--max-queries", "6", "--rerank-depth", "20",
            "--save-dir", str(tmp_path / "runs"), "--results", str(results)]
    cli.main(argv)
    text = results.read_text()
    assert "med (test): 6 queries" in text and "BM25 top20 then text scorer" in text
    table = pd.read_csv(next((tmp_path / "runs").rglob("experiment.csv")))
    from pyterrier_lateint.experiments import pisa_bm25
    c = load_collection("med")
    topics = c.get_topics().head(6)
    ref = pt.Experiment([pisa_bm25(c)], topics, c.get_qrels(), eval_metrics=["map", "ndcg_cut_10"])
    assert table.loc[0, "AP"] == pytest.approx(ref["map"][0], abs=1e-4)
    assert table.loc[0, "nDCG@10"] == pytest.approx(ref["ndcg_cut_10"][0], abs=1e-4)
    # a second run reuses the saved runs and reports the response times measured the first time
    cli.main(argv)
    meta = json.loads(next((tmp_path / "runs").rglob("meta.json")).read_text())
    assert len(meta["reused"]) == 2
    again = pd.read_csv(next((tmp_path / "runs").rglob("experiment.csv")))
    pd.testing.assert_frame_equal(table, again)


def test_experiment_unknown_collection_names_the_cli_spelling(tmp_path, capsys):
    message = cli_error(capsys, "experiment", "no-such-collection", "--save-dir", tmp_path)
    assert message.startswith("collection 'no-such-collection' not found") and "LATEINT_DATA" in message
    assert "Online, irds:NAME loads it" in message and "get_dataset(" not in message
