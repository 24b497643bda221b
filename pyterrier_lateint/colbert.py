"""``ColBERT``: a late-interaction model as PyTerrier sees it, with its encoders and MaxSim scorer as transformers.

Columns (the names pyterrier_colbert uses):

- ``query_embs``: a query's token vectors, float32 ``(n_query_tokens, dim)``; ``doc_embs``: a document's, float32
  ``(n_tokens, dim)``.
- ``query_toks`` / ``doc_toks``: the int32 token id behind each of those vectors, ``(n_tokens,)``; emitted only when
  asked for (``token_ids=True``), since PyTerrier's sparse retrievers read ``query_toks`` as term weights.

Scores are MaxSim (see :mod:`pyterrier_lateint.maxsim`).
"""
from __future__ import annotations

import logging
from typing import Optional

import numpy as np
import pandas as pd
import pyterrier as pt

from .base import ConfigEquality, check_int, rank_results, text_column
from .maxsim import maxsim_packed, pack
from .models import LateInteractionEncoder, model_key

logger = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = 8192  # result rows whose documents are encoded together by the scorer (bounds memory)


class ColBERT(LateInteractionEncoder):
    """A late-interaction model with PyTerrier transformers.

    Load with :meth:`from_pretrained` (``None``: the offline default model); see
    :class:`~pyterrier_lateint.models.LateInteractionEncoder` for encoding. The factories give the PyTerrier side:
    :meth:`query_encoder` and :meth:`doc_encoder` add token vectors to frames, :meth:`scorer` /
    :meth:`text_scorer` re-rank results by MaxSim, :meth:`explain` and :meth:`explain_plot` show which document
    token each query token matched. A model is usually loaded rather than constructed; the constructor is
    :class:`~pyterrier_lateint.models.LateInteractionEncoder`'s.

    Args:
        module: the network (backbone and optional linear head) that encodes padded batches.
        tokenizer: the checkpoint's Hugging Face tokenizer.
        config: the encoding settings (:class:`~pyterrier_lateint.models.EncodingConfig`).
        name: the checkpoint's Hub name or resolved local path (recorded in the signature).
        layout: the checkpoint layout it was loaded from (one of :data:`~pyterrier_lateint.models.LAYOUTS`).
        device: where encoding runs; default ``cuda`` when a GPU is available, else ``cpu``.
        batch_size: texts encoded together by default (an int >= 1).
        precision: ``fp32``, ``bf16``, ``fp16`` or ``int8``; default: the device's default (``$LATEINT_PRECISION``
            when set).
        backend: ``torch`` or ``onnx`` (runs on the CPU).
        batch_invariant: encode each text in a batch shape set by its own length only; default
            ``$LATEINT_BATCH_INVARIANT``, else False.

    Example:
        .. code-block:: python

            import pyterrier as pt
            from pyterrier_lateint import ColBERT

            model = ColBERT.from_pretrained()   # the offline default model; or a Hub name / local folder
            vecs = model.encode_queries(["chemical reactions"])[0]   # float32 (n_query_tokens, dim)
            rerank = bm25 >> pt.text.get_text(dataset, "text") >> model.text_scorer()
    """

    def query_encoder(self, batch_size: Optional[int] = None, verbose: bool = False,
                      token_ids: bool = False) -> "QueryEncoder":
        """A transformer adding each query's token vectors to a query frame.

        Query frame ``(qid, query)`` -> the same frame with ``query_embs`` (float32 ``(n_query_tokens, dim)``)
        and, with ``token_ids``, ``query_toks`` (int32 ``(n_query_tokens,)``). Each distinct query text is encoded
        once.

        Args:
            batch_size: queries encoded together; default the model's ``batch_size``.
            verbose: show a progress bar while encoding.
            token_ids: also add ``query_toks`` (off by default: PyTerrier's sparse retrievers read ``query_toks`` as
                term weights).

        Returns:
            QueryEncoder: the transformer.

        Example:
            .. code-block:: python

                encoded = model.query_encoder()(pd.DataFrame({"qid": ["1"], "query": ["chemical reactions"]}))
                encoded["query_embs"][0].shape   # (n_query_tokens, dim)
        """
        return QueryEncoder(self, batch_size=batch_size, verbose=verbose, token_ids=token_ids)

    def doc_encoder(self, batch_size: Optional[int] = None, verbose: bool = False,
                    token_ids: bool = False) -> "DocEncoder":
        """A transformer adding each document's token vectors to a frame with ``text``.

        Frame with ``text`` (a corpus batch or results) -> the same frame with ``doc_embs`` (float32
        ``(n_tokens, dim)``) and, with ``token_ids``, ``doc_toks`` (int32 ``(n_tokens,)``). Each distinct text is
        encoded once.

        Args:
            batch_size: documents encoded together; default the model's ``batch_size``.
            verbose: show a progress bar while encoding.
            token_ids: also add ``doc_toks``.

        Returns:
            DocEncoder: the transformer.

        Example:
            .. code-block:: python

                docs = pd.DataFrame({"docno": ["d1"], "text": ["the spin of the electron"]})
                model.doc_encoder()(docs)["doc_embs"][0].shape   # (n_tokens, dim)
        """
        return DocEncoder(self, batch_size=batch_size, verbose=verbose, token_ids=token_ids)

    def scorer(self, batch_size: Optional[int] = None, verbose: bool = False,
               chunk_size: int = DEFAULT_CHUNK_SIZE) -> "MaxSimScorer":
        """A transformer re-ranking results by MaxSim.

        Uses ``query_embs``/``doc_embs`` when present, otherwise encodes ``query``/``text`` (as pyterrier_dr's
        ``scorer``); documents are encoded ``chunk_size`` result rows at a time, which bounds memory.

        Args:
            batch_size: texts encoded together; default the model's ``batch_size``.
            verbose: show a progress bar over the chunks.
            chunk_size: result rows whose documents are encoded together (whole queries; default 8192).

        Returns:
            MaxSimScorer: results ``(qid, docno, ...)`` -> the same rows with ``score`` replaced and ``rank``
            recomputed.

        Example:
            .. code-block:: python

                pipeline = bm25 >> pt.text.get_text(dataset, "text") >> model.scorer()
        """
        return MaxSimScorer(self, batch_size=batch_size, verbose=verbose, chunk_size=chunk_size)

    def text_scorer(self, batch_size: Optional[int] = None, verbose: bool = False,
                    chunk_size: int = DEFAULT_CHUNK_SIZE) -> "MaxSimScorer":
        """The same transformer as :meth:`scorer`, under the name pyterrier_dr and pyterrier_colbert users reach for.

        Used to re-rank results that carry ``text``.

        Args:
            batch_size: texts encoded together; default the model's ``batch_size``.
            verbose: show a progress bar over the chunks.
            chunk_size: result rows whose documents are encoded together (whole queries; default 8192).

        Returns:
            MaxSimScorer: results with ``query`` and ``text`` -> re-scored and re-ranked by MaxSim.

        Example:
            .. code-block:: python

                pipeline = bm25 >> pt.text.get_text(dataset, "text") >> model.text_scorer()
        """
        return self.scorer(batch_size=batch_size, verbose=verbose, chunk_size=chunk_size)

    def explain(self, query: str, text: str) -> pd.DataFrame:
        """Which document token each query token matched.

        One row per query token (winning document token and position, similarity, share of the score, exact
        match; see :mod:`pyterrier_lateint.explain` for the columns). The contributions sum to
        ``score_pairs([(query, text)])[0]``.

        Args:
            query: the query text.
            text: the document text.

        Returns:
            pandas.DataFrame: one row per query token vector; ``frame.attrs["score"]`` holds the MaxSim score.

        Raises:
            TypeError: when ``query`` or ``text`` is not a str.
            ValueError: when the document has no token vectors (e.g. empty text).

        Example:
            .. code-block:: python

                table = model.explain("electron spin", "the spin of the electron ...")
                print(table[["query_token", "doc_token", "similarity", "share"]])
        """
        from .explain import explain_texts
        return explain_texts(self, query, text)

    def explain_plot(self, query: str, text: str, *, path: Optional[str] = None, title: Optional[str] = None):
        """Heat map of :meth:`explain`: query tokens x document tokens, each query token's winner outlined.

        Needs matplotlib (``pip install 'pyterrier-lateint[plots]'``).

        Args:
            query: the query text.
            text: the document text.
            path: also save the figure there as a PNG (parent folders are created); default: not saved.
            title: a title above the plot; default none (the score line only).

        Returns:
            matplotlib.figure.Figure: the figure (no pyplot state).

        Raises:
            ImportError: when matplotlib is not installed.

        Example:
            .. code-block:: python

                model.explain_plot("electron spin", "the spin of the electron ...", path="explain.png")
        """
        from .explain import explain_plot
        return explain_plot(self, query, text, path=path, title=title)


