"""Doc2Query-- (Gospodinov, MacAvaney & Macdonald, "Doc2Query--: When Less is More", ECIR 2023): score each
generated query against the document it came from, and drop those below a collection-wide threshold."""
from __future__ import annotations

import logging
from typing import Iterable, Optional, Union

import numpy as np
import pandas as pd
import pyterrier as pt

from ..base import ConfigEquality, text_column
from .store import expanded_text, join_queries

logger = logging.getLogger(__name__)

DEFAULT_SAMPLE_DOCS = 10_000  # documents whose query scores set an unfitted QueryFilter's threshold
SCORE_CHUNK = 8192  # (query, document) pairs handed to the scorer at a time


def _split(querygen: str) -> list[str]:
    return querygen.split("\n") if querygen else []


def original_text(text: str, querygen: str) -> str:
    """``text`` without the queries :class:`~pyterrier_lateint.doc2query.Doc2Query` (``append=True``) appended to it:
    the document the queries must be scored against."""
    suffix = "\n" + querygen
    return text[:-len(suffix)] if querygen and text.endswith(suffix) else text


def _check_querygen(inp: pd.DataFrame) -> list[str]:
    bad = [i for i, v in enumerate(inp["querygen"].tolist()) if not isinstance(v, str)]
    if bad:
        where = f"docno={inp['docno'].iloc[bad[0]]!r}" if "docno" in inp.columns else f"row {bad[0]}"
        raise TypeError(f"'querygen' of {where} is {type(inp['querygen'].iloc[bad[0]]).__name__}, not str: it must "
                        f"hold the generated queries one a line, as Doc2Query writes them")
    return inp["querygen"].tolist()


class QueryScorer(ConfigEquality, pt.Transformer):
    """Documents with generated queries ``(docno, text, querygen)`` -> adds ``querygen_score``: float32
    ``(n_queries,)``, the score ``scorer`` gives each query (in ``querygen`` order) against its document.

    ``scorer`` is any PyTerrier re-ranker of ``(qid, query, docno, text)`` rows: ``model.text_scorer()`` (MaxSim),
    a cross-encoder, ``pt.text.scorer(wmodel="BM25")``... Queries are scored against the document's own text: when
    ``text`` carries the queries appended by ``Doc2Query(append=True)``, they are removed first.

    Args:
        scorer: the re-ranker; it must keep every input row.
        chunk_size: (query, document) pairs handed to the scorer at a time (default 8192).
        verbose: show a progress bar over the chunks.

    Example:
        .. code-block:: python

            from pyterrier_lateint.doc2query import Doc2Query, QueryFilter, QueryScorer

            d2q = Doc2Query("castorini/doc2query-t5-base-msmarco", num_samples=10)
            d2qmm = d2q >> QueryScorer(model.text_scorer()) >> QueryFilter(keep=0.7)   # Doc2Query--
    """

    def __init__(self, scorer: pt.Transformer, chunk_size: int = SCORE_CHUNK, verbose: bool = False):
        self.scorer = scorer
        self.chunk_size = chunk_size
        self.verbose = verbose

    def _config(self) -> tuple:
        return (self.scorer, self.chunk_size)

    def __repr__(self) -> str:
        return f"QueryScorer({self.scorer!r})"

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        """Score every generated query against its document.

        Args:
            inp: documents with ``docno``, ``text`` and ``querygen`` (one query a line).

        Returns:
            pandas.DataFrame: ``inp`` plus ``querygen_score`` (float32 ``(n_queries,)`` per document).

        Raises:
            TypeError: when ``querygen`` or ``text`` is not a str.
            ValueError: when the scorer drops (query, document) pairs.
        """
        pt.validate.columns(inp, includes=["docno", "text", "querygen"])
        texts = text_column(inp, "text", "docno")
        querygens = _check_querygen(inp)
        rows = {"qid": [], "query": [], "docno": [], "text": []}
        owners: list[int] = []
        for i, (docno, text, querygen) in enumerate(zip(inp["docno"].astype(str), texts, querygens)):
            original = original_text(text, querygen)
            for q in _split(querygen):
                rows["qid"].append(str(len(owners)))
                rows["query"].append(q)
                rows["docno"].append(docno)
                rows["text"].append(original)
                owners.append(i)
        pairs = pd.DataFrame(rows)
        scores = np.full(len(pairs), np.nan, dtype=np.float32)
        starts = range(0, len(pairs), self.chunk_size)
        for start in pt.tqdm(starts, desc="scoring generated queries", unit="chunk", disable=not self.verbose):
            part = pairs.iloc[start:start + self.chunk_size]
            scored = self.scorer(part.assign(score=0.0, rank=0))
            pt.validate.columns(scored, includes=["qid", "score"])
            got = dict(zip(scored["qid"].astype(str), scored["score"].astype(np.float32)))
            missing = [q for q in part["qid"] if q not in got]
            if missing:
                raise ValueError(f"the scorer {self.scorer!r} returned no score for {len(missing)} of "
                                 f"{len(part)} (query, document) pairs: it must keep every input row (a re-ranker, "
                                 f"not a retriever with a rank cutoff)")
            scores[start:start + len(part)] = [got[q] for q in part["qid"]]
        per_doc = [np.empty(0, dtype=np.float32) for _ in range(len(inp))]
        owners_arr = np.asarray(owners, dtype=np.int64)
        if len(owners_arr):
            bounds = np.flatnonzero(np.diff(owners_arr)) + 1
            for idx, chunk in zip(np.split(owners_arr, bounds), np.split(scores, bounds)):
                per_doc[int(idx[0])] = chunk
        return inp.assign(querygen_score=per_doc)


