"""Train a late-interaction model (e.g. :class:`~pyterrier_lateint.ColBERT`) with contrastive and/or distillation losses.

The engine is Hugging Face ``accelerate``: mixed precision, gradient accumulation and several GPUs (launch the
same script or ``lateint train`` with ``accelerate launch``) come from it. Checkpoints hold the model, optimiser,
scheduler, RNG states and the position in the data, so a resumed run continues exactly where it stopped.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional, Union

import numpy as np
import torch

from ..models import LateInteractionEncoder
from .data import Example, Group, TrainingStream, file_source
from .config import LoopConfig, renamed_settings, setting
from .loop import TrainingLoop
from .losses import combined_loss, maxsim_scores

logger = logging.getLogger(__name__)

FINAL_DIR = "final"  # output_dir/final: the trained model


@renamed_settings(freeze_backbone="freeze_encoder")
@dataclass
class TrainingConfig(LoopConfig):
    """Every setting of training a late-interaction model: the training loop's
    (:class:`~pyterrier_lateint.training.config.LoopConfig`) and the losses' (the CLI, ``lateint train``, exposes each
    one as ``--name-with-dashes``).

    A training item is a query with its documents. ``from_json(path)`` reads the settings from a JSON object of
    setting names.

    Args:
        output_dir: where checkpoints and the final model (output_dir/final) go (default ``'lateint-model'``).
        max_steps: optimiser steps (default ``1000``).
        batch_size: queries (each with its documents) per micro-batch (per process) (default ``16``).
        learning_rate: peak AdamW learning rate of the encoder (default ``3e-05``).
        weight_decay: AdamW weight decay (default ``0.01``).
        warmup_ratio: linear warmup over this share of max_steps, then linear decay to 0 (default ``0.1``).
        grad_accum: micro-batches per optimiser step (default ``1``).
        max_grad_norm: gradient clipping norm (0: no clipping) (default ``1.0``).
        mixed_precision: "no", "fp16" (GPU) or "bf16" (default ``'no'``).
        gradient_checkpointing: recompute activations in the backward pass (less memory, slower) (default ``False``).
        freeze_encoder: train only the projection head (the encoder stays as loaded) (default ``False``);
            ``freeze_backbone`` is its deprecated name.
        seed: seed of model RNGs, shuffling and negative sampling (default ``42``).
        shuffle_buffer: examples shuffled within a sliding buffer of this size (1: file order) (default ``1000``).
        save_every: steps between checkpoints (0: only at the end) (default ``500``).
        keep_checkpoints: newest checkpoints kept on disk (default ``2``).
        eval_every: steps between validations, the last step included (0: never) (default ``0``).
        log_every: steps between loss log lines (default ``10``).
        report_to: "none", "tensorboard" or "wandb" (default ``'none'``).
        n_negatives: negatives per query (resampled when a query has fewer) (default ``7``).
        head_learning_rate: a separate rate for the projection head (default: learning_rate).
        loss: "ce" (n-way softmax cross-entropy), "kl" (distillation), or "ce+kl" (default ``'ce'``).
        temperature: student scores are divided by this in both losses (default ``1.0``).
        teacher_temperature: teacher scores are divided by this before their softmax (kl) (default ``1.0``).
        kl_weight: weight of the distillation loss in ce+kl (default ``1.0``).
        ce_weight: weight of the cross-entropy loss in ce+kl (default ``1.0``).
        in_batch_negatives: other queries' documents are negatives too (ce) (default ``True``).

    Raises:
        ValueError: on an unknown ``loss`` or ``mixed_precision``, or a count out of range.

    Example:
        .. code-block:: python

            from pyterrier_lateint.training import TrainingConfig

            config = TrainingConfig(output_dir="my-colbert", max_steps=2000, batch_size=32, loss="ce+kl")
            config = TrainingConfig.from_json("train.json")   # {"max_steps": 2000, ...}
    """

    n_negatives: int = setting(7, 'negatives per query (resampled when a query has fewer)')
    head_learning_rate: Optional[float] = setting(None, 'a separate rate for the projection head '
                                                        '(default: learning_rate)')
    loss: str = setting("ce", '"ce" (n-way softmax cross-entropy), "kl" (distillation), or "ce+kl"')
    temperature: float = setting(1.0, 'student scores are divided by this in both losses')
    teacher_temperature: float = setting(1.0, 'teacher scores are divided by this before their softmax (kl)')
    kl_weight: float = setting(1.0, 'weight of the distillation loss in ce+kl')
    ce_weight: float = setting(1.0, 'weight of the cross-entropy loss in ce+kl')
    in_batch_negatives: bool = setting(True, "other queries' documents are negatives too (ce)")

    def __post_init__(self) -> None:
        if self.loss not in ("ce", "kl", "ce+kl"):
            raise ValueError(f"loss must be 'ce', 'kl' or 'ce+kl', not {self.loss!r}")
        super().__post_init__()
        if self.n_negatives < 0:
            raise ValueError("n_negatives must be >= 0")


def _pad(seqs: list[np.ndarray], fill: int | bool, dtype) -> torch.Tensor:
    width = max(len(s) for s in seqs)
    out = np.full((len(seqs), width), fill, dtype=dtype)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = s
    return torch.from_numpy(out)


class Batch:
    """Tensors of a micro-batch: queries ``(B, Lq)``, documents ``(B*n, Ld)`` (ids, attention, keep) and teacher
    scores ``(B, n)`` or ``None``."""

    def __init__(self, model: LateInteractionEncoder, groups: list[Group]):
        self.sizes = [len(g.docs) for g in groups]  # documents per query; fewer when a query lacks negatives
        q = model.tokenise([g.query for g in groups], is_query=True)
        d = model.tokenise([doc for g in groups for doc in g.docs], is_query=False, allow_split=False)
        pad = model._pad_id
        self.q_ids, self.q_att, self.q_keep = _pad(q.ids, pad, np.int64), _pad(q.attention, False, bool), \
            _pad(q.keep, False, bool)
        self.d_ids, self.d_att, self.d_keep = _pad(d.ids, pad, np.int64), _pad(d.attention, False, bool), \
            _pad(d.keep, False, bool)
        teachers = [g.teacher for g in groups]
        self.teacher = torch.tensor(teachers, dtype=torch.float32) if all(t is not None for t in teachers) else None

    def to(self, device: torch.device) -> "Batch":
        for name in ("q_ids", "q_att", "q_keep", "d_ids", "d_att", "d_keep", "teacher"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value.to(device))
        return self


class Trainer(TrainingLoop):
    """Trains a late-interaction model in place with contrastive and/or distillation losses.

    ``train(data)`` accepts a training file path, a list of :class:`Example`, or a callable returning a fresh
    iterator of examples (re-read every epoch). The mechanics (schedule, accumulation, precision, checkpoints, exact
    resume) are :class:`~pyterrier_lateint.training.loop.TrainingLoop`'s; a training item is one query group (a
    query, its positive and negatives).

    Args:
        model: the model to train (e.g. a :class:`~pyterrier_lateint.ColBERT`); its weights change in place.
        config: the training settings.
        validation: called with the model every ``eval_every`` steps (and at the last step when ``eval_every`` is
            set), returning measures to log, e.g. :func:`pyterrier_validation`; default none.

    Example:
        .. code-block:: python

            from pyterrier_lateint import ColBERT
            from pyterrier_lateint.training import Trainer, TrainingConfig, mine_hard_negatives

            model = ColBERT.from_pretrained("bert-base-uncased", dim=128)
            examples = mine_hard_negatives(train_topics, train_qrels, bm25, pt.text.get_text(dataset, "text"))
            trainer = Trainer(model, TrainingConfig(output_dir="my-colbert", max_steps=1000))
            model = trainer.train(examples)   # also saved to my-colbert/final
    """

    def __init__(self, model: LateInteractionEncoder, config: TrainingConfig,
                 validation: Optional[Callable[[LateInteractionEncoder], dict[str, float]]] = None):
        super().__init__()
        self.model = model
        self.config = config
        self.validation = validation

    # ---------------------------------------------------------------- data
    def _stream(self, data, format: str, queries, collection) -> TrainingStream:
        if isinstance(data, (str, Path)):
            source = file_source(data, format, queries, collection)
        elif callable(data):
            source = data
        else:
            examples = list(data)
            if not examples:
                raise ValueError("no training examples given")
            source = lambda: iter(examples)  # noqa: E731
        return TrainingStream(source, self.config.n_negatives, self.config.seed, self.config.shuffle_buffer)

    # ---------------------------------------------------------------- training
    def train(self, data: Union[str, Path, Iterable[Example], Callable[[], Iterable[Example]]], *,
              format: str = "auto", queries=None, collection=None, resume: bool = True) -> LateInteractionEncoder:
        """Train for ``max_steps`` optimiser steps and save the final model to ``output_dir/final``.

        Args:
            data: a training file (any format of :func:`detect_format`), a list of :class:`Example`, or a callable
                returning a fresh iterator of examples (called again every epoch).
            format: the file's format, or ``"auto"`` (default) to detect it.
            queries: ``queries.tsv`` (``qid \\t text``) for files that hold query ids.
            collection: ``collection.tsv`` (``pid \\t text``) for files that hold passage ids.
            resume: continue from the newest complete checkpoint in ``output_dir`` (default True); the run then
                ends with the weights of an uninterrupted one.

        Returns:
            LateInteractionEncoder: the trained model (the same object, in eval mode).

        Raises:
            ValueError: when ``data`` holds no examples, a file is malformed, or ``freeze_encoder`` is set for a
                model without a projection head.
        """
        stream = self._stream(data, format, queries, collection)
        cpu = self.model.device.type == "cpu" and not torch.cuda.is_available()
        self._run(lambda skip: iter(stream.skip(skip)), resume=resume, cpu=cpu)
        return self.model

    def _prepare_module(self, accelerator) -> tuple[torch.nn.Module, list[dict]]:
        """The model's module on the accelerator's device, in training mode, with the encoder frozen or
        checkpointed as configured; parameter groups: the encoder at ``learning_rate``, the head at
        ``head_learning_rate``."""
        cfg = self.config
        module = self.model.module
        module.to(accelerator.device).train()
        if cfg.gradient_checkpointing:
            module.backbone.gradient_checkpointing_enable()
        if cfg.freeze_encoder:
            if module.head is None:
                raise ValueError("freeze_encoder=True leaves nothing to train: the model has no projection head "
                                 "(load it with dim=N to add one)")
            module.backbone.requires_grad_(False)
        return module, self._param_groups(module)

    def _param_groups(self, module: torch.nn.Module) -> list[dict]:
        cfg = self.config
        head_params = list(module.head.parameters()) if module.head is not None else []
        head_ids = {id(p) for p in head_params}
        groups = [{"params": [p for p in module.parameters() if id(p) not in head_ids and p.requires_grad],
                   "lr": cfg.learning_rate}]
        groups = [g for g in groups if g["params"]]
        if head_params:
            head_lr = cfg.learning_rate if cfg.head_learning_rate is None else cfg.head_learning_rate
            groups.append({"params": head_params, "lr": head_lr})
        return groups

    def _micro_batch_loss(self, accelerator, wrapped: torch.nn.Module, items: list[Group]) -> dict[str, torch.Tensor]:
        """MaxSim scores of each query against every document of the micro-batch, then the configured losses."""
        cfg = self.config
        batch = Batch(self.model, items).to(accelerator.device)
        with accelerator.autocast():
            Q = wrapped(batch.q_ids, batch.q_att.long())
            D = wrapped(batch.d_ids, batch.d_att.long())
        scores = maxsim_scores(Q.float(), batch.q_keep, D.float(), batch.d_keep,
                               self.model.config.divide_by_query_length)
        return combined_loss(scores, batch.sizes, batch.teacher, cfg.loss, cfg.temperature, cfg.in_batch_negatives,
                             cfg.kl_weight, cfg.ce_weight, cfg.teacher_temperature)

    def _finish(self, accelerator) -> None:
        """Back to inference: eval mode, encoder trainable again, on the model's own device (accelerate may have
        moved it, e.g. to cuda:0), fresh runtime; the main process saves ``output_dir/final``."""
        model, module = self.model, self.model.module
        module.eval()
        module.backbone.requires_grad_(True)
        module.to(model.device)
        model.reset_runtime()
        if self.config.gradient_checkpointing:
            module.backbone.gradient_checkpointing_disable()
        if accelerator.is_main_process:
            model.save_pretrained(Path(self.config.output_dir) / FINAL_DIR)

    def _validation_target(self) -> LateInteractionEncoder:
        return self.model

    def _validated_module(self) -> torch.nn.Module:
        return self.model.module


def pyterrier_validation(topics, qrels, first_stage, text_loader,
                         measures=("nDCG@10",)) -> Callable[[LateInteractionEncoder], dict]:
    """A validation callback for :class:`Trainer`: ``first_stage >> text_loader >> model.text_scorer()`` evaluated
    with ``pt.Experiment``.

    Use held-out training queries, never test queries.

    Args:
        topics: the validation queries (``qid``, ``query``).
        qrels: their relevance judgements.
        first_stage: the retriever whose results are re-ranked (e.g. BM25).
        text_loader: adds ``text`` by docno (e.g. ``pt.text.get_text(dataset, "text")``).
        measures: measure names or ``ir_measures`` measures (default ``("nDCG@10",)``).

    Returns:
        Callable: ``validate(model) -> {measure name: value}``.

    Example:
        .. code-block:: python

            validation = pyterrier_validation(dev_topics, dev_qrels, bm25 % 100, pt.text.get_text(dataset, "text"))
            Trainer(model, TrainingConfig(eval_every=200), validation=validation).train("train.jsonl")
    """
    import ir_measures
    import pyterrier as pt

    parsed = [ir_measures.parse_measure(m) if isinstance(m, str) else m for m in measures]

    def validate(model: LateInteractionEncoder) -> dict[str, float]:
        table = pt.Experiment([first_stage >> text_loader >> model.text_scorer()], topics, qrels, parsed)
        return {str(m): float(table[str(m)].iloc[0]) for m in parsed}

    return validate
