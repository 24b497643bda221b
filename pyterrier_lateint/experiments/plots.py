"""Plots for experiments: per-query differences, the latency / recall trade-off of search settings, token matches.

matplotlib is optional (``pip install 'pyterrier-lateint[plots]'``): it is imported inside the functions, and only
its object-oriented API is used (``matplotlib.figure.Figure`` with the Agg canvas, never ``pyplot``), so the
functions work headless, create no global figure state, and leave the user's backend alone. Each plotting function
returns the :class:`~matplotlib.figure.Figure` and, with ``path``, also saves it as a PNG. In a notebook, run
``%matplotlib inline`` once so that returned figures are displayed.
"""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import pandas as pd

from ..explain import agg_figure

PathLike = Union[str, Path]

# axis labels (with units) of the columns that :func:`~pyterrier_lateint.experiments.sweep.latency_recall_sweep` writes
AXIS_LABELS = {
    "ms_per_query": "median latency (ms per query)",
    "ms_p95": "95th percentile latency (ms per query)",
}

BETTER_COLOUR, WORSE_COLOUR, TIE_COLOUR = "#1f77b4", "#d95f02", "#999999"  # colour-blind safe blue / orange


def _save(fig, path: Optional[PathLike], dpi: int = 150):
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi, format="png")
    return fig


def _axis_label(column: str) -> str:
    if column in AXIS_LABELS:
        return AXIS_LABELS[column]
    if column.lower().startswith("recall@"):
        return f"R@{column.split('@', 1)[1]} against exhaustive search"
    return column


# ---------------------------------------------------------------------------------------------- per-query difference
def _pick(values: Sequence[str], wanted: str, what: str) -> str:
    values = list(dict.fromkeys(values))
    if wanted in values:
        return wanted
    folded = [v for v in values if str(v).lower() == wanted.lower()]
    if len(folded) == 1:
        return folded[0]
    raise ValueError(f"no {what} {wanted!r} in the per-query frame; it has {values}")


