"""Training losses over MaxSim scores.

Shapes: queries ``Q (B, Lq, dim)`` with mask ``(B, Lq)``; documents ``D (N, Ld, dim)`` with mask ``(N, Ld)``,
each query owning consecutive documents, its positive first (``N = B * n`` when every query has ``n``).
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

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


GroupSizes = Union[int, Sequence[int]]


def _layout(sizes: GroupSizes, B: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(owner (N,), positive (B,))``: the query owning each document column, each query's positive column."""
    counts = torch.as_tensor([sizes] * B if isinstance(sizes, int) else list(sizes), device=device)
    if len(counts) != B:
        raise ValueError(f"{len(counts)} group sizes for {B} queries")
    positive = torch.cumsum(counts, 0) - counts
    owner = torch.repeat_interleave(torch.arange(B, device=device), counts)
    return owner, positive


def own_scores(scores: torch.Tensor, n: GroupSizes) -> torch.Tensor:
    """From all-pairs scores ``(B, N)``, each query's own ``n`` documents: ``(B, n)`` (groups of equal size)."""
    B = scores.shape[0]
    if not isinstance(n, int):
        if len(set(n)) != 1:
            raise ValueError(f"distillation needs every query to have the same number of documents, got {list(n)}")
        n = n[0]
    idx = torch.arange(B, device=scores.device)[:, None] * n + torch.arange(n, device=scores.device)[None, :]
    return scores.gather(1, idx)


def contrastive_loss(scores: torch.Tensor, n: GroupSizes, temperature: float = 1.0,
                     in_batch: bool = True) -> torch.Tensor:
    """Softmax cross-entropy with each query's positive as target. ``scores``: ``(B, N)``; ``n``: documents per
    query (an int, or one size per query when some queries have fewer negatives). With ``in_batch`` the other
    queries' documents are negatives too; without, only the query's own."""
    B = scores.shape[0]
    owner, target = _layout(n, B, scores.device)
    logits = scores.float() / temperature
    if not in_batch:
        own = owner[None, :] == torch.arange(B, device=scores.device)[:, None]
        logits = logits.masked_fill(~own, float("-inf"))
    return F.cross_entropy(logits, target)


def distillation_loss(scores: torch.Tensor, teacher: torch.Tensor, n: GroupSizes, temperature: float = 1.0,
                      teacher_temperature: float = 1.0) -> torch.Tensor:
    """KL(teacher || student) over each query's own ``n`` documents; ``teacher``: ``(B, n)`` scores."""
    student = F.log_softmax(own_scores(scores, n).float() / temperature, dim=-1)
    target = F.softmax(teacher.float() / teacher_temperature, dim=-1)
    return F.kl_div(student, target, reduction="batchmean")


def combined_loss(scores: torch.Tensor, n: GroupSizes, teacher: Optional[torch.Tensor], loss: str,
                  temperature: float, in_batch: bool, kl_weight: float = 1.0, ce_weight: float = 1.0,
                  teacher_temperature: float = 1.0) -> dict[str, torch.Tensor]:
    """``loss`` is ``ce``, ``kl`` or ``ce+kl``; returns the parts and ``total`` (the weights apply to ce+kl)."""
    if loss not in ("ce", "kl", "ce+kl"):
        raise ValueError(f"unknown loss {loss!r}; expected 'ce', 'kl' or 'ce+kl'")
    parts: dict[str, torch.Tensor] = {}
    if "ce" in loss:
        parts["ce"] = contrastive_loss(scores, n, temperature, in_batch)
    if "kl" in loss:
        if teacher is None:
            raise ValueError(f"loss {loss!r} needs teacher scores, but the training data has none "
                             "(use a distillation format, or mine_hard_negatives(..., teacher=...))")
        parts["kl"] = distillation_loss(scores, teacher, n, temperature, teacher_temperature)
    parts["total"] = ce_weight * parts["ce"] + kl_weight * parts["kl"] if loss == "ce+kl" else parts[loss]
    return parts
