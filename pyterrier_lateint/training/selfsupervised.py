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
    """Sample ``n_queries`` documents with at least ``min_doc_words`` words (reservoir sampling: one pass, bounded
    memory) and cut a span of ``min_words``..``max_words`` words from each.

    Returns ``(topics (qid, query), qrels (qid, docno, label))`` with qids ``ss0``, ``ss1``, ...
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
