"""Checkpoint layouts: tiny random checkpoints of every layout (built in conftest.py) encode exactly as each layout's
reference implementation defines, recomputed here directly from the modules the checkpoints were saved from."""
from __future__ import annotations

import string

import numpy as np
import pytest
import torch

from pyterrier_lateint import ColBERT
from pyterrier_lateint.models import EncodingConfig, detect_layout
from pyterrier_lateint.models.layouts import LAYOUTS, load_checkpoint

ATOL = 1e-5

QUERIES = ["what is a neural ranking model?", "late interaction, token-level matching of words",
           "a query that is far longer than twelve tokens so it gets truncated somewhere"]
DOCS = ["ColBERT encodes documents, token by token; then MaxSim scores them!",
        "short doc.",
        "a document that has many more than twenty word pieces in it, so that the encoder has to cut it at its "
        "maximum length of twenty tokens (markers included).",
        "no punctuation here at all"]


def normalize(x: torch.Tensor) -> np.ndarray:
    return torch.nn.functional.normalize(x.float(), p=2, dim=-1).numpy()


def hand_maxsim(q: np.ndarray, d: np.ndarray) -> float:
    if len(d) == 0:
        return float("-inf")
    return float((q.astype(np.float64) @ d.astype(np.float64).T).max(axis=1).sum())


def punctuation_ids(tok) -> set[int]:
    """Stanford ColBERT's skiplist: the first token id of every string.punctuation character."""
    return {tok.encode(p, add_special_tokens=False)[0] for p in string.punctuation}


def assert_vectors(actual: list, expected: list) -> None:
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert a.dtype == np.float32
        assert a.shape == e.shape
        np.testing.assert_allclose(a, e, atol=ATOL, rtol=0)


# ---------------------------------------------------------------------------------------------- Stanford ColBERT
def stanford_query(ck, text: str, maxlen: int, marker_id: int, attend: bool) -> np.ndarray:
    """ColBERT's QueryTokenizer + ColBERT.query: '. ' + q, ids[1] = marker, pad -> [MASK], keep all vectors."""
    tok = ck.tokenizer
    enc = tok(". " + text, padding="max_length", truncation=True, max_length=maxlen)
    ids = torch.tensor(enc["input_ids"])
    mask = torch.tensor(enc["attention_mask"])
    ids[1] = marker_id
    ids[ids == tok.pad_token_id] = tok.mask_token_id
    if attend:
        mask[ids == tok.mask_token_id] = 1
    return normalize(ck.project(ck.hidden(ids.tolist(), mask.tolist())))


def stanford_doc(ck, text: str, maxlen: int, marker_id: int) -> np.ndarray:
    """ColBERT's DocTokenizer + ColBERT.doc: '. ' + d, ids[1] = marker, drop pad and punctuation vectors."""
    tok = ck.tokenizer
    ids = tok(". " + text, truncation=True, max_length=maxlen)["input_ids"]
    ids[1] = marker_id
    vecs = normalize(ck.project(ck.hidden(ids)))
    skip = punctuation_ids(tok) | {tok.pad_token_id}
    keep = np.array([i not in skip for i in ids])
    return vecs[keep]


@pytest.fixture(scope="module")
def stanford_model(stanford_v2):
    return ColBERT.from_pretrained(str(stanford_v2.path), device="cpu")


def test_stanford_settings_from_artifact_metadata(stanford_model, stanford_v2_attend):
    m = stanford_model
    assert m.layout == "stanford"
    assert m.dim == 16
    c = m.config
    assert (c.query_maxlen, c.doc_maxlen) == (12, 20)
    assert c.query_expansion and not c.attend_to_mask_tokens
    assert set(string.punctuation) <= set(c.doc_skiplist)
    assert not c.drop_special_tokens and not c.divide_by_query_length
    attend = ColBERT.from_pretrained(str(stanford_v2_attend.path), device="cpu")
    assert attend.config.attend_to_mask_tokens


