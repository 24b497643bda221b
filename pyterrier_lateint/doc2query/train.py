"""Training a query generator: fine-tune any Hugging Face sequence-to-sequence model on (passage -> query) pairs,
with the mechanics of :class:`~pyterrier_lateint.training.loop.TrainingLoop` (AdamW with linear warmup and decay,
gradient accumulation, mixed precision, checkpoints with exact resume), and validation by BLEU (sacrebleu) and
ROUGE (rouge-score) of greedily generated queries against held-back pairs."""
from __future__ import annotations

import dataclasses
import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, Union

import pandas as pd
import torch

from ..training.data import Example, Group, TrainingStream
from ..training.config import LoopConfig, setting
from ..training.loop import TrainingLoop

logger = logging.getLogger(__name__)

Pair = tuple[str, str]  # (passage, query)
FINAL_DIR = "final"
IGNORE_INDEX = -100  # label positions the loss ignores (padding)
DEFAULT_MAX_INPUT_TOKENS = 512


@dataclass
class GeneratorTrainingConfig(LoopConfig):
    """Every setting of generator training: the training loop's
    (:class:`~pyterrier_lateint.training.config.LoopConfig`) and the generator's (the ``doc2query-train`` command
    exposes each as ``--name-with-dashes``). A training item is one (passage, query) pair.

    Args:
        output_dir: where checkpoints and the final model (output_dir/final) go (default ``'doc2query-model'``).
        max_steps: optimiser steps (default ``1000``).
        batch_size: (passage, query) pairs per micro-batch (per process) (default ``16``).
        learning_rate: peak AdamW learning rate (default ``0.0001``).
        weight_decay: AdamW weight decay (default ``0.01``).
        warmup_ratio: linear warmup over this share of max_steps, then linear decay to 0 (default ``0.1``).
        grad_accum: micro-batches per optimiser step (default ``1``).
        max_grad_norm: gradient clipping norm (0: no clipping) (default ``1.0``).
        mixed_precision: "no", "fp16" (GPU) or "bf16" (default ``'no'``).
        gradient_checkpointing: recompute activations in the backward pass (less memory, slower) (default ``False``).
        freeze_encoder: train only the decoder (the encoder stays as loaded; faster on a CPU) (default ``False``).
        seed: seed of model RNGs and shuffling (default ``42``).
        shuffle_buffer: pairs shuffled within a sliding buffer of this size (1: file order) (default ``1000``).
        save_every: steps between checkpoints (0: only at the end) (default ``500``).
        keep_checkpoints: newest checkpoints kept on disk (default ``2``).
        eval_every: steps between validations (0: only at the end, when validation pairs are given) (default ``0``).
        log_every: steps between loss log lines (default ``10``).
        report_to: "none", "tensorboard" or "wandb" (default ``'none'``).
        max_input_tokens: passages are cut to this many tokens (default: the model's input length, at most 512).
        max_target_tokens: queries are cut to this many tokens (default ``64``).

    Raises:
        ValueError: on an unknown ``mixed_precision`` or a count out of range.

    Example:
        .. code-block:: python

            from pyterrier_lateint.doc2query import GeneratorTrainingConfig

            config = GeneratorTrainingConfig(output_dir="d2q-model", max_steps=2000, learning_rate=3e-4)
    """

    output_dir: str = setting("doc2query-model", "where checkpoints and the final model (output_dir/final) go")
    learning_rate: float = setting(1e-4, "peak AdamW learning rate")
    eval_every: int = setting(0, "steps between validations (0: only at the end, when validation pairs are given)")
    max_input_tokens: Optional[int] = setting(None, "passages are cut to this many tokens (default: the model's "
                                                     "input length, at most 512)")
    max_target_tokens: int = setting(64, "queries are cut to this many tokens")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_target_tokens < 1:
            raise ValueError("max_target_tokens must be >= 1")


