"""Test collections: on disk in TREC layout (Vaswani, CACM, MED) or BEIR layout (SciFact), or from ir_datasets.

``load_collection("vaswani")`` finds the folder ``vaswani/`` under ``$LATEINT_DATA``, else under ``shared/data`` in
(or beside) the working directory or the package's checkout, and logs which folder it used.
``get_dataset(name)`` falls back to ``pt.get_dataset("irds:...")`` (online) when the collection is not on disk.
"""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Iterator, List, Literal, Optional, Union

import pandas as pd
import pyterrier as pt

from .settings import DATA_ENV, data_dir

logger = logging.getLogger(__name__)

# ir_datasets names of the collections also found on disk (CACM and MED are not in ir_datasets)
IRDS_NAMES = {"vaswani": "vaswani", "scifact": "beir/scifact"}
LAYOUT_HELP = ("TREC layout: doc-text.trec (<DOC><DOCNO>id</DOCNO> text</DOC>), query-text.trec "
               "(<top><num>id</num><title>text</title></top>), qrels (qid 0 docno label); or BEIR layout: corpus.jsonl "
               "({_id, title, text}), queries.jsonl ({_id, text}), qrels/<split>.tsv (query-id, corpus-id, score)")
_REPORTED: set[Path] = set()

_DOC_RE = re.compile(r"<DOC>\s*<DOCNO>\s*(.*?)\s*</DOCNO>(.*?)</DOC>", re.S)
_TOP_RE = re.compile(r"<top>\s*<num>\s*(.*?)\s*</num>\s*<title>(.*?)</title>\s*</top>", re.S)


def data_roots() -> list[Path]:
    """Folders searched for collections, in order: ``$LATEINT_DATA``; ``shared/data`` in the working directory, then
    beside it; ``shared/data`` in the package's checkout, then beside it. Nothing further up.

    Returns:
        list: the folders (``pathlib.Path``), duplicates removed; they need not exist.
    """
    roots = [data_dir()] if data_dir() else []
    checkout = Path(__file__).resolve().parents[1]
    for base in (Path.cwd(), checkout):
        roots += [base / "shared" / "data", base.parent / "shared" / "data"]
    return list(dict.fromkeys(roots))


def find_collection(name: str) -> Optional[Path]:
    """The local folder of collection ``name`` (or ``name`` itself if it is a folder).

    The folder used is logged (a warning when it was found beside the working directory or the checkout, not in
    it).

    Args:
        name: a collection name (a folder under one of :func:`data_roots`) or a folder path.

    Returns:
        pathlib.Path: the folder, or ``None`` when there is none.
    """
    if Path(name).is_dir():
        return Path(name)
    roots = data_roots()
    for root in roots:
        if (root / name).is_dir():
            path = (root / name).resolve()
            if path not in _REPORTED:
                _REPORTED.add(path)
                explicit = root == data_dir() or root == Path.cwd() / "shared" / "data"
                (logger.info if explicit else logger.warning)(
                    "collection %r: using %s (set %s to choose another folder)", name, path, DATA_ENV)
            return root / name
    return None


def _clean(text: str) -> str:
    return " ".join(text.split())