class _ModelTransformer(ConfigEquality, pt.Transformer):
    """Base: equality and hashing on (class, model signature, settings)."""

    def __init__(self, model: LateInteractionEncoder, batch_size: Optional[int] = None, verbose: bool = False):
        self.model = model
        self.batch_size = check_int("batch_size", batch_size or model.batch_size)
        self.verbose = verbose

    def _config(self) -> tuple:
        return (model_key(self.model), self.batch_size)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model.name!r})"


def _encode_texts(model: LateInteractionEncoder, texts: list[str], is_query: bool, batch_size: int,
                  verbose: bool = False, token_ids: bool = False) -> tuple[list, Optional[list]]:
    """Vectors (and, with ``token_ids``, token ids) of each of ``texts``, each distinct text encoded once."""
    unique = list(dict.fromkeys(texts))
    encode = model.encode_queries if is_query else model.encode_docs
    if not unique:
        return [], ([] if token_ids else None)
    if token_ids:
        vecs, ids = encode(unique, batch_size, verbose, return_ids=True)
    else:
        vecs, ids = encode(unique, batch_size, verbose), None
    where = {t: i for i, t in enumerate(unique)}
    rows = [where[t] for t in texts]
    return [vecs[i] for i in rows], ([ids[i] for i in rows] if token_ids else None)


