"""ColBERTIndex as PyTerrier users know PisaIndex and FlexIndex: a pt.Indexer (``index.index(docs)``), a pt.Artifact
shared as a package (``build_package`` -> ``pt.Artifact.from_url``), inspection (``docnos()[:3]``), ``vec_loader``,
``get_corpus_iter``; search backends chosen once; stale temporary builds removed; models checked by protocol."""
from __future__ import annotations

import functools
import http.server
import os
import subprocess
import sys
import threading

import numpy as np
import pandas as pd
import pyterrier as pt
import pytest

from pyterrier_lateint import ColBERTIndex
from pyterrier_lateint.index import NumbaBackend, TorchBackend, select_backend
from pyterrier_lateint.index.folders import remove_stale_builds, stale_builds
from test_index import FakeModel, make_corpus, make_queries


@pytest.fixture(scope="module")
def model():
    return FakeModel()


@pytest.fixture(scope="module")
def corpus():
    return make_corpus(120, empty=(5,))


@pytest.fixture(scope="module")
def built(tmp_path_factory, model, corpus):
    index = ColBERTIndex(tmp_path_factory.mktemp("art") / "a.lateint", model)
    index.index(corpus.to_dict("records"))  # pt.Indexer: the index's own model encodes `text`
    return index


def test_index_is_an_indexer_and_uses_its_model(built, model, corpus):
    assert isinstance(built, pt.Indexer) and isinstance(built, pt.Artifact)
    assert built.built() and len(built) == len(corpus)
    assert built.metadata()["model"] == model.signature()
    assert built.index_inputs() == [["docno", "text"], ["docno", "doc_embs"]]
    # factories default to the constructor's model: the retriever encodes `query` without being given one
    q = make_queries(3)
    pd.testing.assert_frame_equal(built.retriever()(q), built.retriever(model)(q))


def test_index_from_vectors_without_model(tmp_path, model, corpus):
    docs = [{"docno": d["docno"], "doc_embs": v} for d, v in
            zip(corpus.to_dict("records"), model.encode_docs(corpus.text.tolist()))]
    index = ColBERTIndex(tmp_path / "v.lateint")
    index.index(docs)
    assert len(index) == len(corpus) and index.metadata()["model"] is None
    with pytest.raises(ValueError, match="no model was given"):
        ColBERTIndex(tmp_path / "w.lateint").index(corpus.to_dict("records"))


def test_docnos_behave_like_a_list(built, corpus):
    docnos = built.docnos()
    expected = corpus.docno.tolist()
    assert len(docnos) == len(expected)
    assert docnos[:3] == expected[:3] and docnos[-2:] == expected[-2:] and docnos[10:20:3] == expected[10:20:3]
    assert docnos[0] == expected[0] and docnos[-1] == expected[-1]
    assert docnos[np.array([4, 2])] == [expected[4], expected[2]]
    assert list(docnos) == expected
    assert expected[7] in docnos and "no-such-doc" not in docnos
    with pytest.raises(IndexError):
        docnos[len(expected)]


def test_vec_loader_and_corpus_iter_give_stored_vectors(built, corpus):
    frame = pd.DataFrame({"qid": ["1", "1"], "docno": [corpus.docno[3], corpus.docno[5]]})
    loaded = built.vec_loader()(frame)
    np.testing.assert_array_equal(loaded.doc_embs[0], built.vectors(corpus.docno[3]))
    assert loaded.doc_embs[1].shape == (0, built.metadata()["dim"])  # the empty document
    with pytest.raises(KeyError, match="nope"):
        built.vec_loader()(pd.DataFrame({"docno": ["nope"]}))
    assert len(built.vec_loader(on_unknown="drop")(pd.DataFrame({"docno": ["nope", corpus.docno[0]]}))) == 1
    docs = list(built.get_corpus_iter())
    assert [d["docno"] for d in docs] == corpus.docno.tolist()
    for d in docs[:10]:
        np.testing.assert_array_equal(d["doc_embs"], built.vectors(d["docno"]))


