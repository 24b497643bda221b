"""Training losses over MaxSim scores.

Shapes: queries ``Q (B, Lq, dim)`` with mask ``(B, Lq)``; documents ``D (N, Ld, dim)`` with mask ``(N, Ld)``,
``N = B * n`` where each query owns ``n`` consecutive documents, its positive first.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F


def maxsim_scores(Q: torch.Tensor, q_mask: torch.Tensor, D: torch.Tensor, d_mask: torch.Tensor,
                  divide_by_query_length: bool = False) -> torch.Tensor:
    """MaxSim of every query against every document: ``(B, N)``. Masked document tokens never win a max;
    masked query tokens add nothing."""
    sim = torch.einsum("bqd,ntd->bnqt", Q, D)
    sim = sim.masked_fill(~d_mask[None, :, None, :], torch.finfo(sim.dtype).min / 4)
    best = sim.max(dim=-1).values * q_mask[:, None, :].to(sim.dtype)
    scores = best.sum(dim=-1)
    if divide_by_query_length:
        scores = scores / q_mask.sum(dim=1, keepdim=True).clamp(min=1).to(scores.dtype)
    return scores


def own_scores(scores: torch.Tensor, n: int) -> torch.Tensor:
    """From all-pairs scores ``(B, B*n)``, each query's own ``n`` documents: ``(B, n)``."""
    B = scores.shape[0]
    idx = torch.arange(B, device=scores.device)[:, None] * n + torch.arange(n, device=scores.device)[None, :]
    return scores.gather(1, idx)


def contrastive_loss(scores: torch.Tensor, n: int, temperature: float = 1.0, in_batch: bool = True) -> torch.Tensor:
    """n-way softmax cross-entropy with the positive as target; with ``in_batch`` the other queries' documents
    are negatives too. ``scores``: ``(B, B*n)``."""
    B = scores.shape[0]
    if in_batch:
        logits = scores
        target = torch.arange(B, device=scores.device) * n
    else:
        logits = own_scores(scores, n)
        target = torch.zeros(B, dtype=torch.long, device=scores.device)
    return F.cross_entropy(logits.float() / temperature, target)


def distillation_loss(scores: torch.Tensor, teacher: torch.Tensor, n: int, temperature: float = 1.0,
                      teacher_temperature: float = 1.0) -> torch.Tensor:
    """KL(teacher || student) over each query's own ``n`` documents; ``teacher``: ``(B, n)`` scores."""
    student = F.log_softmax(own_scores(scores, n).float() / temperature, dim=-1)
    target = F.softmax(teacher.float() / teacher_temperature, dim=-1)
    return F.kl_div(student, target, reduction="batchmean")


def combined_loss(scores: torch.Tensor, n: int, teacher: Optional[torch.Tensor], loss: str, temperature: float,
                  in_batch: bool, kl_weight: float = 1.0, ce_weight: float = 1.0,
                  teacher_temperature: float = 1.0) -> dict[str, torch.Tensor]:
    """``loss`` is ``ce``, ``kl`` or ``ce+kl``; returns the parts and their weighted ``total``."""
    parts: dict[str, torch.Tensor] = {}
    if "ce" in loss:
        parts["ce"] = contrastive_loss(scores, n, temperature, in_batch)
    if "kl" in loss:
        if teacher is None:
            raise ValueError(f"loss {loss!r} needs teacher scores, but the training data has none "
                             "(use a distillation format, or mine_hard_negatives(..., teacher=...))")
        parts["kl"] = distillation_loss(scores, teacher, n, temperature, teacher_temperature)
    if not parts:
        raise ValueError(f"unknown loss {loss!r}; expected 'ce', 'kl' or 'ce+kl'")
    parts["total"] = ce_weight * parts.get("ce", 0.0) + kl_weight * parts.get("kl", 0.0)
    return parts
