"""Encoded batches back to the host: each batch's kept vectors are copied while the device computes the next one.

:class:`HostCopies` owns the one batch in flight (the double buffer of ``LateInteractionEncoder.encode_queries`` /
``encode_docs``); :func:`split_rows` cuts a landed batch into one array per sequence.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np
import torch


def split_rows(flat: np.ndarray, keep: np.ndarray) -> list[np.ndarray]:
    """A batch's kept vectors, one array per row.

    Args:
        flat: ``(n_kept, dim)``, the vectors of the kept positions of ``keep`` in row-major order.
        keep: bool ``(R, W)``, the kept positions of each row of the batch.

    Returns:
        list: ``R`` views of ``flat``, row ``r``'s ``(keep[r].sum(), dim)`` (``(0, dim)`` for a row with nothing kept).
    """
    return np.split(flat, np.cumsum(keep.sum(axis=1))[:-1])


class _InFlight(NamedTuple):
    """A batch whose vectors are on their way to the host."""
    seqs: np.ndarray  # (B,) global sequence numbers of the batch's first B rows
    keep: np.ndarray  # bool (R, W), R >= B: the kept positions of each row
    host: torch.Tensor  # float32 (n_kept, dim) on the host: the copy's destination
    event: Optional["torch.cuda.Event"]  # recorded after the copy on CUDA; None elsewhere


class HostCopies:
    """Double-buffered device-to-host copies of encoded batches.

    :meth:`push` starts copying one batch's kept vectors to float32 host memory, then lands the batch pushed before
    it, so that batch's copy overlaps the device's work on this one; :meth:`flush` lands the last batch. Landing
    splits a batch into one float32 ``(n_kept, dim)`` array per sequence, stored in :attr:`vectors` under the
    sequence's number.

    On CUDA the copy is queued on the current stream (asynchronous into page-locked memory when ``pinned``) and a
    recorded event is waited for before landing; each landed array is copied out of its buffer (page-locked memory is
    reused once freed). Elsewhere the copy is ``.float().cpu()`` and the arrays are views of it.

    Args:
        device: where the batches are encoded.
        pinned: copy through page-locked host buffers, asynchronously (CUDA only).
    """

    def __init__(self, device: torch.device, pinned: bool):
        self.cuda = device.type == "cuda"
        self.pinned = pinned
        #: sequence number -> float32 ``(n_kept, dim)`` vectors, for every landed sequence
        self.vectors: dict[int, np.ndarray] = {}
        self._in_flight: Optional[_InFlight] = None

    def push(self, seqs: np.ndarray, keep: np.ndarray, kept: torch.Tensor) -> Optional[np.ndarray]:
        """Start copying one batch to the host, then land the batch pushed before it.

        Args:
            seqs: ``(B,)`` sequence numbers of the batch's first ``B`` rows (rows past ``B`` are fillers).
            keep: bool ``(R, W)``, the kept positions of each row (none in filler rows).
            kept: ``(n_kept, dim)`` on the device, any float dtype: the kept positions' vectors in row-major order.

        Returns:
            numpy.ndarray or None: the sequence numbers of the batch landed now, ``None`` for the first push.
        """
        if self.cuda:
            host = torch.empty(kept.shape, dtype=torch.float32, pin_memory=self.pinned)
            host.copy_(kept, non_blocking=self.pinned)
            event = torch.cuda.Event()
            event.record()
        else:
            host, event = kept.float().cpu(), None
        landed = self.flush()
        self._in_flight = _InFlight(seqs, keep, host, event)
        return landed

    def flush(self) -> Optional[np.ndarray]:
        """Land the batch in flight (wait for its copy and split it into :attr:`vectors`).

        Returns:
            numpy.ndarray or None: its sequence numbers, ``None`` when no batch was in flight.
        """
        batch, self._in_flight = self._in_flight, None
        if batch is None:
            return None
        if batch.event is not None:
            batch.event.synchronize()
        flat = batch.host.numpy()
        if self.cuda:
            flat = flat.copy()  # out of the (reused) pinned staging buffer
        self.vectors.update(zip(batch.seqs.tolist(), split_rows(flat, batch.keep)))
        return batch.seqs
