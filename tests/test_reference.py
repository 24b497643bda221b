"""Against the reference implementations themselves: checkpoints written by colbert-ai, PyLate and ColBERT v0.2
(``tests/data/reference``, made by ``benchmarks/reference/make_fixtures.sh`` with each library installed) hold the
token ids, vectors and scores each library's own encoder gave; pyterrier-lateint must give the same, with none of
those libraries installed. Vectors within 1e-6 (and bitwise where the platform allows: they were on the machine
that made the fixtures), scores within 1e-5 (float32 sums of 32 terms in a different order)."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from pyterrier_lateint import ColBERT
from pyterrier_lateint.models import detect_layout
from pyterrier_lateint.models.config import PUNCTUATION

DATA = Path(__file__).parent / "data" / "reference"
VEC_ATOL = 1e-6
SCORE_ATOL = 1e-5


class Run:
    """One library's encoding of the fixture texts: per text, kept token ids and float32 vectors; its scores."""

    def __init__(self, arrays, run: str):
        for kind in ("q", "d"):
            lens = arrays[f"{run}_{kind}_lens"]
            off = np.r_[0, np.cumsum(lens)]
            ids, vecs = arrays[f"{run}_{kind}_ids"], arrays[f"{run}_{kind}_vecs"]
            setattr(self, f"{kind}_ids", [ids[off[i]:off[i + 1]] for i in range(len(lens))])
            setattr(self, f"{kind}_vecs", [vecs[off[i]:off[i + 1]] for i in range(len(lens))])
        self.scores = arrays[f"{run}_scores"]


def fixture(name: str) -> tuple[dict, dict[str, Run]]:
    meta = json.loads((DATA / f"{name}.json").read_text())
    with np.load(DATA / f"{name}.npz") as arrays:
        return meta, {run: Run(arrays, run) for run in meta["runs"]}


def load(meta: dict, **settings) -> ColBERT:
    extra = {"base_model": str(DATA / meta["load"]["base_model"])} if "base_model" in meta["load"] else {}
    return ColBERT.from_pretrained(str(DATA / meta["load"]["path"]), device="cpu", precision="fp32", **extra,
                                   **settings)


def maxsim(q: np.ndarray, d: np.ndarray, floor: bool = False) -> float:
    sims = (q.astype(np.float64) @ d.astype(np.float64).T).max(axis=1)
    return float((np.maximum(sims, 0.0) if floor else sims).sum())


def assert_same(actual: list, expected: list, what: str, bitwise: bool) -> None:
    assert len(actual) == len(expected)
    for i, (a, e) in enumerate(zip(actual, expected)):
        assert a.shape == e.shape, f"{what} #{i}: {a.shape} vs {e.shape}"
        np.testing.assert_allclose(a, e, atol=VEC_ATOL, rtol=0, err_msg=f"{what} #{i}")
    if bitwise and not all(np.array_equal(a, e) for a, e in zip(actual, expected)):
        diff = max(float(np.abs(a - e).max(initial=0)) for a, e in zip(actual, expected))
        pytest.skip(f"{what}: within {diff:.1e} but not bitwise on this CPU (bitwise where the fixtures were made)")


def check(model: ColBERT, meta: dict, ref: Run, bitwise: bool = True) -> None:
    """Token ids equal, vectors within 1e-6 (bitwise), our MaxSim = the library's scores."""
    q_vecs, q_ids = model.encode_queries(meta["queries"], return_ids=True)
    d_vecs, d_ids = model.encode_docs(meta["docs"], return_ids=True)
    assert [i.tolist() for i in q_ids] == [i.tolist() for i in ref.q_ids]
    assert [i.tolist() for i in d_ids] == [i.tolist() for i in ref.d_ids]
    pairs = [(q, d) for q in meta["queries"] for d in meta["docs"]]
    ours = model.score_pairs(pairs).reshape(ref.scores.shape)
    np.testing.assert_allclose(ours, ref.scores, atol=SCORE_ATOL, rtol=0)
    assert_same(q_vecs, ref.q_vecs, "query vectors", bitwise)
    assert_same(d_vecs, ref.d_vecs, "document vectors", bitwise)


