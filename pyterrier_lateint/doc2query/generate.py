"""``Doc2Query``: document expansion by query generation (docTTTTTquery, Nogueira & Lin 2019) with any Hugging Face
sequence-to-sequence checkpoint (T5, BART, a warm-started ``EncoderDecoderModel``, ...)."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import pandas as pd
import pyterrier as pt
import torch

from ..base import ConfigEquality, text_column
from .store import Doc2QueryStore, expanded_text, join_queries

logger = logging.getLogger(__name__)

DECODINGS = ("sample", "beam", "greedy")
PRECISIONS = ("fp32", "fp16", "bf16")
DEFAULT_MAX_INPUT_TOKENS = 512  # docTTTTTquery's input length; the cap when neither model nor tokenizer says less
HUGE_TOKENIZER_LIMIT = 1_000_000  # tokenizers without a length limit report ~1e30
CHARS_PER_TOKEN_BOUND = 20  # text beyond max_chunks * window * this many characters is never tokenised
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class GenerationSettings:
    """How queries are generated; with the generator's weights, the key of the cache (frozen).

    Made by :class:`Doc2Query` from its arguments (``doc2query.settings``).

    Args:
        num_samples: queries per chunk of a document (default 3).
        decoding: ``"sample"`` (default: top-k sampling, docTTTTTquery's choice: diverse queries), ``"beam"`` (the
            ``num_samples`` best of ``num_beams`` beams) or ``"greedy"`` (one query, ``num_samples=1``).
        top_k: sampling: draw from the ``top_k`` most likely tokens (default 10; 0: the whole vocabulary).
        temperature: sampling: logits are divided by this (> 0; default 1.0).
        num_beams: beam search: beams (at least ``num_samples``); default ``max(num_samples, 4)``.
        max_new_tokens: tokens per query (default 64).
        max_input_tokens: the generator's input length (special tokens included; at least 4); longer documents are
            split into consecutive chunks of that length, at most ``max_chunks`` of them, and their queries are
            joined. ``None`` here; :class:`Doc2Query` fills in the model's length, at most 512.
        max_chunks: chunks expanded per document (default 8).
        seed: sampling is seeded per chunk and sample from (seed, sample number, the chunk's tokens), so a
            document's queries do not depend on the batch it is in, the order of the input, or earlier calls
            (default 42).
        precision: ``"fp32"`` (default), ``"fp16"`` or ``"bf16"``.

    Raises:
        ValueError: on an unknown decoding or precision, a count below 1, ``num_samples != 1`` with greedy
            decoding, fewer beams than samples, or a bad ``top_k`` / ``temperature`` / ``max_input_tokens``.

    Example:
        .. code-block:: python

            from pyterrier_lateint.doc2query import GenerationSettings

            settings = GenerationSettings(num_samples=5, decoding="beam", num_beams=8)
            settings.beams, settings.to_dict()["decoding"]   # (8, 'beam')
    """

    num_samples: int = 3
    decoding: str = "sample"
    top_k: int = 10
    temperature: float = 1.0
    num_beams: Optional[int] = None
    max_new_tokens: int = 64
    max_input_tokens: Optional[int] = None
    max_chunks: int = 8
    seed: int = 42
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if self.decoding not in DECODINGS:
            raise ValueError(f"decoding must be one of {DECODINGS}, not {self.decoding!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, not {self.precision!r}")
        if min(self.num_samples, self.max_new_tokens, self.max_chunks) < 1:
            raise ValueError("num_samples, max_new_tokens and max_chunks must be >= 1")
        if self.decoding == "greedy" and self.num_samples != 1:
            raise ValueError(f"greedy decoding gives one query per chunk, not num_samples={self.num_samples}: use "
                             f"decoding='sample' (top-k) or decoding='beam' for several")
        if self.decoding == "beam" and self.beams < self.num_samples:
            raise ValueError(f"beam search returns at most num_beams={self.num_beams} queries, fewer than "
                             f"num_samples={self.num_samples}: raise num_beams")
        if self.decoding == "sample" and (self.top_k < 0 or self.temperature <= 0):
            raise ValueError("top_k must be >= 0 (0: the whole vocabulary) and temperature > 0")
        if self.max_input_tokens is not None and self.max_input_tokens < 4:
            raise ValueError(f"max_input_tokens={self.max_input_tokens} leaves no room for text")

    @property
    def beams(self) -> int:
        """The beams of beam search: ``num_beams``, or ``max(num_samples, 4)`` when not given."""
        return self.num_beams if self.num_beams is not None else max(self.num_samples, 4)

    def to_dict(self) -> dict:
        """The settings as a dict (part of the cache key).

        Returns:
            dict: setting name -> value.
        """
        return dataclasses.asdict(self)


# ---------------------------------------------------------------- loading
def load_generator(checkpoint: Union[str, Path]):
    """Load a sequence-to-sequence checkpoint and its tokenizer.

    Args:
        checkpoint: a local folder, or a Hugging Face Hub name (fetched when online).

    Returns:
        tuple: ``(model, tokenizer)``: a transformers ``AutoModelForSeq2SeqLM`` and its ``AutoTokenizer``.

    Raises:
        ValueError: when the checkpoint is not a sequence-to-sequence model.

    Example:
        .. code-block:: python

            from pyterrier_lateint.doc2query import Doc2Query, load_generator

            model, tokenizer = load_generator("castorini/doc2query-t5-base-msmarco")
            d2q = Doc2Query.from_model(model, tokenizer, num_samples=5)
    """
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from ..models.layouts import resolve

    path = resolve(str(checkpoint))
    try:
        model = AutoModelForSeq2SeqLM.from_pretrained(str(path))
    except ValueError as ex:
        raise ValueError(f"{checkpoint} is not a sequence-to-sequence model ({ex}); Doc2Query needs one, e.g. a T5 or "
                         f"BART checkpoint, or an EncoderDecoderModel (see warm_start_encoder_decoder)") from ex
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    return model, tokenizer


def weights_fingerprint(model: torch.nn.Module) -> str:
    """SHA-1 of every parameter and buffer (names, shapes, dtypes and bytes): the generator's identity in the cache."""
    h = hashlib.sha1()
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def model_max_input_tokens(model, tokenizer) -> int:
    """The longest input (tokens) the generator takes: the smallest of the default, the tokenizer's
    ``model_max_length`` (when real) and the model's position limit."""
    limits = [DEFAULT_MAX_INPUT_TOKENS]
    if 0 < (tokenizer.model_max_length or 0) < HUGE_TOKENIZER_LIMIT:
        limits.append(int(tokenizer.model_max_length))
    config = getattr(model.config, "encoder", model.config)
    for attr in ("max_position_embeddings", "n_positions"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            limits.append(value)
    return min(limits)


def _row_seed(seed: int, sample: int, ids: Sequence[int]) -> int:
    data = np.asarray(ids, dtype=np.int64).tobytes()
    digest = hashlib.sha256(f"{seed}:{sample}:".encode() + data).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


class SeededTopKSampler:
    """A logits processor that samples each row's next token from its own seeded generator (top-k, temperature)
    and leaves only that token possible, so greedy decoding then follows the sample. Row ``r``'s draws depend only
    on ``seeds[r]`` and its own logits, never on the other rows of the batch."""

    def __init__(self, seeds: Sequence[int], top_k: int, temperature: float):
        self.generators = [torch.Generator().manual_seed(s) for s in seeds]
        self.top_k = top_k
        self.temperature = temperature

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        logits = scores.float() / self.temperature
        k = logits.shape[-1] if self.top_k == 0 else min(self.top_k, logits.shape[-1])
        values, indices = logits.topk(k, dim=-1)
        probs = torch.softmax(values.double(), dim=-1).cpu()
        u = torch.cat([torch.rand(1, generator=g, dtype=torch.float64) for g in self.generators])
        cdf = probs.cumsum(-1)
        choice = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(1)).clamp_(max=k - 1)
        chosen = indices.gather(1, choice.to(indices.device))
        out = torch.full_like(scores, float("-inf"))
        out.scatter_(1, chosen, 0.0)
        return out


# ---------------------------------------------------------------- the transformer
class Doc2Query(ConfigEquality, pt.Transformer):
    """Documents ``(docno, text)`` -> generated queries.

    Output: the input columns plus ``querygen`` (the queries, one a line: ``num_samples`` per chunk of the document,
    chunk by chunk); ``text`` is left as is (``append=False``, the default, as pyterrier_doc2query's ``Doc2Query``)
    or, with ``append=True``, gets them appended after a newline, ready for an indexer
    (``Doc2Query(..., append=True) >> index.indexer()``). Documents whose stripped
    text is shorter than ``min_chars`` characters get no queries.

    Generation runs in length-sorted batches of ``batch_size`` chunks under ``torch.inference_mode``, on CUDA when
    present (``device=`` overrides) in ``precision`` (default ``bf16`` on GPUs that have it, else ``fp16``; ``fp32``
    on CPUs). ``cache=FOLDER`` keeps every expansion on disk (a :class:`Doc2QueryStore` in a subfolder per generator
    and settings), written a block of ``block_size`` documents at a time: documents already there are read instead
    of generated, so an interrupted expansion resumes where it stopped.

    Args:
        checkpoint: a seq2seq checkpoint folder or Hub name (T5, BART, an ``EncoderDecoderModel``, ...); with
            ``model``/``tokenizer``, only the generator's name.
        num_samples: queries per chunk (default 3).
        decoding: ``"sample"`` (default), ``"beam"`` or ``"greedy"`` (see :class:`GenerationSettings`).
        top_k: sampling: the most likely tokens drawn from (default 10; 0: all).
        temperature: sampling temperature (default 1.0).
        num_beams: beam search: beams; default ``max(num_samples, 4)``.
        max_new_tokens: tokens per query (default 64).
        max_input_tokens: tokens per chunk, special tokens included; default the model's input length, at most 512.
        max_chunks: chunks expanded per document (default 8); the rest of a longer document is not expanded (a
            warning counts such documents).
        min_chars: documents whose stripped text is shorter get no queries (default 10).
        seed: sampling seed (default 42).
        batch_size: chunks generated together (default 16).
        block_size: documents generated (and cached) per block (default 256).
        append: also append the queries to ``text`` (default False, as pyterrier_doc2query).
        device: where generation runs; default ``cuda`` when available, else ``cpu``.
        precision: ``"fp32"``, ``"fp16"`` or ``"bf16"``; default as above.
        cache: a folder keeping every expansion on disk; default none.
        verbose: show a progress bar over the documents.
        model: an already loaded seq2seq model (with ``tokenizer``); default: loaded from ``checkpoint``.
        tokenizer: its tokenizer (with ``model``).

    Raises:
        ValueError: on a bad setting, only one of ``model``/``tokenizer``, a checkpoint that is not seq2seq, or a
            generation config without decoder start or end token ids.

    Example:
        .. code-block:: python

            from pyterrier_lateint.doc2query import Doc2Query

            d2q = Doc2Query("castorini/doc2query-t5-base-msmarco", num_samples=10, cache="d2q-cache")
            expanded = d2q(pd.DataFrame({"docno": ["d1"], "text": ["The electron has spin 1/2 ..."]}))
            (d2q >> pisa_index.indexer()).index(dataset.get_corpus_iter())   # BM25 over expanded text
    """

    def __init__(self, checkpoint: Union[str, Path], *, num_samples: int = 3, decoding: str = "sample",
                 top_k: int = 10, temperature: float = 1.0, num_beams: Optional[int] = None,
                 max_new_tokens: int = 64, max_input_tokens: Optional[int] = None, max_chunks: int = 8,
                 min_chars: int = 10, seed: int = 42, batch_size: int = 16, block_size: int = 256,
                 append: bool = False, device: Optional[Union[str, torch.device]] = None,
                 precision: Optional[str] = None, cache: Optional[Union[str, Path]] = None, verbose: bool = False,
                 model: Any = None, tokenizer: Any = None):
        if (model is None) != (tokenizer is None):
            raise ValueError("pass both model= and tokenizer= (an in-memory generator), or neither")
        if model is None:
            model, tokenizer = load_generator(checkpoint)
        self.name = str(checkpoint)
        self.device = torch.device(device) if device is not None else \
            torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if precision is None:
            precision = "fp32" if self.device.type == "cpu" else \
                "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        self.settings = GenerationSettings(
            num_samples=num_samples, decoding=decoding, top_k=top_k, temperature=temperature, num_beams=num_beams,
            max_new_tokens=max_new_tokens, max_chunks=max_chunks, seed=seed, precision=precision,
            max_input_tokens=max_input_tokens or model_max_input_tokens(model, tokenizer))
        if min_chars < 0 or batch_size < 1 or block_size < 1:
            raise ValueError("min_chars must be >= 0, batch_size and block_size >= 1")
        self.min_chars = min_chars
        self.batch_size = batch_size
        self.block_size = block_size
        self.append = append
        self.verbose = verbose
        self.cache_root = Path(cache) if cache is not None else None
        self.tokenizer = tokenizer
        self._fingerprint: Optional[str] = None
        if self.cache_root is not None:
            self._fingerprint = weights_fingerprint(model)  # of the weights as given, before any cast
        self.model = model.to(self.device, dtype=DTYPES[precision]).eval()
        self._check_special_tokens()
        self._store: Optional[Doc2QueryStore] = None
        self._specials: Optional[tuple[list[int], list[int]]] = None
        self._cut = 0  # documents cut at max_chunks in the current generate() call

    @classmethod
    def from_model(cls, model: Any, tokenizer: Any, name: str = "in-memory", **kwargs) -> "Doc2Query":
        """A generator from an already loaded model and tokenizer (e.g. straight after training).

        Args:
            model: a seq2seq model (moved to the device and precision in place).
            tokenizer: its tokenizer.
            name: the generator's name, shown in its ``repr`` and in cache folder names (default ``"in-memory"``).
            **kwargs: the other :class:`Doc2Query` settings.

        Returns:
            Doc2Query: the generator.

        Example:
            .. code-block:: python

                model, tokenizer = warm_start_encoder_decoder()
                d2q = Doc2Query.from_model(model, tokenizer, decoding="greedy", num_samples=1)
        """
        return cls(name, model=model, tokenizer=tokenizer, **kwargs)

    def _check_special_tokens(self) -> None:
        gen = self.model.generation_config
        start = gen.decoder_start_token_id if gen.decoder_start_token_id is not None else \
            getattr(self.model.config, "decoder_start_token_id", None)
        if start is None or gen.eos_token_id is None:
            raise ValueError(f"{self.name}: its generation config lacks decoder_start_token_id or eos_token_id; set "
                             f"model.generation_config.decoder_start_token_id/eos_token_id/pad_token_id (for a BERT "
                             f"decoder: [CLS], [SEP], [PAD]) and save it again")

    # ---------------------------------------------------------------- identity
    def _config(self) -> tuple:
        return (self.name, self.settings, self.min_chars, self.append, self.batch_size, str(self.cache_root))

    def __repr__(self) -> str:
        return f"Doc2Query({self.name!r}, num_samples={self.settings.num_samples}, decoding={self.settings.decoding!r})"

    def cache_settings(self) -> dict:
        """What the cache is keyed by: the generator's weights (not its path: a moved folder keeps its cache) and
        every generation setting.

        Returns:
            dict: ``weights_sha1`` (SHA-1 of every parameter and buffer) and the :class:`GenerationSettings`.
        """
        if self._fingerprint is None:
            self._fingerprint = weights_fingerprint(self.model)
        return {"weights_sha1": self._fingerprint, **self.settings.to_dict()}

    @property
    def store(self) -> Optional[Doc2QueryStore]:
        """The cache store of this generator and settings (``None`` without ``cache``)."""
        if self.cache_root is None:
            return None
        if self._store is None:
            settings = self.cache_settings()
            key = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
            existing = sorted(self.cache_root.glob(f"*-{key}")) if self.cache_root.exists() else []
            safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(self.name).name or self.name)[-60:]
            folder = existing[0] if existing else self.cache_root / f"{safe}-{key}"
            self._store = Doc2QueryStore(folder, settings)
        return self._store

    # ---------------------------------------------------------------- transform
    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        """Generate (or read from the cache) the queries of every document of ``inp``.

        Each docno is expanded once per call, however often it occurs.

        Args:
            inp: documents with ``text`` (and ``docno``, required with ``cache``).

        Returns:
            pandas.DataFrame: the input columns plus ``querygen`` (one query a line); with ``append`` ``text`` has
            them appended after a newline.

        Raises:
            TypeError: when a text is not a str.
        """
        pt.validate.columns(inp, includes=["text"] + (["docno"] if self.cache_root is not None else []))
        texts = text_column(inp, "text", "docno")
        docnos = inp["docno"].astype(str).tolist() if "docno" in inp.columns else [str(i) for i in range(len(inp))]
        queries: dict[str, list[str]] = {}
        todo: dict[str, str] = {}  # docno -> text, in input order, each docno once
        for docno, text in zip(docnos, texts):
            if len(text.strip()) < self.min_chars:
                queries[docno] = []
            elif docno not in todo:
                todo[docno] = text
        store = self.store
        if store is not None:
            cached = store.get(todo)
            queries.update(cached)
            todo = {d: t for d, t in todo.items() if d not in cached}
            if cached:
                logger.info("doc2query: %d documents from the cache %s, %d to generate", len(cached), store.path,
                            len(todo))
        self._generate_blocks(todo, queries, store)
        querygen = [join_queries(queries[d]) for d in docnos]
        out = inp.assign(querygen=querygen)
        if self.append:
            out["text"] = [expanded_text(t, q) for t, q in zip(texts, querygen)]
        return out

    def _generate_blocks(self, todo: dict[str, str], queries: dict[str, list[str]],
                         store: Optional[Doc2QueryStore]) -> None:
        items = list(todo.items())
        progress = pt.tqdm(total=len(items), desc="doc2query", unit="doc", disable=not self.verbose or not items)
        try:
            for start in range(0, len(items), self.block_size):
                block = dict(items[start:start + self.block_size])
                generated = dict(zip(block, self.generate(list(block.values()))))
                if store is not None:
                    store.add(generated)  # one atomic append per block
                queries.update(generated)
                progress.update(len(block))
        finally:
            progress.close()

    # ---------------------------------------------------------------- generation
    def _special_tokens(self) -> tuple[list[int], list[int]]:
        """The ids the tokenizer puts before and after a single text (e.g. ``[CLS]``/``[SEP]``, or T5's ``</s>``)."""
        if self._specials is None:
            probe = "a"
            bare = self.tokenizer(probe, add_special_tokens=False)["input_ids"]
            full = self.tokenizer(probe)["input_ids"]
            at = next((i for i in range(len(full) - len(bare) + 1) if full[i:i + len(bare)] == bare), None)
            if not bare or at is None:
                raise ValueError(f"cannot tell where {self.name}'s tokenizer puts its special tokens")
            self._specials = (full[:at], full[at + len(bare):])
        return self._specials

    def chunks(self, text: str) -> list[list[int]]:
        """Input ids (special tokens included) of each chunk of ``text``.

        Chunks are consecutive windows of ``max_input_tokens`` minus the special tokens, at most ``max_chunks``.

        Args:
            text: the document text.

        Returns:
            list: one list of token ids per chunk (one chunk for an empty text).
        """
        s = self.settings
        prefix, suffix = self._special_tokens()
        window = s.max_input_tokens - len(prefix) - len(suffix)
        budget = s.max_chunks * window
        ids = self.tokenizer(text[:budget * CHARS_PER_TOKEN_BOUND], add_special_tokens=False,
                             truncation=False, verbose=False)["input_ids"]
        if len(ids) > budget:
            self._cut += 1
            ids = ids[:budget]
        return [prefix + ids[i:i + window] + suffix for i in range(0, max(len(ids), 1), window)]

    def generate(self, texts: Sequence[str]) -> list[list[str]]:
        """The queries of each text: ``num_samples`` per chunk, chunk by chunk (no cache, no ``min_chars``).

        Args:
            texts: the document texts.

        Returns:
            list: per text, its generated queries (empty ones dropped, whitespace collapsed).
        """
        self._cut = 0
        rows = [(i, ids) for i, text in enumerate(texts) for ids in self.chunks(text)]
        if self._cut:
            s = self.settings
            logger.warning("doc2query: %d of %d documents are longer than max_chunks=%d chunks of max_input_tokens=%d; "
                           "only their first chunks are expanded (raise max_chunks for more)", self._cut, len(texts),
                           s.max_chunks, s.max_input_tokens)
        order = sorted(range(len(rows)), key=lambda r: -len(rows[r][1]))  # longest first: padding stays small
        per_row: list[list[str]] = [[] for _ in rows]
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                batch = order[start:start + self.batch_size]
                for r, qs in zip(batch, self._generate_batch([rows[r][1] for r in batch])):
                    per_row[r] = qs
        out: list[list[str]] = [[] for _ in texts]
        for (i, _), qs in zip(rows, per_row):
            out[i].extend(qs)
        return out

    def _generate_batch(self, inputs: list[list[int]]) -> list[list[str]]:
        s = self.settings
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        width = max(len(ids) for ids in inputs)
        input_ids = torch.full((len(inputs), width), pad, dtype=torch.long)
        attention = torch.zeros((len(inputs), width), dtype=torch.long)
        for i, ids in enumerate(inputs):
            input_ids[i, :len(ids)] = torch.tensor(ids)
            attention[i, :len(ids)] = 1
        input_ids, attention = input_ids.to(self.device), attention.to(self.device)
        common = dict(max_new_tokens=s.max_new_tokens, do_sample=False, pad_token_id=pad)
        if s.decoding == "sample":
            from transformers import LogitsProcessorList
            from transformers.modeling_outputs import BaseModelOutput

            hidden = self.model.get_encoder()(input_ids=input_ids, attention_mask=attention).last_hidden_state
            n = s.num_samples
            seeds = [_row_seed(s.seed, j, ids) for ids in inputs for j in range(n)]
            sequences = self.model.generate(
                encoder_outputs=BaseModelOutput(last_hidden_state=hidden.repeat_interleave(n, dim=0)),
                attention_mask=attention.repeat_interleave(n, dim=0), num_beams=1,
                logits_processor=LogitsProcessorList([SeededTopKSampler(seeds, s.top_k, s.temperature)]), **common)
        elif s.decoding == "beam":
            sequences = self.model.generate(input_ids=input_ids, attention_mask=attention, num_beams=s.beams,
                                            num_return_sequences=s.num_samples, early_stopping=True, **common)
        else:
            sequences = self.model.generate(input_ids=input_ids, attention_mask=attention, num_beams=1, **common)
        decoded = [" ".join(q.split()) for q in self.tokenizer.batch_decode(sequences, skip_special_tokens=True)]
        n = s.num_samples
        return [[q for q in decoded[i * n:(i + 1) * n] if q] for i in range(len(inputs))]
