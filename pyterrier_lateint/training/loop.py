"""The training mechanics every trainer of the package shares, whatever it trains.

:class:`TrainingLoop` runs optimiser steps through Hugging Face ``accelerate`` (mixed precision, gradient
accumulation, several processes): AdamW with a linear warmup then linear decay to 0, gradient clipping, a loss log
averaged over ``log_every`` steps, validation every ``eval_every`` steps, and checkpoints every ``save_every`` steps.
A checkpoint holds the model, optimiser, scheduler, RNG states and the number of training items consumed; it is
written to ``checkpoint-N.tmp`` and renamed when complete, so a resumed run skips exactly the items already seen
(no item is repeated or lost) and ends with the weights of an uninterrupted run.

A subclass says what a micro-batch is and how to train on it: :meth:`TrainingLoop._prepare_module`,
:meth:`TrainingLoop._micro_batch_loss` and :meth:`TrainingLoop._finish`. Its ``config`` is a
:class:`~pyterrier_lateint.training.config.LoopConfig` (extended by the trainer's own settings).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
import time
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch

from .config import LoopConfig

logger = logging.getLogger(__name__)

STATE_FILE = "trainer_state.json"  # written last into a checkpoint: its presence marks the checkpoint complete
CHECKPOINT_PREFIX = "checkpoint-"
TMP_SUFFIX = ".tmp"
TRACKER_PROJECT = "lateint"  # accelerate's tracker project name (TensorBoard run folder, wandb project)
TOTAL = "total"  # the key of the loss that is back-propagated, among the parts a micro-batch reports


# ---------------------------------------------------------------- building blocks
def make_accelerator(cfg: LoopConfig, cpu: bool):
    """An ``accelerate.Accelerator`` for ``cfg``. accelerate keeps one state per process; it is reset here (keeping
    the distributed process group as launched) so that a second training in one process can use another precision."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=False)
    return Accelerator(mixed_precision=cfg.mixed_precision, gradient_accumulation_steps=cfg.grad_accum,
                       log_with=None if cfg.report_to == "none" else cfg.report_to, project_dir=cfg.output_dir,
                       cpu=cpu)


def warmup_steps(warmup_ratio: float, max_steps: int) -> int:
    """Steps of linear warmup: ``ceil(warmup_ratio * max_steps)``."""
    return math.ceil(warmup_ratio * max_steps)


def adamw_with_linear_schedule(param_groups: list[dict], cfg: LoopConfig):
    """AdamW over ``param_groups`` (each with its own ``lr``) and a schedule rising linearly from 0 over the warmup
    steps, then falling linearly to 0 at ``max_steps``."""
    from transformers import get_linear_schedule_with_warmup

    optimizer = torch.optim.AdamW(param_groups, weight_decay=cfg.weight_decay)
    scheduler = get_linear_schedule_with_warmup(optimizer, warmup_steps(cfg.warmup_ratio, cfg.max_steps),
                                                cfg.max_steps)
    return optimizer, scheduler


