"""PyTerrier transformers over a ColBERTIndex: end-to-end retrieval and re-ranking from stored vectors."""
from __future__ import annotations

import json
import logging
from typing import Any, Optional

import numpy as np
import pandas as pd
import pyterrier as pt

from ..transformers import ConfigEquality, rank_results
from .search import SearchParams, exact_maxsim, search_exhaustive, search_plaid


def resolve_device(device: Optional[str]) -> Optional[str]:
    """``None``: a GPU when torch sees one, else the numba CPU path; ``"cpu"``: the numba CPU path; anything else
    (``"cuda"``, ``"cuda:1"``, ``"mps"``, or ``"torch-cpu"`` for torch on the CPU): the torch path on that device."""
    if device == "cpu":
        return None
    if device is None:
        import torch
        return "cuda" if torch.cuda.is_available() else None
    return "cpu" if device == "torch-cpu" else device

logger = logging.getLogger(__name__)

MODES = ("plaid", "exhaustive")


def _sig_key(model: Any) -> Optional[str]:
    """``model.key()`` for a ColBERT model; for model-less (``None``) or duck-typed models, their signature or repr."""
    if model is None:
        return None
    if hasattr(model, "key"):
        return model.key()
    sig = model.signature() if hasattr(model, "signature") else None
    return json.dumps(sig, sort_keys=True, default=str) if sig is not None else repr(model)


def _query_vectors(model: Any, inp: pd.DataFrame, batch_size: int) -> list[np.ndarray]:
    """``query_toks`` of ``inp`` if present, else ``model.encode_queries(inp.query)``; float32 ``(nq, dim)`` each."""
    if "query_toks" in inp.columns:
        return [np.asarray(q, dtype=np.float32) for q in inp["query_toks"]]
    if model is None:
        raise ValueError("the input has no 'query_toks' column and no model was given to encode 'query'")
    return [np.asarray(q, dtype=np.float32) for q in model.encode_queries(inp["query"].tolist(),
                                                                           batch_size=batch_size)]


def _divisor(model: Any, n_tokens: int) -> float:
    if model is not None and hasattr(model, "score_divisor"):
        return float(model.score_divisor(n_tokens))
    return 1.0


def _check_dims(index_dim: int, vecs: list[np.ndarray]) -> None:
    for q in vecs:
        if q.ndim != 2 or (len(q) and q.shape[1] != index_dim):
            raise ValueError(f"query vectors have shape {q.shape}; the index holds dim {index_dim} vectors")


class ColBERTRetriever(ConfigEquality, pt.Transformer):
    """Query frame (``qid``, ``query`` and/or ``query_toks``) -> ranked results (``docno``, ``score``, ``rank``).

    ``mode="plaid"`` runs the staged candidate search (:mod:`pyterrier_lateint.index.search`);
    ``mode="exhaustive"`` scores every document exactly (the ground truth, slow). Scores are exact MaxSim over the
    stored vectors divided by ``model.score_divisor(n_query_tokens)``. Input columns are kept.
    """

    def __init__(self, index: Any, model: Any = None, *, num_results: int = 1000, mode: str = "plaid",
                 nprobe: Optional[int] = None, ncandidates: Optional[int] = None, nexact: Optional[int] = None,
                 batch_size: int = 64, device: Optional[str] = None, verbose: bool = False):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        if num_results < 1:
            raise ValueError(f"num_results must be >= 1, not {num_results}")
        self.index = index
        self.model = model
        self.num_results = num_results
        self.mode = mode
        d = SearchParams()
        self.params = SearchParams(nprobe or d.nprobe, ncandidates or d.ncandidates, nexact or d.nexact)
        self.batch_size = batch_size
        self.device = device
        self.verbose = verbose

    def _config(self) -> tuple:
        return (str(self.index.path), _sig_key(self.model), self.num_results, self.mode, self.params, self.device)

    def __repr__(self) -> str:
        return (f"ColBERTRetriever({str(self.index.path)!r}, num_results={self.num_results}, mode={self.mode!r}, "
                f"nprobe={self.params.nprobe}, ncandidates={self.params.ncandidates}, nexact={self.params.nexact})")

    def fuse_rank_cutoff(self, k: int) -> Optional[pt.Transformer]:
        """``retriever % k`` -> the same retriever with ``num_results=k`` (when ``k`` is smaller)."""
        if k < self.num_results:
            return ColBERTRetriever(self.index, self.model, num_results=k, mode=self.mode,
                                    nprobe=self.params.nprobe, ncandidates=self.params.ncandidates,
                                    nexact=self.params.nexact, batch_size=self.batch_size, device=self.device,
                                    verbose=self.verbose)
        return None

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        with pt.validate.any(inp) as v:
            v.query_frame(extra_columns=["query_toks"], mode="vectors")
            v.query_frame(extra_columns=["query"], mode="text")
        reader = self.index._reader()
        self.index._check_model(self.model)
        out_cols = list(inp.columns) + [c for c in ("docno", "score", "rank") if c not in inp.columns]
        frames = []
        device = resolve_device(self.device)
        it = range(0, len(inp), self.batch_size)
        if self.verbose and len(it) > 1:
            it = pt.tqdm(it, desc=repr(self), unit="batch")
        for s in it:
            batch = inp.iloc[s:s + self.batch_size]
            vecs = _query_vectors(self.model, batch, self.batch_size)
            _check_dims(reader.dim, vecs)
            if device is not None:
                from . import search_torch as st
                if self.mode == "exhaustive":
                    res = st.search_exhaustive_torch(reader, vecs, self.num_results, device=device)
                else:
                    res = st.search_plaid_torch(reader, vecs, self.num_results, self.params, device=device)
            elif self.mode == "exhaustive":
                res = search_exhaustive(reader, vecs, self.num_results)
            else:
                res = search_plaid(reader, vecs, self.num_results, self.params)
            counts = np.array([len(ids) for ids, _ in res], dtype=np.int64)
            rows_a = np.repeat(np.arange(len(res)), counts)
            ids_a = np.concatenate([ids for ids, _ in res])
            new = {"docno": np.asarray(reader.docnos.fwd.lookup(ids_a)) if len(ids_a) else np.array([], dtype=str),
                   "score": np.concatenate([sc.astype(np.float64) / _divisor(self.model, len(q))
                                            for (_, sc), q in zip(res, vecs)]),
                   "rank": np.concatenate([np.arange(n, dtype=np.int64) for n in counts])}
            frames.append(pd.DataFrame({c: new[c] if c in new else batch[c].array.take(rows_a) for c in out_cols},
                                       copy=False))
        if not frames:
            return pd.DataFrame(columns=out_cols)
        return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