def test_stanford_weights_loaded(stanford_model, stanford_v2):
    """The backbone holds the saved ``bert.*`` weights (not a fresh initialisation) and the head is ``linear``."""
    saved = stanford_v2.backbone.state_dict()
    loaded = stanford_model.module.backbone.state_dict()
    for k, v in saved.items():
        torch.testing.assert_close(loaded[k], v, atol=0, rtol=0)
    assert stanford_model.module.head.bias is None
    torch.testing.assert_close(stanford_model.module.head.weight.detach(), stanford_v2.heads[0].weight.detach())


def test_stanford_markers_are_single_vocabulary_tokens(stanford_model, stanford_v2):
    tok = stanford_v2.tokenizer
    q = stanford_model.tokenise(["hello world"], is_query=True)
    d = stanford_model.tokenise(["hello world"], is_query=False)
    assert q.ids[0][:3].tolist() == [tok.cls_token_id, tok.convert_tokens_to_ids("[unused0]"),
                                     tok.convert_tokens_to_ids("hello")]
    assert d.ids[0].tolist() == tok(". hello world")["input_ids"][:1] + [tok.convert_tokens_to_ids("[unused1]")] + \
        tok("hello world")["input_ids"][1:]


@pytest.mark.parametrize("attend", [False, True], ids=["mask-not-attended", "attend-to-mask"])
def test_stanford_v2_matches_reference(request, attend):
    ck = request.getfixturevalue("stanford_v2_attend" if attend else "stanford_v2")
    model = ColBERT.from_pretrained(str(ck.path), device="cpu")
    tok = ck.tokenizer
    qid, did = tok.convert_tokens_to_ids("[unused0]"), tok.convert_tokens_to_ids("[unused1]")
    assert_vectors(model.encode_queries(QUERIES), [stanford_query(ck, q, 12, qid, attend) for q in QUERIES])
    assert_vectors(model.encode_docs(DOCS), [stanford_doc(ck, d, 20, did) for d in DOCS])


@pytest.mark.parametrize("attend", [False, True], ids=["mask-not-attended", "attend-to-mask"])
def test_stanford_pipeline_with_whole_word_markers(request, attend):
    """Everything of the Stanford definition except the marker lookup (expansion, attention to [MASK], kept
    vectors, punctuation, linear, normalisation), with markers the tokenizer keeps whole ("query", "document")."""
    ck = request.getfixturevalue("stanford_v2_attend" if attend else "stanford_v2")
    model = ColBERT.from_pretrained(str(ck.path), device="cpu", query_marker="query", doc_marker="document")
    tok = ck.tokenizer
    qid, did = tok.convert_tokens_to_ids("query"), tok.convert_tokens_to_ids("document")
    assert tok("query", add_special_tokens=False)["input_ids"] == [qid]
    assert tok("document", add_special_tokens=False)["input_ids"] == [did]
    qv = model.encode_queries(QUERIES)
    assert [len(v) for v in qv] == [12, 12, 12]  # every query keeps all query_maxlen vectors
    assert_vectors(qv, [stanford_query(ck, q, 12, qid, attend) for q in QUERIES])
    dv = model.encode_docs(DOCS)
    assert_vectors(dv, [stanford_doc(ck, d, 20, did) for d in DOCS])
    # "short doc." -> [CLS] document short doc [SEP]: the '.' is dropped
    assert len(dv[1]) == 5


def test_stanford_attention_to_mask_tokens_matters(stanford_v2, stanford_v2_attend):
    """With attend_to_mask_tokens the real tokens see the [MASK] pads, so their vectors change."""
    a = ColBERT.from_pretrained(str(stanford_v2.path), device="cpu").encode_queries(["neural ranking"])[0]
    b = ColBERT.from_pretrained(str(stanford_v2_attend.path), device="cpu").encode_queries(["neural ranking"])[0]
    assert a.shape == b.shape
    assert not np.allclose(a, b, atol=1e-3)


def test_stanford_without_metadata_uses_colbert_defaults(stanford_v2_no_metadata):
    """An HF_ColBERT folder without artifact.metadata: colbert-ai's ColBERTConfig defaults (query_maxlen 32,
    doc_maxlen 220, mask_punctuation True), as colbert-ai's Checkpoint loads it."""
    assert detect_layout(stanford_v2_no_metadata.path) == "stanford"
    m = ColBERT.from_pretrained(str(stanford_v2_no_metadata.path), device="cpu")
    assert m.layout == "stanford"
    assert (m.config.query_maxlen, m.config.doc_maxlen) == (32, 220)
    assert set(string.punctuation) <= set(m.config.doc_skiplist)
    assert m.config.query_expansion
    assert len(m.encode_queries(["x"])[0]) == 32