class QueryFilter(pt.Transformer):
    """Keeps the generated queries scoring at least a threshold: documents ``(docno, text, querygen,
    querygen_score)`` -> with ``append=True`` (default) ``text`` followed by the kept queries (one a line) and the
    two query columns dropped, ready for an indexer; with ``append=False`` ``querygen``/``querygen_score`` keep only
    the kept queries and ``text`` is the document's own.

    The threshold is either ``t`` (a score) or, with ``keep`` (a share, e.g. 0.7: drop the worst 30%), the
    ``1 - keep`` quantile (``np.quantile``, linear) of the scores of the whole collection, as in Doc2Query--. A
    collection-wide quantile needs scores the filter has not seen yet when it filters the first documents, so it
    is set by one of (in order of precedence):

    1. ``fit(scored)``: the quantile of every score in ``scored`` (the frame ``d2q >> QueryScorer(...)`` gives
       for the whole collection, or a random sample of it: 10,000 documents x 10 queries fix a quantile to within
       about 0.005 of the share), or ``t`` given directly (e.g. the threshold published for MS MARCO);
    2. otherwise, the first frame the filter sees, and it is kept for every later frame: called on the whole
       collection at once this is the exact collection-wide quantile; inside an indexing pipeline
       (``(d2q >> QueryScorer(s) >> QueryFilter(keep=0.7) >> indexer).index(docs)``) PyTerrier passes documents in
       frames of the largest ``batch_size`` in the pipeline, and this filter's ``batch_size`` is ``sample_docs``,
       so the threshold comes from the first ``sample_docs`` documents (all of them in a smaller collection). When
       the collection is ordered by topic, fit on a random sample instead.

    ``threshold`` holds the value in use (``None`` until set); ``reset()`` forgets a threshold set by a frame.

    Args:
        t: a fixed score threshold (give exactly one of ``t`` and ``keep``).
        keep: the share of queries to keep, in (0, 1], e.g. 0.7 drops the worst 30%.
        append: append the kept queries to ``text`` and drop the query columns (default True).
        sample_docs: the filter's ``batch_size``: documents whose scores set an unfitted threshold (default
            10,000).

    Raises:
        ValueError: unless exactly one of ``t`` and ``keep`` is given, or when ``keep`` is outside (0, 1].

    Example:
        .. code-block:: python

            scored = (d2q >> QueryScorer(model.text_scorer()))(sample_docs)
            qfilter = QueryFilter(keep=0.7).fit(scored)                  # a collection-wide threshold
            (d2q >> QueryScorer(model.text_scorer()) >> qfilter >> index.indexer()).index(corpus_iter)
    """

    def __init__(self, t: Optional[float] = None, keep: Optional[float] = None, append: bool = True,
                 sample_docs: int = DEFAULT_SAMPLE_DOCS):
        if (t is None) == (keep is None):
            raise ValueError("give exactly one of t (a score threshold) and keep (the share of queries to keep, "
                             "e.g. keep=0.7 drops the worst 30%)")
        if keep is not None and not 0 < keep <= 1:
            raise ValueError(f"keep is a share of the queries, in (0, 1], not {keep}")
        self.t = t
        self.keep = keep
        self.append = append
        self.batch_size = sample_docs
        self.threshold: Optional[float] = float(t) if t is not None else None
        self._fitted = t is not None

    def __repr__(self) -> str:
        what = f"t={self.t}" if self.t is not None else f"keep={self.keep}"
        return f"QueryFilter({what}, threshold={self.threshold})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and (self.t, self.keep, self.append, self.batch_size, self.threshold) == \
            (other.t, other.keep, other.append, other.batch_size, other.threshold)

    def __hash__(self) -> int:  # the configuration only: the threshold may be set later
        return hash(("QueryFilter", self.t, self.keep, self.append, self.batch_size))

    # ---------------------------------------------------------------- the threshold
    def quantile(self, scores: Union[np.ndarray, Iterable[float]]) -> float:
        """The ``1 - keep`` quantile of ``scores`` (``np.quantile``, linear; non-finite scores ignored).

        Args:
            scores: query scores.

        Returns:
            float: the quantile.

        Raises:
            ValueError: when there is no finite score.
        """
        values = np.asarray(list(scores) if not isinstance(scores, np.ndarray) else scores, dtype=np.float64)
        values = values[np.isfinite(values)]
        if values.size == 0:
            raise ValueError("no finite query scores to set the threshold from")
        return float(np.quantile(values, 1.0 - self.keep))

    def fit(self, scored: pd.DataFrame) -> "QueryFilter":
        """Set the threshold from every ``querygen_score`` in ``scored`` (the collection, or a sample of it).

        Args:
            scored: documents with ``querygen_score`` (the output of :class:`QueryScorer`).

        Returns:
            QueryFilter: ``self``.

        Raises:
            ValueError: for a filter with a fixed ``t``, or when there is no finite score.
        """
        if self.keep is None:
            raise ValueError(f"this filter has a fixed threshold t={self.t}; fit() sets one from keep=")
        pt.validate.columns(scored, includes=["querygen_score"])
        self.threshold = self.quantile(_all_scores(scored))
        self._fitted = True
        logger.info("QueryFilter(keep=%s): threshold %.6g from %d documents", self.keep, self.threshold, len(scored))
        return self

    def reset(self) -> None:
        """Forget a threshold set by a frame (not one given as ``t`` or set by ``fit``)."""
        if not self._fitted:
            self.threshold = None

    # ---------------------------------------------------------------- filtering
    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        """Keep the queries scoring at least the threshold (set from this frame when it is not set yet).

        Args:
            inp: documents with ``docno``, ``text``, ``querygen`` and ``querygen_score``.

        Returns:
            pandas.DataFrame: with ``append``, ``inp`` without the query columns and ``text`` followed by the kept
            queries; without, ``text`` the document's own and the query columns holding the kept queries only.

        Raises:
            ValueError: when a document's number of queries and of scores differ.
        """
        pt.validate.columns(inp, includes=["docno", "text", "querygen", "querygen_score"])
        querygens = _check_querygen(inp)
        scores = inp["querygen_score"].tolist()
        for docno, q, s in zip(inp["docno"], querygens, scores):
            if len(_split(q)) != len(np.atleast_1d(s)):
                raise ValueError(f"docno={docno!r} has {len(_split(q))} queries but {len(np.atleast_1d(s))} scores: "
                                 f"score the queries with QueryScorer after the last change to querygen")
        if self.threshold is None:
            values = _all_scores(inp)
            if not np.isfinite(values).any():
                return self._apply(inp, querygens, scores, -np.inf)  # nothing to calibrate on: keep all
            self.threshold = self.quantile(values)
            logger.info("QueryFilter(keep=%s): threshold %.6g set from the first frame (%d documents, %d queries) "
                        "and kept for later frames", self.keep, self.threshold, len(inp), values.size)
        return self._apply(inp, querygens, scores, self.threshold)

    def _apply(self, inp: pd.DataFrame, querygens: list[str], scores: list, threshold: float) -> pd.DataFrame:
        kept_q, kept_s = [], []
        for q, s in zip(querygens, scores):
            s = np.atleast_1d(np.asarray(s, dtype=np.float32))
            mask = s >= threshold
            kept_q.append(join_queries([x for x, m in zip(_split(q), mask) if m]))
            kept_s.append(s[mask])
        texts = [original_text(t, q) for t, q in zip(text_column(inp, "text", "docno"), querygens)]
        if self.append:
            out = inp.drop(columns=["querygen", "querygen_score"])
            out["text"] = [expanded_text(t, q) for t, q in zip(texts, kept_q)]
            return out
        return inp.assign(text=texts, querygen=kept_q, querygen_score=kept_s)


def _all_scores(frame: pd.DataFrame) -> np.ndarray:
    arrays = [np.atleast_1d(np.asarray(s, dtype=np.float64)) for s in frame["querygen_score"]]
    return np.concatenate(arrays) if arrays else np.empty(0)
