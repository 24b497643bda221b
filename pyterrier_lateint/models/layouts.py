"""Recognise and load the checkpoint layouts of late-interaction models.

Each loader returns a :class:`LoadedCheckpoint`: a tokenizer, the transformer backbone, an optional projection
head (``hidden -> dim``) and the :class:`EncodingConfig` read from the checkpoint's own metadata.

Layouts:
- ``stanford``: Stanford ColBERT v1/v2 (``HF_ColBERT``: BERT-like weights under ``bert.`` plus a bias-free
  ``linear``; ``artifact.metadata`` for settings) and v1 ``.dnn`` files (``model_state_dict``).
- ``pylate``: PyLate / sentence-transformers ColBERT (Transformer + Dense modules, prefixes and lengths in
  ``config_sentence_transformers.json``). Jina-ColBERT v2 uses this layout with remote code.
- ``bge-m3``: BAAI/bge-m3's ColBERT head (``colbert_linear.pt``, with bias, on the last hidden state without CLS;
  scores divided by query length).
- ``hf``: any Hugging Face encoder (sentence-transformers bi-encoders included), optionally with a freshly
  initialised head of ``dim`` outputs.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from .config import (COLBERT_AI_DEFAULTS, COLBERT_V02_DEFAULTS, DNN_BASE_MODEL_KEYS, DNN_DEFAULT_BASE_MODEL,
                     PUNCTUATION, EncodingConfig)

logger = logging.getLogger(__name__)

LAYOUTS = ("stanford", "pylate", "bge-m3", "hf", "lateint")
SAVED_CONFIG = "lateint_config.json"  # written by save_checkpoint: the exact EncodingConfig and source layout


@dataclass
class LoadedCheckpoint:
    layout: str
    tokenizer: Any
    backbone: nn.Module
    head: Optional[nn.Linear]
    config: EncodingConfig


def _read_json(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _state_dict(folder: Path, stem: str = "model") -> dict[str, torch.Tensor]:
    """Load ``<stem>.safetensors`` or ``pytorch_model.bin`` (or ``<stem>.bin``) from ``folder``."""
    st = folder / f"{stem}.safetensors"
    if st.exists():
        from safetensors.torch import load_file
        return load_file(str(st))
    for name in ("pytorch_model.bin", f"{stem}.bin"):
        if (folder / name).exists():
            return torch.load(folder / name, map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"no weights ({stem}.safetensors or pytorch_model.bin) in {folder}")


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".index.json")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer.model", "sentencepiece.bpe.model", "spiece.model",
                   "vocab.json", "tokenizer_config.json")


def check_checkpoint_folder(path: Path) -> None:
    """``FileNotFoundError`` naming what a checkpoint folder lacks (``config.json``, weights, tokenizer files),
    instead of the first raw error of transformers or tokenizers. A ``.dnn`` file (ColBERT v1) passes."""
    path = Path(path)
    if not path.is_dir():
        return
    names = {p.name for p in path.iterdir()}
    missing = []
    if "config.json" not in names:
        missing.append("config.json (the encoder's configuration)")
    if not any(n.endswith(WEIGHT_SUFFIXES) for n in names):
        missing.append("weights (model.safetensors or pytorch_model.bin)")
    if not names & set(TOKENIZER_FILES):
        missing.append("a tokenizer (tokenizer.json, or vocab.txt / sentencepiece.bpe.model with "
                       "tokenizer_config.json)")
    if missing:
        held = ", ".join(sorted(names)[:8]) + (", ..." if len(names) > 8 else "") if names else "nothing"
        raise FileNotFoundError(
            f"{path} is not a complete checkpoint folder: it lacks {'; '.join(missing)} (it holds {held}). A model "
            "folder is what `hf download NAME --local-dir DIR`, model.save(DIR) or save_pretrained(DIR) writes; "
            "copy the missing files from the model's source")


def detect_layout(path: Path) -> str:
    """Name the layout of a local checkpoint folder (or ``.dnn`` file).

    Args:
        path: the checkpoint folder or ``.dnn`` file.

    Returns:
        str: one of :data:`LAYOUTS`: ``lateint`` (written by ``save_pretrained``), ``stanford`` (``.dnn``,
        ``artifact.metadata`` or an ``HF_ColBERT`` config), ``bge-m3`` (``colbert_linear.pt``), else ``pylate`` or
        ``hf`` by the sentence-transformers modules.

    Raises:
        ValueError: when ``path`` is a file other than a ``.dnn``.
    """
    if (path / SAVED_CONFIG).exists():
        return "lateint"
    if path.is_file():
        if path.suffix == ".dnn":
            return "stanford"
        raise ValueError(f"{path} is a file; expected a checkpoint folder or a ColBERT v1 .dnn file")
    if (path / "colbert_linear.pt").exists():
        return "bge-m3"
    if (path / "artifact.metadata").exists():
        return "stanford"
    if (path / "config.json").exists() and \
            "HF_ColBERT" in (_read_json(path / "config.json").get("architectures") or []):
        return "stanford"
    return detect_layout_modules(path)


def _load_tokenizer(path: Path | str, trust_remote_code: bool):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)


def _load_backbone(path: Path | str, trust_remote_code: bool) -> nn.Module:
    from transformers import AutoConfig, AutoModel
    config = AutoConfig.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    if getattr(config, "auto_map", None) and not trust_remote_code:
        raise ValueError(
            f"checkpoint {path} needs its own modelling code (auto_map in config.json, e.g. Jina-ColBERT); "
            "load it with ColBERT.from_pretrained(..., trust_remote_code=True) if you trust its source")
    kwargs = {"add_pooling_layer": False} if config.model_type in _POOLER_MODELS else {}
    from transformers.utils import logging as hf_logging
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the unused pooler / projection weights are expected, not news
    try:
        return AutoModel.from_pretrained(str(path), config=config, trust_remote_code=trust_remote_code, **kwargs)
    finally:
        hf_logging.set_verbosity(level)


# model types whose AutoModel has a pooler that token-level encoders never use
_POOLER_MODELS = ("bert", "roberta", "xlm-roberta", "camembert")


def _linear(weight: torch.Tensor, bias: Optional[torch.Tensor]) -> nn.Linear:
    out_dim, in_dim = weight.shape
    lin = nn.Linear(in_dim, out_dim, bias=bias is not None)
    with torch.no_grad():
        lin.weight.copy_(weight)
        if bias is not None:
            lin.bias.copy_(bias)
    return lin


def dnn_base_model(meta: dict, base_model: Optional[str] = None) -> tuple[str, str]:
    """The base model of a ColBERT v1 ``.dnn`` (whose configuration and tokenizer its weights need) and where that
    name came from: ``base_model`` when given, else ``arguments['model']`` (colbert-ai's key),
    ``arguments['bert_model']``, else ``bert-base-uncased`` (what ColBERT v0.2 always loads)."""
    if base_model is not None:
        return str(base_model), "base_model="
    for key in DNN_BASE_MODEL_KEYS:
        if isinstance(meta.get(key), str) and meta[key]:
            return meta[key], f"the file's arguments['{key}']"
    return DNN_DEFAULT_BASE_MODEL, "ColBERT v0.2's fixed base model; the file's arguments name none"


def _load_dnn_base(path: Path, base: str, source: str, trust_remote_code: bool):
    """Tokenizer and (untrained) backbone of a ``.dnn``'s base model, or one ``OSError`` that names the fix."""
    from transformers import AutoConfig, AutoModel
    try:
        tokenizer = _load_tokenizer(base, trust_remote_code)
        backbone = AutoModel.from_config(AutoConfig.from_pretrained(base, trust_remote_code=trust_remote_code),
                                         trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as ex:
        reason = str(ex).strip().splitlines()[0][:200] if str(ex).strip() else type(ex).__name__
        raise OSError(
            f"{path} is a ColBERT v1 .dnn file: its weights need the configuration and tokenizer of their base model "
            f"{base!r} ({source}), which could not be loaded ({reason}). Pass a local copy of that model: "
            f"ColBERT.from_pretrained({str(path)!r}, base_model=DIR), DIR a folder with its config.json and tokenizer "
            f"files (`hf download {base} --local-dir DIR` on a machine with network access; the weights are not "
            "needed)") from None
    return tokenizer, backbone


def load_stanford(path: Path, trust_remote_code: bool = False, base_model: Optional[str] = None) -> LoadedCheckpoint:
    """Stanford ColBERT: ``[Q]``/``[D]`` markers, ``[MASK]`` query augmentation, punctuation masking.

    A folder (ColBERT v2, ``HF_ColBERT``) is read as colbert-ai reads it: settings from ``artifact.metadata``, the
    rest colbert-ai's defaults (:data:`COLBERT_AI_DEFAULTS`). A v1 ``.dnn`` file is read as ColBERT v0.2 wrote it:
    settings from its ``arguments``, the rest v0.2's defaults (:data:`COLBERT_V02_DEFAULTS`: punctuation kept); its
    base model from ``base_model``, ``arguments['model']`` or ``arguments['bert_model']``, else
    ``bert-base-uncased`` (:func:`dnn_base_model`)."""
    meta: dict[str, Any] = {}
    if path.is_file():  # ColBERT v1 .dnn: {'model_state_dict': {...}, 'arguments': {...}}
        blob = torch.load(path, map_location="cpu", weights_only=False)
        state = {k.removeprefix("module."): v for k, v in blob["model_state_dict"].items()}
        meta = dict(blob.get("arguments") or {})
        defaults = COLBERT_V02_DEFAULTS
        base, source = dnn_base_model(meta, base_model)
        tokenizer, backbone = _load_dnn_base(path, base, source, trust_remote_code)
        bert_state = {k.removeprefix("bert."): v for k, v in state.items() if k.startswith("bert.")}
        own = backbone.state_dict()
        wrong = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in bert_state.items()
                 if k in own and own[k].shape != v.shape]
        if wrong:
            raise ValueError(f"{path}: its weights do not fit the base model {base!r} ({source}): {wrong[0]}"
                             f"{' and %d more' % (len(wrong) - 1) if len(wrong) > 1 else ''}; pass "
                             "base_model= the model the .dnn was trained from")
        missing, _ = backbone.load_state_dict(bert_state, strict=False)
        if [m for m in missing if "pooler" not in m and "position_ids" not in m]:
            raise ValueError(f"{path}: weights missing for {missing[:5]}...")
    else:
        if base_model is not None:
            raise ValueError(f"base_model= applies to ColBERT v1 .dnn files, whose weights need a base model's "
                             f"configuration and tokenizer; {path} is a folder with its own")
        defaults = COLBERT_AI_DEFAULTS
        if (path / "artifact.metadata").exists():
            meta = _read_json(path / "artifact.metadata")
            meta = {**meta.get("config", {}), **meta}  # some versions nest settings under "config"
        state = _state_dict(path)
        tokenizer = _load_tokenizer(path, trust_remote_code)
        backbone = _load_backbone(path, trust_remote_code)
    if "linear.weight" not in state:
        raise ValueError(f"{path}: no 'linear.weight' projection in a Stanford ColBERT checkpoint")
    head = _linear(state["linear.weight"], None)
    meta = {**defaults, **{k: v for k, v in meta.items() if v is not None}}
    config = EncodingConfig(
        query_maxlen=int(meta["query_maxlen"]),
        doc_maxlen=int(meta["doc_maxlen"]),
        query_marker=meta["query_token_id"],
        doc_marker=meta["doc_token_id"],
        query_expansion=True,
        attend_to_mask_tokens=bool(meta["attend_to_mask_tokens"]),
        drop_special_tokens=False,
        doc_skiplist=PUNCTUATION if meta["mask_punctuation"] else (),
    )
    return LoadedCheckpoint("stanford", tokenizer, backbone, head, config)


def _st_transformer_path(path: Path) -> Path:
    """The folder of the Transformer module of a sentence-transformers checkpoint."""
    if (path / "modules.json").exists():
        for m in _read_json(path / "modules.json"):
            if m.get("type", "").endswith("Transformer"):
                return path / m.get("path", "")
    return path


def load_pylate(path: Path, trust_remote_code: bool = False) -> LoadedCheckpoint:
    """PyLate / sentence-transformers ColBERT: Transformer + Dense, prefixes from its config."""
    modules = _read_json(path / "modules.json")
    st_cfg = _read_json(path / "config_sentence_transformers.json") if (path / "config_sentence_transformers.json").exists() else {}
    tpath = _st_transformer_path(path)
    tokenizer = _load_tokenizer(tpath, trust_remote_code)
    backbone = _load_backbone(tpath, trust_remote_code)
    dense = [m for m in modules if "Dense" in m.get("type", "")]
    layers = []
    for m in dense:
        dpath = path / m["path"]
        dcfg = _read_json(dpath / "config.json")
        act = dcfg.get("activation_function", "torch.nn.modules.linear.Identity")
        if not act.endswith("Identity"):
            raise ValueError(f"{dpath}: Dense activation {act} is not supported (only Identity, as PyLate uses)")
        state = _state_dict(dpath)
        weight = state["linear.weight"]
        if dcfg.get("use_residual"):  # PyLate's Dense: linear(x) + x, or + residual(x) when the sizes differ
            residual = state.get("residual.weight")
            if residual is None and weight.shape[0] != weight.shape[1]:
                raise ValueError(f"{dpath}: use_residual with {weight.shape[1]} -> {weight.shape[0]} features "
                                 "needs a 'residual.weight', which the weights lack")
            weight = weight + (residual if residual is not None else torch.eye(weight.shape[0], dtype=weight.dtype))
        layers.append(_linear(weight, state.get("linear.bias")))
    head = layers[0]
    for extra in layers[1:]:  # fold a chain of linear maps into one
        w = extra.weight @ head.weight
        b = (extra.weight @ head.bias if head.bias is not None else 0) + (extra.bias if extra.bias is not None else 0)
        head = _linear(w, b if isinstance(b, torch.Tensor) else None)
    skip = st_cfg.get("skiplist_words", list(PUNCTUATION))
    config = EncodingConfig(
        query_maxlen=int(st_cfg.get("query_length", 32)),
        doc_maxlen=int(st_cfg.get("document_length", 180)),
        query_marker=st_cfg.get("query_prefix", "[Q] ") or None,
        doc_marker=st_cfg.get("document_prefix", "[D] ") or None,
        query_expansion=bool(st_cfg.get("do_query_expansion", True)),
        attend_to_mask_tokens=bool(st_cfg.get("attend_to_expansion_tokens", False)),
        drop_special_tokens=False,
        doc_skiplist=tuple(skip),
    )
    return LoadedCheckpoint("pylate", tokenizer, backbone, head, config)


def load_bge_m3(path: Path, trust_remote_code: bool = False) -> LoadedCheckpoint:
    """bge-m3: ``colbert_linear`` (with bias) on hidden states after CLS; score / query length."""
    tokenizer = _load_tokenizer(path, trust_remote_code)
    backbone = _load_backbone(path, trust_remote_code)
    state = torch.load(path / "colbert_linear.pt", map_location="cpu", weights_only=True)
    head = _linear(state["weight"], state.get("bias"))
    config = EncodingConfig(query_maxlen=512, doc_maxlen=8192, drop_special_tokens=False, drop_first_token=True,
                            divide_by_query_length=True)
    return LoadedCheckpoint("bge-m3", tokenizer, backbone, head, config)


def load_hf(path: Path | str, trust_remote_code: bool = False, dim: Optional[int] = None, seed: int = 0,
            head_init: str = "random") -> LoadedCheckpoint:
    """Any encoder: its last hidden states are the token vectors, or a new bias-free head of ``dim`` outputs
    projects them: ``head_init="random"`` (uniform, seeded by ``seed``) or ``"identity"`` (``dim`` must equal the
    hidden size: training then starts from exactly the untrained vectors)."""
    tpath = _st_transformer_path(Path(path)) if Path(path).exists() else path
    tokenizer = _load_tokenizer(tpath, trust_remote_code)
    backbone = _load_backbone(tpath, trust_remote_code)
    head = None
    if dim is not None:
        gen = torch.Generator().manual_seed(seed)
        hidden = backbone.config.hidden_size
        if head_init == "identity":
            if dim != hidden:
                raise ValueError(f"head_init='identity' needs dim == hidden size ({hidden}), not {dim}")
            weight = torch.eye(hidden)
        elif head_init == "random":
            weight = torch.empty(dim, hidden)
            bound = 1.0 / hidden ** 0.5
            weight.uniform_(-bound, bound, generator=gen)
        else:
            raise ValueError(f"head_init must be 'random' or 'identity', not {head_init!r}")
        head = _linear(weight, None)
    config = EncodingConfig(query_maxlen=32, doc_maxlen=180, drop_special_tokens=True)
    return LoadedCheckpoint("hf", tokenizer, backbone, head, config)


def load_checkpoint(path: Path, layout: Optional[str] = None, trust_remote_code: bool = False,
                    dim: Optional[int] = None, head_init: str = "random",
                    base_model: Optional[str] = None) -> LoadedCheckpoint:
    """Load a local checkpoint, detecting its layout unless ``layout`` names one of :data:`LAYOUTS`.

    Args:
        path: the checkpoint folder (or ColBERT v1 ``.dnn`` file).
        layout: one of :data:`LAYOUTS`; default: :func:`detect_layout`.
        trust_remote_code: passed to transformers.
        dim: add a new bias-free head of ``dim`` outputs (``hf`` layout only); default: none.
        head_init: ``random`` (default) or ``identity`` initialisation of that head.
        base_model: the base model (Hub name or local folder) of a ColBERT v1 ``.dnn`` file.

    Returns:
        LoadedCheckpoint: the layout, tokenizer, backbone, head (or ``None``) and
        :class:`~pyterrier_lateint.models.EncodingConfig`.

    Raises:
        FileNotFoundError: when the folder lacks its configuration, weights or tokenizer.
        ValueError: on an unknown layout, ``dim`` for a layout with its own head, or ``base_model`` for anything
            but a ``.dnn`` file.

    Example:
        .. code-block:: python

            from pyterrier_lateint.models import load_checkpoint

            loaded = load_checkpoint(Path("colbertv2.0"))   # a local folder
            print(loaded.layout, loaded.config)              # e.g. stanford EncodingConfig(...)
    """
    check_checkpoint_folder(path)
    layout = layout or detect_layout(path)
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")
    if dim is not None and layout != "hf":
        raise ValueError(f"dim={dim} adds a new head, which only applies to plain encoders; {path} is a "
                         f"{layout} checkpoint with its own head (pass layout='hf' to replace it)")
    if base_model is not None and not (layout == "stanford" and Path(path).is_file()):
        raise ValueError(f"base_model= applies to ColBERT v1 .dnn files, whose weights need a base model's "
                         f"configuration and tokenizer; {path} is a {layout} checkpoint folder with its own")
    logger.info("loading %s checkpoint from %s", layout, path)
    if layout == "stanford":
        return load_stanford(path, trust_remote_code, base_model=base_model)
    if layout == "pylate":
        return load_pylate(path, trust_remote_code)
    if layout == "bge-m3":
        return load_bge_m3(path, trust_remote_code)
    if layout == "lateint":
        return load_saved(path, trust_remote_code)
    return load_hf(path, trust_remote_code, dim=dim, head_init=head_init)


def load_saved(path: Path, trust_remote_code: bool = False) -> LoadedCheckpoint:
    """A checkpoint written by :func:`save_checkpoint`: sentence-transformers/PyLate modules plus the exact
    :class:`EncodingConfig` in ``lateint_config.json``. The identity head written only for PyLate's sake (a model
    without a head) is dropped again, so the module is the one that was saved."""
    saved = _read_json(path / SAVED_CONFIG)
    inner = load_pylate(path, trust_remote_code) if detect_layout_modules(path) == "pylate" else \
        load_hf(path, trust_remote_code)
    head = None if saved.get("pylate_identity_head") else inner.head
    config = EncodingConfig(**{**saved["config"], "doc_skiplist": tuple(saved["config"].get("doc_skiplist", ()))})
    return LoadedCheckpoint(saved.get("layout", inner.layout), inner.tokenizer, inner.backbone, head, config)


def detect_layout_modules(path: Path) -> str:
    """``pylate`` when ``modules.json`` names a Dense module and no Pooling (a sentence-transformers bi-encoder
    pools, and its Dense acts on the pooled sentence vector), else ``hf``."""
    if (path / "modules.json").exists():
        types = [m.get("type", "") for m in _read_json(path / "modules.json")]
        if any("Dense" in t for t in types) and not any("Pooling" in t for t in types):
            return "pylate"
    return "hf"


def pylate_skiplist(tokenizer: Any, config: EncodingConfig) -> list[str]:
    """The ``skiplist_words`` that make PyLate drop exactly the document vectors we drop: the vocabulary token of
    every one-token ``doc_skiplist`` word (PyLate looks words up with ``convert_tokens_to_ids``) and, with
    ``drop_special_tokens``, the tokenizer's special tokens ([CLS]/[SEP], <s>/</s>)."""
    words: list[str] = []
    for word in config.doc_skiplist:
        ids = tokenizer(word, add_special_tokens=False)["input_ids"]
        if len(ids) == 1:
            words.append(tokenizer.convert_ids_to_tokens(ids[0]))
    if config.drop_special_tokens:
        words += [t for t in (tokenizer.cls_token, tokenizer.sep_token, tokenizer.bos_token, tokenizer.eos_token)
                  if t]
    return list(dict.fromkeys(words))


def pylate_differences(config: EncodingConfig) -> list[str]:
    """What PyLate's ``models.ColBERT(folder)`` cannot reproduce of a checkpoint saved with ``config`` (PyLate has no
    setting for these); empty when its vectors are ours."""
    out = []
    if config.drop_special_tokens:
        out.append("its query vectors keep [CLS]/[SEP] (PyLate drops skiplist tokens from documents only), so each "
                   "query has 2 more vectors than ours and MaxSim differs; its document vectors are ours")
    if config.drop_first_token:
        out.append("it keeps the first token's vector (drop_first_token)")
    if config.divide_by_query_length:
        out.append("it does not divide scores by the query length")
    if not config.normalize:
        out.append("it L2-normalises the vectors (normalize=False here)")
    if config.long_docs == "split":
        out.append("it truncates documents at document_length (long_docs='split' here)")
    return out


def save_checkpoint(path: Path, tokenizer: Any, backbone: nn.Module, head: Optional[nn.Linear],
                    config: EncodingConfig, layout: str) -> Path:
    """Write a checkpoint that ``ColBERT.from_pretrained(path)`` loads with identical encoding, in the
    sentence-transformers / PyLate layout (Transformer at the root, ``1_Dense`` head,
    ``config_sentence_transformers.json``) so that PyLate's ``models.ColBERT(path)`` loads it too.

    A model without a head gets an identity ``1_Dense`` (hidden -> hidden, no bias; PyLate would otherwise add a
    random 128-d head), dropped again by :func:`load_saved`. The PyLate settings are ours: markers as prefixes (``""``
    for none), lengths, expansion, and a skiplist of our dropped document tokens, special tokens included
    (:func:`pylate_skiplist`). What PyLate still cannot reproduce (:func:`pylate_differences`; e.g. the default
    model's queries, whose [CLS]/[SEP] vectors PyLate keeps) is logged as a warning and written to
    ``lateint_config.json`` under ``pylate_differences``."""
    from safetensors.torch import save_file
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    backbone.save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}]
    identity = head is None
    if identity:
        hidden = backbone.config.hidden_size
        weight, bias = torch.eye(hidden), None
    else:
        weight, bias = head.weight.detach(), (head.bias.detach() if head.bias is not None else None)
    dense = path / "1_Dense"
    dense.mkdir(exist_ok=True)
    with open(dense / "config.json", "w") as f:
        json.dump({"in_features": weight.shape[1], "out_features": weight.shape[0], "bias": bias is not None,
                   "activation_function": "torch.nn.modules.linear.Identity"}, f, indent=2)
    tensors = {"linear.weight": weight.float().cpu().contiguous() if identity else weight.cpu().contiguous()}
    if bias is not None:
        tensors["linear.bias"] = bias.cpu().contiguous()
    save_file(tensors, str(dense / "model.safetensors"))
    modules.append({"idx": 1, "name": "1", "path": "1_Dense", "type": "pylate.models.Dense.Dense"})
    with open(path / "modules.json", "w") as f:
        json.dump(modules, f, indent=2)
    with open(path / "config_sentence_transformers.json", "w") as f:
        json.dump({"model_type": "ColBERT", "query_prefix": config.query_marker or "",
                   "document_prefix": config.doc_marker or "", "query_length": config.query_maxlen,
                   "document_length": config.doc_maxlen, "do_query_expansion": config.query_expansion,
                   "attend_to_expansion_tokens": config.attend_to_mask_tokens,
                   "skiplist_words": pylate_skiplist(tokenizer, config), "similarity_fn_name": "MaxSim"}, f,
                  indent=2)
    differences = pylate_differences(config)
    with open(path / SAVED_CONFIG, "w") as f:
        json.dump({"layout": layout, "config": config.to_dict(), "pylate_identity_head": identity,
                   "pylate_differences": differences}, f, indent=2)
    if differences:
        logger.warning("%s: PyLate's models.ColBERT() loads this folder, but unlike ColBERT.from_pretrained(): %s",
                       path, "; ".join(differences))
    return path


