"""Test collections on disk: TREC layout (Vaswani, CACM, MED) and BEIR layout (SciFact).

``load_collection("vaswani")`` finds the folder under ``$LATEINT_DATA`` or a ``shared/data`` folder beside the
working directory or the package; ``get_dataset`` falls back to ``pt.get_dataset("irds:...")`` (online).
"""
from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Iterator, List, Literal, Optional, Union

import pandas as pd
import pyterrier as pt

logger = logging.getLogger(__name__)

# ir_datasets names of the collections we also ship locally (for users who are online)
IRDS_NAMES = {"vaswani": "vaswani", "scifact": "beir/scifact"}

_DOC_RE = re.compile(r"<DOC>\s*<DOCNO>\s*(.*?)\s*</DOCNO>(.*?)</DOC>", re.S)
_TOP_RE = re.compile(r"<top>\s*<num>\s*(.*?)\s*</num>\s*<title>(.*?)</title>\s*</top>", re.S)


def data_roots() -> list[Path]:
    """Folders searched for collections, in order."""
    roots = []
    if os.environ.get("LATEINT_DATA"):
        roots.append(Path(os.environ["LATEINT_DATA"]))
    for base in (Path.cwd(), Path(__file__).resolve().parent):
        for parent in (base, *base.parents):
            roots.append(parent / "shared" / "data")
            roots.append(parent.parent / "shared" / "data")
    return list(dict.fromkeys(roots))


def find_collection(name: str) -> Optional[Path]:
    """The local folder of collection ``name`` (or ``name`` itself if it is a folder), or ``None``."""
    if Path(name).is_dir():
        return Path(name)
    for root in data_roots():
        if (root / name).is_dir():
            return root / name
    return None


def _clean(text: str) -> str:
    return " ".join(text.split())


