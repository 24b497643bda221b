"""doc2query: a tiny random T5 (word-level tokenizer) is trained until it reproduces memorised (passage, query)
pairs, then generation (greedy, beam, seeded sampling), chunking, the cache (with interrupted and resumed expansion),
precomputed expansions, Doc2Query-- scoring and filtering, the BM25 / late-interaction indexing pipelines, generator
training (exact resume, BLEU/ROUGE validation), and the ``doc2query-train`` command are checked on it."""
from __future__ import annotations

import argparse
import gzip
import json
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pyterrier as pt
import pytest
import torch

from training_fixtures import WORDS, build_tiny_checkpoint, interrupt_after_checkpoint, one_thread  # noqa: F401

from pyterrier_lateint.doc2query import (Doc2Query, Doc2QueryStore, GeneratorTrainer, GeneratorTrainingConfig,
                                         QueryFilter, QueryScorer, bleu_rouge_validation, generation_metrics,
                                         load_expansions, pairs_from_qrels, read_pairs_tsv, split_pairs,
                                         warm_start_encoder_decoder)
from pyterrier_lateint.doc2query import cli as d2q_cli

pytestmark = pytest.mark.usefixtures("one_thread")

# passages of 8 words from the first 30 words; each query 2 words from the last 20, never in any passage
_rng = random.Random(0)
PASSAGE_WORDS, QUERY_WORDS = list(WORDS[:30]), list(WORDS[30:])
_qw = _rng.sample(QUERY_WORDS, 12)
PAIRS = [(" ".join(_rng.sample(PASSAGE_WORDS, 8)), f"{_qw[2 * i]} {_qw[2 * i + 1]}") for i in range(6)]
DOCS = pd.DataFrame({"docno": [f"d{i}" for i in range(6)], "text": [p for p, _ in PAIRS]})
QUERY_OF = {f"d{i}": q for i, (_, q) in enumerate(PAIRS)}
TINY_STEPS = 150