def test_stanford_v1_dnn_loads_offline(stanford_v1_dnn):
    ck = stanford_v1_dnn
    assert detect_layout(ck.path) == "stanford"
    m = ColBERT.from_pretrained(str(ck.path), device="cpu")
    assert m.layout == "stanford" and m.dim == 16
    assert (m.config.query_maxlen, m.config.doc_maxlen) == (12, 20)
    loaded = m.module.backbone.state_dict()
    for k, v in ck.backbone.state_dict().items():  # the 'module.bert.' prefixes are stripped
        torch.testing.assert_close(loaded[k], v, atol=0, rtol=0)
    torch.testing.assert_close(m.module.head.weight.detach(), ck.heads[0].weight.detach())
    # encoding, with whole-word markers (the [unused*] lookup is covered by the xfail tests above)
    m2 = ColBERT.from_pretrained(str(ck.path), device="cpu", query_marker="query", doc_marker="document")
    tok = ck.tokenizer
    qid, did = tok.convert_tokens_to_ids("query"), tok.convert_tokens_to_ids("document")
    assert_vectors(m2.encode_queries(QUERIES[:2]), [stanford_query(ck, q, 12, qid, False) for q in QUERIES[:2]])
    assert_vectors(m2.encode_docs(DOCS[:2]), [stanford_doc(ck, d, 20, did) for d in DOCS[:2]])


# ---------------------------------------------------------------------------------------------- PyLate
def pylate_expected(ck, text: str, is_query: bool) -> np.ndarray:
    """PyLate: [CLS] [Q]/[D] body [SEP]; queries padded with [MASK] to query_length (all kept), documents without
    the skiplist (punctuation) vectors; Dense layers then L2 normalisation."""
    tok, cfg = ck.tokenizer, ck.meta
    maxlen = cfg["query_length"] if is_query else cfg["document_length"]
    prefix = tok.convert_tokens_to_ids("[Q]" if is_query else "[D]")
    body = tok(text, add_special_tokens=False)["input_ids"][: maxlen - 3]
    ids = [tok.cls_token_id, prefix] + body + [tok.sep_token_id]
    att = [1] * len(ids)
    if is_query and cfg["do_query_expansion"]:
        n = maxlen - len(ids)
        ids += [tok.mask_token_id] * n
        att += [1 if cfg["attend_to_expansion_tokens"] else 0] * n
    vecs = normalize(ck.project(ck.hidden(ids, att)))
    if is_query:
        return vecs
    skip = {tok.convert_tokens_to_ids(w) for w in cfg["skiplist_words"]}
    return vecs[np.array([i not in skip for i in ids])]


@pytest.mark.parametrize("name", ["pylate", "pylate_bias", "pylate_two_dense", "pylate_attend"])
def test_pylate_matches_reference(request, name):
    ck = request.getfixturevalue(name)
    assert detect_layout(ck.path) == "pylate"
    model = ColBERT.from_pretrained(str(ck.path), device="cpu")
    assert model.layout == "pylate"
    assert model.dim == ck.heads[-1].out_features
    assert (model.config.query_maxlen, model.config.doc_maxlen) == (12, 20)
    assert model.config.attend_to_mask_tokens == ck.meta["attend_to_expansion_tokens"]
    qv = model.encode_queries(QUERIES)
    assert [len(v) for v in qv] == [12] * len(QUERIES)
    assert_vectors(qv, [pylate_expected(ck, q, True) for q in QUERIES])
    assert_vectors(model.encode_docs(DOCS), [pylate_expected(ck, d, False) for d in DOCS])


