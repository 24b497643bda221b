"""Training data: readers for every supported format, all streamed, and hard-negative mining with PyTerrier.

Every reader yields :class:`Example` records ``(query, positives, negatives, teacher scores)``. A
:class:`TrainingStream` turns them into fixed-size groups ``[positive, negative_1 .. negative_n]`` for the losses,
sampling deterministically from ``(seed, example number)`` so that a resumed run draws exactly what an
uninterrupted one would.

Formats (``detect_format`` names them):
- ``triples``: ColBERTv1 ``triples.tsv`` of ``query \\t positive \\t negative`` texts, or of ids with
  ``queries.tsv`` (``qid \\t text``) and ``collection.tsv`` (``pid \\t text``).
- ``colbertv2``: ColBERTv2 distillation JSONL ``[qid, [pid, score], [pid, score], ...]`` (first = positive,
  scores from a teacher) with ``queries.tsv`` and ``collection.tsv``.
- ``pos-neg``: ``{"query": str, "pos": [str], "neg": [str]}`` (FlagEmbedding / RAG-Retrieval), optional
  ``pos_scores``/``neg_scores`` teacher scores.
- ``positive-negative``: ``{"query": str, "positive": str|[str], "negative": str|[str]}`` (open-retrievals).
- ``pointwise``: ``{"query": str, "content": str, "score": float}`` teacher scores, one pair a line
  (RAG-Retrieval distillation); consecutive lines of one query form one example, the best-scored is the positive.
"""
from __future__ import annotations

import json
import logging
import random
from itertools import islice
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Sequence, Union


logger = logging.getLogger(__name__)

FORMATS = ("triples", "colbertv2", "pos-neg", "positive-negative", "pointwise")


@dataclass
class Example:
    """One training query: texts of its positives and negatives, and optional teacher scores (same order).

    Args:
        query: the query text.
        positives: texts of its relevant documents (at least one).
        negatives: texts of non-relevant documents (may be empty: in-batch negatives only).
        pos_scores: teacher scores of the positives (for distillation), or ``None``.
        neg_scores: teacher scores of the negatives, or ``None``.

    Raises:
        ValueError: when there is no positive, or a score list's length differs from its documents'.

    Example:
        .. code-block:: python

            from pyterrier_lateint.training import Example

            ex = Example("what is the spin of an electron", ["The electron has spin 1/2 ..."],
                         ["Protons are ...", "Neutrons are ..."], pos_scores=[9.1], neg_scores=[2.3, 1.7])
    """

    query: str
    positives: list[str]
    negatives: list[str]
    pos_scores: Optional[list[float]] = None
    neg_scores: Optional[list[float]] = None

    def __post_init__(self) -> None:
        if not self.positives:
            raise ValueError(f"training example for query {self.query[:60]!r} has no positive document")
        for docs, scores, what in ((self.positives, self.pos_scores, "pos"), (self.negatives, self.neg_scores, "neg")):
            if scores is not None and len(scores) != len(docs):
                raise ValueError(f"{len(scores)} {what}_scores for {len(docs)} {what} documents "
                                 f"(query {self.query[:60]!r}); every document needs one teacher score")


class TsvLookup:
    """Random access to ``id \\t text`` lines of a large TSV by id, holding only byte offsets in memory."""

    def __init__(self, path: Union[str, Path]):
        self.path = Path(path)
        offsets: dict[str, int] = {}
        with open(self.path, "rb") as f:
            pos = 0
            for line in f:
                tab = line.find(b"\t")
                if tab > 0:
                    offsets[line[:tab].decode("utf-8").strip()] = pos
                pos += len(line)
        self._offsets = offsets
        self._file = open(self.path, "rb")

    def __len__(self) -> int:
        return len(self._offsets)

    def __getitem__(self, key: object) -> str:
        k = str(key)
        if k not in self._offsets:
            raise KeyError(f"id {k!r} not found in {self.path}")
        self._file.seek(self._offsets[k])
        line = self._file.readline().decode("utf-8").rstrip("\n")
        return line.split("\t", 1)[1]

    def __getstate__(self):
        return {"path": self.path, "_offsets": self._offsets}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._file = open(self.path, "rb")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                yield n, line