# ============================================================================================ fixtures
def word_tokenizer():
    """A word-level tokenizer over WORDS that ends every text with ``</s>`` (as T5's does)."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<pad>", "</s>", "<unk>"] + list(WORDS))}
    tk = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = Whitespace()
    tk.post_processor = TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def tiny_t5(seed: int = 0):
    from transformers import T5Config, T5ForConditionalGeneration
    config = T5Config(vocab_size=3 + len(WORDS), d_model=64, d_ff=128, d_kv=16, num_layers=2, num_decoder_layers=2,
                      num_heads=4, dropout_rate=0.0, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        return T5ForConditionalGeneration(config)
    finally:
        torch.random.set_rng_state(state)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    """An untrained tiny T5 folder (random: its samples are diverse)."""
    path = tmp_path_factory.mktemp("tiny-t5")
    tiny_t5().save_pretrained(str(path))
    word_tokenizer().save_pretrained(str(path))
    return path


def config(out, **changes) -> GeneratorTrainingConfig:
    base = dict(output_dir=str(out), max_steps=TINY_STEPS, batch_size=6, learning_rate=3e-3, warmup_ratio=0.1,
                save_every=0, log_every=10, shuffle_buffer=1)
    return GeneratorTrainingConfig(**{**base, **changes})


@pytest.fixture(scope="module")
def memorised(tmp_path_factory, one_thread):  # noqa: F811
    """The tiny T5 trained on PAIRS until greedy decoding reproduces every query; (folder of the final model,
    trainer)."""
    out = tmp_path_factory.mktemp("memorised")
    trainer = GeneratorTrainer(tiny_t5(), word_tokenizer(), config(out), validation=bleu_rouge_validation(PAIRS))
    trainer.train(PAIRS)
    return out / "final", trainer


def greedy(path, **kw) -> Doc2Query:
    return Doc2Query(str(path), decoding="greedy", num_samples=1, min_chars=0, **kw)


# ============================================================================================ generation
def test_memorised_queries_are_regenerated_exactly(memorised):
    final, trainer = memorised
    losses = [h["total"] for h in trainer.history if "total" in h]
    assert losses[-1] < 0.05 < losses[0]
    out = greedy(final, append=True)(DOCS)
    assert list(out.columns) == ["docno", "text", "querygen"]
    assert out["querygen"].tolist() == [q for _, q in PAIRS]
    assert out["text"].tolist() == [f"{p}\n{q}" for p, q in PAIRS]  # append=True: text gains the queries
    plain = greedy(final)(DOCS)  # append=False by default, as pyterrier_doc2query's Doc2Query
    assert plain["text"].tolist() == DOCS["text"].tolist() and plain["querygen"].tolist() == out["querygen"].tolist()
    # validation during training ran at the end: BLEU 100 and ROUGE 1 on the memorised pairs
    val = [h for h in trainer.history if "val/bleu" in h][-1]
    assert val["step"] == TINY_STEPS and val["val/bleu"] == pytest.approx(100.0) and val["val/rougeL"] == 1.0


def test_beam_search_returns_the_memorised_query_first(memorised):
    out = Doc2Query(str(memorised[0]), decoding="beam", num_samples=2, num_beams=3, min_chars=0)(DOCS)
    for querygen, (_, q) in zip(out["querygen"], PAIRS):
        lines = querygen.split("\n")
        assert len(lines) == 2 and lines[0] == q


def test_long_documents_are_split_into_chunks_whose_queries_are_joined(memorised):
    (a, qa), (b, qb), (c, qc) = PAIRS[:3]
    docs = pd.DataFrame({"docno": ["ab", "abc"], "text": [f"{a} {b}", f"{a} {b} {c}"]})
    d2q = greedy(memorised[0], max_input_tokens=9)  # 8 words + </s>: one passage per chunk
    assert d2q.chunks(f"{a} {b}") == [d2q.tokenizer(a)["input_ids"], d2q.tokenizer(b)["input_ids"]]
    assert d2q(docs)["querygen"].tolist() == [f"{qa}\n{qb}", f"{qa}\n{qb}\n{qc}"]
    capped = greedy(memorised[0], max_input_tokens=9, max_chunks=2)
    assert capped(docs)["querygen"].tolist() == [f"{qa}\n{qb}", f"{qa}\n{qb}"]  # beyond max_chunks: not expanded


def test_short_and_empty_documents_are_left_unexpanded(memorised):
    docs = pd.DataFrame({"docno": ["a", "b", "c"], "text": [PAIRS[0][0], "apple", "  "]})
    out = Doc2Query(str(memorised[0]), decoding="greedy", num_samples=1, min_chars=10, append=True)(docs)
    assert out["querygen"].tolist() == [PAIRS[0][1], "", ""]
    assert out["text"].tolist() == [f"{PAIRS[0][0]}\n{PAIRS[0][1]}", "apple", "  "]
    empty = greedy(memorised[0])(DOCS.iloc[:0])
    assert len(empty) == 0 and "querygen" in empty.columns


def test_sampling_is_seeded_per_document(tiny_dir):
    kw = dict(num_samples=4, top_k=0, max_new_tokens=6, min_chars=0)
    docs = pd.DataFrame({"docno": [f"x{i}" for i in range(5)],
                         "text": [" ".join(WORDS[i:i + 3 + 2 * i]) for i in range(5)]})
    a = Doc2Query(str(tiny_dir), batch_size=2, **kw)(docs)
    # another batch size and the reverse order: every document gets the same queries
    b = Doc2Query(str(tiny_dir), batch_size=5, **kw)(docs.iloc[::-1])
    assert dict(zip(a["docno"], a["querygen"])) == dict(zip(b["docno"], b["querygen"]))
    assert all(len(q.split("\n")) == 4 for q in a["querygen"])
    assert len(set(a["querygen"][0].split("\n"))) > 1  # samples of one document differ from each other
    c = Doc2Query(str(tiny_dir), seed=7, **kw)(docs)
    assert c["querygen"].tolist() != a["querygen"].tolist()
    # sampling leaves the global RNG alone
    torch.manual_seed(3)
    expected = torch.rand(1)
    torch.manual_seed(3)
    Doc2Query(str(tiny_dir), **kw)(docs.iloc[:1])
    assert torch.equal(torch.rand(1), expected)


def test_bad_input_is_named(memorised):
    d2q = greedy(memorised[0])
    with pytest.raises(pt.validate.InputValidationError, match="text"):
        d2q(pd.DataFrame({"docno": ["a"], "body": ["x"]}))
    with pytest.raises(TypeError, match="docno='b'.*fillna"):
        d2q(pd.DataFrame({"docno": ["a", "b"], "text": ["apple river house", None]}))
    with pytest.raises(ValueError, match="decoding='sample'"):
        Doc2Query(str(memorised[0]), decoding="greedy", num_samples=3)
    with pytest.raises(ValueError, match="num_beams"):
        Doc2Query(str(memorised[0]), decoding="beam", num_samples=5, num_beams=2)
    with pytest.raises(OSError, match="local-dir"):
        Doc2Query("no-such-org/no-such-model-here")


def test_configuration_equality(memorised):
    a, b = greedy(memorised[0]), greedy(memorised[0])
    assert a == b and hash(a) == hash(b)
    assert a != greedy(memorised[0], max_new_tokens=5)


# ============================================================================================ cache
SAMPLED = dict(num_samples=3, top_k=0, max_new_tokens=5, min_chars=0, block_size=2)
MANY = pd.DataFrame({"docno": [f"m{i}" for i in range(7)], "text": [" ".join(WORDS[i:i + 4]) for i in range(7)]})


def _queries_file(root: Path) -> Path:
    (store,) = [p for p in root.iterdir() if p.is_dir()]
    return store / "queries.jsonl"


def test_cache_serves_stored_expansions(tiny_dir, tmp_path, monkeypatch):
    first = Doc2Query(str(tiny_dir), cache=tmp_path, **SAMPLED)
    out = first(MANY)
    store = first.store
    assert len(store) == 7 and store.get(["m3"]) == {"m3": out["querygen"][3].split("\n")}
    assert store.meta()["settings"]["num_samples"] == 3 and len(store.meta()["settings"]["weights_sha1"]) == 40

    def never(self, texts):
        raise AssertionError("generated although cached")

    monkeypatch.setattr(Doc2Query, "generate", never)
    again = Doc2Query(str(tiny_dir), cache=tmp_path, **SAMPLED)(MANY)
    pd.testing.assert_frame_equal(again, out)
    # other settings: another store in the same cache folder, not a mix
    monkeypatch.undo()
    Doc2Query(str(tiny_dir), cache=tmp_path, **{**SAMPLED, "num_samples": 2})(MANY.iloc[:1])
    assert len([p for p in tmp_path.iterdir() if p.is_dir()]) == 2


def test_interrupted_expansion_resumes_to_the_same_cache(tiny_dir, tmp_path, monkeypatch):
    full = Doc2Query(str(tiny_dir), cache=tmp_path / "full", **SAMPLED)(MANY)
    original = Doc2Query.generate
    calls = []

    def interrupted(self, texts):
        calls.append(list(texts))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(self, texts)

    monkeypatch.setattr(Doc2Query, "generate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        Doc2Query(str(tiny_dir), cache=tmp_path / "resumed", **SAMPLED)(MANY)
    assert len(Doc2QueryStore(_queries_file(tmp_path / "resumed").parent)) == 4  # two blocks of 2 were saved
    calls.clear()
    resumed = Doc2Query(str(tiny_dir), cache=tmp_path / "resumed", **SAMPLED)(MANY)
    assert calls == [MANY["text"].tolist()[4:6], MANY["text"].tolist()[6:]]  # only what was missing
    pd.testing.assert_frame_equal(resumed, full)
    assert _queries_file(tmp_path / "resumed").read_bytes() == _queries_file(tmp_path / "full").read_bytes()


def test_torn_write_is_dropped_and_redone(tiny_dir, tmp_path, caplog):
    out = Doc2Query(str(tiny_dir), cache=tmp_path, **SAMPLED)(MANY.iloc[:3])
    path = _queries_file(tmp_path)
    complete = path.read_bytes()
    with open(path, "ab") as f:
        f.write(b'{"docno": "m3", "querygen": ["half a rec')
    caplog.set_level("WARNING")
    again = Doc2Query(str(tiny_dir), cache=tmp_path, **SAMPLED)(MANY.iloc[:4])
    assert "incomplete record" in caplog.text
    pd.testing.assert_frame_equal(again.iloc[:3], out)
    lines = path.read_bytes().splitlines()
    assert path.read_bytes().startswith(complete) and len(lines) == 4 and json.loads(lines[3])["docno"] == "m3"


def test_store_refuses_other_settings_and_damage(tmp_path):
    Doc2QueryStore(tmp_path / "s", {"num_samples": 3}).add({"a": ["q1"]})
    with pytest.raises(ValueError, match="num_samples: store has 3, generator has 5"):
        len(Doc2QueryStore(tmp_path / "s", {"num_samples": 5}))
    assert Doc2QueryStore(tmp_path / "s").get(["a", "zz"]) == {"a": ["q1"]}
    (tmp_path / "s" / "queries.jsonl").write_text('{"docno": "a", "querygen": []}\nnot json\n')
    with pytest.raises(ValueError, match="byte 31.*delete it"):
        len(Doc2QueryStore(tmp_path / "s"))


def test_cache_needs_docnos(tiny_dir, tmp_path):
    with pytest.raises(pt.validate.InputValidationError, match="docno"):
        Doc2Query(str(tiny_dir), cache=tmp_path, **SAMPLED)(pd.DataFrame({"text": ["apple river"]}))


# ============================================================================================ precomputed expansions
def test_precomputed_jsonl_and_tsv(tmp_path):
    jsonl = tmp_path / "d2q.jsonl.gz"
    with gzip.open(jsonl, "wt", encoding="utf-8") as f:
        f.write(json.dumps({"id": "d0", "predicted_queries": ["what is x", "x y\nz"]}) + "\n")
        f.write(json.dumps({"id": "d1", "predicted_queries": ["café ünïcode"]}) + "\n")
    load = load_expansions(jsonl, append=True)
    docs = pd.DataFrame({"docno": ["d1", "d0"], "text": ["one", "zero"]})
    out = load(docs)
    assert out["querygen"].tolist() == ["café ünïcode", "what is x\nx y z"]
    assert out["text"].tolist() == ["one\ncafé ünïcode", "zero\nwhat is x\nx y z"]
    assert load_expansions(jsonl, limit_k=1, append=False)(docs)["querygen"].tolist() == ["café ünïcode",
                                                                                          "what is x"]
    with pytest.raises(KeyError, match=r"\['d9'\].*on_missing='keep'"):
        load(pd.DataFrame({"docno": ["d9"], "text": ["nine"]}))
    kept = load_expansions(jsonl, on_missing="keep", append=True)(pd.DataFrame({"docno": ["d9"], "text": ["nine"]}))
    assert kept["text"].tolist() == ["nine"] and kept["querygen"].tolist() == [""]

    tsv = tmp_path / "d2q.tsv"
    tsv.write_text("d0\tfirst query\nd0\tsecond query\nd1\tthird\n", encoding="utf-8")
    assert load_expansions(tsv)(docs)["querygen"].tolist() == ["third", "first query\nsecond query"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"doc": "d0", "q": []}) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:1: needs a document id"):
        load_expansions(bad)


def test_line_aligned_published_files(tmp_path):
    files = []
    for k in range(2):
        files.append(tmp_path / f"predicted_queries_topk_sample00{k}.txt")
        files[-1].write_text("".join(f"query {k} of {d}\n" for d in ("a", "b", "c")), encoding="utf-8")
    store = Doc2QueryStore(tmp_path / "store").import_aligned(files, ["a", "b", "c"])
    assert store.get(["b"]) == {"b": ["query 0 of b", "query 1 of b"]}
    with pytest.raises(ValueError, match="aligned"):
        Doc2QueryStore(tmp_path / "s2").import_aligned(files, ["a", "b", "c", "d"])


# ============================================================================================ Doc2Query--
SCORED_TEXTS = {"doc one": ["q a", "q b", "q c"], "doc two": ["q d", "q e"]}
HAND_SCORES = {"q a": 0.0, "q b": 4.0, "q c": 2.0, "q d": 3.0, "q e": 1.0}


def hand_scorer():
    seen = []

    def score(row):
        seen.append(row["text"])
        return HAND_SCORES[row["query"]]

    return pt.apply.doc_score(score), seen


def generated_frame(append: bool) -> pd.DataFrame:
    rows = []
    for i, (text, qs) in enumerate(SCORED_TEXTS.items()):
        querygen = "\n".join(qs)
        rows.append({"docno": f"d{i}", "text": f"{text}\n{querygen}" if append else text, "querygen": querygen})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("append", [True, False])
def test_query_scorer_scores_each_query_against_its_own_text(append):
    scorer, seen = hand_scorer()
    out = QueryScorer(scorer)(generated_frame(append))
    assert [s.tolist() for s in out["querygen_score"]] == [[0.0, 4.0, 2.0], [3.0, 1.0]]
    assert all(s.dtype == np.float32 for s in out["querygen_score"])
    assert sorted(set(seen)) == ["doc one", "doc two"]  # never the text with the queries appended


def test_query_filter_with_hand_set_scores():
    scored = QueryScorer(hand_scorer()[0])(generated_frame(True))
    # keep=0.6 over the 5 scores 0..4: the 0.4 quantile is 1.6, so q b (4), q c (2), q d (3) stay
    filt = QueryFilter(keep=0.6)
    out = filt(scored)
    assert filt.threshold == pytest.approx(1.6)
    assert out["text"].tolist() == ["doc one\nq b\nq c", "doc two\nq d"]
    assert list(out.columns) == ["docno", "text"]
    kept = QueryFilter(keep=0.6, append=False)(scored)
    assert kept["querygen"].tolist() == ["q b\nq c", "q d"] and kept["text"].tolist() == ["doc one", "doc two"]
    assert [s.tolist() for s in kept["querygen_score"]] == [[4.0, 2.0], [3.0]]
    # the first frame's threshold is kept for later frames (one threshold for the collection) ...
    later = pd.DataFrame({"docno": ["d9"], "text": ["doc nine"], "querygen": ["q x\nq y"],
                          "querygen_score": [np.array([1.7, 5.0], dtype=np.float32)]})
    assert filt(later)["text"].tolist() == ["doc nine\nq x\nq y"] and filt.threshold == pytest.approx(1.6)
    # ... where a fresh filter takes that frame's own 0.4 quantile (3.02) and keeps only q y
    assert QueryFilter(keep=0.6)(later)["text"].tolist() == ["doc nine\nq y"]
    assert QueryFilter(t=3.0)(scored)["text"].tolist() == ["doc one\nq b", "doc two\nq d"]
    fitted = QueryFilter(keep=0.2).fit(scored)  # the 0.8 quantile of 0..4: 3.2
    assert fitted.threshold == pytest.approx(3.2)
    assert fitted(scored)["text"].tolist() == ["doc one\nq b", "doc two"]
    fitted.reset()
    assert fitted.threshold == pytest.approx(3.2)  # a fitted threshold stays


def test_query_filter_errors():
    with pytest.raises(ValueError, match="exactly one"):
        QueryFilter()
    with pytest.raises(ValueError, match="exactly one"):
        QueryFilter(t=1.0, keep=0.5)
    with pytest.raises(ValueError, match="share"):
        QueryFilter(keep=1.5)
    frame = generated_frame(False).assign(querygen_score=[np.array([1.0, 2.0]), np.array([1.0, 2.0])])
    with pytest.raises(ValueError, match="docno='d0' has 3 queries but 2 scores"):
        QueryFilter(t=0.0)(frame)
    with pytest.raises(pt.validate.InputValidationError, match="querygen_score"):
        QueryFilter(t=0.0)(generated_frame(False))
    with pytest.raises(TypeError, match="'querygen' of docno='d1' is float.*one a line"):
        QueryScorer(hand_scorer()[0])(generated_frame(False).assign(querygen=["q a", np.nan]))
    assert QueryFilter(keep=0.5) == QueryFilter(keep=0.5) and hash(QueryFilter(t=1.0)) == hash(QueryFilter(t=1.0))


# ============================================================================================ pipelines
def test_bm25_over_expanded_text(memorised, tmp_path):
    from pyterrier_pisa import PisaIndex
    d2q = greedy(memorised[0], append=True)
    expanded, plain = PisaIndex(str(tmp_path / "expanded")), PisaIndex(str(tmp_path / "plain"))
    (d2q >> expanded.indexer()).index(DOCS.to_dict("records"))
    plain.indexer().index(DOCS.to_dict("records"))
    topics = pd.DataFrame({"qid": [str(i) for i in range(6)], "query": [q for _, q in PAIRS]})
    found = expanded.bm25(num_results=1)(topics)
    assert found.sort_values("qid")["docno"].tolist() == [f"d{i}" for i in range(6)]
    assert len(plain.bm25()(topics)) == 0  # the query words are in no document, only in their expansions


def test_late_interaction_index_over_expanded_text(memorised, default_model, tmp_path):
    from pyterrier_lateint import ColBERTIndex
    d2q = greedy(memorised[0], append=True)
    index = ColBERTIndex(tmp_path / "expanded.lateint")
    (d2q >> index.indexer(default_model, nbits=16, verbose=False)).index(DOCS.to_dict("records"))
    for i, (p, q) in enumerate(PAIRS):
        assert index.vectors(f"d{i}").shape[0] == default_model.encode_docs([f"{p}\n{q}"])[0].shape[0]
    topics = pd.DataFrame({"qid": ["0"], "query": [PAIRS[0][1]]})
    assert index.retriever(default_model, mode="exhaustive", num_results=1)(topics)["docno"].tolist() == ["d0"]


def test_doc2query_minus_minus_pipeline(memorised, default_model, tmp_path):
    from pyterrier_pisa import PisaIndex
    d2q = Doc2Query(str(memorised[0]), decoding="beam", num_samples=2, num_beams=3, min_chars=0)
    scored = (d2q >> QueryScorer(default_model.text_scorer()))(DOCS)
    for passage, querygen, got in zip(DOCS["text"], scored["querygen"], scored["querygen_score"]):
        queries = querygen.split("\n")
        assert len(queries) == 2  # each query scored by MaxSim against its own passage (not the expanded text)
        np.testing.assert_allclose(got, default_model.score_pairs([(q, passage) for q in queries]), rtol=1e-4)
    threshold = np.quantile(np.concatenate(scored["querygen_score"].tolist()), 0.5)
    out = (d2q >> QueryScorer(default_model.text_scorer()) >> QueryFilter(keep=0.5))(DOCS)
    expected = ["\n".join([p] + [q for q, v in zip(qg.split("\n"), s) if v >= threshold])
                for p, qg, s in zip(DOCS["text"], scored["querygen"], scored["querygen_score"])]
    assert out["text"].tolist() == expected
    assert sum(t.count("\n") for t in expected) == 6  # half of the 12 queries kept
    index = PisaIndex(str(tmp_path / "d2qmm"))
    (d2q >> QueryScorer(default_model.text_scorer()) >> QueryFilter(keep=0.5) >> index.indexer()).index(
        DOCS.to_dict("records"))
    assert len(index.bm25()(pd.DataFrame({"qid": ["1"], "query": [PAIRS[0][1]]}))) >= 1


class FakeCollection:
    """What doc2query_rows needs of a collection: a name and a corpus iterator."""
    path = Path("tiny-collection")

    def get_corpus_iter(self):
        return iter(DOCS.to_dict("records"))


def test_doc2query_rows_for_experiments(memorised, default_model, tmp_path, monkeypatch):
    from pyterrier_lateint.doc2query import doc2query_rows
    monkeypatch.setenv("LATEINT_CACHE", str(tmp_path))
    rows = doc2query_rows(FakeCollection(), str(memorised[0]), model=default_model, keep=0.5, num_samples=2,
                          decoding="beam", num_beams=3, min_chars=0, verbose=False)
    assert [name for name, _ in rows] == ["BM25 + doc2query", "BM25 + doc2query-- (keep 50%)"]
    topics = pd.DataFrame({"qid": [str(i) for i in range(6)], "query": [q for _, q in PAIRS]})
    top = rows[0][1](topics).sort_values(["qid", "rank"]).groupby("qid").head(1)
    assert top["docno"].tolist() == [f"d{i}" for i in range(6)]  # the memorised queries find their documents
    assert 0 < len(rows[1][1](topics)) <= len(rows[0][1](topics))  # half the queries gone: fewer matches
    assert len(list((tmp_path / "pisa-doc2query").iterdir())) == 2 and (tmp_path / "doc2query").exists()


# ============================================================================================ training
@pytest.mark.parametrize("grad_accum", [1, 2])
def test_exact_resume_of_generator_training(tmp_path, monkeypatch, grad_accum):
    settings = dict(max_steps=6, save_every=3, batch_size=2, grad_accum=grad_accum, shuffle_buffer=4, log_every=1)
    model_a = tiny_t5()
    trainer_a = GeneratorTrainer(model_a, word_tokenizer(), config(tmp_path / "a", **settings))
    trainer_a.train(PAIRS)
    with monkeypatch.context() as mp:
        interrupt_after_checkpoint(mp, GeneratorTrainer, 3)
        with pytest.raises(KeyboardInterrupt):
            GeneratorTrainer(tiny_t5(), word_tokenizer(), config(tmp_path / "b", **settings)).train(PAIRS)
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["checkpoint-3"]
    state = json.loads((tmp_path / "b" / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["groups_consumed"] == 3 * grad_accum * 2  # steps x micro-batches x pairs: none repeated
    torch.manual_seed(1234)
    model_b = tiny_t5(seed=99)  # another start: everything must come from the checkpoint
    trainer_b = GeneratorTrainer(model_b, word_tokenizer(), config(tmp_path / "b", **settings))
    trainer_b.train(PAIRS)
    a, b = model_a.state_dict(), model_b.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [h["total"] for h in trainer_b.history] == [h["total"] for h in trainer_a.history]
    assert [h["lr"] for h in trainer_b.history] == [h["lr"] for h in trainer_a.history]


def test_learning_rate_schedule_and_final_folder(tmp_path):
    trainer = GeneratorTrainer(tiny_t5(), word_tokenizer(), config(tmp_path, max_steps=10, warmup_ratio=0.2,
                                                                   log_every=1, batch_size=3))
    trainer.train(PAIRS)
    lrs = {h["step"]: h["lr"] for h in trainer.history}
    assert lrs == pytest.approx({s: 3e-3 * (s / 2 if s < 2 else (10 - s) / 8) for s in range(1, 11)})
    final = tmp_path / "final"
    assert (final / "doc2query_training.json").exists() and (final / "tokenizer.json").exists()
    assert isinstance(greedy(final)(DOCS.iloc[:1])["querygen"][0], str)  # loads and generates


def test_labels_end_with_eos_and_skip_a_bert_start_token():
    t5 = GeneratorTrainer(tiny_t5(), word_tokenizer(), config("unused"))
    batch = t5.encode([("apple river", "green music"), ("stone", "tiger")], torch.device("cpu"))
    tok = word_tokenizer()
    g, m, t = (tok.convert_tokens_to_ids(w) for w in ("green", "music", "tiger"))
    assert batch["labels"].tolist() == [[g, m, 1], [t, 1, -100]]
    assert batch["decoder_input_ids"].tolist() == [[0, g, m], [0, t, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]


def test_warm_started_encoder_decoder_from_bert(tmp_path):
    """EncoderDecoderModel from a (tiny random) BERT: BERT's tokenizer, [CLS] as decoder start; it learns two
    pairs and the saved folder loads in Doc2Query."""
    bert = build_tiny_checkpoint(tmp_path / "bert", seed=0)
    model, tokenizer = warm_start_encoder_decoder(bert)
    assert model.generation_config.decoder_start_token_id == tokenizer.cls_token_id
    assert model.generation_config.eos_token_id == tokenizer.sep_token_id
    pairs = [("the river flows to the sea", "where does the river go"), ("apples are red", "apple colour")]
    trainer = GeneratorTrainer(model, tokenizer, config(tmp_path / "out", max_steps=80, batch_size=2,
                                                        learning_rate=5e-3))
    trainer.train(pairs)
    d2q = greedy(tmp_path / "out" / "final", max_new_tokens=8)
    assert d2q.generate([p for p, _ in pairs]) == [[q] for _, q in pairs]


# ============================================================================================ pairs, metrics
def test_pairs_from_qrels_and_split():
    topics = pd.DataFrame({"qid": ["1", "2", "3"], "query": ["q one", "q two", "q three"],
                           "metadata": ["gold", "gold", "gold"]})
    qrels = pd.DataFrame({"qid": ["1", "1", "2", "3", "3"], "docno": ["a", "b", "a", "zz", "c"],
                          "label": [1, 0, 2, 1, 1]})
    texts = {"a": "text a", "b": "text b", "c": "text c"}
    pairs = pairs_from_qrels(topics, qrels, texts)
    assert pairs == [("text a", "q one"), ("text a", "q two"), ("text c", "q three")]
    many = [(f"p{i}", f"q{i % 5}") for i in range(20)]
    train, val = split_pairs(many, 6, seed=1)
    assert len(val) >= 6 and not {q for _, q in train} & {q for _, q in val} and len(train) + len(val) == 20
    assert split_pairs(many, 6, seed=1) == (train, val)
    with pytest.raises(ValueError, match="no \\(passage, query\\) pairs"):
        pairs_from_qrels(topics, qrels.assign(label=0), texts)


def test_read_pairs_tsv(tmp_path):
    good = tmp_path / "pairs.tsv"
    good.write_text("passage one\tquery one\n\npassage two\tquery two\n", encoding="utf-8")
    assert read_pairs_tsv(good) == [("passage one", "query one"), ("passage two", "query two")]
    bad = tmp_path / "bad.tsv"
    bad.write_text("passage\tquery\njust one field\n", encoding="utf-8")
    with pytest.raises(ValueError, match="bad.tsv:2:"):
        read_pairs_tsv(bad)
    with pytest.raises(TypeError, match="pair 1"):
        GeneratorTrainer(tiny_t5(), word_tokenizer(), config(tmp_path / "o")).train([("a", "b"), ("c", 3)])


def test_generation_metrics_by_hand():
    perfect = generation_metrics(["apple river house", "green music"], ["apple river house", "green music"])
    assert perfect == {"bleu": pytest.approx(100.0), "rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0}
    m = generation_metrics(["the cat sat"], ["the cat ran"])
    assert m["rouge1"] == pytest.approx(2 / 3) and m["rouge2"] == pytest.approx(1 / 2)
    assert m["rougeL"] == pytest.approx(2 / 3) and 0 < m["bleu"] < 100
    with pytest.raises(ValueError):
        generation_metrics(["a"], [])


# ============================================================================================ command line
def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="lateint")
    d2q_cli.add_parser(top.add_subparsers(dest="command"))
    return top


def test_cli_trains_a_generator(tiny_dir, tmp_path):
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("".join(f"{p}\t{q}\n" for p, q in PAIRS), encoding="utf-8")
    out = tmp_path / "run"
    args = parser().parse_args(["doc2query-train", "--model", str(tiny_dir), "--pairs", str(pairs), "--output-dir",
                                str(out), "--max-steps", "4", "--batch-size", "2", "--learning-rate", "0.003",
                                "--n-validation", "2", "--save-every", "2", "--no-gradient-checkpointing"])
    assert args.gradient_checkpointing is False and args.max_steps == 4 and args.resume is True
    measures = d2q_cli.run(args)
    assert measures["step"] == 4 and set(measures) >= {"val/bleu", "val/rouge1", "val/rouge2", "val/rougeL"}
    assert (out / "final" / "config.json").exists() and (out / "checkpoint-4").exists()
    assert isinstance(greedy(out / "final")(DOCS.iloc[:1])["querygen"][0], str)


def test_cli_help_and_argument_errors(capsys):
    with pytest.raises(SystemExit):
        parser().parse_args(["doc2query-train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--output-dir", "--max-steps", "--learning-rate", "--grad-accum", "--mixed-precision",
                 "--gradient-checkpointing", "--no-gradient-checkpointing", "--pairs", "--collection",
                 "--warm-start", "--n-validation", "--resume", "--no-resume"):
        assert flag in text, flag
    with pytest.raises(SystemExit, match="exactly one of --pairs"):
        d2q_cli.run(parser().parse_args(["doc2query-train", "--output-dir", "x"]))


def test_cli_pairs_from_a_collection(monkeypatch, tmp_path):
    """--collection scifact builds pairs from the train split's qrels only."""
    from pyterrier_lateint.data import data_roots, find_collection, load_collection
    if find_collection("scifact") is None:
        pytest.skip("collection 'scifact' is not on this machine: no scifact/ folder in any of "
                    f"{', '.join(str(r) for r in data_roots())} (set LATEINT_DATA to a folder holding scifact/)")
    captured = {}

    def fake_train(self, pairs, resume=True):
        captured["pairs"] = pairs
        return self.model

    monkeypatch.setattr(GeneratorTrainer, "train", fake_train)
    monkeypatch.setattr(d2q_cli, "_model", lambda args: (tiny_t5(), word_tokenizer()))
    scifact = load_collection("scifact")
    d2q_cli.run(parser().parse_args(["doc2query-train", "--collection", "scifact", "--output-dir",
                                     str(tmp_path)]))
    train_queries = set(scifact.get_topics("train")["query"])
    test_queries = set(scifact.get_topics("test")["query"]) - train_queries
    assert captured["pairs"] and {q for _, q in captured["pairs"]} <= train_queries
    assert not {q for _, q in captured["pairs"]} & test_queries


def test_layering():
    """doc2query may use training; training never imports doc2query."""
    import ast
    root = Path(__file__).resolve().parents[1] / "pyterrier_lateint"
    for path in (root / "training").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert "doc2query" not in node.module and "experiments" not in node.module, path
    for path in (root / "doc2query").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert "experiments" not in node.module and node.module != "cli", path
