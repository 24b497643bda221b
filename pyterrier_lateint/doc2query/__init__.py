"""Document expansion by query generation (doc2query / docTTTTTquery) and Doc2Query-- filtering, as PyTerrier
transformers; a disk cache of expansions; precomputed expansions; training a generator.

>>> from pyterrier_lateint.doc2query import Doc2Query, QueryScorer, QueryFilter
>>> d2q = Doc2Query("castorini/doc2query-t5-base-msmarco", num_samples=10, append=True)   # any seq2seq checkpoint
>>> (d2q >> pisa_index.indexer()).index(corpus_iter)                        # BM25 over expanded text
>>> d2qmm = d2q >> QueryScorer(model.text_scorer()) >> QueryFilter(keep=0.7)  # Doc2Query--: drop the worst 30%
"""
from .filtering import QueryFilter, QueryScorer
from .generate import Doc2Query, GenerationSettings, load_generator
from .pipelines import doc2query_bm25, doc2query_rows
from .store import Doc2QueryStore, StoredQueries, load_expansions, read_expansions
from .train import (GeneratorTrainer, GeneratorTrainingConfig, bleu_rouge_validation, generation_metrics,
                    pairs_from_qrels, read_pairs_tsv, split_pairs, warm_start_encoder_decoder)

__all__ = ["Doc2Query", "GenerationSettings", "load_generator", "QueryScorer", "QueryFilter", "Doc2QueryStore",
           "StoredQueries", "load_expansions", "read_expansions", "GeneratorTrainer", "GeneratorTrainingConfig",
           "bleu_rouge_validation", "generation_metrics", "pairs_from_qrels", "read_pairs_tsv", "split_pairs",
           "warm_start_encoder_decoder", "doc2query_bm25", "doc2query_rows"]
