"""End-to-end retrieval from a ColBERTIndex as a PyTerrier transformer."""
from __future__ import annotations

import logging
from typing import Any, Callable, Optional

import numpy as np
import pandas as pd
import pyterrier as pt

from ..base import ConfigEquality, check_int
from ..models import LateInteractionModel, check_model, model_key
from .backends import SearchBackend, select_backend
from .handle import IndexHandle
from .pruning import check_query_pruning, pruned_query_vectors
from .queries import query_vectors, score_divisor, validate_queries
from .search import SearchParams
from .token_stats import load_token_stats


logger = logging.getLogger(__name__)

MODES = ("plaid", "exhaustive")


def search_params(mode: str, num_results: int, nprobe: Optional[int], ncandidates: Optional[int],
                  nexact: Optional[int]) -> SearchParams:
    """Checked retriever settings: the search knobs, defaults for those not given (``ValueError`` on a bad mode or
    ``num_results``)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    check_int("num_results", num_results)
    return SearchParams(nprobe, ncandidates, nexact)


def results_frame(batch: pd.DataFrame, vecs: list[np.ndarray], res, docnos_of: Callable[[np.ndarray], Any],
                  model: Optional[LateInteractionModel], out_cols: list[str]) -> pd.DataFrame:
    """Result rows of one batch of queries (``res``: per query ``(doc ids, raw MaxSim)`` best first), built from the
    input's own column arrays (no per-row Python work); ``docnos_of`` maps doc ids to docnos; scores are divided
    by the model's ``score_divisor`` of each query's length."""
    counts = np.array([len(ids) for ids, _ in res], dtype=np.int64)
    rows = np.repeat(np.arange(len(res)), counts)
    ids = np.concatenate([ids for ids, _ in res]) if res else np.zeros(0, dtype=np.int64)
    new = {"docno": np.asarray(docnos_of(ids)) if len(ids) else np.array([], dtype=str),
           "score": np.concatenate([sc.astype(np.float64) / score_divisor(model, len(q))
                                    for (_, sc), q in zip(res, vecs)]) if res else np.zeros(0),
           "rank": np.concatenate([np.arange(n, dtype=np.int64) for n in counts]) if res else np.zeros(0, np.int64)}
    return pd.DataFrame({c: new[c] if c in new else batch[c].array.take(rows) for c in out_cols}, copy=False)


def retrieve_in_batches(inp: pd.DataFrame, retriever: Any, vectors: Callable[[pd.DataFrame], list[np.ndarray]],
                        search: Callable[[list[np.ndarray]], Any], docnos_of: Callable[[np.ndarray], Any]
                        ) -> pd.DataFrame:
    """A retriever's transform: batches of ``retriever.batch_size`` queries, each turned into vectors
    (``vectors``), searched (``search``: per query ``(doc ids, raw MaxSim)``), and made into result rows
    (:func:`results_frame`) that keep the input's columns."""
    out_cols = list(inp.columns) + [c for c in ("docno", "score", "rank") if c not in inp.columns]
    frames = []
    starts = range(0, len(inp), retriever.batch_size)
    if retriever.verbose and len(starts) > 1:
        starts = pt.tqdm(starts, desc=repr(retriever), unit="batch")
    for s in starts:
        batch = inp if len(inp) <= retriever.batch_size else inp.iloc[s:s + retriever.batch_size]  # (one: no copy)
        vecs = vectors(batch)
        frames.append(results_frame(batch, vecs, search(vecs), docnos_of, retriever.model, out_cols))
    if not frames:
        return pd.DataFrame(columns=out_cols)
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