# ------------------------------------------------------------------------------------------------------ colbert-ai
@pytest.mark.parametrize("run", ["default", "attend"])
def test_colbert_ai_checkpoint(run):
    """A folder written by colbert-ai's ``Checkpoint.save`` encodes as its ``queryFromText``/``docFromText``;
    ``attend_to_mask_tokens=True`` as colbert-ai with that setting."""
    meta, runs = fixture("colbert_ai")
    model = load(meta, **({"attend_to_mask_tokens": True} if run == "attend" else {}))
    assert detect_layout(DATA / meta["load"]["path"]) == "stanford" and model.layout == "stanford"
    c = model.config
    assert (c.query_maxlen, c.doc_maxlen, model.dim) == (32, 64, 8)
    assert set(c.doc_skiplist) == set(PUNCTUATION) and c.attend_to_mask_tokens == (run == "attend")
    check(model, meta, runs[run])


# ---------------------------------------------------------------------------------------------------------- PyLate
@pytest.mark.parametrize("run", ["default", "attend"])
def test_pylate_checkpoint(run):
    """A folder written by PyLate's ``models.ColBERT(...).save`` (its [Q]/[D] tokens added to the tokenizer, a
    random Dense head) encodes as PyLate's ``encode``."""
    meta, runs = fixture("pylate")
    model = load(meta, **({"attend_to_mask_tokens": True} if run == "attend" else {}))
    assert model.layout == "pylate" and model.dim == 8
    check(model, meta, runs[run])


# ------------------------------------------------------------------------------- our save_pretrained, read by PyLate
def test_saved_model_with_colbert_conventions_is_pylates():
    """A head-less model saved by ``save_pretrained`` (identity ``1_Dense``) with ColBERT's conventions: PyLate's
    ``models.ColBERT(folder)`` gave exactly our vectors and scores."""
    meta, runs = fixture("ours_colbert_style")
    assert meta["runs"]["pylate"]["dense_out"] == 16  # the identity head, not PyLate's random 128-d one
    saved = json.loads((DATA / "ours_colbert_style" / "lateint_config.json").read_text())
    assert saved["pylate_identity_head"] and saved["pylate_differences"] == []
    model = load(meta)
    assert model.module.head is None  # the identity head is dropped again on loading
    check(model, meta, runs["pylate"])


def test_saved_default_style_model_differs_from_pylate_only_in_query_special_tokens():
    """The default model's conventions (no head, [CLS]/[SEP] dropped): PyLate gives our document vectors exactly
    ([CLS]/[SEP] in its skiplist), but keeps the query's [CLS]/[SEP] vectors (PyLate has no setting to drop them),
    so its scores exceed ours by what those two vectors add; the saved folder says so."""
    meta, runs = fixture("ours_hf")
    ref = runs["pylate"]
    saved = json.loads((DATA / "ours_hf" / "lateint_config.json").read_text())
    assert saved["pylate_identity_head"] and "[CLS]/[SEP]" in saved["pylate_differences"][0]
    model = load(meta)
    assert model.module.head is None and model.config.drop_special_tokens
    tok = model.tokenizer
    q_vecs, q_ids = model.encode_queries(meta["queries"], return_ids=True)
    d_vecs, d_ids = model.encode_docs(meta["docs"], return_ids=True)
    assert [i.tolist() for i in d_ids] == [i.tolist() for i in ref.d_ids]
    assert_same(d_vecs, ref.d_vecs, "document vectors", bitwise=False)
    for ours, theirs, theirs_ids in zip(q_ids, ref.q_vecs, ref.q_ids):
        assert theirs_ids.tolist() == [tok.cls_token_id, *ours.tolist(), tok.sep_token_id]
    assert_same(q_vecs, [v[1:-1] for v in ref.q_vecs], "query vectors", bitwise=False)
    ours = model.score_pairs([(q, d) for q in meta["queries"] for d in meta["docs"]]).reshape(ref.scores.shape)
    extra = np.array([[maxsim(q[[0, -1]], d) for d in ref.d_vecs] for q in ref.q_vecs])
    np.testing.assert_allclose(ours + extra, ref.scores, atol=SCORE_ATOL, rtol=0)
    assert_same(q_vecs + d_vecs, [v[1:-1] for v in ref.q_vecs] + ref.d_vecs, "vectors", bitwise=True)


