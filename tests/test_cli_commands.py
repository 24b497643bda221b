"""``lateint index``, ``lateint search`` and ``lateint experiment``: each has --help, and does what the library does."""
from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pyterrier as pt
import pytest

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


def test_index_refuses_bad_jsonl_and_existing_index(jsonl_index, tmp_path):
    path, _ = jsonl_index
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"docno": "1", "text": "fine"}\n{"docno": "2"}\n')
    with pytest.raises(ValueError, match="bad.jsonl:2 needs 'docno'"):
        cli.main(["index", str(bad), "--out", str(tmp_path / "b.lateint")])
    with pytest.raises(FileExistsError, match="overwrite"):
        cli.main(["index", str(bad), "--out", str(path)])


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
