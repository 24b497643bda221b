"""Search backends: which kernels run a retriever's or scorer's search, chosen once when the transformer is made.

- :class:`NumbaBackend`: the CPU path (numba kernels with explicit SIMD, :mod:`.search`).
- :class:`TorchBackend`: torch kernels on any torch device (:mod:`.search_torch`), ``cuda`` above all: a whole
  batch of queries per call, one host sync per stage, deleted documents (``reader.deleted``) masked on the device.

:func:`select_backend` turns the user's ``backend=`` / ``device=`` arguments into one of them. Both return per query
``(doc_ids int64, scores float32)`` best first, with the same stages and the same exact scores.
"""
from __future__ import annotations

from typing import Optional, Protocol

import numpy as np

from ..models.runtime import check_device
from .layout import IndexReader
from .search import SearchParams, exact_maxsim, search_exhaustive, search_plaid

BACKENDS = ("numba", "torch")
Results = list[tuple[np.ndarray, np.ndarray]]


class SearchBackend(Protocol):
    """Kernels over an :class:`IndexReader`. ``queries``: float32 ``(nq, dim)`` each; scores are raw MaxSim."""

    name: str
    device: str

    def plaid(self, reader: IndexReader, queries: list[np.ndarray], k: int, params: SearchParams) -> Results: ...

    def exhaustive(self, reader: IndexReader, queries: list[np.ndarray], k: int) -> Results: ...

    def exact(self, reader: IndexReader, query: np.ndarray, doc_ids: np.ndarray) -> np.ndarray:
        """MaxSim of ``query`` against the stored vectors of ``doc_ids``: float32 ``(len(doc_ids),)``."""
        ...


class NumbaBackend:
    """The multi-threaded CPU kernels."""

    name = "numba"
    device = "cpu"

    def plaid(self, reader: IndexReader, queries: list[np.ndarray], k: int, params: SearchParams) -> Results:
        return search_plaid(reader, queries, k, params)

    def exhaustive(self, reader: IndexReader, queries: list[np.ndarray], k: int) -> Results:
        return search_exhaustive(reader, queries, k)

    def exact(self, reader: IndexReader, query: np.ndarray, doc_ids: np.ndarray) -> np.ndarray:
        return exact_maxsim(reader, query, doc_ids)

    def __repr__(self) -> str:
        return "NumbaBackend()"


class TorchBackend:
    """Torch kernels on ``device`` (the index arrays are copied there once per index reader and device); every
    query of a call is searched in one batch (:func:`.search_torch.search_plaid_torch`)."""

    name = "torch"

    def __init__(self, device: str):
        self.device = device

    def plaid(self, reader: IndexReader, queries: list[np.ndarray], k: int, params: SearchParams) -> Results:
        from .search_torch import search_plaid_torch
        return search_plaid_torch(reader, queries, k, params, device=self.device)

    def exhaustive(self, reader: IndexReader, queries: list[np.ndarray], k: int) -> Results:
        from .search_torch import search_exhaustive_torch
        return search_exhaustive_torch(reader, queries, k, device=self.device)

    def exact(self, reader: IndexReader, query: np.ndarray, doc_ids: np.ndarray) -> np.ndarray:
        from .search_torch import exact_torch
        return exact_torch(reader, query, doc_ids, device=self.device)

    def __repr__(self) -> str:
        return f"TorchBackend({self.device!r})"


def select_backend(backend: Optional[str] = None, device: Optional[str] = None) -> SearchBackend:
    """The backend for ``backend`` (``"numba"``, ``"torch"`` or ``None``) and ``device`` (a torch device string or
    ``None``).

    ``None``/``None`` picks torch on ``cuda`` when torch sees a GPU, else numba. ``device="cpu"`` alone means numba;
    any other device alone means torch on it. ``backend="torch"`` without a device uses ``cuda`` when available,
    else the CPU. ``backend="numba"`` runs on the CPU only.
    """
    if backend not in (None,) + BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS} or None (automatic), not {backend!r}")
    if backend is None:
        if device is None:
            import torch
            return TorchBackend("cuda") if torch.cuda.is_available() else NumbaBackend()
        if device == "cpu":
            return NumbaBackend()
        check_device(device)
        return TorchBackend(device)
    if backend == "numba":
        if device not in (None, "cpu"):
            raise ValueError(f"backend='numba' runs on the CPU; for device={device!r} use backend='torch'")
        return NumbaBackend()
    if device is None:
        import torch
        device = "cuda" if torch.cuda.is_available() else "cpu"
    check_device(device)
    return TorchBackend(device)
