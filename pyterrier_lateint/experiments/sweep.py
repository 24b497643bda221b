"""Measure the latency / recall trade-off of an index's search settings (plot it with
:func:`pyterrier_lateint.experiments.plots.latency_recall`)."""
from __future__ import annotations

import time
from typing import Iterable, Mapping, Optional, Sequence, Union

import numpy as np
import pandas as pd

Setting = Union[Sequence[int], Mapping[str, int]]


def _setting(s: Setting) -> dict:
    if isinstance(s, Mapping):
        unknown = set(s) - {"nprobe", "ncandidates", "nexact"}
        if unknown:
            raise ValueError(f"unknown search settings {sorted(unknown)}; use nprobe, ncandidates, nexact")
        return {"nprobe": s.get("nprobe"), "ncandidates": s.get("ncandidates"), "nexact": s.get("nexact")}
    values = tuple(s)
    if len(values) == 2:
        return {"nprobe": values[0], "ncandidates": None, "nexact": values[1]}
    if len(values) == 3:
        return dict(zip(("nprobe", "ncandidates", "nexact"), values))
    raise ValueError(f"a setting is (nprobe, nexact), (nprobe, ncandidates, nexact) or a dict, not {s!r}")


def _top_sets(results: pd.DataFrame, k: int) -> dict:
    top = results[results["rank"] < k]
    return top.groupby("qid", sort=False)["docno"].apply(set).to_dict()


def recall_at_k(results: pd.DataFrame, reference: pd.DataFrame, k: int) -> float:
    """Mean over the reference's queries of ``|top k of results & top k of reference| / |top k of reference|``.

    Args:
        results: a result frame (``qid``, ``docno``, ``rank``).
        reference: the reference results (e.g. exhaustive search).
        k: the depth.

    Returns:
        float: the recall, or NaN when the reference is empty.
    """
    got, truth = _top_sets(results, k), _top_sets(reference, k)
    if not truth:
        return float("nan")
    return float(np.mean([len(got.get(q, set()) & t) / len(t) for q, t in truth.items() if t]))


def _time_queries(retriever, singles: list[pd.DataFrame], whole: pd.DataFrame, one_at_a_time: bool) -> np.ndarray:
    """Seconds per query of one pass: each query alone, or the batch's time split evenly."""
    if one_at_a_time:
        out = np.empty(len(singles))
        for i, q in enumerate(singles):
            t0 = time.perf_counter()
            retriever(q)
            out[i] = time.perf_counter() - t0
        return out
    t0 = time.perf_counter()
    retriever(whole)
    return np.full(len(whole), (time.perf_counter() - t0) / len(whole))