def test_save_pretrained_writes_an_identity_head_for_pylate(hf_plain, tmp_path, caplog):
    """``save_pretrained`` of a head-less model writes the ``1_Dense`` PyLate needs (identity, no bias) and PyLate's
    skiplist of our dropped tokens; it warns what PyLate cannot reproduce; reloading gives the same vectors."""
    from safetensors.torch import load_file
    model = ColBERT.from_pretrained(str(hf_plain.path), device="cpu")
    assert model.module.head is None
    with caplog.at_level(logging.WARNING, logger="pyterrier_lateint.models.layouts"):
        folder = model.save_pretrained(tmp_path / "saved")
    assert "[CLS]/[SEP]" in caplog.text
    modules = json.loads((folder / "modules.json").read_text())
    assert [m["path"] for m in modules] == ["", "1_Dense"]
    weight = load_file(str(folder / "1_Dense" / "model.safetensors"))
    assert set(weight) == {"linear.weight"}
    torch.testing.assert_close(weight["linear.weight"], torch.eye(32), atol=0, rtol=0)
    st = json.loads((folder / "config_sentence_transformers.json").read_text())
    assert (st["query_prefix"], st["document_prefix"]) == ("", "")
    assert st["skiplist_words"] == ["[CLS]", "[SEP]"]
    again = ColBERT.from_pretrained(str(folder), device="cpu")
    assert again.module.head is None and again.config == model.config
    texts = ["hello, world", "late interaction"]
    for a, b in zip(model.encode_docs(texts) + model.encode_queries(texts),
                    again.encode_docs(texts) + again.encode_queries(texts)):
        np.testing.assert_array_equal(a, b)


def test_save_pretrained_of_a_model_with_a_head_keeps_it(pylate, tmp_path):
    model = ColBERT.from_pretrained(str(pylate.path), device="cpu")
    folder = model.save_pretrained(tmp_path / "saved")
    saved = json.loads((folder / "lateint_config.json").read_text())
    assert not saved["pylate_identity_head"] and saved["pylate_differences"] == []
    again = ColBERT.from_pretrained(str(folder), device="cpu")
    torch.testing.assert_close(again.module.head.weight, model.module.head.weight, atol=0, rtol=0)


# ------------------------------------------------------------------------------- ColBERT v0.2 .dnn, pyterrier_colbert
def test_dnn_reads_its_arguments_like_colbert_v02():
    """A ``.dnn`` written by ColBERT v0.2's training (arguments from its argparse, ``--mask-punctuation``) encodes
    as v0.2's ``ModelInference`` and as pyterrier_colbert's ``ColBERTFactory(..., mask_punctuation=True)``."""
    meta, runs = fixture("colbert_v02")
    assert meta["arguments"]["mask_punctuation"] is True and "model" not in meta["arguments"]
    model = load(meta)
    c = model.config
    assert model.layout == "stanford" and (c.query_maxlen, c.doc_maxlen) == (32, 180)
    assert set(c.doc_skiplist) == set(PUNCTUATION)
    check(model, meta, runs["v02_mask"])
    check(model, meta, runs["ptcolbert_mask"])


def test_migration_setting_reproduces_colbertfactory():
    """``ColBERTFactory(checkpoint)`` ignores the file's ``mask_punctuation`` and keeps punctuation;
    ``doc_skiplist=()`` (the migration page, pt_docs/migrating.rst) gives its vectors and scores exactly."""
    meta, runs = fixture("colbert_v02")
    model = load(meta, doc_skiplist=())
    check(model, meta, runs["ptcolbert_default"])
    check(model, meta, runs["v02_nomask"])
    # with the file's own setting the punctuation vectors are dropped: different documents
    masked = load(meta)
    assert sum(len(v) for v in masked.encode_docs(meta["docs"])) < sum(len(v) for v in runs["ptcolbert_default"].d_vecs)


def test_pyterrier_colbert_scores_floor_each_query_token_at_zero():
    """pyterrier_colbert's ``text_scorer`` (v0.2's ``slow_rerank``) scores padded batches in which masked and padded
    rows are zero vectors, so a query token's maximum is never below 0 for a document with such rows; MaxSim
    over the kept vectors (colbert-ai, PyLate, ours) has no floor. Where every maximum is positive the two agree."""
    meta, runs = fixture("colbert_v02")
    for name in ("ptcolbert_default", "ptcolbert_mask", "v02_mask", "v02_nomask"):
        ref = runs[name]
        floored = np.array([[maxsim(q, d, floor=True) for d in ref.d_vecs] for q in ref.q_vecs])
        np.testing.assert_allclose(ref.scores, floored, atol=SCORE_ATOL, rtol=0)


