"""Train a :class:`~pyterrier_lateint.models.ColBERT` with contrastive and/or distillation losses.

The engine is Hugging Face ``accelerate``: mixed precision, gradient accumulation and several GPUs (launch the
same script or ``lateint train`` with ``accelerate launch``) come from it. Checkpoints hold the model, optimiser,
scheduler, RNG states and the position in the data, so a resumed run continues exactly where it stopped.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
import time
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Callable, Iterable, Optional, Union

import numpy as np
import torch

from ..models import ColBERT
from .data import Example, Group, TrainingStream, file_source
from .losses import combined_loss, maxsim_scores

logger = logging.getLogger(__name__)

STATE_FILE = "trainer_state.json"


def _setting(default, help: str):
    """A dataclass field whose ``help`` text documents it (and the CLI's ``--help``)."""
    return field(default=default, metadata={"help": help})


@dataclass
class TrainingConfig:
    """Every training setting (the CLI exposes each one as ``--name``)."""

    output_dir: str = _setting("lateint-model", 'where checkpoints and the final model go')
    max_steps: int = _setting(1000, 'optimiser steps')
    batch_size: int = _setting(16, 'queries per micro-batch (per process)')
    n_negatives: int = _setting(7, 'negatives per query (resampled when a query has fewer)')
    learning_rate: float = _setting(3e-5, 'peak AdamW learning rate of the encoder')
    head_learning_rate: Optional[float] = _setting(None, 'a separate rate for the projection head (default: learning_rate)')
    weight_decay: float = _setting(0.01, 'AdamW weight decay')
    warmup_ratio: float = _setting(0.1, 'linear warmup over this share of max_steps, then linear decay to 0')
    grad_accum: int = _setting(1, 'micro-batches per optimiser step')
    max_grad_norm: float = _setting(1.0, 'gradient clipping norm (0: no clipping)')
    loss: str = _setting("ce", '"ce" (n-way softmax cross-entropy), "kl" (distillation), or "ce+kl"')
    temperature: float = _setting(1.0, 'student scores are divided by this in both losses')
    teacher_temperature: float = _setting(1.0, 'teacher scores are divided by this before their softmax (kl)')
    kl_weight: float = _setting(1.0, 'weight of the distillation loss in ce+kl')
    ce_weight: float = _setting(1.0, 'weight of the cross-entropy loss in ce+kl')
    in_batch_negatives: bool = _setting(True, "other queries' documents are negatives too (ce)")
    mixed_precision: str = _setting("no", '"no", "fp16" (GPU) or "bf16"')
    freeze_backbone: bool = _setting(False, 'train only the projection head (the encoder stays as loaded)')
    gradient_checkpointing: bool = _setting(False, 'recompute activations in the backward pass (less memory, slower)')
    seed: int = _setting(42, 'seed of model RNGs, shuffling and negative sampling')
    shuffle_buffer: int = _setting(1000, 'examples shuffled within a sliding buffer of this size (1: file order)')
    save_every: int = _setting(500, 'steps between checkpoints (0: only at the end)')
    keep_checkpoints: int = _setting(2, 'newest checkpoints kept on disk')
    eval_every: int = _setting(0, 'steps between validations (0: never)')
    log_every: int = _setting(10, 'steps between loss log lines')
    report_to: str = _setting("none", '"none", "tensorboard" or "wandb"')

    def __post_init__(self) -> None:
        if self.loss not in ("ce", "kl", "ce+kl"):
            raise ValueError(f"loss must be 'ce', 'kl' or 'ce+kl', not {self.loss!r}")
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise ValueError(f"mixed_precision must be 'no', 'fp16' or 'bf16', not {self.mixed_precision!r}")
        if min(self.batch_size, self.max_steps, self.grad_accum, self.log_every, self.keep_checkpoints) < 1:
            raise ValueError("batch_size, max_steps, grad_accum, log_every and keep_checkpoints must be >= 1")
        if min(self.n_negatives, self.save_every, self.eval_every) < 0:
            raise ValueError("n_negatives, save_every and eval_every must be >= 0")

    @classmethod
    def from_json(cls, path: Union[str, Path]) -> "TrainingConfig":
        with open(path) as f:
            data = json.load(f)
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"{path}: unknown training settings {sorted(unknown)}")
        return cls(**data)


def _pad(seqs: list[np.ndarray], fill: int | bool, dtype) -> torch.Tensor:
    width = max(len(s) for s in seqs)
    out = np.full((len(seqs), width), fill, dtype=dtype)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = s
    return torch.from_numpy(out)


