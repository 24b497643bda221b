"""The collection loaders (TREC layout: Vaswani, CACM, MED; BEIR layout: SciFact), checked against the files
themselves, read here with a parser of our own."""
from __future__ import annotations

import json
import re

import pandas as pd
import pyterrier as pt
import pytest

from pyterrier_lateint.data import Collection, find_collection, get_dataset, load_collection

# counts checked against the files (grep -c '<DOCNO>', '<num>', qrels lines; wc -l of the BEIR files)
TREC_COUNTS = {"vaswani": (11429, 93, 2083), "cacm": (3204, 64, 796), "med": (1033, 30, 696)}


@pytest.fixture(scope="module")
def collections():
    return {name: load_collection(name) for name in ("vaswani", "cacm", "med", "scifact")}


def own_trec_docs(path) -> dict[str, str]:
    """A line-based reader of doc-text.trec: every line between ``<DOCNO>..</DOCNO>`` and ``</DOC>``."""
    docs, docno, lines = {}, None, []
    for line in open(path, encoding="utf-8"):
        s = line.strip()
        m = re.fullmatch(r"<DOCNO>\s*(.*?)\s*</DOCNO>(.*)", s)
        if m:
            docno, lines = m.group(1), [m.group(2)]
        elif s == "</DOC>":
            docs[docno] = " ".join(" ".join(lines).split())
            docno = None
        elif docno is not None:
            lines.append(s)
    return docs


@pytest.mark.parametrize("name", sorted(TREC_COUNTS))
def test_trec_counts(collections, name):
    c = collections[name]
    n_docs, n_queries, n_qrels = TREC_COUNTS[name]
    assert c.layout == "trec"
    docs = list(c.get_corpus_iter())
    assert len(docs) == n_docs
    assert len({d["docno"] for d in docs}) == n_docs
    assert all(d["text"].strip() for d in docs)
    topics = c.get_topics()
    assert len(topics) == n_queries and topics["qid"].is_unique
    qrels = c.get_qrels()
    assert len(qrels) == n_qrels
    assert list(qrels.columns) == ["qid", "docno", "label"]
    assert set(qrels["docno"]) <= {d["docno"] for d in docs}
    assert set(qrels["qid"]) <= set(topics["qid"])
    assert pd.api.types.is_integer_dtype(qrels["label"])
    assert c.splits() == ["test"]


def test_scifact_counts(collections):
    c = collections["scifact"]
    assert c.layout == "beir"
    assert sum(1 for _ in c.get_corpus_iter()) == 5183
    assert c.splits() == ["test", "train"]
    test_topics, test_qrels = c.get_topics("test"), c.get_qrels("test")
    assert (len(test_topics), len(test_qrels)) == (300, 339)
    assert set(test_topics["qid"]) == set(test_qrels["qid"])
    train_topics, train_qrels = c.get_topics("train"), c.get_qrels("train")
    assert (len(train_topics), len(train_qrels)) == (809, 919)
    assert not set(test_topics["qid"]) & set(train_topics["qid"])
    assert list(test_qrels.columns) == ["qid", "docno", "label"]
    with pytest.raises(FileNotFoundError, match="dev"):
        c.get_qrels("dev")


def test_scifact_texts_are_title_and_text(collections):
    c = collections["scifact"]
    with open(c.path / "corpus.jsonl", encoding="utf-8") as f:
        first = json.loads(f.readline())
    doc = next(iter(c.get_corpus_iter()))
    assert doc["docno"] == str(first["_id"])
    assert doc["text"] == " ".join(f"{first['title']} {first['text']}".split())
    queries = {}
    with open(c.path / "queries.jsonl", encoding="utf-8") as f:
        for line in f:
            q = json.loads(line)
            queries[str(q["_id"])] = q["text"]
    topics = c.get_topics("test")
    for row in topics.head(20).itertuples():
        assert row.query == " ".join(queries[row.qid].split())


@pytest.mark.parametrize("name", ["cacm", "med", "vaswani"])
def test_trec_documents_read_whole(collections, name):
    """Every document equals what a line-based reader finds, unescaped '<', '>' and '&' included."""
    c = collections[name]
    ours = own_trec_docs(c.path / "doc-text.trec")
    theirs = {d["docno"]: d["text"] for d in c.get_corpus_iter()}
    assert theirs == ours