def test_pylate_prefix_tokens(pylate):
    tok = pylate.tokenizer
    model = ColBERT.from_pretrained(str(pylate.path), device="cpu")
    q = model.tokenise(["hello"], is_query=True)
    assert q.ids[0].tolist() == [tok.cls_token_id, tok.convert_tokens_to_ids("[Q]"), tok.convert_tokens_to_ids("hello"),
                                 tok.sep_token_id] + [tok.mask_token_id] * 8
    assert q.attention[0].tolist() == [True] * 4 + [False] * 8
    d = model.tokenise(["hello, world"], is_query=False)
    assert d.ids[0].tolist() == [tok.cls_token_id, tok.convert_tokens_to_ids("[D]"), tok.convert_tokens_to_ids("hello"),
                                 tok.convert_tokens_to_ids(","), tok.convert_tokens_to_ids("world"), tok.sep_token_id]
    assert d.keep[0].tolist() == [True, True, True, False, True, True]


def test_pylate_unsupported_activation_is_refused(pylate, tmp_path):
    import json
    import shutil
    folder = tmp_path / "pylate_tanh"
    shutil.copytree(pylate.path, folder)
    cfg = json.loads((folder / "1_Dense" / "config.json").read_text())
    cfg["activation_function"] = "torch.nn.modules.activation.Tanh"
    (folder / "1_Dense" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="Tanh"):
        ColBERT.from_pretrained(str(folder), device="cpu")


@pytest.mark.parametrize("residual_weight", [True, False], ids=["residual-linear", "identity-residual"])
def test_pylate_dense_with_residual(pylate, tmp_path, residual_weight):
    """PyLate's ``Dense(use_residual=True)``: linear(x) + residual(x) (a bias-free linear when the sizes differ,
    x itself when they agree), folded into one head."""
    import json
    import shutil
    from safetensors.torch import load_file, save_file
    folder = tmp_path / "pylate_residual"
    shutil.copytree(pylate.path, folder)
    cfg = json.loads((folder / "1_Dense" / "config.json").read_text())
    state = load_file(str(folder / "1_Dense" / "model.safetensors"))
    torch.manual_seed(13)
    if residual_weight:  # 32 -> 16: PyLate adds a residual linear
        extra = torch.randn(cfg["out_features"], cfg["in_features"]) * 0.1
        state["residual.weight"] = extra
    else:  # a square head: the residual is x itself
        state["linear.weight"] = torch.randn(cfg["in_features"], cfg["in_features"]) * 0.1
        cfg["out_features"] = cfg["in_features"]
        extra = torch.eye(cfg["in_features"])
    cfg["use_residual"] = True
    (folder / "1_Dense" / "config.json").write_text(json.dumps(cfg))
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "1_Dense" / "model.safetensors"))
    model = ColBERT.from_pretrained(str(folder), device="cpu")
    torch.testing.assert_close(model.module.head.weight.detach(), state["linear.weight"] + extra)
    text = DOCS[0]
    tok = model.tokenise([text], is_query=False)
    with torch.no_grad():  # the hidden states, through the head by hand
        h = pylate.backbone(input_ids=torch.from_numpy(tok.ids[0])[None],
                            attention_mask=torch.from_numpy(tok.attention[0]).long()[None]).last_hidden_state[0]
    expected = normalize(h @ state["linear.weight"].T + h @ extra.T)[tok.keep[0]]
    np.testing.assert_allclose(model.encode_docs([text])[0], expected, atol=ATOL, rtol=0)
    if not residual_weight:
        return
    del state["residual.weight"]
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "1_Dense" / "model.safetensors"))
    with pytest.raises(ValueError, match="residual.weight"):
        ColBERT.from_pretrained(str(folder), device="cpu")


# ---------------------------------------------------------------------------------------------- remote code
def test_remote_code_needs_trust(remote_code):
    assert detect_layout(remote_code.path) == "pylate"
    with pytest.raises(ValueError, match="trust_remote_code"):
        ColBERT.from_pretrained(str(remote_code.path), device="cpu")


def test_remote_code_loads_with_trust(remote_code):
    model = ColBERT.from_pretrained(str(remote_code.path), device="cpu", trust_remote_code=True)
    assert type(model.module.backbone).__name__ == "TinyLateModel"
    # the stand-in negates the hidden state as the remote code does: equal vectors prove that code ran
    assert_vectors(model.encode_queries(QUERIES[:2]), [pylate_expected(remote_code, q, True) for q in QUERIES[:2]])
    assert_vectors(model.encode_docs(DOCS[:2]), [pylate_expected(remote_code, d, False) for d in DOCS[:2]])