def _looks_local(name: str) -> bool:
    """Whether ``name`` can only be a local path (a Hub id is ``name`` or ``org/name``)."""
    return (name.startswith(("/", "./", "../", "~", "\\")) or name.count("/") > 1 or "\\" in name
            or (len(name) > 1 and name[1] == ":"))


def resolve(name: str) -> Path:
    """A local folder/file for ``name``: itself if it exists, else a Hugging Face Hub snapshot."""
    p = Path(os.path.expanduser(name))
    if p.exists():
        return p
    if _looks_local(name):
        parent = p.resolve().parent
        near = f"; {parent} holds: {', '.join(sorted(x.name for x in parent.iterdir())[:8]) or 'nothing'}" \
            if parent.is_dir() else f"; {parent} does not exist either"
        raise FileNotFoundError(f"no checkpoint at {name!r} ({p.resolve()}): no such file or folder{near}. "
                                "Give the folder a checkpoint was saved or downloaded to, or a Hugging Face Hub id "
                                "such as 'colbert-ir/colbertv2.0'")
    try:
        from huggingface_hub import snapshot_download
        return Path(snapshot_download(name))
    except Exception as ex:  # offline, unknown repo, ...
        reason = str(ex).strip().splitlines()[0][:200] if str(ex).strip() else ""
        raise OSError(
            f"cannot load checkpoint {name!r}: it is not a local path and the Hugging Face Hub copy could not be "
            f"fetched ({type(ex).__name__}{': ' + reason if reason else ''}). Download it on a machine with network "
            f"access (hf download {name} --local-dir DIR) and pass DIR instead; "
            f"ColBERT.from_pretrained() with no name loads the offline default.") from None