def _as_list(value: Union[str, Sequence[str], None]) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def detect_format(path: Union[str, Path]) -> str:
    """Guess the format of a training file from its first non-empty line.

    A ``.tsv`` / ``.txt`` file, or a tab-separated line not starting with ``{`` or ``[``, is ``triples``; a JSON
    list is ``colbertv2``; a JSON object is ``pos-neg``, ``positive-negative`` or ``pointwise`` by its keys.

    Args:
        path: the training file.

    Returns:
        str: one of ``triples``, ``colbertv2``, ``pos-neg``, ``positive-negative``, ``pointwise``.

    Raises:
        ValueError: when the file is empty or its first record matches no format.
    """
    path = Path(path)
    for _, line in _lines(path):
        if path.suffix in (".tsv", ".txt") or ("\t" in line and not line.lstrip().startswith(("{", "["))):
            return "triples"
        rec = json.loads(line)
        if isinstance(rec, list):
            return "colbertv2"
        if "pos" in rec:
            return "pos-neg"
        if "positive" in rec:
            return "positive-negative"
        if "content" in rec and "score" in rec:
            return "pointwise"
        raise ValueError(f"{path}: unknown training format for a record with keys {sorted(rec)}; expected one of "
                         f"{FORMATS} (see pyterrier_lateint.training.data)")
    raise ValueError(f"{path} is empty")


def read_examples(path: Union[str, Path], format: str = "auto", queries: Union[str, Path, None] = None,
                  collection: Union[str, Path, None] = None) -> Iterator[Example]:
    """Stream :class:`Example` records from a training file (see :mod:`pyterrier_lateint.training.data` for the
    formats).

    Args:
        path: the training file.
        format: one of the formats, or ``"auto"`` (default) to :func:`detect_format` it.
        queries: ``queries.tsv`` (``qid \\t text``) when the file holds query ids (``colbertv2``; ``triples``
            of ids).
        collection: ``collection.tsv`` (``pid \\t text``) when the file holds passage ids.

    Yields:
        Example: one per query (per line, or per run of consecutive lines of one query for ``pointwise``).

    Raises:
        ValueError: on an unknown format, a ``colbertv2`` file without ``queries`` and ``collection``, or a
            malformed record (naming the file and line).

    Example:
        .. code-block:: python

            from pyterrier_lateint.training import read_examples

            for ex in read_examples("train.jsonl"):
                print(ex.query, len(ex.positives), len(ex.negatives))
    """
    path = Path(path)
    fmt = detect_format(path) if format == "auto" else format
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")
    qlookup = TsvLookup(queries) if queries else None
    clookup = TsvLookup(collection) if collection else None
    if fmt == "colbertv2" and (qlookup is None or clookup is None):
        raise ValueError("ColBERTv2 distillation files hold ids: pass queries=queries.tsv and collection=collection.tsv")
    if fmt == "pointwise":
        yield from _pointwise(path)
        return
    for n, line in _lines(path):
        try:
            if fmt == "triples":
                parts = line.rstrip("\n").split("\t")
                if len(parts) != 3:
                    raise ValueError(f"expected 3 tab-separated fields, found {len(parts)}")
                q, p, ng = parts
                if qlookup is not None:
                    q = qlookup[q]
                if clookup is not None:
                    p, ng = clookup[p], clookup[ng]
                yield Example(q, [p], [ng])
            elif fmt == "colbertv2":
                rec = json.loads(line)
                qid, pairs = rec[0], rec[1:]
                texts = [clookup[pid] for pid, _ in pairs]
                scores = [float(s) for _, s in pairs]
                yield Example(qlookup[qid], texts[:1], texts[1:], scores[:1], scores[1:])
            elif fmt == "pos-neg":
                rec = json.loads(line)
                yield Example(rec["query"], _as_list(rec["pos"]), _as_list(rec.get("neg")),
                              rec.get("pos_scores"), rec.get("neg_scores"))
            elif fmt == "positive-negative":
                rec = json.loads(line)
                yield Example(rec["query"], _as_list(rec["positive"]), _as_list(rec.get("negative")))
        except (KeyError, ValueError, IndexError, TypeError, json.JSONDecodeError) as ex:
            raise ValueError(f"{path}:{n}: malformed {fmt} record ({type(ex).__name__}: {ex})") from ex