class ColBERTRetriever(ConfigEquality, pt.Transformer):
    """Query frame (``qid``, ``query`` and/or ``query_embs``) -> ranked results (``docno``, ``score``, ``rank``).

    ``mode="plaid"`` runs the staged candidate search (:mod:`pyterrier_lateint.index.search`);
    ``mode="exhaustive"`` scores every document exactly (the ground truth, slow). Scores are exact MaxSim over the
    stored vectors divided by ``model.score_divisor(n_query_tokens)``. Input columns are kept. ``backend`` /
    ``device`` choose the kernels once (:func:`~pyterrier_lateint.index.backends.select_backend`).
    ``query_pruning=n`` searches with ``n`` query vectors only (:mod:`~pyterrier_lateint.index.pruning`): those of
    lowest collection frequency (``query_pruning_by="cf"``) or the first ``n`` (``"position"``). Usually made by
    :meth:`ColBERTIndex.retriever`, which also checks the index and the model at once.

    Args:
        index: the index to search.
        model: encodes ``query`` when the frame has no ``query_embs``; ``None``: ``query_embs`` are required.
        num_results: documents per query (default 1000).
        mode: ``"plaid"`` (default) or ``"exhaustive"``.
        nprobe: centroids probed per query token (default: by the collection's size, 8 up to 100,000 documents).
        ncandidates: documents kept by stage 1; default ``4 * nexact``.
        nexact: documents scored exactly; default by the collection's size, at least ``num_results``.
        batch_size: queries encoded and searched together (default 64).
        backend: ``"numba"``, ``"torch"`` or ``None`` (automatic).
        device: a torch device string for the torch backend.
        verbose: show a progress bar over the query batches.
        query_pruning: search with only this many query vectors; ``None`` (default): all.
        query_pruning_by: ``"cf"`` (default) or ``"position"``.

    Raises:
        ValueError: on a bad mode, backend, device or pruning setting.
        TypeError: when an integer setting is not an int.

    Example:
        .. code-block:: python

            retriever = index.retriever(model, num_results=10)   # a ColBERTRetriever
            (retriever % 5).search("chemical reactions")          # % 5 fuses into num_results=5
    """

    def __init__(self, index: IndexHandle, model: Optional[LateInteractionModel] = None, *,
                 num_results: int = 1000, mode: str = "plaid", nprobe: Optional[int] = None,
                 ncandidates: Optional[int] = None, nexact: Optional[int] = None, batch_size: int = 64,
                 backend: Optional[str] = None, device: Optional[str] = None, verbose: bool = False,
                 query_pruning: Optional[int] = None, query_pruning_by: str = "cf"):
        self.params = search_params(mode, num_results, nprobe, ncandidates, nexact)
        self.index = index
        self.model = check_model(model, "ColBERTRetriever")
        self.num_results = int(num_results)
        self.mode = mode
        self.batch_size = check_int("batch_size", batch_size)
        self.backend: SearchBackend = select_backend(backend, device)
        self.verbose = verbose
        check_query_pruning(query_pruning, query_pruning_by)
        self.query_pruning = query_pruning
        self.query_pruning_by = query_pruning_by

    def _config(self) -> tuple:
        return (str(self.index.path), model_key(self.model), self.num_results, self.mode, self.params,
                self.backend.name, self.backend.device, self.query_pruning, self.query_pruning_by)

    def __repr__(self) -> str:
        return (f"ColBERTRetriever({str(self.index.path)!r}, num_results={self.num_results}, mode={self.mode!r}, "
                f"{self.params.describe()})")

    def fuse_rank_cutoff(self, k: int) -> Optional[pt.Transformer]:
        """``retriever % k`` -> the same retriever with ``num_results=k`` (PyTerrier's rank cutoff fusion).

        Args:
            k: the rank cutoff.

        Returns:
            ColBERTRetriever: a copy with ``num_results=k`` when ``k`` is smaller, else ``None`` (no fusion).
        """
        if k >= self.num_results:
            return None
        return ColBERTRetriever(self.index, self.model, num_results=k, mode=self.mode, nprobe=self.params.nprobe,
                                ncandidates=self.params.ncandidates, nexact=self.params.nexact,
                                batch_size=self.batch_size, backend=self.backend.name, device=self.backend.device,
                                verbose=self.verbose, query_pruning=self.query_pruning,
                                query_pruning_by=self.query_pruning_by)

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        """Search the index for every query of ``inp``.

        Args:
            inp: a query frame with ``qid`` and ``query`` or ``query_embs`` (float32 ``(n_query_tokens, dim)``).

        Returns:
            pandas.DataFrame: the input columns, repeated per result, plus ``docno``, ``score`` (float64) and
            ``rank`` (from 0), best first per query.

        Raises:
            ModelMismatchError: when the model differs from the indexing model.
            ValueError: when there is neither ``query_embs`` nor a model, or the vectors' dimension is not the
                index's.
        """
        validate_queries(inp)
        reader = self.index.reader()
        self.index.check_model(self.model)

        def vectors(batch: pd.DataFrame) -> list[np.ndarray]:
            if self.query_pruning is None:
                return query_vectors(self.model, batch, self.batch_size, reader.dim)
            return pruned_query_vectors(self.model, batch, self.batch_size, reader.dim, self.query_pruning,
                                        self.query_pruning_by,
                                        lambda: load_token_stats(reader, "query_pruning_by='cf'"))

        def search(vecs: list[np.ndarray]):
            if self.mode == "exhaustive":
                return self.backend.exhaustive(reader, vecs, self.num_results)
            return self.backend.plaid(reader, vecs, self.num_results, self.params)

        return retrieve_in_batches(inp, self, vectors, search, reader.docnos.fwd.lookup)