def _encode_column(model: LateInteractionEncoder, frame: pd.DataFrame, column: str, id_column: str, is_query: bool,
                   batch_size: int, verbose: bool, token_ids: bool) -> tuple[list, Optional[list]]:
    """:func:`_encode_texts` of every row's ``column`` (checked to be str, naming the row otherwise)."""
    return _encode_texts(model, text_column(frame, column, id_column), is_query, batch_size, verbose, token_ids)


def _object_series(values: list, index: pd.Index) -> pd.Series:
    return pd.Series(values, index=index, dtype=object)


class _Encoder(_ModelTransformer):
    """Adds the vectors (and, with ``token_ids``, the token ids) of one text column; subclasses name the columns."""

    TEXT: str
    ID: str
    REQUIRED: list[str]
    EMBS: str
    TOKS: str
    IS_QUERY: bool

    def __init__(self, model: LateInteractionEncoder, batch_size: Optional[int] = None, verbose: bool = False,
                 token_ids: bool = False):
        super().__init__(model, batch_size, verbose)
        self.token_ids = token_ids

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        """Add the token vectors (and, with ``token_ids``, the token ids) of the text column to ``inp``.

        Args:
            inp: a frame with the text column (``query`` and ``qid`` for queries, ``text`` for documents).

        Returns:
            pandas.DataFrame: ``inp`` with the vector column (object column of float32 ``(n_tokens, dim)``
            arrays) and, with ``token_ids``, the token id column (int32 ``(n_tokens,)`` arrays).

        Raises:
            TypeError: when a text is not a str (the row is named).
            ValueError: when a text is not valid Unicode.
        """
        pt.validate.columns(inp, includes=self.REQUIRED)
        vecs, ids = _encode_column(self.model, inp, self.TEXT, self.ID, self.IS_QUERY, self.batch_size, self.verbose,
                                   self.token_ids)
        out = inp.assign(**{self.EMBS: _object_series(vecs, inp.index)})
        return out.assign(**{self.TOKS: _object_series(ids, inp.index)}) if self.token_ids else out

    def _config(self) -> tuple:
        return super()._config() + (self.token_ids,)