def _pointwise(path: Path) -> Iterator[Example]:
    """Group consecutive ``{query, content, score}`` lines of one query into an example."""
    current: Optional[str] = None
    docs: list[tuple[float, str]] = []

    def flush() -> Iterator[Example]:
        if current is not None and docs:
            ranked = sorted(docs, key=lambda x: -x[0])
            yield Example(current, [ranked[0][1]], [d for _, d in ranked[1:]], [ranked[0][0]],
                          [s for s, _ in ranked[1:]])

    for n, line in _lines(path):
        try:
            rec = json.loads(line)
            q, text, score = rec["query"], rec["content"], float(rec["score"])
        except (KeyError, ValueError, TypeError) as ex:
            raise ValueError(f"{path}:{n}: malformed pointwise record ({type(ex).__name__}: {ex})") from ex
        if q != current:
            yield from flush()
            current, docs = q, []
        docs.append((score, text))
    yield from flush()


@dataclass
class Group:
    """What one query contributes to a batch: ``docs[0]`` is the positive; ``teacher`` scores align with docs."""

    query: str
    docs: list[str]
    teacher: Optional[list[float]] = None


def make_group(example: Example, n_negatives: int, rng: random.Random) -> Group:
    """Sample one positive and ``n_negatives`` negatives (with replacement when there are too few; in-batch
    negatives only when there are none)."""
    p = rng.randrange(len(example.positives))
    docs = [example.positives[p]]
    teacher = [example.pos_scores[p]] if example.pos_scores is not None else None
    if example.negatives and n_negatives > 0:
        k = len(example.negatives)
        picks = rng.sample(range(k), n_negatives) if k >= n_negatives else [rng.randrange(k) for _ in range(n_negatives)]
        docs += [example.negatives[i] for i in picks]
        if teacher is not None:
            if example.neg_scores is None:
                raise ValueError(f"query {example.query[:60]!r} has teacher scores for positives but not negatives")
            teacher += [float(example.neg_scores[i]) for i in picks]
    return Group(example.query, docs, teacher)


class TrainingStream:
    """An endless, deterministic stream of :class:`Group` over epochs of a re-iterable example source.

    ``source()`` must return a fresh iterator over the examples each time (a file is re-read per epoch; never
    held in memory). With ``shuffle_buffer > 1`` examples are shuffled within a sliding buffer seeded by
    ``(seed, epoch)``. The stream is a pure function of the seed; ``skip(n)`` makes the next iteration replay and
    drop the first ``n`` groups, which is how a resumed trainer continues exactly. Iterating raises
    ``ValueError`` when the source holds no examples.

    Args:
        source: returns a fresh iterator over the examples each time it is called.
        n_negatives: negatives per group (sampled with replacement when an example has fewer).
        seed: seed of the shuffling and the sampling (default 42).
        shuffle_buffer: examples shuffled within a sliding buffer of this size (default 1000; 1: source order).

    Example:
        .. code-block:: python

            from pyterrier_lateint.training import TrainingStream, read_examples

            stream = TrainingStream(lambda: read_examples("train.jsonl"), n_negatives=7)
            first = next(iter(stream))           # Group(query, docs=[positive, 7 negatives], teacher)
    """

    def __init__(self, source: Callable[[], Iterable[Example]], n_negatives: int, seed: int = 42,
                 shuffle_buffer: int = 1000):
        self.source = source
        self.n_negatives = n_negatives
        self.seed = seed
        self.shuffle_buffer = shuffle_buffer
        self._skip = 0

    def skip(self, n: int) -> "TrainingStream":
        """Start the next iteration after the first ``n`` groups.

        Args:
            n: groups to skip (those consumed before a checkpoint).

        Returns:
            TrainingStream: ``self``.
        """
        self._skip = n
        return self

    def _shuffled(self, epoch: int) -> Iterator[Example]:
        rng = random.Random(f"{self.seed}-shuffle-{epoch}")
        if self.shuffle_buffer <= 1:
            yield from self.source()
            return
        buf: list[Example] = []
        for ex in self.source():
            buf.append(ex)
            if len(buf) >= self.shuffle_buffer:
                yield buf.pop(rng.randrange(len(buf)))
        rng.shuffle(buf)
        yield from buf

    def __iter__(self) -> Iterator[Group]:
        return islice(self._groups(), self._skip, None)

    def _groups(self) -> Iterator[Group]:
        position, epoch = 0, 0
        while True:
            empty = True
            for ex in self._shuffled(epoch):
                empty = False
                yield make_group(ex, self.n_negatives, random.Random(f"{self.seed}-sample-{position}"))
                position += 1
            if empty:
                raise ValueError("the training data holds no examples")
            epoch += 1
            logger.info("training data: epoch %d done after %d examples", epoch, position)