def test_reindex_from_corpus_iter_keeps_vectors(tmp_path, built, model):
    """get_corpus_iter feeds an indexer directly (uncompressed nbits=16 keeps the decompressed vectors)."""
    copy = ColBERTIndex(tmp_path / "copy.lateint")
    copy.indexer(model, nbits=16, verbose=False).index(built.get_corpus_iter())
    d = built.docnos()[7]
    np.testing.assert_allclose(copy.vectors(d), built.vectors(d), atol=2e-3)


def test_build_package_then_from_url(tmp_path, built, monkeypatch):
    """The package build_package writes loads back through pt.Artifact.from_url (served on loopback, as from_url
    fetches http(s) URLs; to_hf/from_hf use the same package)."""
    (tmp_path / "pkg").mkdir()
    package = built.build_package(str(tmp_path / "pkg" / "a.lateint.tar.lz4"), verbose=False)
    monkeypatch.setenv("PYTERRIER_HOME", str(tmp_path / "pthome"))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "pkg"))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        loaded = pt.Artifact.from_url(f"http://127.0.0.1:{server.server_address[1]}/{os.path.basename(package)}")
    finally:
        server.shutdown()
    assert isinstance(loaded, ColBERTIndex) and len(loaded) == len(built)
    q = make_queries(4)
    a = built.retriever(FakeModel(), num_results=5)(q)
    b = loaded.retriever(FakeModel(), num_results=5)(q)
    pd.testing.assert_frame_equal(a, b)


def test_backend_chosen_once(built, model):
    assert isinstance(select_backend(None, "cpu"), NumbaBackend)
    assert isinstance(select_backend("torch", "cpu"), TorchBackend) and select_backend("torch", "cpu").device == "cpu"
    import torch
    if torch.cuda.device_count() > 1:
        assert isinstance(select_backend(device="cuda:1"), TorchBackend)
    else:  # a device this machine lacks fails when the backend is chosen, not at the first search
        with pytest.raises(ValueError, match="cuda:1"):
            select_backend(device="cuda:1")
    with pytest.raises(ValueError, match="backend='numba' runs on the CPU"):
        select_backend("numba", "cuda")
    with pytest.raises(ValueError, match="backend must be one of"):
        select_backend("torch-cpu")
    r = built.retriever(model, backend="torch", device="cpu")
    assert r.backend.name == "torch" and r != built.retriever(model, backend="numba")
    assert (r % 5).compile().backend.name == "torch"


def test_models_checked_by_protocol(tmp_path, built):
    class NotAModel:
        def signature(self):
            return {}
    with pytest.raises(TypeError, match="lacks .*encode_queries"):
        built.retriever(NotAModel())
    with pytest.raises(TypeError, match="lacks"):
        ColBERTIndex(tmp_path / "x", NotAModel())


def test_killed_build_leaves_folder_that_next_build_removes(tmp_path, model, corpus):
    """A build killed mid-way (SIGKILL: no cleanup runs) leaves .NAME.tmp-PID-*; the next build removes it."""
    path = tmp_path / "k.lateint"
    script = (
        "import sys, os, signal\n"
        f"sys.path.insert(0, {os.path.dirname(__file__)!r})\n"
        "from test_index import FakeModel, make_corpus\n"
        "from pyterrier_lateint import ColBERTIndex\n"
        "def docs():\n"
        "    for i, d in enumerate(make_corpus(120).to_dict('records')):\n"
        "        if i == 100: os.kill(os.getpid(), signal.SIGKILL)\n"
        "        yield d\n"
        f"ColBERTIndex({str(path)!r}, FakeModel()).indexer(batch_size=16, verbose=False).index(docs())\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr[-2000:]
    left = stale_builds(path)
    assert len(left) == 1 and left[0].name.startswith(".k.lateint.tmp-") and not path.exists()
    # a folder of a build still running (this process) is never taken for stale
    live = tmp_path / f".k.lateint.tmp-{os.getpid()}-cafe0000"
    live.mkdir()
    ColBERTIndex(path, model).indexer(verbose=False).index(corpus.to_dict("records"))
    assert stale_builds(path) == [] and not left[0].exists() and live.exists()
    assert remove_stale_builds(path) == []