@pytest.mark.parametrize("name,docno,inside,end", [
    ("cacm", "717", "into m or fewer sets (1 <= m <= n), and (3) all", "into exactly m sets (1 <= m <= n)."),
    ("cacm", "1430", "of 10^x, (0<=x<1) for converting from base 2", "in any useful precision."),
    ("med", "310", "a regurgitant fraction of <25%, moderate", "quantifying aortic regurgitation in man."),
    ("med", "588", "hiroshige & itoh (1960).", "vasopressin acts as a gh releasing factor."),
])
def test_unescaped_markup_characters(collections, name, docno, inside, end):
    text = collections[name].texts()[docno]
    assert inside in text
    assert text.endswith(end)


def test_topics(collections):
    for name, c in collections.items():
        for split in c.splits():
            topics = c.get_topics(split)
            assert list(topics.columns) == ["qid", "query"], (name, split)
            assert "metadata" not in topics.columns
            assert topics["query"].str.strip().str.len().gt(0).all()
            assert not topics["query"].str.contains("\n").any()
    vaswani = collections["vaswani"].get_topics()
    assert vaswani.iloc[0].tolist() == ["1", "MEASUREMENT OF DIELECTRIC CONSTANT OF LIQUIDS BY THE USE OF MICROWAVE "
                                              "TECHNIQUES"]
    cacm = collections["cacm"].get_topics().set_index("qid")["query"]
    assert cacm["2"] == "I am interested in articles written either by Prieve or Udo Pooch"


def test_get_text(collections):
    c = collections["cacm"]
    res = pd.DataFrame({"qid": ["1", "1", "2"], "docno": ["717", "1430", "717"], "score": [3.0, 2.0, 1.0]})
    out = pt.text.get_text(c, "text")(res)
    assert out["docno"].tolist() == ["717", "1430", "717"]
    assert out["text"].iloc[0].startswith("Partitioning Algorithms for Finite Sets")
    assert out["text"].iloc[1].startswith("Multiple Precision Floating-Point Conversion")
    assert out["text"].iloc[2] == out["text"].iloc[0]
    assert out["score"].tolist() == [3.0, 2.0, 1.0]
    with pytest.raises(KeyError, match="no-such-doc"):
        pt.text.get_text(c, "text")(pd.DataFrame({"qid": ["1"], "docno": ["no-such-doc"]}))
    with pytest.raises(ValueError):
        c.text_loader(["title"])


def test_lookup_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_collection("no-such-collection")
    with pytest.raises(FileNotFoundError):
        Collection(tmp_path)
    assert find_collection("vaswani") is not None
    assert isinstance(get_dataset("vaswani"), Collection)


def test_vaswani_bm25_reference(collections):
    """The published reference (shared/data/vaswani/README.md): PISA BM25 MAP 0.3053, nDCG@10 0.467."""
    from pyterrier_lateint.experiments import pisa_bm25
    c = collections["vaswani"]
    table = pt.Experiment([pisa_bm25(c)], c.get_topics(), c.get_qrels(), eval_metrics=["map", "ndcg_cut_10"])
    assert table["map"].iloc[0] == pytest.approx(0.3053, abs=5e-4)
    assert table["ndcg_cut_10"].iloc[0] == pytest.approx(0.4667, abs=5e-4)


@pytest.mark.parametrize("method", ["get_topics", "get_qrels"])
def test_trec_unknown_split_is_refused(collections, method):
    with pytest.raises((FileNotFoundError, ValueError, KeyError)):
        getattr(collections["vaswani"], method)("train")