def per_query_difference(per_query: pd.DataFrame, system_a: str, system_b: str, measure: str = "nDCG@10", *,
                         path: Optional[PathLike] = None, title: Optional[str] = None, show_qids: Optional[bool] = None):
    """Sorted bar chart of ``measure(system_b) - measure(system_a)`` per query.

    Args:
        per_query: ``pt.Experiment(..., perquery=True)``'s frame: columns ``name, qid, measure, value`` (one row per
            system, query and measure).
        system_a: a value of ``name`` (a system's name in the experiment): system A.
        system_b: another value of ``name``: system B; bars show B minus A. Names are matched case-insensitively
            when the exact one is absent.
        measure: a value of ``measure`` (as pt.Experiment names it, e.g. ``"nDCG@10"``, ``"AP"``).
        path: also save the figure as a PNG there.
        title: the title; default one counting wins, losses and ties.
        show_qids: label each bar with its qid (default: when there are at most 50 queries).

    Returns:
        matplotlib.figure.Figure: one bar per query judged for both systems (queries missing for either system are
        left out), sorted from the largest gain of B to its largest loss; blue bars B better, orange A better, ties
        height 0. The default title counts wins, losses and ties and gives the mean difference (in the measure's own
        units).

    Raises:
        ValueError: when columns, the measure or a system are missing, or no query has the measure for both.

    Example:
        .. code-block:: python

            from pyterrier_lateint.experiments.plots import per_query_difference

            per_query = pt.Experiment([bm25, colbert], topics, qrels, ["nDCG@10"], names=["BM25", "ColBERT"],
                                      perquery=True)
            per_query_difference(per_query, "BM25", "ColBERT", path="perquery.png")
    """
    missing = {"name", "qid", "measure", "value"} - set(per_query.columns)
    if missing:
        raise ValueError(f"per_query needs the columns name, qid, measure, value (pt.Experiment(..., perquery=True)"
                         f"); missing {sorted(missing)}")
    measure = _pick(per_query["measure"].astype(str), measure, "measure")
    system_a = _pick(per_query["name"].astype(str), system_a, "system")
    system_b = _pick(per_query["name"].astype(str), system_b, "system")
    rows = per_query[per_query["measure"].astype(str) == measure]
    wide = rows.pivot_table(index="qid", columns="name", values="value", aggfunc="first")
    wide = wide[[system_a, system_b]].dropna()
    if wide.empty:
        raise ValueError(f"no query has {measure} for both {system_a!r} and {system_b!r}")
    diff = (wide[system_b] - wide[system_a]).sort_values(ascending=False, kind="stable")
    wins, losses = int((diff > 0).sum()), int((diff < 0).sum())
    ties = len(diff) - wins - losses

    fig = agg_figure(max(6.0, min(0.12 * len(diff) + 3, 14.0)), 4.2)
    ax = fig.add_subplot()
    colours = [BETTER_COLOUR if d > 0 else WORSE_COLOUR if d < 0 else TIE_COLOUR for d in diff]
    x = np.arange(len(diff))
    ax.bar(x, diff.to_numpy(), width=0.8, color=colours)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xlim(-0.6, len(diff) - 0.4)
    if show_qids if show_qids is not None else len(diff) <= 50:
        ax.set_xticks(x, [str(q) for q in diff.index], rotation=90, fontsize=7)
    else:
        ax.set_xticks([])
    ax.set_xlabel(f"query (sorted by difference; {len(diff)} queries)")
    ax.set_ylabel(f"\u0394 {measure} ({system_b} \u2212 {system_a})")
    from matplotlib.patches import Patch
    ax.legend(handles=[Patch(color=BETTER_COLOUR, label=f"{system_b} better"),
                       Patch(color=WORSE_COLOUR, label=f"{system_a} better")], loc="upper right", fontsize=8)
    ax.set_title(title or f"{measure} per query: {system_b} vs {system_a}\n{wins} better, {losses} worse, {ties} tied;"
                          f" mean difference {diff.mean():+.4f}", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


# ---------------------------------------------------------------------------------------------- latency / recall
def pareto_front(frame: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """The rows no other row beats on both axes (lower ``x`` and higher ``y`` are better), sorted by ``x``.

    Args:
        frame: the rows (e.g. from :func:`~pyterrier_lateint.experiments.sweep.latency_recall_sweep`).
        x: the column where lower is better (e.g. latency).
        y: the column where higher is better (e.g. recall).

    Returns:
        pandas.DataFrame: the Pareto-optimal rows.
    """
    ordered = frame.sort_values([x, y], ascending=[True, False], kind="stable")
    best, keep = -np.inf, []
    for i, v in zip(ordered.index, ordered[y]):
        if v > best:
            keep.append(i)
            best = v
    return ordered.loc[keep]


def latency_recall(frame: pd.DataFrame, x: str = "ms_per_query", y: str = "recall@10", label: Optional[str] = None,
                   *, group: Optional[str] = None, path: Optional[PathLike] = None, title: Optional[str] = None,
                   logx: bool = False, xlabel: Optional[str] = None, ylabel: Optional[str] = None):
    """Trade-off between latency and recall of search settings: one point per row of ``frame``.

    Args:
        frame: one row per search setting, e.g. from
            :func:`~pyterrier_lateint.experiments.sweep.latency_recall_sweep`: ``x`` in ms per query, ``y`` a recall
            in [0, 1] (R@k of the setting's top k against exhaustive search).
        x: the latency column (default ``"ms_per_query"``).
        y: the recall column (default ``"recall@10"``).
        label: a column whose values annotate each point (e.g. ``"nexact"`` or ``"label"``; missing values are
            not annotated).
        group: a column (e.g. ``"nprobe"``): points of one value are joined by a line in their own colour, sorted by
            ``x``; rows whose ``group`` is missing (e.g. the exhaustive reference) are drawn as black stars, named
            by their ``label`` column when there is one. Without
            ``group``, the settings on the Pareto front (no other setting is both faster and better) are joined.
        path: also save the figure as a PNG there.
        title: the title; default ``"Search settings: latency vs recall"``.
        logx: logarithmic latency axis (useful when an exhaustive reference is far to the right).
        xlabel: the x axis label; default by the column (with units).
        ylabel: the y axis label; default by the column.

    Returns:
        matplotlib.figure.Figure: axes labelled with units; ``ax.collections`` hold the points, ``len(frame)`` in
        all.

    Raises:
        ValueError: when a named column is missing or the frame is empty.

    Example:
        .. code-block:: python

            from pyterrier_lateint.experiments.plots import latency_recall

            latency_recall(sweep_frame, group="nprobe", label="nexact", logx=True, path="latency_recall.png")
    """
    for col in (x, y) + ((label,) if label else ()) + ((group,) if group else ()):
        if col not in frame.columns:
            raise ValueError(f"latency_recall: no column {col!r}; the frame has {list(frame.columns)}")
    if frame.empty:
        raise ValueError("latency_recall: the frame has no rows")
    fig = agg_figure(6.4, 4.4)
    ax = fig.add_subplot()
    if group is not None:
        grouped = frame[frame[group].notna()]
        for value, g in grouped.groupby(group, sort=True):
            g = g.sort_values(x, kind="stable")
            shown = int(value) if isinstance(value, float) and float(value).is_integer() else value
            line = ax.plot(g[x], g[y], linewidth=1, alpha=0.7)[0]
            ax.scatter(g[x], g[y], color=line.get_color(), s=22, zorder=3, label=f"{group}={shown}")
        other = frame[frame[group].isna()]
        if len(other):
            name = ", ".join(dict.fromkeys(other["label"].astype(str))) if "label" in other.columns else "reference"
            ax.scatter(other[x], other[y], color="black", marker="*", s=80, zorder=3, label=name)
        ax.legend(fontsize=8, loc="lower right")
    else:
        ax.scatter(frame[x], frame[y], s=22, zorder=3, color=BETTER_COLOUR)
        front = pareto_front(frame, x, y)
        ax.plot(front[x], front[y], linestyle="--", color="grey", linewidth=1, label="Pareto front")
        ax.legend(fontsize=8, loc="lower right")
    if label is not None:
        for xv, yv, text in zip(frame[x], frame[y], frame[label]):
            if text is None or text != text:  # missing (e.g. nexact of the exhaustive row): no annotation
                continue
            shown = int(text) if isinstance(text, float) and float(text).is_integer() else text
            ax.annotate(str(shown), (xv, yv), textcoords="offset points", xytext=(3, 3), fontsize=7)
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel or _axis_label(x))
    ax.set_ylabel(ylabel or _axis_label(y))
    ax.set_title(title or "Search settings: latency vs recall", fontsize=10)
    ax.grid(alpha=0.3)
    return _save(fig, path)


# ---------------------------------------------------------------------------------------------- token matches
def token_similarities(model, query: str, document: str) -> tuple[np.ndarray, list[str], list[str], float]:
    """The cosine similarities behind MaxSim for one query and document.

    MaxSim is ``sims.max(axis=1).sum() / divisor``.

    Args:
        model: a late-interaction encoder with a ``tokenizer`` (e.g. :class:`~pyterrier_lateint.ColBERT`).
        query: the query text.
        document: the document text.

    Returns:
        tuple: ``(sims, query_tokens, doc_tokens, divisor)``: ``sims`` float32 ``(n_query_tokens, n_doc_tokens)``,
        the dot products of ``model``'s (L2-normalised) token vectors, i.e. cosines; the token strings behind each
        vector (from ``model.tokenizer``, markers and ``[MASK]`` expansion tokens included where the model keeps
        their vectors); and what MaxSim is divided by (``model.score_divisor``: 1 except for bge-m3).
    """
    q_vecs, q_ids = model.encode_queries([query], return_ids=True)
    d_vecs, d_ids = model.encode_docs([document], return_ids=True)
    Q, D = np.asarray(q_vecs[0], dtype=np.float32), np.asarray(d_vecs[0], dtype=np.float32)
    sims = Q @ D.T
    tok = model.tokenizer
    q_tokens = list(tok.convert_ids_to_tokens([int(i) for i in q_ids[0]]))
    d_tokens = list(tok.convert_ids_to_tokens([int(i) for i in d_ids[0]]))
    return sims, q_tokens, d_tokens, float(model.score_divisor(len(Q)))


def contributions_from_matrix(sims: np.ndarray, query_tokens: Sequence[str], doc_tokens: Sequence[str],
                              divisor: float = 1.0) -> pd.DataFrame:
    """Per query token: its best-matching document token and similarity (see :func:`token_contributions`).

    Args:
        sims: the similarity matrix ``(n_query_tokens, n_doc_tokens)``.
        query_tokens: the query's token strings.
        doc_tokens: the document's token strings.
        divisor: what MaxSim is divided by (default 1.0).

    Returns:
        pandas.DataFrame: ``query_pos``, ``query_token``, ``doc_pos``, ``doc_token``, ``similarity``,
        ``contribution``.

    Raises:
        ValueError: when the shapes disagree, or the document has no tokens.
    """
    sims = np.asarray(sims)
    if sims.shape != (len(query_tokens), len(doc_tokens)):
        raise ValueError(f"sims has shape {sims.shape}, not (len(query_tokens), len(doc_tokens)) = "
                         f"({len(query_tokens)}, {len(doc_tokens)})")
    if len(query_tokens) and not len(doc_tokens):
        raise ValueError("the document has no token vectors (empty text?): MaxSim is -inf, nothing to match")
    best = sims.argmax(axis=1) if len(query_tokens) else np.zeros(0, dtype=np.int64)
    sim = sims[np.arange(len(best)), best].astype(np.float64) if len(best) else np.zeros(0)
    return pd.DataFrame({"query_pos": np.arange(len(best)), "query_token": list(query_tokens),
                         "doc_pos": best, "doc_token": [doc_tokens[j] for j in best], "similarity": sim,
                         "contribution": sim / divisor})


def token_contributions(model, query: str, document: str) -> pd.DataFrame:
    """MaxSim as a table: one row per query token vector.

    Columns: ``query_pos``, ``query_token``, ``doc_pos`` and ``doc_token`` (the document token whose vector is most
    similar), ``similarity`` (their cosine, in [-1, 1]) and ``contribution`` (``similarity / divisor``; equal to it
    except for models that average over query tokens, e.g. bge-m3). ``contribution`` sums to
    ``model.score_pairs([(query, document)])[0]``, the MaxSim score.

    Args:
        model: a late-interaction encoder with a ``tokenizer``.
        query: the query text.
        document: the document text.

    Returns:
        pandas.DataFrame: one row per query token vector.

    Example:
        .. code-block:: python

            from pyterrier_lateint.experiments.plots import token_contributions

            token_contributions(model, "electron spin", "the spin of the electron")["contribution"].sum()
    """
    return contributions_from_matrix(*token_similarities(model, query, document))


def _short(token: str, width: int = 14) -> str:
    return token if len(token) <= width else token[:width - 1] + "\u2026"


def similarity_heatmap(sims: np.ndarray, query_tokens: Sequence[str], doc_tokens: Sequence[str],
                       divisor: float = 1.0, *, path: Optional[PathLike] = None, title: Optional[str] = None,
                       cmap: str = "viridis"):
    """Heat map of a query-token x document-token similarity matrix (see :func:`token_heatmap`).

    Rows are query tokens, columns document tokens; each row's maximum (the match MaxSim takes) is outlined in red
    (``Rectangle`` patches labelled ``"argmax"``); the right axis shows each query token's contribution
    (``row max / divisor``). The default title gives the MaxSim score (the sum of the contributions) and its terms.

    Args:
        sims: the similarity matrix ``(n_query_tokens, n_doc_tokens)``.
        query_tokens: the query's token strings.
        doc_tokens: the document's token strings.
        divisor: what MaxSim is divided by (default 1.0).
        path: also save the figure as a PNG there; default: not saved.
        title: the title; default the score and its terms.
        cmap: the matplotlib colour map (default ``"viridis"``).

    Returns:
        matplotlib.figure.Figure: the figure.

    Raises:
        ValueError: when the shapes disagree, or the query or document has no tokens.
    """
    sims = np.asarray(sims, dtype=np.float32)
    table = contributions_from_matrix(sims, query_tokens, doc_tokens, divisor)
    if not len(table):
        raise ValueError("the query has no token vectors: nothing to draw")
    nq, nd = sims.shape
    score = float(table["contribution"].sum())
    width = min(max(6.0, 0.2 * nd + 3.2), 28.0)
    fig = agg_figure(width, min(max(3.0, 0.28 * nq + 2.2), 14.0))
    ax = fig.add_subplot()
    image = ax.imshow(sims, aspect="auto", cmap=cmap, interpolation="nearest")
    # constrained layout already leaves room for the right axis (contributions) before the pad
    fig.colorbar(image, ax=ax, label="cosine similarity", shrink=0.9, pad=0.02,
                 fraction=min(0.15, 0.4 / max(width - 3.0, 1.0)))
    from matplotlib.patches import Rectangle
    for i, j in zip(table["query_pos"], table["doc_pos"]):
        ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=1.6, label="argmax"))
    ax.set_xticks(np.arange(nd), [_short(t) for t in doc_tokens], rotation=90, fontsize=7)
    ax.set_yticks(np.arange(nq), [_short(t) for t in query_tokens], fontsize=8)
    ax.set_xlabel("document tokens")
    ax.set_ylabel("query tokens")
    right = ax.secondary_yaxis("right")
    right.set_yticks(np.arange(nq), [f"{c:.2f}" for c in table["contribution"]], fontsize=7)
    right.set_ylabel("contribution (row max)" + (f" / {divisor:g}" if divisor != 1 else ""), fontsize=8)
    if title is None:
        head = f"MaxSim = {score:.3f}" + (f" (sum of row maxima / {divisor:g})" if divisor != 1 else
                                           " (sum of each query token's best match, outlined)")
        terms = " + ".join(f"{c:.2f} {_short(t, 12)}" for t, c in zip(table["query_token"], table["contribution"]))
        width = max(60, int(fig.get_figwidth() * 13))
        title = head + "\n" + "\n".join(textwrap.wrap("= " + terms, width=width)[:4])
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def token_heatmap(model, query: str, document: str, *, path: Optional[PathLike] = None, title: Optional[str] = None,
                  cmap: str = "viridis"):
    """Query tokens x document tokens cosine similarities of ``model``'s token vectors for one pair of texts.

    ``model``: a :class:`~pyterrier_lateint.ColBERT` (anything with ``encode_queries``/``encode_docs`` taking
    ``return_ids``, a ``tokenizer`` and ``score_divisor``). Each query token's best document token (its MaxSim
    match) is outlined in red; the right axis gives each query token's contribution and the title the MaxSim score
    (equal to ``model.score_pairs([(query, document)])[0]``) with its terms.

    Args:
        model: the model.
        query: the query text.
        document: the document text.
        path: also save the figure as a PNG there; default: not saved.
        title: the title; default the score and its terms.
        cmap: the matplotlib colour map (default ``"viridis"``).

    Returns:
        matplotlib.figure.Figure: the figure.

    Example:
        .. code-block:: python

            from pyterrier_lateint import ColBERT
            from pyterrier_lateint.experiments.plots import token_heatmap

            token_heatmap(ColBERT.from_pretrained(), "electron spin", "the spin of the electron", path="heat.png")
    """
    sims, q_tokens, d_tokens, divisor = token_similarities(model, query, document)
    return similarity_heatmap(sims, q_tokens, d_tokens, divisor, path=path, title=title, cmap=cmap)
