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
    """MaxSim of every query against every document of a batch, differentiable.

    Masked document tokens never win a max; masked query tokens add nothing.

    Args:
        Q: query token vectors ``(B, Lq, dim)``.
        q_mask: bool ``(B, Lq)``: the query tokens that count.
        D: document token vectors ``(N, Ld, dim)``.
        d_mask: bool ``(N, Ld)``: the document tokens that count.
        divide_by_query_length: divide each score by the number of counted query tokens (default False).

    Returns:
        torch.Tensor: ``(B, N)`` scores.
    """
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
    """Softmax cross-entropy with each query's positive as target.

    Args:
        scores: all-pairs MaxSim ``(B, N)``; each query owns consecutive columns, its positive first.
        n: documents per query (an int, or one size per query when some queries have fewer negatives).
        temperature: the scores are divided by this (default 1.0).
        in_batch: the other queries' documents are negatives too (default True); without, only the query's own.

    Returns:
        torch.Tensor: the mean loss (a scalar).

    Raises:
        ValueError: when the number of group sizes differs from ``B``.
    """
    B = scores.shape[0]
    owner, target = _layout(n, B, scores.device)
    logits = scores.float() / temperature
    if not in_batch:
        own = owner[None, :] == torch.arange(B, device=scores.device)[:, None]
        logits = logits.masked_fill(~own, float("-inf"))
    return F.cross_entropy(logits, target)


def distillation_loss(scores: torch.Tensor, teacher: torch.Tensor, n: GroupSizes, temperature: float = 1.0,
                      teacher_temperature: float = 1.0) -> torch.Tensor:
    """KL(teacher || student) over each query's own ``n`` documents.

    Args:
        scores: all-pairs MaxSim ``(B, N)`` (the student).
        teacher: teacher scores ``(B, n)``.
        n: documents per query: an int, or one size per query (all equal).
        temperature: the student scores are divided by this (default 1.0).
        teacher_temperature: the teacher scores are divided by this before their softmax (default 1.0).

    Returns:
        torch.Tensor: the batch-mean KL divergence (a scalar).

    Raises:
        ValueError: when the queries have different numbers of documents.
    """
    student = F.log_softmax(own_scores(scores, n).float() / temperature, dim=-1)
    target = F.softmax(teacher.float() / teacher_temperature, dim=-1)
    return F.kl_div(student, target, reduction="batchmean")


def combined_loss(scores: torch.Tensor, n: GroupSizes, teacher: Optional[torch.Tensor], loss: str,
                  temperature: float, in_batch: bool, kl_weight: float = 1.0, ce_weight: float = 1.0,
                  teacher_temperature: float = 1.0) -> dict[str, torch.Tensor]:
    """The configured training loss: contrastive (``ce``), distillation (``kl``) or both (``ce+kl``).

    Args:
        scores: all-pairs MaxSim ``(B, N)``.
        n: documents per query (an int or one size per query).
        teacher: teacher scores ``(B, n)``, or ``None`` (then ``kl`` is unavailable).
        loss: ``"ce"``, ``"kl"`` or ``"ce+kl"``.
        temperature: the student scores are divided by this.
        in_batch: other queries' documents are negatives too (``ce``).
        kl_weight: weight of ``kl`` in ``ce+kl`` (default 1.0).
        ce_weight: weight of ``ce`` in ``ce+kl`` (default 1.0).
        teacher_temperature: the teacher scores are divided by this (default 1.0).

    Returns:
        dict: the parts (``ce`` and/or ``kl``) and ``total``, the weighted sum for ``ce+kl`` (the part itself
        otherwise); scalar tensors.

    Raises:
        ValueError: on an unknown ``loss``, or ``kl`` without teacher scores.

    Example:
        .. code-block:: python

            from pyterrier_lateint.training import combined_loss, maxsim_scores

            scores = maxsim_scores(Q, q_mask, D, d_mask)              # (B, B * n)
            parts = combined_loss(scores, n, teacher, "ce+kl", 1.0, True)
            parts["total"].backward()
    """
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