def latency_recall_sweep(index, queries: pd.DataFrame, settings: Iterable[Setting], *, k: int = 10,
                         repeats: int = 3, model=None, one_at_a_time: bool = True, include_exhaustive: bool = True,
                         exhaustive_repeats: int = 1, backend: Optional[str] = None,
                         device: Optional[str] = None) -> pd.DataFrame:
    """Latency and R@k against exhaustive search of ``index.retriever`` at each search setting.

    Args:
        index: a built :class:`~pyterrier_lateint.ColBERTIndex`.
        queries: a query frame with ``qid`` and precomputed ``query_embs`` (e.g. ``model.query_encoder()(topics)``),
            so that query encoding is not timed.
        settings: ``(nprobe, nexact)`` pairs, ``(nprobe, ncandidates, nexact)`` triples or dicts of those keys
            (a missing key takes the retriever's default). Each retrieves the top ``k``; note that the search raises
            ``nexact`` to at least ``k`` and ``ncandidates`` to at least ``4 * nexact``.
        k: depth of the retrieval and of the recall.
        repeats: timed passes over the queries (settings interleaved within each pass, so drift on a shared
            machine affects every setting alike; each pass preceded by one untimed query; the first use of each
            setting, which may JIT-compile, is never timed). The exhaustive reference is timed after all the
            others, since it sweeps the whole index through the CPU caches.
        one_at_a_time: time each query alone (the latency a user sees); ``False`` times the whole frame as one
            batch and splits the time evenly (throughput).
        include_exhaustive: add a row for ``mode="exhaustive"`` (the reference), timed over ``exhaustive_repeats``
            passes. Its recall is measured as the others' are, on a second run against the first: 1 when exhaustive
            search is repeatable.
        exhaustive_repeats: timed passes of the exhaustive reference (default 1: it is slow, and only a point of
            comparison).
        model: passed to ``index.retriever`` (default ``None``: the index's model).
        backend: passed to ``index.retriever``.
        device: passed to ``index.retriever``.

    Returns:
        pandas.DataFrame: one row per setting: ``nprobe``, ``ncandidates``, ``nexact`` (as given; ``NaN`` = default,
        or the exhaustive row), ``mode``, ``ms_per_query`` (median over queries of each query's median over repeats,
        milliseconds; batched: median over repeats of the pass time / number of queries), ``ms_p95`` (95th
        percentile over queries of the same; NaN when batched), ``recall@{k}`` (mean over queries of the share of
        the exhaustive top ``k`` found), and ``label`` (``"nprobe=4 nexact=128"``).

    Raises:
        ValueError: when ``queries`` lack ``query_embs`` or are empty, or a count or setting is bad.

    Example:
        .. code-block:: python

            from pyterrier_lateint.experiments.sweep import latency_recall_sweep
            from pyterrier_lateint.experiments.plots import latency_recall

            queries = model.query_encoder()(topics)
            frame = latency_recall_sweep(index, queries, [(4, 128), (8, 256), (8, 1024, 512)], k=10)
            latency_recall(frame, group="nprobe", label="nexact", path="sweep.png")
    """
    if "query_embs" not in queries.columns:
        raise ValueError("queries need precomputed 'query_embs' (e.g. model.query_encoder()(topics)), so that query "
                         "encoding is not part of the timings")
    if min(repeats, exhaustive_repeats, k) < 1:
        raise ValueError("repeats, exhaustive_repeats and k must be >= 1")
    queries = queries.reset_index(drop=True)
    if queries.empty:
        raise ValueError("no queries")
    kw = dict(model=model, num_results=k, backend=backend, device=device)
    rows = [_setting(s) for s in settings]
    retrievers = [index.retriever(mode="plaid", nprobe=r["nprobe"], ncandidates=r["ncandidates"],
                                  nexact=r["nexact"], **kw) for r in rows]
    exhaustive = index.retriever(mode="exhaustive", **kw)
    reference = exhaustive(queries)
    singles = [queries.iloc[[i]] for i in range(len(queries))]
    recalls = []
    for r in retrievers:  # warm-up (numba compiles on first use) and the rankings for recall
        r(singles[0])
        recalls.append(recall_at_k(r(queries), reference, k))
    times = [np.empty((repeats, len(queries))) for _ in retrievers]  # seconds (repeat, query) per setting
    for rep in range(repeats):
        for r, t in zip(retrievers, times):  # an untimed query first: the previous setting's caches settle
            r(singles[0])
            t[rep] = _time_queries(r, singles, queries, one_at_a_time)
    if include_exhaustive:  # last: it sweeps the whole index through the caches
        rows.append({"nprobe": None, "ncandidates": None, "nexact": None})
        recalls.append(recall_at_k(exhaustive(queries), reference, k))
        times.append(np.stack([_time_queries(exhaustive, singles, queries, one_at_a_time)
                               for _ in range(exhaustive_repeats)]))
    out = pd.DataFrame(rows, columns=["nprobe", "ncandidates", "nexact"], dtype=float)
    out["mode"] = ["plaid"] * len(retrievers) + (["exhaustive"] if include_exhaustive else [])
    if one_at_a_time:
        per_query_ms = [np.median(t, axis=0) * 1e3 for t in times]  # each query's median over repeats
        out["ms_per_query"] = [float(np.median(m)) for m in per_query_ms]
        out["ms_p95"] = [float(np.percentile(m, 95)) for m in per_query_ms]
    else:
        out["ms_per_query"] = [float(np.median(t[:, 0]) * 1e3) for t in times]
        out["ms_p95"] = np.nan
    out[f"recall@{k}"] = recalls
    out["label"] = ["exhaustive" if m == "exhaustive" else
                    " ".join(f"{c}={int(v)}" for c, v in row.items() if v == v and v is not None)
                    for m, row in zip(out["mode"], out[["nprobe", "ncandidates", "nexact"]].to_dict("records"))]
    return out