# ---------------------------------------------------------------------------------------------- bge-m3
def bge_expected(ck, text: str) -> np.ndarray:
    """bge-m3: normalize(colbert_linear(last_hidden_state[:, 1:])) over the non-pad tokens."""
    ids = ck.tokenizer(text)["input_ids"]
    return normalize(ck.project(ck.hidden(ids)[1:]))


@pytest.fixture(scope="module")
def bge_model(bge_m3):
    return ColBERT.from_pretrained(str(bge_m3.path), device="cpu")


def test_bge_m3_matches_reference(bge_m3, bge_model):
    assert detect_layout(bge_m3.path) == "bge-m3"
    assert bge_model.layout == "bge-m3" and bge_model.dim == 32
    assert bge_model.module.head.bias is not None
    assert bge_model.config.divide_by_query_length
    assert_vectors(bge_model.encode_queries(QUERIES), [bge_expected(bge_m3, q) for q in QUERIES])
    assert_vectors(bge_model.encode_docs(DOCS), [bge_expected(bge_m3, d) for d in DOCS])
    # the trailing [SEP] (</s> in bge-m3) is kept, the first token dropped
    assert len(bge_model.encode_docs(["short doc."])[0]) == len(bge_m3.tokenizer("short doc.")["input_ids"]) - 1


def test_bge_m3_score_is_maxsim_over_query_length(bge_m3, bge_model):
    pairs = [(q, d) for q in QUERIES[:2] for d in DOCS]
    scores = bge_model.score_pairs(pairs)
    expected = []
    for q, d in pairs:
        qv, dv = bge_expected(bge_m3, q), bge_expected(bge_m3, d)
        expected.append(hand_maxsim(qv, dv) / len(qv))
    np.testing.assert_allclose(scores, expected, atol=1e-5, rtol=0)


# ---------------------------------------------------------------------------------------------- plain HF encoder
def hf_expected(ck, text: str, maxlen: int = 180) -> np.ndarray:
    ids = ck.tokenizer(text, truncation=True, max_length=maxlen)["input_ids"]
    return normalize(ck.project(ck.hidden(ids)))[1:-1]


@pytest.fixture(scope="module")
def hf_model(hf_plain):
    return ColBERT.from_pretrained(str(hf_plain.path), device="cpu")


def test_hf_matches_reference(hf_plain, hf_model):
    assert detect_layout(hf_plain.path) == "hf"
    assert hf_model.layout == "hf" and hf_model.dim == 32 and hf_model.module.head is None
    assert_vectors(hf_model.encode_queries(QUERIES), [hf_expected(hf_plain, q, 32) for q in QUERIES])
    assert_vectors(hf_model.encode_docs(DOCS), [hf_expected(hf_plain, d) for d in DOCS])


def test_hf_new_head_is_deterministic(hf_plain):
    a = ColBERT.from_pretrained(str(hf_plain.path), device="cpu", dim=8)
    b = ColBERT.from_pretrained(str(hf_plain.path), device="cpu", dim=8)
    assert a.dim == 8 and a.module.head.out_features == 8
    va, vb = a.encode_docs(DOCS[:2]), b.encode_docs(DOCS[:2])
    for x, y in zip(va, vb):
        assert x.shape[1] == 8
        np.testing.assert_array_equal(x, y)
    # the vectors are the new head applied to the (unnormalised) hidden states, then normalised
    w = a.module.head.weight.detach()
    for text, vec in zip(DOCS[:2], va):
        ids = hf_plain.tokenizer(text)["input_ids"]
        np.testing.assert_allclose(vec, normalize(hf_plain.hidden(ids) @ w.T)[1:-1], atol=ATOL, rtol=0)
    assert a.signature() != ColBERT.from_pretrained(str(hf_plain.path), device="cpu").signature()


def test_default_model_is_minilm_token_vectors(default_model):
    from transformers import AutoModel, AutoTokenizer
    from conftest import default_model_dir
    assert default_model.layout == "hf" and default_model.dim == 384
    assert detect_layout(default_model_dir()) == "hf"
    tok = AutoTokenizer.from_pretrained(str(default_model_dir()))
    bert = AutoModel.from_pretrained(str(default_model_dir())).eval()
    texts = ["the quick brown fox", "Late interaction retrieval with ColBERT, in PyTerrier."]
    for text, vec in zip(texts, default_model.encode_docs(texts)):
        enc = tok(text, return_tensors="pt")
        with torch.no_grad():
            hidden = bert(**enc).last_hidden_state[0]
        np.testing.assert_allclose(vec, normalize(hidden)[1:-1], atol=ATOL, rtol=0)