class QueryEncoder(_Encoder):
    """Adds query token vectors: frame with ``(qid, query)`` (queries or results) -> the same frame with ``query_embs``.

    ``query_embs``: float32 ``(n_query_tokens, dim)``; with ``token_ids``, also ``query_toks`` (int32
    ``(n_query_tokens,)``). Each distinct query text is encoded once. Usually made by
    :meth:`ColBERT.query_encoder`.

    Args:
        model: the encoder (a :class:`ColBERT` or any :class:`~pyterrier_lateint.models.LateInteractionEncoder`).
        batch_size: queries encoded together; default the model's ``batch_size``.
        verbose: show a progress bar while encoding.
        token_ids: also add ``query_toks``.

    Example:
        .. code-block:: python

            encoder = QueryEncoder(model)   # same as model.query_encoder()
            retrieve = encoder >> index.retriever()   # the retriever uses the given query_embs
    """

    TEXT, ID, REQUIRED, EMBS, TOKS, IS_QUERY = "query", "qid", ["qid", "query"], "query_embs", "query_toks", True


class DocEncoder(_Encoder):
    """Adds document token vectors: frame with ``text`` (a corpus batch or results) -> the same frame with ``doc_embs``.

    ``doc_embs``: float32 ``(n_tokens, dim)``; with ``token_ids``, also ``doc_toks`` (int32 ``(n_tokens,)``).
    Each distinct text is encoded once. Usually made by :meth:`ColBERT.doc_encoder`.

    Args:
        model: the encoder (a :class:`ColBERT` or any :class:`~pyterrier_lateint.models.LateInteractionEncoder`).
        batch_size: documents encoded together; default the model's ``batch_size``.
        verbose: show a progress bar while encoding.
        token_ids: also add ``doc_toks``.

    Example:
        .. code-block:: python

            (model.doc_encoder() >> index.indexer()).index(dataset.get_corpus_iter())
    """

    TEXT, ID, REQUIRED, EMBS, TOKS, IS_QUERY = "text", "docno", ["text"], "doc_embs", "doc_toks", False


def score_frame(frame: pd.DataFrame, query_vecs: dict, doc_vecs: list, divide_by_query_length: bool) -> np.ndarray:
    """MaxSim of every row: ``query_vecs`` maps qid -> ``(nq, dim)``; ``doc_vecs[i]`` is row i's ``(n, dim)``."""
    scores = np.empty(len(frame), dtype=np.float32)
    positions = frame.groupby("qid", sort=False).indices
    for qid, rows in positions.items():
        q = query_vecs[qid]
        vectors, offsets = pack([doc_vecs[r] for r in rows])
        s = maxsim_packed(q, vectors, offsets)
        scores[rows] = s / max(len(q), 1) if divide_by_query_length else s
    return scores


