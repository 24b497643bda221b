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
    """Encoding settings of a late-interaction model (frozen: change them with :meth:`replace`).

    Lengths count every token of the encoder's input sequence, special tokens and markers included.

    Args:
        query_maxlen: tokens per query sequence (at least 3; default 32).
        doc_maxlen: tokens per document sequence (at least 3; default 180).
        query_marker: a token placed right after the leading special token of queries (``[unused0]`` for Stanford
            ColBERT, ``[Q] `` for PyLate); ``None`` (default) for no marker.
        doc_marker: the same for documents (``[unused1]``, ``[D] ``); ``None`` (default) for no marker.
        query_expansion: pad queries with the mask token up to ``query_maxlen`` (ColBERT's query augmentation);
            default False.
        attend_to_mask_tokens: let the other tokens attend to those pads; default False.
        drop_special_tokens: drop the vectors of the tokenizer's special tokens (CLS/SEP, <s>/</s>); default True.
        drop_first_token: drop only the first vector (bge-m3 keeps its trailing </s>); default False.
        doc_skiplist: document tokens (e.g. punctuation) whose vectors are dropped (single-token words only);
            default none.
        normalize: L2-normalise every vector; default True.
        divide_by_query_length: final score / number of query vectors; default False.
        long_docs: ``"truncate"`` (default) cuts documents at ``doc_maxlen``; ``"split"`` encodes every window of
            ``doc_maxlen`` tokens (windows overlap by ``doc_overlap`` text tokens) and keeps the union of their
            vectors, so MaxSim takes each query token's best match anywhere in the document.
        doc_overlap: text tokens shared by consecutive windows with ``long_docs="split"``, in
            ``[0, doc_maxlen / 2)``; default 32.

    Raises:
        ValueError: on an unknown ``long_docs``, a length below 3, or ``doc_overlap`` out of range when splitting.

    Example:
        .. code-block:: python

            from pyterrier_lateint import ColBERT, EncodingConfig

            config = EncodingConfig(doc_maxlen=300, long_docs="split")
            longer = model.config.replace(doc_maxlen=300)            # a changed copy of a model's settings
            model = ColBERT.from_pretrained(doc_maxlen=300, long_docs="split")   # settings given to the loader
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
        """A copy with some settings changed.

        Args:
            **changes: settings to change, by name.

        Returns:
            EncodingConfig: the new configuration (checked as a new one is).

        Raises:
            TypeError: on an unknown setting name.
        """
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-serialisable dict (``doc_skiplist`` as a list).

        Returns:
            dict: setting name -> value.
        """
        d = dataclasses.asdict(self)
        d["doc_skiplist"] = list(self.doc_skiplist)
        return d