class Collection:
    """A test collection in a folder: corpus iterator, topics, qrels and a text loader by docno.

    TREC layout: ``doc-text.trec``, ``query-text.trec``, ``qrels``. BEIR layout: ``corpus.jsonl``,
    ``queries.jsonl``, ``qrels/<split>.tsv`` (documents' text is ``title + " " + text``). Texts are parsed
    with regular expressions, so unescaped ``<`` and ``&`` in documents are read as they are. Usually made by
    :func:`load_collection`.

    Args:
        path: the collection's folder.

    Raises:
        FileNotFoundError: when the folder holds neither ``doc-text.trec`` nor ``corpus.jsonl``.

    Example:
        .. code-block:: python

            from pyterrier_lateint.data import load_collection

            vaswani = load_collection("vaswani")            # a Collection
            topics, qrels = vaswani.get_topics(), vaswani.get_qrels()
            pipeline = bm25 >> vaswani.text_loader() >> model.text_scorer()
    """

    def __init__(self, path: Union[str, Path]):
        self.path = Path(path)
        if (self.path / "doc-text.trec").exists():
            self.layout = "trec"
        elif (self.path / "corpus.jsonl").exists():
            self.layout = "beir"
        else:
            raise FileNotFoundError(f"{self.path} holds neither doc-text.trec nor corpus.jsonl; expected the "
                                    f"{LAYOUT_HELP}")
        self._texts: Optional[dict[str, str]] = None

    @property
    def name(self) -> str:
        """The collection's name (its folder's name): names cached indices and result folders."""
        return self.path.name

    def __repr__(self) -> str:
        return f"Collection({str(self.path)!r})"

    def get_corpus_iter(self, verbose: bool = False) -> Iterator[dict[str, str]]:
        """The documents as ``{"docno", "text"}`` records in file order.

        Args:
            verbose: show a progress bar.

        Returns:
            Iterator: ``{"docno", "text"}`` dicts.
        """
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
        """Query splits with judgements (``["test"]`` for TREC layout).

        Returns:
            list: the split names (BEIR: the ``qrels/*.tsv`` file names, sorted).
        """
        if self.layout == "trec":
            return ["test"]
        return sorted(p.stem for p in (self.path / "qrels").glob("*.tsv"))

    def get_topics(self, split: str = "test") -> pd.DataFrame:
        """Query frame ``(qid, query)``; for BEIR, only the queries judged in ``split``.

        ``metadata`` is never returned: in SciFact it holds the gold labels.

        Args:
            split: the query split (default ``"test"``; see :meth:`splits`).

        Returns:
            pandas.DataFrame: ``qid``, ``query``.

        Raises:
            FileNotFoundError: when the collection has no such split.
        """
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
        """Qrels frame ``(qid, docno, label)``.

        Args:
            split: the query split (default ``"test"``).

        Returns:
            pandas.DataFrame: ``qid``, ``docno`` (str), ``label`` (int).

        Raises:
            FileNotFoundError: when the collection has no such split.
        """
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
        """docno -> text (read once, then cached).

        Returns:
            dict: every document's text by docno.
        """
        if self._texts is None:
            self._texts = {d["docno"]: d["text"] for d in self.get_corpus_iter()}
        return self._texts

    def text_loader(self, fields: Union[List[str], str, Literal["*"]] = "*", *, verbose: bool = False) -> pt.Transformer:
        """Transformer adding ``text`` by ``docno`` (makes ``pt.text.get_text(collection)`` work).

        Args:
            fields: ``"*"`` (default) or ``"text"``: the only field.
            verbose: accepted for PyTerrier's ``text_loader`` interface; unused.

        Returns:
            TextLoader: the transformer.

        Raises:
            ValueError: for any field other than ``text``.
        """
        wanted = [fields] if isinstance(fields, str) and fields != "*" else fields
        if wanted != "*" and list(wanted) != ["text"]:
            raise ValueError(f"{self} has only the field 'text', not {wanted}")
        return TextLoader(self)


class TextLoader(pt.Transformer):
    """Adds ``text`` to a frame with ``docno`` from a :class:`Collection`; unknown docnos are an error.

    Made by :meth:`Collection.text_loader`.

    Args:
        collection: the collection whose texts are added.

    Example:
        .. code-block:: python

            pipeline = bm25 >> pt.text.get_text(collection, "text") >> model.text_scorer()
    """

    def __init__(self, collection: Collection):
        self.collection = collection

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        """Add each row's document text.

        Args:
            inp: a frame with ``docno``.

        Returns:
            pandas.DataFrame: ``inp`` with ``text``.

        Raises:
            KeyError: for docnos not in the collection.
        """
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


def _not_found(name: str) -> FileNotFoundError:
    online = f'get_dataset("irds:{IRDS_NAMES[name]}")' if name in IRDS_NAMES else 'get_dataset("irds:NAME")'
    return FileNotFoundError(
        f"collection {name!r} not found: no folder {name!r} under {', '.join(str(r) for r in data_roots())}. Set "
        f"{DATA_ENV} to a folder holding {name}/ in the {LAYOUT_HELP}. Online, {online} loads it through "
        f"ir_datasets instead.")


def load_collection(name: str) -> Collection:
    """A local collection by name (``vaswani``, ``cacm``, ``med``, ``scifact``) or folder path.

    Args:
        name: the collection's name (a folder under one of :func:`data_roots`) or a folder path.

    Returns:
        Collection: the collection.

    Raises:
        FileNotFoundError: when no such folder exists (the message names the folders searched and the ir_datasets
            alternative).

    Example:
        .. code-block:: python

            from pyterrier_lateint.data import load_collection

            collection = load_collection("vaswani")
            docs = list(collection.get_corpus_iter())
    """
    path = find_collection(name)
    if path is None:
        raise _not_found(name)
    return Collection(path)