# ---------------------------------------------------------------------------------------------- detection, errors
def test_detect_layout_every_folder(stanford_v2, stanford_v1_dnn, pylate, bge_m3, hf_plain, remote_code, tmp_path):
    assert detect_layout(stanford_v2.path) == "stanford"
    assert detect_layout(stanford_v1_dnn.path) == "stanford"
    assert detect_layout(pylate.path) == "pylate"
    assert detect_layout(remote_code.path) == "pylate"
    assert detect_layout(bge_m3.path) == "bge-m3"
    assert detect_layout(hf_plain.path) == "hf"
    assert {"stanford", "pylate", "bge-m3", "hf"} <= set(LAYOUTS)
    other = tmp_path / "weights.bin"
    other.write_bytes(b"x")
    with pytest.raises(ValueError):
        detect_layout(other)


def test_forced_layout(pylate, hf_plain):
    """``layout='hf'`` on a PyLate folder ignores its Dense head (and so allows ``dim``)."""
    m = ColBERT.from_pretrained(str(pylate.path), layout="hf", dim=8, device="cpu")
    assert m.layout == "hf" and m.dim == 8
    with pytest.raises(ValueError, match="layout"):
        load_checkpoint(hf_plain.path, layout="nonsense")


def test_unknown_model_raises_oserror(monkeypatch, tmp_path):
    import huggingface_hub.constants
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OSError, match="no/such-model") as info:
        ColBERT.from_pretrained("no/such-model", device="cpu")
    assert "not a local path" in str(info.value) and "hf download no/such-model" in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__  # one short error, no chained traceback


@pytest.mark.parametrize("name", ["stanford_v2", "pylate", "bge_m3"])
def test_dim_on_non_hf_layout_raises(request, name):
    ck = request.getfixturevalue(name)
    with pytest.raises(ValueError, match="dim"):
        ColBERT.from_pretrained(str(ck.path), dim=8, device="cpu")


def test_config_validation():
    with pytest.raises(ValueError):
        EncodingConfig(long_docs="chunk")
    with pytest.raises(ValueError):
        EncodingConfig(doc_maxlen=2)
    with pytest.raises(ValueError):
        EncodingConfig(long_docs="split", doc_maxlen=20, doc_overlap=10)
    with pytest.raises(TypeError):
        EncodingConfig().replace(no_such_setting=1)


# ---------------------------------------------------------------------------------------------- long documents
def test_split_long_docs_is_union_of_windows(hf_plain):
    """doc_maxlen 20 -> 18 text tokens a window, consecutive windows sharing 4 tokens; every window is encoded
    on its own ([CLS] window [SEP]) and the document keeps the vectors of all of them."""
    model = ColBERT.from_pretrained(str(hf_plain.path), device="cpu", doc_maxlen=20, long_docs="split",
                                   doc_overlap=4)
    tok = hf_plain.tokenizer
    words = [f"w{i}" for i in range(40)]  # 'w12' -> 'w', '##12': 2 pieces each
    text = " ".join(words)
    body = tok(text, add_special_tokens=False)["input_ids"]
    n = len(body)
    assert n > 40
    windows, start = [], 0
    while True:
        windows.append(body[start:start + 18])
        if start + 18 >= n:
            break
        start += 18 - 4
    assert len(windows) >= 3
    expected = np.concatenate([normalize(hf_plain.hidden([tok.cls_token_id] + w + [tok.sep_token_id]))[1:-1]
                               for w in windows])
    vecs, ids = model.encode_docs([text, "short text"], return_ids=True)
    assert len(vecs[0]) == n + 4 * (len(windows) - 1)
    np.testing.assert_allclose(vecs[0], expected, atol=ATOL, rtol=0)
    assert ids[0].tolist() == [i for w in windows for i in w]
    assert set(ids[0].tolist()) == set(body)
    np.testing.assert_allclose(vecs[1], hf_expected(hf_plain, "short text"), atol=ATOL, rtol=0)
    # truncation keeps only the first window
    trunc = ColBERT.from_pretrained(str(hf_plain.path), device="cpu", doc_maxlen=20)
    np.testing.assert_allclose(trunc.encode_docs([text])[0], expected[:18], atol=ATOL, rtol=0)