# ---------------------------------------------------------------- pairs
def pairs_from_qrels(topics: pd.DataFrame, qrels: pd.DataFrame, texts: Union[Mapping[str, str], Any],
                     min_label: int = 1) -> list[Pair]:
    """(passage, query) for every judged pair with ``label >= min_label``.

    Only the columns named are read (e.g. never SciFact's ``metadata``). Pairs come in qrels order; judged
    documents missing from ``texts`` are skipped (with a warning).

    Args:
        topics: ``(qid, query)``.
        qrels: ``(qid, docno, label)``.
        texts: docno -> text (a dict, or a collection with ``texts()``).
        min_label: the lowest label that counts (default 1).

    Returns:
        list: ``(passage, query)`` pairs.

    Raises:
        ValueError: when no pair is left.

    Example:
        .. code-block:: python

            from pyterrier_lateint.data import load_collection
            from pyterrier_lateint.doc2query import pairs_from_qrels, split_pairs

            c = load_collection("scifact")
            train, val = split_pairs(pairs_from_qrels(c.get_topics("train"), c.get_qrels("train"), c), 200)
    """
    import pyterrier as pt

    pt.validate.columns(topics, includes=["qid", "query"])
    pt.validate.columns(qrels, includes=["qid", "docno", "label"])
    lookup = texts.texts() if hasattr(texts, "texts") and callable(texts.texts) else texts
    queries = dict(zip(topics["qid"].astype(str), topics["query"]))
    pairs, missing = [], set()
    for qid, docno, label in zip(qrels["qid"].astype(str), qrels["docno"].astype(str), qrels["label"]):
        if label < min_label or qid not in queries:
            continue
        if docno not in lookup:
            missing.add(docno)
            continue
        pairs.append((lookup[docno], queries[qid]))
    if missing:
        logger.warning("%d judged documents are not in the corpus and were skipped (e.g. %s)", len(missing),
                       sorted(missing)[:3])
    if not pairs:
        raise ValueError("no (passage, query) pairs: no qrels with label >= min_label whose qid is in topics and "
                         "whose docno is in the corpus")
    return pairs


def read_pairs_tsv(path: Union[str, Path]) -> list[Pair]:
    """(passage, query) pairs of a TSV file of ``passage \\t query`` lines (docTTTTTquery's training format).

    Args:
        path: the TSV file.

    Returns:
        list: ``(passage, query)`` pairs, in file order (blank lines skipped).

    Raises:
        ValueError: on a line without exactly two non-empty fields, or a file without pairs.
    """
    pairs = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
                raise ValueError(f"{path}:{n}: expected 'passage<TAB>query' with both non-empty, found "
                                 f"{len(parts)} field(s)")
            pairs.append((parts[0], parts[1]))
    if not pairs:
        raise ValueError(f"{path} holds no (passage, query) pairs")
    return pairs


def split_pairs(pairs: Sequence[Pair], n_validation: int, seed: int = 42) -> tuple[list[Pair], list[Pair]]:
    """Split pairs into training and validation by query, so no validation query is ever trained on.

    Whole queries are held back (every pair of a held-back query), chosen at random by ``seed`` until at least
    ``n_validation`` pairs are held back.

    Args:
        pairs: ``(passage, query)`` pairs.
        n_validation: pairs to hold back, at least (0: none).
        seed: seed of the choice (default 42).

    Returns:
        tuple: ``(training pairs, validation pairs)``, each in the input order.

    Raises:
        ValueError: when holding back leaves no training pair.
    """
    by_query: dict[str, list[Pair]] = {}
    for p in pairs:
        by_query.setdefault(p[1], []).append(p)
    queries = list(by_query)
    random.Random(seed).shuffle(queries)
    held: set[str] = set()
    count = 0
    for q in queries:
        if count >= n_validation:
            break
        held.add(q)
        count += len(by_query[q])
    train = [p for p in pairs if p[1] not in held]
    val = [p for p in pairs if p[1] in held]
    if n_validation and not train:
        raise ValueError(f"holding back {n_validation} pairs leaves none to train on ({len(pairs)} in all)")
    return train, val


