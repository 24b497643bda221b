"""Self-supervised training pairs from a corpus alone (domain adaptation when there are no queries).

A pseudo-query is a random span of words cut from a document (Contriever-style cropping); that document is its
only relevant one. :func:`pseudo_queries` returns them as PyTerrier topics and qrels, so
:func:`~pyterrier_lateint.training.data.mine_hard_negatives` adds BM25-mined hard negatives exactly as it does
for real training queries.
"""
from __future__ import annotations

import random
from typing import Iterable, Mapping

import pandas as pd


def pseudo_queries(corpus: Iterable[Mapping[str, str]], n_queries: int, min_words: int = 4, max_words: int = 10,
                   min_doc_words: int = 20, seed: int = 42) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pseudo-queries from a corpus alone: random word spans, each relevant to the document it was cut from.

    Samples ``n_queries`` documents with at least ``max(min_doc_words, max_words)`` words (reservoir sampling: one
    pass, bounded memory) and cuts a span of ``min_words``..``max_words`` words from each. Fewer queries come back
    when fewer documents are long enough.

    Args:
        corpus: documents with ``docno`` and ``text`` (e.g. ``dataset.get_corpus_iter()``).
        n_queries: pseudo-queries to make.
        min_words: shortest span, in words (>= 1; default 4).
        max_words: longest span, in words (default 10).
        min_doc_words: shortest document sampled, in words (default 20).
        seed: seed of the sampling (default 42).

    Returns:
        tuple: ``(topics (qid, query), qrels (qid, docno, label))`` frames with qids ``ss0``, ``ss1``, ... and
        label 1.

    Raises:
        ValueError: unless ``1 <= min_words <= max_words``.

    Example:
        .. code-block:: python

            from pyterrier_lateint.training import mine_hard_negatives, pseudo_queries

            topics, qrels = pseudo_queries(dataset.get_corpus_iter(), n_queries=5000)
            examples = mine_hard_negatives(topics, qrels, bm25, pt.text.get_text(dataset, "text"))
    """
    if not 1 <= min_words <= max_words:
        raise ValueError("need 1 <= min_words <= max_words")
    rng = random.Random(seed)
    reservoir: list[tuple[str, list[str]]] = []
    seen = 0
    for doc in corpus:
        words = doc["text"].split()
        if len(words) < max(min_doc_words, max_words):
            continue
        if len(reservoir) < n_queries:
            reservoir.append((doc["docno"], words))
        else:
            j = rng.randrange(seen + 1)
            if j < n_queries:
                reservoir[j] = (doc["docno"], words)
        seen += 1
    topics, qrels = [], []
    for i, (docno, words) in enumerate(reservoir):
        n = rng.randint(min_words, max_words)
        start = rng.randrange(len(words) - n + 1)
        topics.append((f"ss{i}", " ".join(words[start:start + n])))
        qrels.append((f"ss{i}", docno, 1))
    return pd.DataFrame(topics, columns=["qid", "query"]), pd.DataFrame(qrels, columns=["qid", "docno", "label"])