def _rewrite_dnn(src: Path, dst: Path, **changes) -> Path:
    blob = torch.load(src, map_location="cpu", weights_only=False)
    args = dict(blob["arguments"])
    for key, value in changes.items():
        if value is None:
            args.pop(key, None)
        else:
            args[key] = value
    blob["arguments"] = args
    torch.save(blob, dst)
    return dst


def test_dnn_without_mask_punctuation_keeps_punctuation(tmp_path):
    """No ``mask_punctuation`` in a ``.dnn``'s arguments: ColBERT v0.2's default (the flag is off) and what
    pyterrier_colbert does, not colbert-ai's default for its own folders."""
    meta, runs = fixture("colbert_v02")
    dnn = _rewrite_dnn(DATA / meta["load"]["path"], tmp_path / "no_flag.dnn", mask_punctuation=None)
    model = ColBERT.from_pretrained(str(dnn), device="cpu", precision="fp32", base_model=str(DATA / "colbert_v02/base"))
    assert model.config.doc_skiplist == ()
    check(model, meta, runs["v02_nomask"])


def test_dnn_base_model_from_colbert_ai_key(tmp_path):
    """colbert-ai names a ``.dnn``'s base model in ``arguments['model']``: read without ``base_model=``."""
    meta, runs = fixture("colbert_v02")
    dnn = _rewrite_dnn(DATA / meta["load"]["path"], tmp_path / "with_model.dnn",
                       model=str(DATA / "colbert_v02" / "base"))
    model = ColBERT.from_pretrained(str(dnn), device="cpu", precision="fp32")
    check(model, meta, runs["v02_mask"])


def test_base_model_overrides_the_file(tmp_path):
    meta, runs = fixture("colbert_v02")
    dnn = _rewrite_dnn(DATA / meta["load"]["path"], tmp_path / "elsewhere.dnn", model="some-org/unreachable-model")
    model = ColBERT.from_pretrained(str(dnn), device="cpu", precision="fp32", base_model=str(DATA / "colbert_v02/base"))
    check(model, meta, runs["v02_mask"])


def _offline(monkeypatch):
    import huggingface_hub.constants
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def test_dnn_base_model_unreachable_names_the_fix(tmp_path, monkeypatch):
    _offline(monkeypatch)
    meta, _ = fixture("colbert_v02")
    dnn = _rewrite_dnn(DATA / meta["load"]["path"], tmp_path / "offline.dnn", model="some-org/unreachable-model")
    with pytest.raises(OSError) as info:
        ColBERT.from_pretrained(str(dnn), device="cpu")
    msg = str(info.value)
    assert "some-org/unreachable-model" in msg and "arguments['model']" in msg and "base_model=" in msg
    assert info.value.__cause__ is None and info.value.__suppress_context__
    with pytest.raises(OSError, match="base_model="):
        ColBERT.from_pretrained(str(dnn), device="cpu", base_model=str(tmp_path / "no-such-folder"))


def test_dnn_base_model_that_does_not_fit(hf_plain, monkeypatch):
    """A base model of another size: one error naming both, not a raw state-dict error."""
    meta, _ = fixture("colbert_v02")
    with pytest.raises(ValueError, match="do not fit the base model"):
        ColBERT.from_pretrained(str(DATA / meta["load"]["path"]), device="cpu", base_model=str(hf_plain.path))


def test_base_model_only_for_dnn_files():
    meta, _ = fixture("colbert_ai")
    with pytest.raises(ValueError, match="base_model= applies to ColBERT v1 .dnn files"):
        ColBERT.from_pretrained(str(DATA / "colbert_ai"), device="cpu", base_model=str(DATA / "colbert_v02/base"))


def test_fixtures_name_their_libraries():
    """Each fixture records the command and the library versions that made it."""
    for name in ("colbert_ai", "pylate", "ours_hf", "ours_colbert_style", "colbert_v02"):
        meta = json.loads((DATA / f"{name}.json").read_text())
        assert meta["command"].startswith("python benchmarks/reference/make_fixtures.py")
        assert meta["library"]["torch"] and meta["library"]["python"]
    assert json.loads((DATA / "colbert_ai.json").read_text())["library"]["colbert-ai"] == "0.2.22"
    assert "v0.2" in json.loads((DATA / "colbert_v02.json").read_text())["library"]["ColBERT"]