def test_missing_collection_error_names_layout_irds_and_env(tmp_path, monkeypatch):
    monkeypatch.setenv("LATEINT_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError) as ex:
        load_collection("no-such-collection")
    msg = str(ex.value)
    for part in ("LATEINT_DATA", "doc-text.trec", "corpus.jsonl", 'get_dataset("irds:', str(tmp_path)):
        assert part in msg, part


def test_folder_beside_the_working_directory_is_reported(tmp_path, monkeypatch, caplog):
    """Collections found beside (not in) the working directory are used, and the folder is named in a warning."""
    import logging

    from pyterrier_lateint import data
    (tmp_path / "shared" / "data" / "tiny").mkdir(parents=True)
    (tmp_path / "work").mkdir()
    monkeypatch.delenv("LATEINT_DATA", raising=False)
    monkeypatch.chdir(tmp_path / "work")
    monkeypatch.setattr(data, "_REPORTED", set())
    with caplog.at_level(logging.INFO, logger="pyterrier_lateint.data"):
        assert find_collection("tiny") == tmp_path / "shared" / "data" / "tiny"
    assert any(r.levelno == logging.WARNING and str(tmp_path / "shared" / "data" / "tiny") in r.getMessage()
               for r in caplog.records)
    # nothing further up is searched
    deep = tmp_path / "work" / "a" / "b"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    assert find_collection("tiny") is None
    assert tmp_path / "shared" / "data" not in data.data_roots()


def test_fallback_to_ir_datasets_when_not_on_disk(tmp_path, monkeypatch, collections):
    """Without the collection on disk, get_dataset("vaswani") goes to ir_datasets (irds:vaswani); the download is
    stubbed by a dataset serving the local files, and the experiment runner works on it unchanged."""
    from pyterrier_lateint import data
    local = collections["vaswani"]
    asked = []

    class FakeIrds:
        def get_corpus_iter(self, verbose=False):
            return local.get_corpus_iter()

        def get_topics(self):
            return local.get_topics().assign(extra="x")

        def get_qrels(self):
            return local.get_qrels().assign(iteration="0")

        def text_loader(self, fields="*", verbose=False):
            return local.text_loader(fields)

    def fake_get_dataset(name):
        asked.append(name)
        return FakeIrds()

    monkeypatch.setattr(data, "find_collection", lambda name: None)
    monkeypatch.setattr(pt, "get_dataset", fake_get_dataset)
    ds = get_dataset("vaswani")
    assert asked == ["irds:vaswani"] and ds.name == "vaswani"
    assert list(ds.get_topics().columns) == ["qid", "query"] and len(ds.get_topics()) == 93
    assert list(ds.get_qrels().columns) == ["qid", "docno", "label"]
    with pytest.raises(FileNotFoundError, match="split"):
        ds.get_topics("train")
    from pyterrier_lateint.experiments.runner import ExperimentSettings, run_experiment
    monkeypatch.setenv("LATEINT_CACHE", str(tmp_path / "cache"))
    result = run_experiment(ExperimentSettings(collection="vaswani", systems=("bm25",), max_queries=10,
                                               save_dir=str(tmp_path / "runs")))
    from pyterrier_lateint.experiments import pisa_bm25
    ref = pt.Experiment([pisa_bm25(local)], local.get_topics().head(10), local.get_qrels(), eval_metrics=["map"])
    assert result.table["AP"][0] == pytest.approx(ref["map"][0], abs=1e-4)
    with pytest.raises(FileNotFoundError, match="irds:NAME"):
        get_dataset("cacm-nowhere")


def test_irds_topics_with_several_query_fields_take_the_text(tmp_path):
    """BEIR queries carry ``text`` and metadata (``url``): PyTerrier's get_topics() then makes no ``query`` column,
    so IrdsCollection picks the text field (or the ``variant=`` asked for) instead of failing with a KeyError."""
    import json

    import ir_datasets
    from ir_datasets.datasets import beir
    from ir_datasets.datasets.base import Dataset
    from ir_datasets.util import LocalDownload

    from pyterrier_lateint.data import IrdsCollection
    (tmp_path / "corpus.jsonl").write_text(json.dumps({"_id": "d1", "title": "t", "text": "x",
                                                       "metadata": {"url": "u"}}) + "\n")
    (tmp_path / "queries.jsonl").write_text("".join(
        json.dumps({"_id": q, "text": text, "metadata": {"url": f"https://example.org/{q}"}}) + "\n"
        for q, text in (("q1", "statins and cancer"), ("q2", "vitamin d"))))
    name = "lateint-test/beir-two-query-fields"
    docs = beir.BeirDocs("nfcorpus", LocalDownload(tmp_path / "corpus.jsonl"), beir.BeirTitleUrlDoc)
    queries = beir.BeirQueries("nfcorpus", LocalDownload(tmp_path / "queries.jsonl"), beir.BeirUrlQuery)
    ir_datasets.registry._registered.pop(name, None)
    ir_datasets.registry.register(name, Dataset(docs, queries))
    try:
        coll = IrdsCollection(name)
        topics = coll.get_topics()
        assert list(topics.columns) == ["qid", "query"]
        assert topics.set_index("qid")["query"].to_dict() == {"q1": "statins and cancer", "q2": "vitamin d"}
        assert coll.get_topics(variant="url")["query"].tolist() == ["https://example.org/q1", "https://example.org/q2"]
        with pytest.raises(ValueError, match="no query field 'title'.*text, url"):
            coll.get_topics(variant="title")
    finally:
        ir_datasets.registry._registered.pop(name, None)