def test_split_finds_a_match_at_the_end_of_a_long_document(default_model):
    filler = ("the committee met on tuesday to discuss the annual budget of the town library and the repairs "
              "needed for the roof of the old school building near the river ") * 2
    doc = filler + "photosynthesis converts sunlight into chemical energy in chloroplasts"
    query = "photosynthesis in chloroplasts"
    base = default_model
    split = ColBERT(base.module, base.tokenizer, base.config.replace(doc_maxlen=32, long_docs="split", doc_overlap=8),
                    name=base.name, layout=base.layout, device="cpu")
    trunc = ColBERT(base.module, base.tokenizer, base.config.replace(doc_maxlen=32), name=base.name,
                    layout=base.layout, device="cpu")
    n_body = len(base.tokenizer(doc, add_special_tokens=False)["input_ids"])
    assert n_body > 60
    assert len(trunc.encode_docs([doc])[0]) == 30
    assert len(split.encode_docs([doc])[0]) > n_body
    s_split = split.score_pairs([(query, doc)])[0]
    s_trunc = trunc.score_pairs([(query, doc)])[0]
    assert s_split > s_trunc + 0.5
    assert split.signature() != trunc.signature()


# ---------------------------------------------------------------------------------------------- scoring, signature
@pytest.mark.parametrize("name", ["stanford_v2", "pylate_bias", "bge_m3", "hf_plain"])
def test_score_pairs_is_hand_maxsim(request, name):
    ck = request.getfixturevalue(name)
    model = ColBERT.from_pretrained(str(ck.path), device="cpu")
    pairs = [(q, d) for q in QUERIES for d in DOCS] + [(QUERIES[0], "")]
    scores = model.score_pairs(pairs)
    assert scores.dtype == np.float32 and scores.shape == (len(pairs),)
    qv = dict(zip(QUERIES, model.encode_queries(QUERIES)))
    dv = dict(zip(DOCS + [""], model.encode_docs(DOCS + [""])))
    divide = name == "bge_m3"
    expected = [hand_maxsim(qv[q], dv[d]) / (len(qv[q]) if divide else 1) for q, d in pairs]
    np.testing.assert_allclose(scores, expected, atol=1e-4, rtol=1e-5)
    assert model.score_pairs([]).shape == (0,)


def test_signature_distinguishes_settings(hf_plain, stanford_v2, stanford_v2_attend, pylate):
    a = ColBERT.from_pretrained(str(hf_plain.path), device="cpu")
    b = ColBERT.from_pretrained(str(hf_plain.path), device="cpu")
    c = ColBERT.from_pretrained(str(hf_plain.path), device="cpu", doc_maxlen=64)
    assert a.signature() == b.signature() and a.key() == b.key()
    assert a.signature() != c.signature()
    assert c.signature()["doc_maxlen"] == 64
    s1 = ColBERT.from_pretrained(str(stanford_v2.path), device="cpu").signature()
    s2 = ColBERT.from_pretrained(str(stanford_v2_attend.path), device="cpu").signature()
    assert s1 != s2
    p = ColBERT.from_pretrained(str(pylate.path), device="cpu").signature()
    assert len({str(sorted(x.items())) for x in (a.signature(), s1, p)}) == 3


def test_bge_m3_pipeline_divides_by_query_length(bge_model):
    """``scorer()`` carries bge-m3's division by the number of query vectors."""
    import pandas as pd
    res = pd.DataFrame([("1", QUERIES[0], f"d{i}", d) for i, d in enumerate(DOCS)],
                       columns=["qid", "query", "docno", "text"])
    out = (bge_model.query_encoder() >> bge_model.doc_encoder() >> bge_model.scorer())(res)
    expected = dict(zip([f"d{i}" for i in range(len(DOCS))], bge_model.score_pairs([(QUERIES[0], d) for d in DOCS])))
    for row in out.itertuples():
        assert row.score == pytest.approx(expected[row.docno], abs=1e-5)
        assert row.score == pytest.approx(hand_maxsim(row.query_embs, row.doc_embs) / len(row.query_embs), abs=1e-5)
    text_out = bge_model.text_scorer()(res)
    np.testing.assert_allclose(text_out["score"].to_numpy(), out["score"].to_numpy(), atol=1e-5)