def file_source(path: Union[str, Path], format: str = "auto", queries=None, collection=None) -> Callable[[], Iterator[Example]]:
    """A re-iterable source over a training file, for :class:`TrainingStream`."""
    fmt = detect_format(path) if format == "auto" else format
    return lambda: read_examples(path, fmt, queries, collection)


def mine_hard_negatives(topics, qrels, first_stage, text_loader, *, neg_ranks: tuple[int, int] = (20, 200),
                        n_negatives: int = 32, teacher=None, min_label: int = 1, seed: int = 42,
                        verbose: bool = True) -> list[Example]:
    """Training examples from PyTerrier itself: positives from ``qrels``, hard negatives from ``first_stage``.

    Negatives are documents ranked in ``[neg_ranks[0], neg_ranks[1])`` (0-based) by ``first_stage`` that are not
    judged relevant, up to ``n_negatives`` of them sampled per query. With ``teacher`` every positive and negative
    gets a teacher score for KL distillation. Queries without a relevant document are left out. Use only training
    queries: never the test queries of a collection.

    Args:
        topics: the training queries (``qid``, ``query``).
        qrels: their judgements (``qid``, ``docno``, ``label``).
        first_stage: a retriever whose results give the negatives (e.g. BM25).
        text_loader: adds ``text`` by docno (e.g. ``pt.text.get_text(collection, "text")``).
        neg_ranks: the 0-based rank range ``[start, stop)`` negatives are drawn from (default ``(20, 200)``).
        n_negatives: negatives sampled per query, at most (default 32).
        teacher: any PyTerrier re-ranker taking ``query`` and ``text`` (e.g. a cross-encoder); default none.
        min_label: the lowest label that counts as relevant (default 1).
        seed: seed of the sampling (default 42).
        verbose: show a progress bar while building the examples (default True).

    Returns:
        list: one :class:`Example` per query with a relevant document.

    Example:
        .. code-block:: python

            import pyterrier as pt
            from pyterrier_lateint.training import mine_hard_negatives, write_jsonl

            bm25 = pt.terrier.Retriever.from_dataset("msmarco_passage", "terrier_stemmed", wmodel="BM25")
            examples = mine_hard_negatives(train_topics, train_qrels, bm25, pt.text.get_text(dataset, "text"),
                                           n_negatives=16)
            write_jsonl(examples, "train.jsonl")
    """
    import pandas as pd
    import pyterrier as pt

    rng = random.Random(seed)
    relevant = qrels[qrels["label"] >= min_label].groupby("qid")["docno"].apply(set).to_dict()
    topics = topics[topics["qid"].isin(relevant)]
    res = first_stage(topics)
    res = res[(res["rank"] >= neg_ranks[0]) & (res["rank"] < neg_ranks[1])]
    res = res[[d not in relevant.get(q, ()) for q, d in zip(res["qid"], res["docno"])]]
    negs = res.groupby("qid")["docno"].apply(list).to_dict()
    rows = []
    for qid, query in zip(topics["qid"], topics["query"]):
        cand = negs.get(qid, [])
        chosen = rng.sample(cand, min(n_negatives, len(cand)))
        rows += [(qid, query, d, 1) for d in sorted(relevant[qid])] + [(qid, query, d, 0) for d in chosen]
    frame = pd.DataFrame(rows, columns=["qid", "query", "docno", "label"])
    frame = text_loader(frame)
    if teacher is not None:
        frame = teacher(frame.assign(score=0.0, rank=0))
    examples = []
    groups = frame.groupby("qid", sort=False)
    for qid, g in (pt.tqdm(groups, desc="mining", unit="query") if verbose else groups):
        pos, neg = g[g["label"] > 0], g[g["label"] == 0]
        examples.append(Example(g["query"].iloc[0], pos["text"].tolist(), neg["text"].tolist(),
                                pos["score"].astype(float).tolist() if teacher is not None else None,
                                neg["score"].astype(float).tolist() if teacher is not None else None))
    return examples


def write_jsonl(examples: Iterable[Example], path: Union[str, Path]) -> Path:
    """Save examples in the ``pos-neg`` format (with teacher scores when present), one JSON object a line.

    Args:
        examples: the examples.
        path: the file to write (replaced if it exists).

    Returns:
        pathlib.Path: the file written.
    """
    path = Path(path)
    with open(path, "w", encoding="utf-8") as f:
        for ex in examples:
            rec = {"query": ex.query, "pos": ex.positives, "neg": ex.negatives}
            if ex.pos_scores is not None:
                rec["pos_scores"], rec["neg_scores"] = ex.pos_scores, ex.neg_scores
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return path
