"""How a late-interaction checkpoint turns text into token vectors: one dataclass for every layout."""
from __future__ import annotations

import dataclasses
import string
from dataclasses import dataclass
from typing import Any, Literal, Optional

PUNCTUATION: tuple[str, ...] = tuple(string.punctuation)

# What a Stanford checkpoint leaves out of its metadata defaults to what the library that reads it would use.
# - colbert-ai (ColBERT v2, the reader of HF_ColBERT folders and artifact.metadata): ColBERTConfig's defaults
#   (colbert/infra/config/settings.py: doc_maxlen 220, mask_punctuation True).
# - ColBERT v0.2 (the writer of v1 ``.dnn`` files, whose ``arguments`` are its argparse flags): doc_maxlen 180 and
#   ``--mask-punctuation`` off (colbert/utils/parser.py). pyterrier_colbert's ColBERTFactory, the usual reader of
#   ``.dnn`` files, ignores the file's arguments altogether and uses 32 / 180 / mask_punctuation=False.
# - The base model of a ``.dnn`` (its configuration and tokenizer; the weights are in the file): colbert-ai reads
#   ``arguments['model']``; ColBERT v0.2 always loads ``bert-base-uncased``.
COLBERT_AI_DEFAULTS: dict[str, Any] = {"query_maxlen": 32, "doc_maxlen": 220, "mask_punctuation": True,
                                       "attend_to_mask_tokens": False, "query_token_id": "[unused0]",
                                       "doc_token_id": "[unused1]"}
COLBERT_V02_DEFAULTS: dict[str, Any] = {"query_maxlen": 32, "doc_maxlen": 180, "mask_punctuation": False,
                                        "attend_to_mask_tokens": False, "query_token_id": "[unused0]",
                                        "doc_token_id": "[unused1]"}
DNN_BASE_MODEL_KEYS: tuple[str, ...] = ("model", "bert_model")  # arguments that may name a .dnn's base model
DNN_DEFAULT_BASE_MODEL = "bert-base-uncased"


@dataclass(frozen=True)
class EncodingConfig:
    """Encoding settings of a late-interaction model.

    Lengths count every token of the encoder's input sequence, special tokens and markers included.

    - ``query_marker`` / ``doc_marker``: a token placed right after the leading special token (``[unused0]`` for
      Stanford ColBERT, ``[Q] `` for PyLate); ``None`` for no marker.
    - ``query_expansion``: pad queries with the mask token up to ``query_maxlen`` (ColBERT's query augmentation);
      ``attend_to_mask_tokens`` lets the other tokens attend to those pads.
    - ``drop_special_tokens``: drop the vectors of the tokenizer's special tokens (CLS/SEP, <s>/</s>);
      ``drop_first_token`` drops only the first (bge-m3 keeps its trailing </s>).
    - ``doc_skiplist``: document tokens (e.g. punctuation) whose vectors are dropped.
    - ``normalize``: L2-normalise every vector. ``divide_by_query_length``: final score / number of query vectors.
    - ``long_docs``: ``"truncate"`` cuts documents at ``doc_maxlen``; ``"split"`` encodes every window of
      ``doc_maxlen`` tokens (windows overlap by ``doc_overlap`` text tokens) and keeps the union of their vectors,
      so MaxSim takes each query token's best match anywhere in the document.
    """

    query_maxlen: int = 32
    doc_maxlen: int = 180
    query_marker: Optional[str] = None
    doc_marker: Optional[str] = None
    query_expansion: bool = False
    attend_to_mask_tokens: bool = False
    drop_special_tokens: bool = True
    drop_first_token: bool = False
    doc_skiplist: tuple[str, ...] = ()
    normalize: bool = True
    divide_by_query_length: bool = False
    long_docs: Literal["truncate", "split"] = "truncate"
    doc_overlap: int = 32

    def __post_init__(self) -> None:
        if self.long_docs not in ("truncate", "split"):
            raise ValueError(f"long_docs must be 'truncate' or 'split', not {self.long_docs!r}")
        if self.query_maxlen < 3 or self.doc_maxlen < 3:
            raise ValueError("query_maxlen and doc_maxlen must be at least 3 tokens")
        if self.long_docs == "split" and not 0 <= self.doc_overlap < self.doc_maxlen // 2:
            raise ValueError(f"doc_overlap must be in [0, doc_maxlen/2), not {self.doc_overlap}")
        object.__setattr__(self, "doc_skiplist", tuple(self.doc_skiplist))

    def replace(self, **changes: Any) -> "EncodingConfig":
        """A copy with some settings changed (unknown names raise ``TypeError``)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["doc_skiplist"] = list(self.doc_skiplist)
        return d