class MaxSimScorer(ConfigEquality, pt.Transformer):
    """Re-ranks results ``(qid, docno, ...)`` by MaxSim.

    Query side: ``query_embs`` when present, else ``query`` encoded by ``model``. Document side: ``doc_embs`` when
    present, else ``text`` encoded by ``model``, at most ``chunk_size`` result rows (whole queries) at a time, each
    distinct text once per chunk, so memory stays bounded on large result frames. Without a model both vector
    columns are required.

    Output: the input columns with ``score`` replaced and ``rank`` recomputed, sorted by qid and rank. Usually made
    by :meth:`ColBERT.scorer`.

    Args:
        model: encodes the texts; ``None`` scores ``query_embs`` against ``doc_embs`` only.
        batch_size: texts encoded together; default the model's ``batch_size`` (64 without a model).
        verbose: show a progress bar over the chunks.
        chunk_size: result rows whose documents are encoded together (an int >= 1; default 8192).
        divide_by_query_length: divide each score by the number of query vectors; default the model's setting
            (``config.divide_by_query_length``), False without a model.

    Raises:
        TypeError: when ``batch_size`` or ``chunk_size`` is not an int.
        ValueError: when ``batch_size`` or ``chunk_size`` is below 1.

    Example:
        .. code-block:: python

            # query and document vectors already in the frame: no model needed
            pipeline = model.query_encoder() >> index.retriever(model) >> index.vec_loader() >> MaxSimScorer()
    """

    def __init__(self, model: Optional[LateInteractionEncoder] = None, batch_size: Optional[int] = None,
                 verbose: bool = False, chunk_size: int = DEFAULT_CHUNK_SIZE,
                 divide_by_query_length: Optional[bool] = None):
        self.model = model
        self.batch_size = check_int("batch_size", batch_size or (model.batch_size if model is not None else 64))
        self.verbose = verbose
        self.chunk_size = check_int("chunk_size", chunk_size)
        self.divide_by_query_length = bool(model.config.divide_by_query_length if model is not None and
                                           divide_by_query_length is None else divide_by_query_length)

    def _config(self) -> tuple:
        return (model_key(self.model), self.batch_size, self.chunk_size, self.divide_by_query_length)

    def __repr__(self) -> str:
        return f"MaxSimScorer({self.model.name!r})" if self.model is not None else "MaxSimScorer()"

    def _validate(self, inp: pd.DataFrame) -> None:
        if self.model is None:
            pt.validate.result_frame(inp, extra_columns=["query_embs", "doc_embs"])
            return
        with pt.validate.any(inp) as v:
            v.result_frame(extra_columns=["query_embs", "doc_embs"], mode="vectors")
            v.result_frame(extra_columns=["query_embs", "text"], mode="query vectors, document text")
            v.result_frame(extra_columns=["query", "doc_embs"], mode="query text, document vectors")
            v.result_frame(extra_columns=["query", "text"], mode="text")

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        """Re-score every row of a result frame by MaxSim and re-rank per query.

        Args:
            inp: results ``(qid, docno, ...)`` with ``query_embs`` or ``query``, and ``doc_embs`` or ``text``
                (both vector columns without a model).

        Returns:
            pandas.DataFrame: the input columns with float32 ``score`` replaced and ``rank`` recomputed (from 0),
            sorted by qid and rank; an empty input gives an empty frame with those columns.
        """
        self._validate(inp)
        out = inp.reset_index(drop=True)
        if len(out) == 0:
            return out.assign(score=pd.Series(dtype=np.float32), rank=pd.Series(dtype=np.int64))
        query_vecs = self._query_vectors(out)
        if "doc_embs" in out.columns:
            scores = score_frame(out, query_vecs, out["doc_embs"].tolist(), self.divide_by_query_length)
        else:
            scores = self._score_text(out, query_vecs)
        return rank_results(out.assign(score=scores))

    def _query_vectors(self, out: pd.DataFrame) -> dict:
        """qid -> float32 ``(n_query_tokens, dim)``: the first row's ``query_embs``, or its ``query`` encoded."""
        if "query_embs" in out.columns:
            return out.groupby("qid", sort=False)["query_embs"].first().to_dict()
        queries = out.groupby("qid", sort=False)["query"].first().to_frame().reset_index()
        vecs, _ = _encode_column(self.model, queries, "query", "qid", True, self.batch_size, False, False)
        return dict(zip(queries["qid"], vecs))

    def _score_text(self, out: pd.DataFrame, query_vecs: dict) -> np.ndarray:
        texts = text_column(out, "text", "docno")
        scores = np.empty(len(out), dtype=np.float32)
        chunks = self._chunks(out.groupby("qid", sort=False).indices)
        if self.verbose:
            chunks = pt.tqdm(chunks, desc="MaxSim re-ranking", unit="chunk")
        for rows in chunks:
            vecs, _ = _encode_texts(self.model, [texts[r] for r in rows], False, self.batch_size)
            scores[rows] = score_frame(out.iloc[rows], query_vecs, vecs, self.divide_by_query_length)
        return scores

    def _chunks(self, groups: dict) -> list[np.ndarray]:
        """Row positions grouped into chunks of whole queries, about ``chunk_size`` rows each."""
        chunks, current, size = [], [], 0
        for rows in groups.values():
            if current and size + len(rows) > self.chunk_size:
                chunks.append(np.concatenate(current))
                current, size = [], 0
            current.append(rows)
            size += len(rows)
        if current:
            chunks.append(np.concatenate(current))
        return chunks