class Batch:
    """Tensors of a micro-batch: queries ``(B, Lq)``, documents ``(B*n, Ld)`` (ids, attention, keep) and teacher
    scores ``(B, n)`` or ``None``."""

    def __init__(self, model: ColBERT, groups: list[Group]):
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


class Trainer:
    """Trains ``model`` in place; ``train(data)`` accepts a training file path, a list of :class:`Example`, or a
    callable returning a fresh iterator of examples (re-read every epoch)."""

    def __init__(self, model: ColBERT, config: TrainingConfig,
                 validation: Optional[Callable[[ColBERT], dict[str, float]]] = None):
        self.model = model
        self.config = config
        self.validation = validation
        self.history: list[dict[str, float]] = []
        self._running: list[dict[str, float]] = []

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

    # ---------------------------------------------------------------- checkpoints
    def checkpoints(self) -> list[Path]:
        """Complete checkpoints in ``output_dir``, oldest first."""
        root = Path(self.config.output_dir)
        found = [p for p in root.glob("checkpoint-*") if (p / STATE_FILE).exists() and not p.name.endswith(".tmp")]
        return sorted(found, key=lambda p: int(p.name.split("-")[1]))

    def _save(self, accelerator, step: int, consumed: int) -> None:
        root = Path(self.config.output_dir)
        final = root / f"checkpoint-{step}"
        tmp = root / f"checkpoint-{step}.tmp"
        if accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(tmp))
        if accelerator.is_main_process:
            with open(tmp / STATE_FILE, "w") as f:  # written last: its presence marks a complete checkpoint
                json.dump({"step": step, "groups_consumed": consumed, "history": self.history,
                           "running": self._running, "config": dataclasses.asdict(self.config)}, f)
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
            for old in self.checkpoints()[:-self.config.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
            logger.info("saved checkpoint %s", final)
        accelerator.wait_for_everyone()

    # ---------------------------------------------------------------- training
    def train(self, data: Union[str, Path, Iterable[Example], Callable[[], Iterable[Example]]], *,
              format: str = "auto", queries=None, collection=None, resume: bool = True) -> ColBERT:
        """Train for ``max_steps`` optimiser steps; with ``resume`` continue from the newest complete checkpoint
        in ``output_dir``. Saves the final model to ``output_dir/final`` and returns the trained model."""
        from accelerate import Accelerator
        from accelerate.utils import set_seed
        from transformers import get_linear_schedule_with_warmup

        from accelerate.state import AcceleratorState

        cfg = self.config
        Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
        # accelerate keeps one state per process; let a second train() (e.g. another precision) set its own,
        # keeping the distributed process group (PartialState) as launched
        AcceleratorState._reset_state(reset_partial_state=False)
        accelerator = Accelerator(mixed_precision=cfg.mixed_precision, gradient_accumulation_steps=cfg.grad_accum,
                                  log_with=None if cfg.report_to == "none" else cfg.report_to,
                                  project_dir=cfg.output_dir, cpu=self.model.device.type == "cpu" and not torch.cuda.is_available())
        set_seed(cfg.seed)
        model = self.model
        module = model.module
        module.to(accelerator.device).train()
        if cfg.gradient_checkpointing:
            module.backbone.gradient_checkpointing_enable()
        if cfg.freeze_backbone:
            if module.head is None:
                raise ValueError("freeze_backbone=True leaves nothing to train: the model has no projection head "
                                 "(load it with dim=N to add one)")
            module.backbone.requires_grad_(False)
        head_params = list(module.head.parameters()) if module.head is not None else []
        head_ids = {id(p) for p in head_params}
        groups = [{"params": [p for p in module.parameters() if id(p) not in head_ids and p.requires_grad],
                   "lr": cfg.learning_rate}]
        groups = [g for g in groups if g["params"]]
        if head_params:
            head_lr = cfg.learning_rate if cfg.head_learning_rate is None else cfg.head_learning_rate
            groups.append({"params": head_params, "lr": head_lr})
        optimizer = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
        scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(cfg.warmup_ratio * cfg.max_steps),
                                                    cfg.max_steps)
        wrapped, optimizer, scheduler = accelerator.prepare(module, optimizer, scheduler)
        if accelerator.log_with:
            accelerator.init_trackers("lateint", config={k: v for k, v in dataclasses.asdict(cfg).items()
                                                          if isinstance(v, (int, float, str, bool))})

        step, consumed = 0, 0
        self.history, self._running = [], []
        existing = self.checkpoints() if resume else []
        if existing:
            accelerator.load_state(str(existing[-1]))
            with open(existing[-1] / STATE_FILE) as f:
                state = json.load(f)
            step, consumed, self.history = state["step"], state["groups_consumed"], state["history"]
            self._running = state.get("running", [])
            logger.info("resumed from %s: step %d, %d training groups already seen", existing[-1], step, consumed)

        stream = iter(self._stream(data, format, queries, collection).skip(consumed))
        per_step = cfg.batch_size * accelerator.num_processes
        divide = model.config.divide_by_query_length
        started = time.time()
        while step < cfg.max_steps:
            for _ in range(cfg.grad_accum):
                groups_all = list(islice(stream, per_step))
                consumed += len(groups_all)
                mine = groups_all[accelerator.process_index::accelerator.num_processes]
                batch = Batch(model, mine).to(accelerator.device)
                with accelerator.accumulate(wrapped):
                    with accelerator.autocast():
                        Q = wrapped(batch.q_ids, batch.q_att.long())
                        D = wrapped(batch.d_ids, batch.d_att.long())
                    scores = maxsim_scores(Q.float(), batch.q_keep, D.float(), batch.d_keep, divide)
                    parts = combined_loss(scores, batch.sizes, batch.teacher, cfg.loss, cfg.temperature,
                                          cfg.in_batch_negatives, cfg.kl_weight, cfg.ce_weight,
                                          cfg.teacher_temperature)
                    accelerator.backward(parts["total"])
                    if accelerator.sync_gradients and cfg.max_grad_norm > 0:
                        accelerator.clip_grad_norm_(wrapped.parameters(), cfg.max_grad_norm)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad()
                self._running.append({k: float(v.detach()) for k, v in parts.items()})
            step += 1
            if step % cfg.log_every == 0 or step == cfg.max_steps:
                record = {k: float(np.mean([r[k] for r in self._running])) for k in self._running[0]}
                record.update(step=step, lr=scheduler.get_last_lr()[0], seconds=time.time() - started)
                self.history.append(record)
                self._running = []  # losses since the last log line (checkpointed, for an exact log on resume)
                logger.info("step %d/%d loss %.4f lr %.2e", step, cfg.max_steps, record["total"], record["lr"])
                if accelerator.log_with:
                    accelerator.log({f"train/{k}": v for k, v in record.items() if k != "step"}, step=step)
            if self.validation is not None and cfg.eval_every and (step % cfg.eval_every == 0 or step == cfg.max_steps):
                self._validate(accelerator, step)
            if cfg.save_every and step % cfg.save_every == 0 and step < cfg.max_steps:
                self._save(accelerator, step, consumed)

        self._save(accelerator, step, consumed)
        module.eval()
        module.backbone.requires_grad_(True)
        module.to(model.device)  # accelerate may have moved it (e.g. to cuda:0); encoding expects model.device
        model.reset_runtime()
        if cfg.gradient_checkpointing:
            module.backbone.gradient_checkpointing_disable()
        if accelerator.is_main_process:
            model.save_pretrained(Path(cfg.output_dir) / "final")
        if accelerator.log_with:
            accelerator.end_training()
        return model

    def _validate(self, accelerator, step: int) -> None:
        if not accelerator.is_main_process:
            return
        self.model.module.eval()
        try:
            measures = self.validation(self.model)
        finally:
            self.model.module.train()
        logger.info("step %d validation: %s", step, ", ".join(f"{k}={v:.4f}" for k, v in measures.items()))
        self.history.append({"step": step, **{f"val/{k}": float(v) for k, v in measures.items()}})
        if accelerator.log_with:
            accelerator.log({f"val/{k}": float(v) for k, v in measures.items()}, step=step)


def pyterrier_validation(topics, qrels, first_stage, text_loader, measures=("nDCG@10",)) -> Callable[[ColBERT], dict]:
    """A validation callback: ``first_stage >> text_loader >> model.text_scorer()`` evaluated with
    ``pt.Experiment`` on ``topics``/``qrels`` (use held-out training queries, never test queries)."""
    import ir_measures
    import pyterrier as pt

    parsed = [ir_measures.parse_measure(m) if isinstance(m, str) else m for m in measures]

    def validate(model: ColBERT) -> dict[str, float]:
        table = pt.Experiment([first_stage >> text_loader >> model.text_scorer()], topics, qrels, parsed)
        return {str(m): float(table[str(m)].iloc[0]) for m in parsed}

    return validate
