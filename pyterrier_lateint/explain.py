"""Token-level explanations of MaxSim: which document token each query token matched, and how much it counted.

MaxSim is ``sum_i max_j <q_i, d_j>`` (divided by ``model.score_divisor`` for models that average, e.g. bge-m3), so a
score splits exactly into one term per query token: the similarity to its best ("winning") document token. The
table has one row per query token vector:

- ``query_pos``, ``query_token``, ``query_token_id``: the query token (position among the query's vectors);
- ``doc_pos``, ``doc_token``, ``doc_token_id``: its winning document token (position among the document's vectors);
- ``similarity``: their dot product (cosine for L2-normalised vectors); ``contribution``: ``similarity / divisor``,
  the term of the score (the contributions sum to the MaxSim score, kept in ``frame.attrs["score"]``);
- ``share``: ``contribution / score`` (the shares sum to 1; NaN when the score is 0);
- ``exact_match``: the winning document token is the query token itself (same token id); ``in_doc``: the query
  token occurs anywhere in the document.

Everything here works on arrays and token strings; the texts are encoded by anything with the encoder API
(``encode_queries`` / ``encode_docs`` taking ``return_ids=True``, ``score_divisor`` and, for token strings, a
Hugging Face ``tokenizer``), so :class:`pyterrier_lateint.ColBERT` (``model.explain``) and
:class:`pyterrier_lateint.ColBERTIndex` (``index.explain``, from the stored vectors) share it. Heat maps need
matplotlib (``pip install 'pyterrier-lateint[plots]'``).
"""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import pandas as pd

PathLike = Union[str, Path]

COLUMNS = ["query_pos", "query_token", "query_token_id", "doc_pos", "doc_token", "doc_token_id", "similarity",
           "contribution", "share", "exact_match", "in_doc"]


def token_strings(ids: Sequence[int], tokenizer: Any = None) -> list[str]:
    """The tokenizer's string of each token id (``convert_ids_to_tokens``), or the id as a string without one.

    Args:
        ids: token ids (any shape; flattened).
        tokenizer: a Hugging Face tokenizer; ``None`` (default): the ids as strings.

    Returns:
        list: one str per id.
    """
    ids = [int(i) for i in np.asarray(ids).reshape(-1)]
    if tokenizer is None or not hasattr(tokenizer, "convert_ids_to_tokens"):
        return [str(i) for i in ids]
    return [str(t) for t in tokenizer.convert_ids_to_tokens(ids)]