class IrdsCollection:
    """An ir_datasets collection (``pt.get_dataset("irds:NAME")``) behind :class:`Collection`'s interface.

    Topics and qrels of a split come from ``NAME/split`` when ir_datasets has it (BEIR: ``beir/scifact/test``),
    else from ``NAME`` itself (split ``test`` only). Topics keep only ``qid`` and ``query``.

    Args:
        irds_name: the ir_datasets name, without ``irds:`` (e.g. ``"beir/scifact"``).

    Example:
        .. code-block:: python

            from pyterrier_lateint.data import get_dataset

            scifact = get_dataset("irds:beir/scifact")   # an IrdsCollection (online the first time)
            topics = scifact.get_topics("test")
    """

    layout = "irds"

    def __init__(self, irds_name: str):
        self.irds_name = irds_name
        self.dataset = pt.get_dataset(f"irds:{irds_name}")

    @property
    def name(self) -> str:
        """The collection's name (the ir_datasets name with ``/`` as ``-``): names cached indices and results."""
        return self.irds_name.replace("/", "-")

    def __repr__(self) -> str:
        return f"IrdsCollection({self.irds_name!r})"

    def _split(self, split: str):
        import ir_datasets
        if f"{self.irds_name}/{split}" in ir_datasets.registry:
            return pt.get_dataset(f"irds:{self.irds_name}/{split}")
        if split != "test":
            raise FileNotFoundError(f"ir_datasets has no {self.irds_name}/{split}; {self.irds_name}'s own queries "
                                    f"are its test split")
        return self.dataset

    def get_corpus_iter(self, verbose: bool = False) -> Iterator[dict[str, str]]:
        """The documents as ``{"docno", "text"}`` records (a title is joined to the text, as for BEIR folders).

        Args:
            verbose: show a progress bar.

        Yields:
            dict: ``{"docno", "text"}``.
        """
        for d in self.dataset.get_corpus_iter(verbose=verbose):
            yield {"docno": d["docno"], "text": d["text"] if "title" not in d else _clean(f"{d['title']} {d['text']}")}

    def get_topics(self, split: str = "test", variant: Optional[str] = None) -> pd.DataFrame:
        """Topics ``qid``, ``query`` of ``split``.

        Args:
            split: the query split (default ``"test"``).
            variant: the query field that becomes ``query`` when the queries have several (BEIR's ``text`` and
                ``url``; TREC's ``title``, ``description``, ...); default its ``query``, ``text`` or ``title``
                field, else the first (PyTerrier itself makes no ``query`` column then).

        Returns:
            pandas.DataFrame: ``qid``, ``query``.

        Raises:
            FileNotFoundError: when ir_datasets has no such split (other than ``test``).
            ValueError: when the queries have no field ``variant``.
        """
        ds = self._split(split)
        fields = list(ds.irds_ref().queries_cls()._fields[1:]) if hasattr(ds, "irds_ref") else []
        if variant is None and len(fields) > 1:
            variant = next((f for f in ("query", "text", "title") if f in fields), fields[0])
        if variant is not None and fields and variant not in fields:
            raise ValueError(f"{self.irds_name} has no query field {variant!r}; its fields: {', '.join(fields)}")
        topics = ds.get_topics(variant) if variant is not None else ds.get_topics()
        return topics[["qid", "query"]]

    def get_qrels(self, split: str = "test") -> pd.DataFrame:
        """Qrels frame ``(qid, docno, label)`` of ``split``.

        Args:
            split: the query split (default ``"test"``).

        Returns:
            pandas.DataFrame: ``qid``, ``docno``, ``label``.

        Raises:
            FileNotFoundError: when ir_datasets has no such split (other than ``test``).
        """
        return self._split(split).get_qrels()[["qid", "docno", "label"]]

    def text_loader(self, fields: Union[List[str], str, Literal["*"]] = "*", *, verbose: bool = False):
        """The dataset's own text loader (PyTerrier's ``dataset.text_loader``).

        Args:
            fields: the fields to add (default ``"*"``: all).
            verbose: show a progress bar.

        Returns:
            pyterrier.Transformer: adds the fields by ``docno``.
        """
        return self.dataset.text_loader(fields, verbose=verbose)


def get_dataset(name: str) -> Union[Collection, IrdsCollection]:
    """A local :class:`Collection` when one is on disk; otherwise (online) the ir_datasets collection.

    ``irds:NAME`` names any ir_datasets collection, and ``vaswani`` / ``scifact`` fall back to theirs (with a
    warning) when they are not on disk.

    Args:
        name: a local collection name or folder, or ``irds:NAME``.

    Returns:
        Collection: or an :class:`IrdsCollection`.

    Raises:
        FileNotFoundError: when the collection is neither on disk nor in ir_datasets under a known name.

    Example:
        .. code-block:: python

            from pyterrier_lateint.data import get_dataset

            dataset = get_dataset("vaswani")          # on disk, else irds:vaswani
            topics, qrels = dataset.get_topics(), dataset.get_qrels()
    """
    if name.startswith("irds:"):
        return IrdsCollection(name[len("irds:"):])
    path = find_collection(name)
    if path is not None:
        return Collection(path)
    if name in IRDS_NAMES:
        logger.warning("collection %r is not on disk (searched %s); loading irds:%s (needs the network the first "
                       "time)", name, ", ".join(str(r) for r in data_roots()), IRDS_NAMES[name])
        return IrdsCollection(IRDS_NAMES[name])
    raise _not_found(name)