# ---------------------------------------------------------------------------------------------- known bugs
def _st_bi_encoder(hf_plain, folder):
    """A sentence-transformers bi-encoder (Transformer, Pooling, Dense, Normalize), as e.g. EmbeddingGemma or
    sentence-t5 are saved: its Dense acts on the pooled sentence vector, not on token vectors."""
    import json
    import shutil
    shutil.copytree(hf_plain.path, folder)
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"},
        {"idx": 3, "name": "3", "path": "3_Normalize", "type": "sentence_transformers.models.Normalize"}]))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 32,
                                                                   "pooling_mode_mean_tokens": True}))
    (folder / "2_Dense").mkdir()
    (folder / "2_Dense" / "config.json").write_text(json.dumps({
        "in_features": 32, "out_features": 16, "bias": True,
        "activation_function": "torch.nn.modules.linear.Identity"}))
    torch.manual_seed(12)
    lin = torch.nn.Linear(32, 16)
    from safetensors.torch import save_file
    save_file({"linear.weight": lin.weight.detach().contiguous(), "linear.bias": lin.bias.detach().contiguous()},
              str(folder / "2_Dense" / "model.safetensors"))
    (folder / "3_Normalize").mkdir()
    (folder / "config_sentence_transformers.json").write_text(json.dumps({"similarity_fn_name": "cosine"}))
    return folder


def test_sentence_transformers_bi_encoder_with_dense_is_hf(hf_plain, tmp_path):
    folder = _st_bi_encoder(hf_plain, tmp_path / "st_bi_encoder")
    assert detect_layout(folder) == "hf"
    model = ColBERT.from_pretrained(str(folder), device="cpu")
    assert model.layout == "hf" and model.dim == 32
    assert_vectors(model.encode_docs(DOCS[:2]), [hf_expected(hf_plain, d) for d in DOCS[:2]])


def test_signature_does_not_depend_on_path_spelling(hf_plain, monkeypatch):
    a = ColBERT.from_pretrained(str(hf_plain.path), device="cpu")
    b = ColBERT.from_pretrained(str(hf_plain.path) + "/", device="cpu")
    monkeypatch.chdir(hf_plain.path.parent)
    c = ColBERT.from_pretrained(hf_plain.path.name, device="cpu")
    assert a.signature() == b.signature() == c.signature()
    assert a.doc_encoder() == c.doc_encoder()


def test_split_with_tiny_windows_is_refused_or_covers_everything(pylate):
    try:
        model = ColBERT.from_pretrained(str(pylate.path), device="cpu", doc_maxlen=4, long_docs="split",
                                        doc_overlap=1)  # [CLS] [D] <1 text token> [SEP]
    except ValueError:
        return  # refusing the setting up front is fine
    text = "one two three four five six"
    _, ids = model.encode_docs([text], return_ids=True)
    assert set(pylate.tokenizer(text, add_special_tokens=False)["input_ids"]) <= set(ids[0].tolist())


def test_pylate_without_query_expansion(pylate):
    model = ColBERT.from_pretrained(str(pylate.path), device="cpu", query_expansion=False)
    ck = type(pylate)(pylate.path, pylate.backbone, pylate.heads, pylate.tokenizer,
                      {**pylate.meta, "do_query_expansion": False})
    qv = model.encode_queries(QUERIES)
    assert len(qv[0]) == len(pylate.tokenizer(QUERIES[0])["input_ids"]) + 1  # + [Q], no [MASK] pads
    assert_vectors(qv, [pylate_expected(ck, q, True) for q in QUERIES])


def test_encode_rejects_a_bare_string(hf_model):
    with pytest.raises(TypeError, match="list"):
        hf_model.encode_queries("one query")
    with pytest.raises(TypeError, match="#1"):
        hf_model.encode_docs(["fine", None])