def _check(query_vecs: np.ndarray, query_ids: Sequence[int], doc_vecs: np.ndarray, doc_ids: Sequence[int]
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    Q = np.asarray(query_vecs, dtype=np.float32)
    D = np.asarray(doc_vecs, dtype=np.float32)
    qi, di = np.asarray(query_ids, dtype=np.int64).reshape(-1), np.asarray(doc_ids, dtype=np.int64).reshape(-1)
    if Q.ndim != 2 or D.ndim != 2:
        raise ValueError(f"expected query vectors (n_query_tokens, dim) and document vectors (n_tokens, dim); got "
                         f"shapes {Q.shape} and {D.shape}")
    if len(qi) != len(Q) or len(di) != len(D):
        raise ValueError(f"one token id per vector is needed: {len(qi)} ids for {len(Q)} query vectors, {len(di)} "
                         f"ids for {len(D)} document vectors")
    if len(Q) and not len(D):
        raise ValueError("the document has no token vectors (empty text?): its MaxSim is -inf, nothing to explain")
    if len(Q) and Q.shape[1] != D.shape[1]:
        raise ValueError(f"query dim {Q.shape[1]} != document dim {D.shape[1]}")
    return Q, qi, D, di


def explain_vectors(query_vecs: np.ndarray, query_ids: Sequence[int], doc_vecs: np.ndarray, doc_ids: Sequence[int],
                    tokenizer: Any = None, divisor: float = 1.0) -> pd.DataFrame:
    """The explanation table of query vectors against document vectors (columns: :mod:`pyterrier_lateint.explain`).

    Args:
        query_vecs: the query's token vectors ``(nq, dim)``.
        query_ids: the token id behind each query vector ``(nq,)``.
        doc_vecs: the document's token vectors ``(nd, dim)``.
        doc_ids: the token id behind each document vector ``(nd,)``.
        tokenizer: turns ids into strings; ``None`` (default): the ids as strings.
        divisor: what MaxSim is divided by (``model.score_divisor(nq)``; default 1.0).

    Returns:
        pandas.DataFrame: one row per query vector; ``frame.attrs["score"]``: the MaxSim score.

    Raises:
        ValueError: on shapes that do not match, ids not one per vector, or a document without vectors.

    Example:
        .. code-block:: python

            from pyterrier_lateint.explain import explain_vectors

            (q,), (qi,) = model.encode_queries(["electron spin"], return_ids=True)
            (d,), (di,) = model.encode_docs(["the spin of the electron"], return_ids=True)
            table = explain_vectors(q, qi, d, di, model.tokenizer, model.score_divisor(len(q)))
    """
    return _explain(query_vecs, query_ids, doc_vecs, doc_ids, tokenizer, divisor)[0]


def _explain(query_vecs, query_ids, doc_vecs, doc_ids, tokenizer, divisor) -> tuple[pd.DataFrame, np.ndarray, list]:
    """The table, the ``(nq, nd)`` similarity matrix and the document's token strings."""
    Q, qi, D, di = _check(query_vecs, query_ids, doc_vecs, doc_ids)
    sims = Q @ D.T if len(Q) else np.zeros((0, len(D)), dtype=np.float32)
    best = sims.argmax(axis=1) if len(Q) else np.zeros(0, dtype=np.int64)
    sim = sims[np.arange(len(best)), best].astype(np.float64)
    contribution = sim / float(divisor)
    score = float(contribution.sum())
    q_tok, d_tok = token_strings(qi, tokenizer), token_strings(di, tokenizer)
    frame = pd.DataFrame({
        "query_pos": np.arange(len(Q)), "query_token": q_tok, "query_token_id": qi,
        "doc_pos": best.astype(np.int64), "doc_token": [d_tok[j] for j in best], "doc_token_id": di[best],
        "similarity": sim, "contribution": contribution,
        "share": contribution / score if score != 0 else np.full(len(Q), np.nan),
        "exact_match": qi == di[best], "in_doc": np.isin(qi, di)}, columns=COLUMNS)
    frame.attrs["score"] = score
    return frame, sims, d_tok


def _encode_pair(model: Any, query: str, text: str) -> tuple:
    for name in ("encode_queries", "encode_docs", "score_divisor"):
        if not hasattr(model, name):
            raise TypeError(f"explanations need a late-interaction model (e.g. pyterrier_lateint.ColBERT); "
                            f"{type(model).__name__} has no {name}")
    if not isinstance(query, str) or not isinstance(text, str):
        raise TypeError(f"query and text must be str, not {type(query).__name__} and {type(text).__name__}")
    q_vecs, q_ids = model.encode_queries([query], return_ids=True)
    d_vecs, d_ids = model.encode_docs([text], return_ids=True)
    return (q_vecs[0], q_ids[0], d_vecs[0], d_ids[0], getattr(model, "tokenizer", None),
            float(model.score_divisor(len(q_vecs[0]))))


def explain_texts(model: Any, query: str, text: str) -> pd.DataFrame:
    """:func:`explain_vectors` of ``query`` and document ``text`` encoded by ``model``.

    The contributions sum to ``model.score_pairs([(query, text)])[0]``. What ``model.explain`` returns.

    Args:
        model: a late-interaction encoder (``encode_queries`` / ``encode_docs`` with ``return_ids``,
            ``score_divisor``, and a ``tokenizer`` for token strings).
        query: the query text.
        text: the document text.

    Returns:
        pandas.DataFrame: one row per query vector; ``frame.attrs["score"]``: the MaxSim score.

    Raises:
        TypeError: when ``model`` lacks the encoder API, or ``query`` / ``text`` is not a str.
        ValueError: when the document has no token vectors.

    Example:
        .. code-block:: python

            from pyterrier_lateint.explain import explain_texts

            explain_texts(model, "electron spin", "the spin of the electron")
    """
    return explain_vectors(*_encode_pair(model, query, text))


# ---------------------------------------------------------------------------------------------------- heat map
def agg_figure(width: float, height: float):
    """A new Agg-backed matplotlib Figure (no pyplot state), with constrained layout.

    Shared by the explanation heat maps and the experiment plots.

    Args:
        width: inches.
        height: inches.

    Returns:
        matplotlib.figure.Figure: the figure.

    Raises:
        ImportError: with the install hint when matplotlib is missing.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as ex:
        raise ImportError("plots need matplotlib: pip install 'pyterrier-lateint[plots]' "
                          "(or pip install matplotlib)") from ex
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _short(token: str, width: int = 14) -> str:
    return token if len(token) <= width else token[:width - 1] + "\u2026"


def plot_explanation(table: pd.DataFrame, sims: np.ndarray, doc_tokens: Sequence[str], *,
                     path: Optional[PathLike] = None, title: Optional[str] = None, cmap: str = "viridis",
                     max_doc_tokens: int = 120):
    """Heat map of an explanation ``table`` (:func:`explain_vectors`) with its similarity matrix ``sims``
    ``(nq, nd)`` and ``doc_tokens``: query tokens (rows) x document tokens (columns), each query token's winning
    document token outlined (red: exact match, white: other), and a bar per query token with its share of the
    score. Long documents show their first ``max_doc_tokens`` tokens plus every winning one.

    Args:
        table: the explanation table.
        sims: the similarity matrix ``(nq, nd)``.
        doc_tokens: the document's token strings ``(nd,)``.
        path: also save the figure there as a PNG (150 dpi; parent folders are created); default: not saved.
        title: a title above the score line (at most two wrapped lines); default none.
        cmap: the matplotlib colour map (default ``"viridis"``).
        max_doc_tokens: document tokens shown besides the winning ones (default 120).

    Returns:
        matplotlib.figure.Figure: the figure (no pyplot state).

    Raises:
        ValueError: when the query has no token vectors.
        ImportError: when matplotlib is not installed.
    """
    sims = np.asarray(sims, dtype=np.float32)
    d_tok = list(doc_tokens)
    if not len(table):
        raise ValueError("the query has no token vectors: nothing to draw")
    cols = np.union1d(np.arange(min(len(d_tok), max_doc_tokens)), table["doc_pos"].to_numpy())
    where = {c: k for k, c in enumerate(cols)}
    nq, nd = len(table), len(cols)
    width = min(max(6.0, 0.19 * nd + 4.5), 30.0)
    fig = agg_figure(width, min(max(3.2, 0.3 * nq + 2.4), 14.0))
    ax, bar = fig.subplots(1, 2, sharey=True, gridspec_kw={"width_ratios": [max(nd, 4), 6]})
    image = ax.imshow(sims[:, cols], aspect="auto", cmap=cmap, interpolation="nearest")
    fig.colorbar(image, ax=ax, location="bottom", shrink=0.5, pad=0.01, aspect=40, label="similarity")
    from matplotlib.patches import Rectangle
    for i, (j, exact) in enumerate(zip(table["doc_pos"], table["exact_match"])):
        ax.add_patch(Rectangle((where[j] - 0.5, i - 0.5), 1, 1, fill=False, linewidth=1.8,
                               edgecolor="red" if exact else "white", label="exact match" if exact else "winner"))
    ax.set_xticks(np.arange(nd), [_short(d_tok[c]) for c in cols], rotation=90, fontsize=7)
    ax.set_yticks(np.arange(nq), [_short(t) for t in table["query_token"]], fontsize=8)
    ax.set_xlabel("document tokens" + (f" (first {max_doc_tokens} and the winners of {len(d_tok)})"
                                       if len(cols) < len(d_tok) else ""))
    ax.set_ylabel("query tokens")
    share = table["share"].fillna(0).to_numpy()
    bar.barh(np.arange(nq), share, color=np.where(table["exact_match"], "#d62728", "#1f77b4"))
    for i, (s, tok) in enumerate(zip(share, table["doc_token"])):
        bar.annotate(f"{s:.0%} {_short(tok, 10)}", (max(s, 0), i), xytext=(2, 0), textcoords="offset points",
                     va="center", fontsize=7)
    bar.set_xlim(0, max(float(share.max()) * 1.9, 0.05))
    bar.set_xlabel("share of score")
    bar.tick_params(axis="y", left=False)
    if title is None:
        title = ""
    head = (f"MaxSim = {table['contribution'].sum():.3f}: outlined, each query token's best document token "
            f"(red: the same token)")
    ax.set_title("\n".join([t for t in textwrap.wrap(title, 100)[:2] if t] + [head]), fontsize=9, loc="left")
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=150, format="png")
    return fig


def explain_plot_vectors(query_vecs: np.ndarray, query_ids: Sequence[int], doc_vecs: np.ndarray,
                         doc_ids: Sequence[int], tokenizer: Any = None, divisor: float = 1.0, *,
                         path: Optional[PathLike] = None, title: Optional[str] = None):
    """:func:`plot_explanation` of :func:`explain_vectors`: what ``index.explain_plot`` draws.

    Args:
        query_vecs: the query's token vectors ``(nq, dim)``.
        query_ids: their token ids ``(nq,)``.
        doc_vecs: the document's token vectors ``(nd, dim)``.
        doc_ids: their token ids ``(nd,)``.
        tokenizer: turns ids into strings; default none.
        divisor: what MaxSim is divided by (default 1.0).
        path: also save the figure there as a PNG; default: not saved.
        title: a title; default none.

    Returns:
        matplotlib.figure.Figure: the figure.
    """
    return plot_explanation(*_explain(query_vecs, query_ids, doc_vecs, doc_ids, tokenizer, divisor), path=path,
                            title=title)


def explain_plot(model: Any, query: str, text: str, *, path: Optional[PathLike] = None,
                 title: Optional[str] = None):
    """:func:`plot_explanation` of :func:`explain_texts`: what ``model.explain_plot`` draws.

    Args:
        model: a late-interaction encoder (see :func:`explain_texts`).
        query: the query text.
        text: the document text.
        path: also save the figure there as a PNG; default: not saved.
        title: a title; default none.

    Returns:
        matplotlib.figure.Figure: the figure.

    Example:
        .. code-block:: python

            from pyterrier_lateint.explain import explain_plot

            explain_plot(model, "electron spin", "the spin of the electron", path="explain.png")
    """
    return plot_explanation(*_explain(*_encode_pair(model, query, text)), path=path, title=title)