def complete_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete checkpoints (``checkpoint-N`` holding a state file) in ``output_dir``, oldest first."""
    root = Path(output_dir)
    found = [p for p in root.glob(CHECKPOINT_PREFIX + "*")
             if (p / STATE_FILE).exists() and not p.name.endswith(TMP_SUFFIX)]
    return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX):]))


def mean_losses(running: list[dict[str, float]]) -> dict[str, float]:
    """Per-key means of the micro-batch losses in ``running``."""
    return {k: float(np.mean([r[k] for r in running])) for k in running[0]}


# ---------------------------------------------------------------- the loop
class TrainingLoop:
    """Base of the package's trainers: ``self.config`` (a :class:`~pyterrier_lateint.training.config.LoopConfig`),
    ``self.history`` (one record per log line: mean losses, ``step``, ``lr``, ``seconds``; and one per validation:
    ``val/...``) and an optional ``self.validation`` callback. Subclasses implement the three hooks below."""

    config: LoopConfig
    validation: Optional[Callable[[Any], dict[str, float]]] = None

    def __init__(self) -> None:
        self.history: list[dict[str, float]] = []
        self._running: list[dict[str, float]] = []  # micro-batch losses since the last log line

    # ------------------------------------------------------------ hooks
    def _prepare_module(self, accelerator) -> tuple[torch.nn.Module, list[dict]]:
        """Put the module to train on ``accelerator.device`` in training mode; return it and its AdamW parameter
        groups (``{"params": [...], "lr": ...}``)."""
        raise NotImplementedError

    def _micro_batch_loss(self, accelerator, wrapped: torch.nn.Module, items: list) -> dict[str, torch.Tensor]:
        """Losses of this process's share of one micro-batch; ``"total"`` is back-propagated (scalar tensors)."""
        raise NotImplementedError

    def _finish(self, accelerator) -> None:
        """After the last step and checkpoint: leave the model ready for use and save it."""
        raise NotImplementedError

    def _validation_target(self) -> Any:
        """What the validation callback is given (the model)."""
        raise NotImplementedError

    def _state_extra(self) -> dict:
        """JSON-able extras stored in each checkpoint's state file (e.g. the configuration)."""
        return {"config": dataclasses.asdict(self.config)} if dataclasses.is_dataclass(self.config) else {}

    # ------------------------------------------------------------ checkpoints
    def checkpoints(self) -> list[Path]:
        """Complete checkpoints in ``output_dir``, oldest first.

        Returns:
            list: the checkpoint folders (``checkpoint-N``) holding their state file.
        """
        return complete_checkpoints(self.config.output_dir)

    def _save(self, accelerator, step: int, consumed: int) -> None:
        """Checkpoint after ``step`` steps and ``consumed`` training items: written to ``checkpoint-N.tmp``, the state
        file last, then renamed; only the newest ``keep_checkpoints`` are kept."""
        root = Path(self.config.output_dir)
        final = root / f"{CHECKPOINT_PREFIX}{step}"
        tmp = root / f"{CHECKPOINT_PREFIX}{step}{TMP_SUFFIX}"
        if accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(tmp))
        if accelerator.is_main_process:
            with open(tmp / STATE_FILE, "w") as f:
                json.dump({"step": step, "groups_consumed": consumed, "history": self.history,
                           "running": self._running, **self._state_extra()}, f)
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
            for old in self.checkpoints()[:-self.config.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
            logger.info("saved checkpoint %s", final)
        accelerator.wait_for_everyone()

    def _resume(self, accelerator) -> tuple[int, int]:
        """Load the newest complete checkpoint, if any: returns (step, items consumed), (0, 0) without one."""
        existing = self.checkpoints()
        if not existing:
            return 0, 0
        accelerator.load_state(str(existing[-1]))
        with open(existing[-1] / STATE_FILE) as f:
            state = json.load(f)
        self.history, self._running = state["history"], state.get("running", [])
        logger.info("resumed from %s: step %d, %d training items already seen", existing[-1], state["step"],
                    state["groups_consumed"])
        return state["step"], state["groups_consumed"]

    # ------------------------------------------------------------ running
    def _run(self, open_stream: Callable[[int], Iterator], resume: bool, cpu: bool) -> None:
        """Train for ``max_steps`` steps. ``open_stream(skip)`` returns an endless iterator of training items that
        skips the first ``skip`` (consumed before a checkpoint); one micro-batch is ``batch_size`` items per
        process."""
        from accelerate.utils import set_seed

        cfg = self.config
        Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
        accelerator = make_accelerator(cfg, cpu)
        set_seed(cfg.seed)
        module, param_groups = self._prepare_module(accelerator)
        optimizer, scheduler = adamw_with_linear_schedule(param_groups, cfg)
        wrapped, optimizer, scheduler = accelerator.prepare(module, optimizer, scheduler)
        if accelerator.log_with:
            accelerator.init_trackers(TRACKER_PROJECT, config={k: v for k, v in dataclasses.asdict(cfg).items()
                                                                 if isinstance(v, (int, float, str, bool))})
        self.history, self._running = [], []
        step, consumed = self._resume(accelerator) if resume else (0, 0)
        stream = open_stream(consumed)
        step, consumed = self._step_loop(accelerator, wrapped, optimizer, scheduler, stream, step, consumed)
        self._save(accelerator, step, consumed)
        self._finish(accelerator)
        if accelerator.log_with:
            accelerator.end_training()

    def _step_loop(self, accelerator, wrapped, optimizer, scheduler, stream: Iterator, step: int,
                   consumed: int) -> tuple[int, int]:
        """Optimiser steps from ``step`` to ``max_steps``, each over ``grad_accum`` micro-batches."""
        cfg = self.config
        per_micro_batch = cfg.batch_size * accelerator.num_processes
        started = time.time()
        while step < cfg.max_steps:
            for _ in range(cfg.grad_accum):
                items = list(islice(stream, per_micro_batch))
                consumed += len(items)
                mine = items[accelerator.process_index::accelerator.num_processes]
                with accelerator.accumulate(wrapped):
                    parts = self._micro_batch_loss(accelerator, wrapped, mine)
                    self._optimisation_step(accelerator, wrapped, optimizer, scheduler, parts[TOTAL])
                self._running.append({k: float(v.detach()) for k, v in parts.items()})
            step += 1
            if step % cfg.log_every == 0 or step == cfg.max_steps:
                self._log(accelerator, step, scheduler.get_last_lr()[0], time.time() - started)
            if self.validation is not None and cfg.eval_every and (step % cfg.eval_every == 0 or step == cfg.max_steps):
                self._validate(accelerator, step)
            if cfg.save_every and step % cfg.save_every == 0 and step < cfg.max_steps:
                self._save(accelerator, step, consumed)
        return step, consumed

    def _optimisation_step(self, accelerator, wrapped, optimizer, scheduler, loss: torch.Tensor) -> None:
        """Back-propagate; on the micro-batch that completes an accumulation, clip, step and zero the gradients
        (accelerate skips the optimiser and scheduler steps on the others)."""
        accelerator.backward(loss)
        if accelerator.sync_gradients and self.config.max_grad_norm > 0:
            accelerator.clip_grad_norm_(wrapped.parameters(), self.config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()

    def _log(self, accelerator, step: int, lr: float, seconds: float) -> None:
        record = mean_losses(self._running)
        record.update(step=step, lr=lr, seconds=seconds)
        self.history.append(record)
        self._running = []
        logger.info("step %d/%d loss %.4f lr %.2e", step, self.config.max_steps, record[TOTAL], record["lr"])
        if accelerator.log_with:
            accelerator.log({f"train/{k}": v for k, v in record.items() if k != "step"}, step=step)

    def _validate(self, accelerator, step: int) -> None:
        if not accelerator.is_main_process:
            return
        module = self._validated_module()
        module.eval()
        try:
            measures = self.validation(self._validation_target())
        finally:
            module.train()
        logger.info("step %d validation: %s", step, ", ".join(f"{k}={v:.4f}" for k, v in measures.items()))
        self.history.append({"step": step, **{f"val/{k}": float(v) for k, v in measures.items()}})
        if accelerator.log_with:
            accelerator.log({f"val/{k}": float(v) for k, v in measures.items()}, step=step)

    def _validated_module(self) -> torch.nn.Module:
        """The module switched to eval mode while the validation callback runs."""
        raise NotImplementedError
