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
    """Kernels over an :class:`~pyterrier_lateint.index.layout.IndexReader` (a structural protocol).

    ``queries``: float32 ``(nq, dim)`` each; scores are raw MaxSim (not divided by the model's
    ``score_divisor``). ``name`` is ``"numba"`` or ``"torch"``; ``device`` the torch device string the kernels
    run on.

    Example:
        .. code-block:: python

            from pyterrier_lateint.index import select_backend

            backend = select_backend("torch", "cuda")      # a TorchBackend
            retriever = index.retriever(backend="numba")    # or chosen by name
    """

    name: str
    device: str

    def plaid(self, reader: IndexReader, queries: list[np.ndarray], k: int, params: SearchParams) -> Results:
        """The staged (PLAID) search: the top ``k`` documents of each query.

        Args:
            reader: the open index.
            queries: float32 ``(nq, dim)`` per query.
            k: results per query.
            params: the search settings.

        Returns:
            list: per query ``(doc_ids int64, scores float32)``, best first.
        """
        ...

    def exhaustive(self, reader: IndexReader, queries: list[np.ndarray], k: int) -> Results:
        """Exact MaxSim of every live document: the top ``k`` of each query.

        Args:
            reader: the open index.
            queries: float32 ``(nq, dim)`` per query.
            k: results per query.

        Returns:
            list: per query ``(doc_ids int64, scores float32)``, best first.
        """
        ...

    def exact(self, reader: IndexReader, query: np.ndarray, doc_ids: np.ndarray) -> np.ndarray:
        """MaxSim of ``query`` against the stored vectors of ``doc_ids``.

        Args:
            reader: the open index.
            query: float32 ``(nq, dim)``.
            doc_ids: internal doc ids.

        Returns:
            numpy.ndarray: float32 ``(len(doc_ids),)``.
        """
        ...


class NumbaBackend:
    """The multi-threaded CPU kernels (numba with explicit SIMD, :mod:`pyterrier_lateint.index.search`).

    Example:
        .. code-block:: python

            retriever = index.retriever(backend="numba")   # uses NumbaBackend()
    """

    name = "numba"
    device = "cpu"

    def plaid(self, reader: IndexReader, queries: list[np.ndarray], k: int, params: SearchParams) -> Results:
        """The staged (PLAID) search on the CPU: see :meth:`SearchBackend.plaid`.

        Args:
            reader: the open index.
            queries: float32 ``(nq, dim)`` per query.
            k: results per query.
            params: the search settings.

        Returns:
            list: per query ``(doc_ids int64, scores float32)``, best first.
        """
        return search_plaid(reader, queries, k, params)

    def exhaustive(self, reader: IndexReader, queries: list[np.ndarray], k: int) -> Results:
        """Exact MaxSim of every live document on the CPU: see :meth:`SearchBackend.exhaustive`.

        Args:
            reader: the open index.
            queries: float32 ``(nq, dim)`` per query.
            k: results per query.

        Returns:
            list: per query ``(doc_ids int64, scores float32)``, best first.
        """
        return search_exhaustive(reader, queries, k)

    def exact(self, reader: IndexReader, query: np.ndarray, doc_ids: np.ndarray) -> np.ndarray:
        """MaxSim of ``query`` against the stored vectors of ``doc_ids`` on the CPU.

        Args:
            reader: the open index.
            query: float32 ``(nq, dim)``.
            doc_ids: internal doc ids.

        Returns:
            numpy.ndarray: float32 ``(len(doc_ids),)``.
        """
        return exact_maxsim(reader, query, doc_ids)

    def __repr__(self) -> str:
        return "NumbaBackend()"


class TorchBackend:
    """Torch kernels on ``device`` (the index arrays are copied there once per index reader and device).

    Every query of a call is searched in one batch
    (:func:`~pyterrier_lateint.index.search_torch.search_plaid_torch`).

    Args:
        device: a torch device string, e.g. ``"cuda"``, ``"cuda:1"`` or ``"cpu"`` (not checked here;
            :func:`select_backend` checks it).

    Example:
        .. code-block:: python

            retriever = index.retriever(backend="torch", device="cuda")   # uses TorchBackend("cuda")
    """

    name = "torch"

    def __init__(self, device: str):
        self.device = device

    def plaid(self, reader: IndexReader, queries: list[np.ndarray], k: int, params: SearchParams) -> Results:
        """The staged (PLAID) search on ``device``, all queries in one batch: see :meth:`SearchBackend.plaid`.

        Args:
            reader: the open index.
            queries: float32 ``(nq, dim)`` per query.
            k: results per query.
            params: the search settings.

        Returns:
            list: per query ``(doc_ids int64, scores float32)``, best first.
        """
        from .search_torch import search_plaid_torch
        return search_plaid_torch(reader, queries, k, params, device=self.device)

    def exhaustive(self, reader: IndexReader, queries: list[np.ndarray], k: int) -> Results:
        """Exact MaxSim of every live document on ``device``: see :meth:`SearchBackend.exhaustive`.

        Args:
            reader: the open index.
            queries: float32 ``(nq, dim)`` per query.
            k: results per query.

        Returns:
            list: per query ``(doc_ids int64, scores float32)``, best first.
        """
        from .search_torch import search_exhaustive_torch
        return search_exhaustive_torch(reader, queries, k, device=self.device)

    def exact(self, reader: IndexReader, query: np.ndarray, doc_ids: np.ndarray) -> np.ndarray:
        """MaxSim of ``query`` against the stored vectors of ``doc_ids`` on ``device``.

        Args:
            reader: the open index.
            query: float32 ``(nq, dim)``.
            doc_ids: internal doc ids.

        Returns:
            numpy.ndarray: float32 ``(len(doc_ids),)``.
        """
        from .search_torch import exact_torch
        return exact_torch(reader, query, doc_ids, device=self.device)

    def __repr__(self) -> str:
        return f"TorchBackend({self.device!r})"


def select_backend(backend: Optional[str] = None, device: Optional[str] = None) -> SearchBackend:
    """The search backend for a retriever's or scorer's ``backend=`` / ``device=`` arguments.

    ``None``/``None`` picks torch on ``cuda`` when torch sees a GPU, else numba. ``device="cpu"`` alone means numba;
    any other device alone means torch on it. ``backend="torch"`` without a device uses ``cuda`` when available,
    else the CPU. ``backend="numba"`` runs on the CPU only.

    Args:
        backend: ``"numba"``, ``"torch"`` or ``None`` (automatic).
        device: a torch device string or ``None`` (automatic).

    Returns:
        SearchBackend: a :class:`NumbaBackend` or a :class:`TorchBackend`.

    Raises:
        ValueError: on an unknown backend, ``backend="numba"`` with a device other than the CPU, or a device torch
            cannot use.

    Example:
        .. code-block:: python

            from pyterrier_lateint.index import select_backend

            select_backend()                 # TorchBackend('cuda') with a GPU, else NumbaBackend()
            select_backend(device="cpu")     # NumbaBackend()
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