class ColBERTScorer(ConfigEquality, pt.Transformer):
    """Re-ranks a result frame (``qid``, ``docno`` and ``query`` or ``query_toks``) by exact MaxSim over the stored
    (decompressed) document vectors: no document text, no document encoding.

    ``on_unknown``: what to do with docnos that are not in the index: ``"error"`` (default, ``KeyError`` naming
    them) or ``"drop"`` (remove those rows, logging how many).
    """

    def __init__(self, index: Any, model: Any = None, *, batch_size: int = 64, on_unknown: str = "error",
                 device: Optional[str] = None, verbose: bool = False):
        if on_unknown not in ("error", "drop"):
            raise ValueError(f"on_unknown must be 'error' or 'drop', not {on_unknown!r}")
        self.index = index
        self.model = model
        self.batch_size = batch_size
        self.on_unknown = on_unknown
        self.device = device
        self.verbose = verbose

    def _config(self) -> tuple:
        return (str(self.index.path), _sig_key(self.model), self.on_unknown, self.device)

    def __repr__(self) -> str:
        return f"ColBERTScorer({str(self.index.path)!r}, on_unknown={self.on_unknown!r})"

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        with pt.validate.any(inp) as v:
            v.result_frame(extra_columns=["query_toks"], mode="vectors")
            v.result_frame(extra_columns=["query"], mode="text")
        reader = self.index._reader()
        self.index._check_model(self.model)
        out_cols = list(inp.columns) + [c for c in ("score", "rank") if c not in inp.columns]
        if len(inp) == 0:
            return pd.DataFrame(columns=out_cols)
        ids = reader.doc_ids(inp["docno"].to_numpy(), on_unknown="error" if self.on_unknown == "error" else "ignore")
        if (ids < 0).any():
            logger.warning("ColBERTScorer: dropping %d rows whose docno is not in the index", int((ids < 0).sum()))
            inp = inp[ids >= 0]
            ids = ids[ids >= 0]
        inp = inp.reset_index(drop=True)
        scores = np.empty(len(inp), dtype=np.float64)
        groups = inp.groupby("qid", sort=False).indices
        device = resolve_device(self.device)
        qids = list(groups)
        for s in pt.tqdm(range(0, len(qids), self.batch_size), desc=repr(self), unit="batch",
                         disable=not self.verbose):
            batch_q = qids[s:s + self.batch_size]
            first_rows = inp.iloc[[groups[q][0] for q in batch_q]]
            vecs = _query_vectors(self.model, first_rows, self.batch_size)
            _check_dims(reader.dim, vecs)
            for q, qv in zip(batch_q, vecs):
                rows = groups[q]
                doc_ids = ids[rows]
                uniq, inv = np.unique(doc_ids, return_inverse=True)  # sorted: sequential reads
                if device is not None:
                    from .search_torch import exact_torch
                    sc = exact_torch(reader, qv, uniq, device=device)[inv]
                else:
                    sc = exact_maxsim(reader, qv, uniq)[inv]
                scores[rows] = sc.astype(np.float64) / _divisor(self.model, len(qv))
        return rank_results(inp.assign(score=scores))[out_cols]