class Collection:
    """A test collection in a folder: corpus iterator, topics, qrels and a text loader by docno.

    TREC layout: ``doc-text.trec``, ``query-text.trec``, ``qrels``. BEIR layout: ``corpus.jsonl``,
    ``queries.jsonl``, ``qrels/<split>.tsv`` (documents' text is ``title + " " + text``). Texts are parsed
    with regular expressions, so unescaped ``<`` and ``&`` in documents are read as they are.
    """

    def __init__(self, path: Union[str, Path]):
        self.path = Path(path)
        if (self.path / "doc-text.trec").exists():
            self.layout = "trec"
        elif (self.path / "corpus.jsonl").exists():
            self.layout = "beir"
        else:
            raise FileNotFoundError(f"{self.path} holds neither doc-text.trec (TREC layout) nor corpus.jsonl (BEIR)")
        self._texts: Optional[dict[str, str]] = None

    def __repr__(self) -> str:
        return f"Collection({str(self.path)!r})"

    def get_corpus_iter(self, verbose: bool = False) -> Iterator[dict[str, str]]:
        """Yield ``{"docno", "text"}`` records in file order."""
        it = self._iter_trec() if self.layout == "trec" else self._iter_beir()
        return pt.tqdm(it, desc=f"{self.path.name} corpus", unit="doc") if verbose else it

    def _iter_trec(self) -> Iterator[dict[str, str]]:
        content = (self.path / "doc-text.trec").read_text(encoding="utf-8", errors="replace")
        for m in _DOC_RE.finditer(content):
            yield {"docno": m.group(1), "text": _clean(m.group(2))}

    def _iter_beir(self) -> Iterator[dict[str, str]]:
        with open(self.path / "corpus.jsonl", encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    d = json.loads(line)
                    yield {"docno": str(d["_id"]), "text": _clean(f"{d.get('title', '')} {d.get('text', '')}")}

    def splits(self) -> List[str]:
        """Query splits with judgements (``["test"]`` for TREC layout)."""
        if self.layout == "trec":
            return ["test"]
        return sorted(p.stem for p in (self.path / "qrels").glob("*.tsv"))

    def get_topics(self, split: str = "test") -> pd.DataFrame:
        """Query frame ``(qid, query)``; for BEIR, only the queries judged in ``split`` (``metadata`` is never
        returned: in SciFact it holds the gold labels)."""
        self._check_split(split)
        if self.layout == "trec":
            content = (self.path / "query-text.trec").read_text(encoding="utf-8", errors="replace")
            rows = [(m.group(1), _clean(m.group(2))) for m in _TOP_RE.finditer(content)]
            return pd.DataFrame(rows, columns=["qid", "query"])
        judged = set(self.get_qrels(split)["qid"])
        rows = []
        with open(self.path / "queries.jsonl", encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    q = json.loads(line)
                    if str(q["_id"]) in judged:
                        rows.append((str(q["_id"]), _clean(q["text"])))
        return pd.DataFrame(rows, columns=["qid", "query"])

    def get_qrels(self, split: str = "test") -> pd.DataFrame:
        """Qrels frame ``(qid, docno, label)``."""
        self._check_split(split)
        if self.layout == "trec":
            q = pd.read_csv(self.path / "qrels", sep=r"\s+", header=None, names=["qid", "iter", "docno", "label"],
                            dtype=str)
            return q.drop(columns="iter").astype({"label": int})
        q = pd.read_csv(self.path / "qrels" / f"{split}.tsv", sep="\t", dtype=str)
        q.columns = ["qid", "docno", "label"]
        return q.astype({"label": int})

    def _check_split(self, split: str) -> None:
        if split not in self.splits():
            raise FileNotFoundError(f"{self.path} has no query split {split!r}; splits: {self.splits()}"
                                    + (" (a test collection: never train or tune on its queries)"
                                       if self.layout == "trec" else ""))

    def texts(self) -> dict[str, str]:
        """docno -> text (read once, then cached)."""
        if self._texts is None:
            self._texts = {d["docno"]: d["text"] for d in self.get_corpus_iter()}
        return self._texts

    def text_loader(self, fields: Union[List[str], str, Literal["*"]] = "*", *, verbose: bool = False) -> pt.Transformer:
        """Transformer adding ``text`` by ``docno`` (makes ``pt.text.get_text(collection)`` work)."""
        wanted = [fields] if isinstance(fields, str) and fields != "*" else fields
        if wanted != "*" and list(wanted) != ["text"]:
            raise ValueError(f"{self} has only the field 'text', not {wanted}")
        return TextLoader(self)


class TextLoader(pt.Transformer):
    """Adds ``text`` to a frame with ``docno`` from a :class:`Collection`; unknown docnos are an error."""

    def __init__(self, collection: Collection):
        self.collection = collection

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        pt.validate.columns(inp, includes=["docno"])
        texts = self.collection.texts()
        missing = [d for d in inp["docno"].unique() if d not in texts]
        if missing:
            raise KeyError(f"{len(missing)} docnos not in {self.collection} (e.g. {missing[:3]}); "
                           "check that the results come from an index of this collection")
        return inp.assign(text=inp["docno"].map(texts))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TextLoader) and other.collection.path == self.collection.path

    def __hash__(self) -> int:
        return hash(("TextLoader", str(self.collection.path)))


def load_collection(name: str) -> Collection:
    """A local collection by name (``vaswani``, ``cacm``, ``med``, ``scifact``) or folder path."""
    path = find_collection(name)
    if path is None:
        raise FileNotFoundError(f"collection {name!r} not found under {[str(r) for r in data_roots()[:3]]}...; "
                                "set LATEINT_DATA to the folder holding it, or use get_dataset() online")
    return Collection(path)


def get_dataset(name: str):
    """A local :class:`Collection` when one is on disk, otherwise ``pt.get_dataset("irds:...")``."""
    if name.startswith("irds:"):
        return pt.get_dataset(name)
    path = find_collection(name)
    if path is not None:
        return Collection(path)
    if name in IRDS_NAMES:
        logger.info("%s not found locally; loading irds:%s", name, IRDS_NAMES[name])
        return pt.get_dataset(f"irds:{IRDS_NAMES[name]}")
    raise FileNotFoundError(f"unknown collection {name!r}: not on disk and no ir_datasets name known")