# ---------------------------------------------------------------- metrics
def generation_metrics(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """BLEU and ROUGE of generated queries against one reference query each.

    Corpus BLEU (sacrebleu, 0-100, with effective order: n-gram orders that no query is long enough to have are
    skipped, so a corpus of 2-word queries is not scored 0) and mean ROUGE-1/2/L F1 (rouge-score with stemming,
    0-1).

    Args:
        predictions: the generated queries.
        references: the reference query of each.

    Returns:
        dict: ``bleu``, ``rouge1``, ``rouge2``, ``rougeL``.

    Raises:
        ImportError: without sacrebleu and rouge-score (``pip install 'pyterrier-lateint[doc2query]'``).
        ValueError: when the lists are empty or of different lengths.

    Example:
        .. code-block:: python

            generation_metrics(["what is electron spin"], ["electron spin definition"])["bleu"]
    """
    try:
        from rouge_score import rouge_scorer
        from sacrebleu.metrics import BLEU
    except ImportError as ex:
        raise ImportError("BLEU/ROUGE validation needs sacrebleu and rouge-score: "
                          "pip install 'pyterrier-lateint[doc2query]'") from ex

    if len(predictions) != len(references) or not predictions:
        raise ValueError(f"need as many predictions as references, and some: {len(predictions)} vs "
                         f"{len(references)}")
    bleu = BLEU(effective_order=True).corpus_score(list(predictions), [list(references)]).score
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    totals = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    for pred, ref in zip(predictions, references):
        for k, v in scorer.score(ref, pred).items():
            totals[k] += v.fmeasure
    return {"bleu": float(bleu), **{k: v / len(predictions) for k, v in totals.items()}}


def bleu_rouge_validation(pairs: Sequence[Pair], batch_size: int = 16,
                          max_new_tokens: int = 32) -> Callable[[Any], dict[str, float]]:
    """A validation callback for :class:`GeneratorTrainer`: greedy queries for each held-back passage, scored by
    :func:`generation_metrics` against that pair's query.

    Args:
        pairs: held-back ``(passage, query)`` pairs (e.g. from :func:`split_pairs`).
        batch_size: chunks generated together during validation (default 16).
        max_new_tokens: tokens per generated query (default 32).

    Returns:
        Callable: ``validate(generator) -> {"bleu", "rouge1", "rouge2", "rougeL"}``, given a
        :class:`~pyterrier_lateint.doc2query.Doc2Query` over the model being trained.

    Raises:
        ValueError: when ``pairs`` is empty.
    """
    if not pairs:
        raise ValueError("no validation pairs")
    passages = list(dict.fromkeys(p for p, _ in pairs))

    def validate(generator) -> dict[str, float]:
        generated = dict(zip(passages, generator.generate(passages)))
        predictions = [(generated[p] or [""])[0] for p, _ in pairs]
        return generation_metrics(predictions, [q for _, q in pairs])

    validate.batch_size = batch_size  # type: ignore[attr-defined]
    validate.max_new_tokens = max_new_tokens  # type: ignore[attr-defined]
    return validate


# ---------------------------------------------------------------- models
def set_special_tokens(model, tokenizer) -> None:
    """Give a seq2seq model (config and generation config) the decoder start, end and padding ids of its tokenizer
    when it lacks them: [CLS]/[SEP]/[PAD] for a BERT tokenizer, the tokenizer's BOS/EOS/PAD otherwise."""
    start = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    eos = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    pad = tokenizer.pad_token_id
    for cfg in (model.config, model.generation_config):
        if getattr(cfg, "decoder_start_token_id", None) is None:
            cfg.decoder_start_token_id = start
        if getattr(cfg, "eos_token_id", None) is None:
            cfg.eos_token_id = eos
        if getattr(cfg, "pad_token_id", None) is None:
            cfg.pad_token_id = pad


def warm_start_encoder_decoder(encoder: Optional[Union[str, Path]] = None, decoder: Optional[Union[str, Path]] = None,
                               seed: int = 42):
    """A new query generator warm-started from BERT-like encoders: a transformers ``EncoderDecoderModel``.

    The decoder's cross-attention and language-model head are new (seeded). Special tokens are set for generation
    ([CLS] starts, [SEP] ends). The global torch RNG state is left as it was.

    Args:
        encoder: checkpoint of the encoder; default the offline default model, all-MiniLM-L6-v2.
        decoder: checkpoint of the decoder; default the encoder's.
        seed: seed of the new weights (default 42).

    Returns:
        tuple: ``(model, tokenizer)`` (the encoder's tokenizer).

    Example:
        .. code-block:: python

            from pyterrier_lateint.doc2query import (GeneratorTrainer, GeneratorTrainingConfig,
                                                     warm_start_encoder_decoder)

            model, tokenizer = warm_start_encoder_decoder()
            GeneratorTrainer(model, tokenizer, GeneratorTrainingConfig(max_steps=500)).train(train_pairs)
    """
    import transformers
    from transformers import AutoTokenizer, EncoderDecoderModel

    from ..models import default_model_path

    encoder = str(encoder) if encoder is not None else str(default_model_path())
    decoder = str(decoder) if decoder is not None else encoder
    state = torch.random.get_rng_state()
    verbosity = transformers.logging.get_verbosity()
    try:
        torch.manual_seed(seed)
        transformers.logging.set_verbosity_error()  # the expected "newly initialised cross-attention" report
        model = EncoderDecoderModel.from_encoder_decoder_pretrained(encoder, decoder)
    finally:
        transformers.logging.set_verbosity(verbosity)
        torch.random.set_rng_state(state)
    tokenizer = AutoTokenizer.from_pretrained(encoder)
    model.config.vocab_size = model.config.decoder.vocab_size
    set_special_tokens(model, tokenizer)
    return model, tokenizer


def _decoder_start(model) -> int:
    start = model.generation_config.decoder_start_token_id
    if start is None:
        start = getattr(model.config, "decoder_start_token_id", None)
    if start is None:
        raise ValueError("the model has no decoder_start_token_id: call set_special_tokens(model, tokenizer) first")
    return int(start)


# ---------------------------------------------------------------- the trainer
class GeneratorTrainer(TrainingLoop):
    """Fine-tunes ``model`` (a Hugging Face seq2seq model) in place on (passage -> query) pairs; a training item is
    one pair.

    The mechanics are :class:`~pyterrier_lateint.training.loop.TrainingLoop`'s. The model and tokenizer get the
    decoder start, end and padding ids they lack.

    Args:
        model: the seq2seq model (e.g. from :func:`warm_start_encoder_decoder` or
            :func:`~pyterrier_lateint.doc2query.load_generator`).
        tokenizer: its tokenizer.
        config: the training settings.
        validation: a callback given a greedy :class:`~pyterrier_lateint.doc2query.Doc2Query` over the model being
            trained (see :func:`bleu_rouge_validation`), run every ``eval_every`` steps and at the end; default
            none.

    Example:
        .. code-block:: python

            from pyterrier_lateint.doc2query import (GeneratorTrainer, GeneratorTrainingConfig, bleu_rouge_validation,
                                                     load_generator, read_pairs_tsv, split_pairs)

            train, val = split_pairs(read_pairs_tsv("pairs.tsv"), 500)
            model, tokenizer = load_generator("t5-small")
            trainer = GeneratorTrainer(model, tokenizer, GeneratorTrainingConfig(output_dir="d2q"),
                                       validation=bleu_rouge_validation(val))
            trainer.train(train)   # then Doc2Query("d2q/final")
    """

    def __init__(self, model, tokenizer, config: GeneratorTrainingConfig,
                 validation: Optional[Callable[[Any], dict[str, float]]] = None):
        super().__init__()
        set_special_tokens(model, tokenizer)
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.validation = validation
        self._device = next(model.parameters()).device
        if config.max_input_tokens is None:
            from .generate import model_max_input_tokens
            self.max_input_tokens = model_max_input_tokens(model, tokenizer)
        else:
            self.max_input_tokens = config.max_input_tokens

    def train(self, pairs: Union[str, Path, Iterable[Pair], Callable[[], Iterable[Pair]]], *,
              resume: bool = True):
        """Train for ``max_steps`` steps on ``pairs``; saves model and tokenizer to ``output_dir/final``.

        ``Doc2Query(output_dir + "/final")`` loads the result.

        Args:
            pairs: a list of ``(passage, query)``, a ``passage \\t query`` TSV path, or a callable returning a fresh
                iterator of pairs per epoch.
            resume: continue from the newest complete checkpoint in ``output_dir`` (default True).

        Returns:
            the trained model (the same object, in eval mode).

        Raises:
            TypeError: when a pair is not two strings.
            ValueError: when there are no pairs, or a pair has an empty passage or query.
        """
        if self.validation is not None and self.config.eval_every == 0:
            self.config = dataclasses.replace(self.config, eval_every=self.config.max_steps)
        stream = TrainingStream(self._source(pairs), 0, self.config.seed, self.config.shuffle_buffer)
        cpu = self._device.type == "cpu" and not torch.cuda.is_available()
        self._run(lambda skip: iter(stream.skip(skip)), resume=resume, cpu=cpu)
        return self.model

    @staticmethod
    def _source(pairs) -> Callable[[], Iterable[Example]]:
        if isinstance(pairs, (str, Path)):
            path = pairs
            return lambda: (Example(q, [p], []) for p, q in read_pairs_tsv(path))
        if callable(pairs):
            return lambda: (Example(q, [p], []) for p, q in pairs())
        items = [Example(q, [p], []) for p, q in _checked_pairs(pairs)]
        if not items:
            raise ValueError("no training pairs given")
        return lambda: iter(items)

    # ---------------------------------------------------------------- hooks
    def _prepare_module(self, accelerator) -> tuple[torch.nn.Module, list[dict]]:
        self.model.to(accelerator.device).train()
        if self.config.gradient_checkpointing:
            self.model.gradient_checkpointing_enable()
        if self.config.freeze_encoder:
            self.model.get_encoder().requires_grad_(False)
        params = [p for p in self.model.parameters() if p.requires_grad]
        return self.model, [{"params": params, "lr": self.config.learning_rate}]

    def encode(self, pairs: Sequence[Pair], device: torch.device) -> dict[str, torch.Tensor]:
        """Tensors of a micro-batch of pairs.

        Args:
            pairs: ``(passage, query)`` pairs.
            device: where the tensors go.

        Returns:
            dict: ``input_ids``/``attention_mask`` ``(B, L_in)`` of the passages, ``labels`` ``(B, L_out)`` of the
            queries (ending in EOS, padding ``-100``) and ``decoder_input_ids`` (labels shifted right behind the
            decoder start token).
        """
        tok = self.tokenizer
        enc = tok([p for p, _ in pairs], max_length=self.max_input_tokens, truncation=True, padding=True,
                  return_tensors="pt")
        start = _decoder_start(self.model)
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        targets = []
        for ids in tok([q for _, q in pairs], max_length=self.config.max_target_tokens + 1, truncation=True)["input_ids"]:
            if ids and ids[0] == start:  # e.g. BERT's [CLS]: the decoder start token is not a target
                ids = ids[1:]
            targets.append(ids[:self.config.max_target_tokens])
        width = max(len(t) for t in targets)
        labels = torch.full((len(targets), width), IGNORE_INDEX, dtype=torch.long)
        decoder_inputs = torch.full((len(targets), width), pad, dtype=torch.long)
        for i, t in enumerate(targets):
            labels[i, :len(t)] = torch.tensor(t)
            decoder_inputs[i, 0] = start
            decoder_inputs[i, 1:len(t)] = torch.tensor(t[:-1])
        return {"input_ids": enc["input_ids"].to(device), "attention_mask": enc["attention_mask"].to(device),
                "decoder_input_ids": decoder_inputs.to(device), "labels": labels.to(device)}

    def _micro_batch_loss(self, accelerator, wrapped: torch.nn.Module, items: list[Group]) -> dict[str, torch.Tensor]:
        """Token-level cross-entropy of the queries given their passages (teacher forcing), in float32."""
        batch = self.encode([(g.docs[0], g.query) for g in items], accelerator.device)
        with accelerator.autocast():
            logits = wrapped(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                             decoder_input_ids=batch["decoder_input_ids"]).logits
        loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]),
                                                 batch["labels"].reshape(-1), ignore_index=IGNORE_INDEX)
        return {"total": loss}

    def _finish(self, accelerator) -> None:
        self.model.eval()
        if self.config.gradient_checkpointing:
            self.model.gradient_checkpointing_disable()
        if self.config.freeze_encoder:
            self.model.get_encoder().requires_grad_(True)
        self.model.to(self._device)
        if accelerator.is_main_process:
            final = Path(self.config.output_dir) / FINAL_DIR
            self.model.save_pretrained(str(final))
            self.tokenizer.save_pretrained(str(final))
            with open(final / "doc2query_training.json", "w") as f:
                json.dump({"config": dataclasses.asdict(self.config), "history": self.history}, f, indent=1)

    def _validation_target(self):
        from .generate import Doc2Query
        fn = self.validation
        return Doc2Query.from_model(self.model, self.tokenizer, name="in-training", decoding="greedy", num_samples=1,
                                    max_new_tokens=getattr(fn, "max_new_tokens", 32),
                                    batch_size=getattr(fn, "batch_size", 16),
                                    max_input_tokens=self.max_input_tokens, min_chars=0,
                                    device=next(self.model.parameters()).device, precision="fp32")

    def _validated_module(self) -> torch.nn.Module:
        return self.model


def _checked_pairs(pairs: Iterable[Pair]) -> list[Pair]:
    out = []
    for i, pair in enumerate(pairs):
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
            raise TypeError(f"training pair {i} is {pair!r:.80}: pairs must be (passage, query) string tuples")
        if not pair[0].strip() or not pair[1].strip():
            raise ValueError(f"training pair {i} has an empty passage or query: {pair!r:.80}")
        out.append((pair[0], pair[1]))
    return out
