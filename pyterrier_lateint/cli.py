"""The ``lateint`` command line. ``lateint COMMAND --help`` documents each command.

- ``lateint index COLLECTION_OR_JSONL --out PATH``: build a compressed late-interaction index.
- ``lateint search PATH "query"``: a ranked table from an index.
- ``lateint experiment NAME``: the standard experiment (BM25 vs late interaction) on a collection.
- ``lateint train``: train a late-interaction model (every :class:`TrainingConfig` setting is a flag).
- ``lateint doc2query-train``: train a doc2query query generator (:mod:`pyterrier_lateint.doc2query.cli`).
- ``lateint cleanup``: remove temporary folders left by interrupted index builds.

Flags are spelled with dashes (``--output-dir``; the underscore spelling is accepted too); boolean settings are
switches (``--in-batch-negatives`` / ``--no-in-batch-negatives``).

Errors (bad input, missing or wrong kind of path, an index not found or damaged, a value the library refuses) print
one line, ``lateint: error: MESSAGE`` naming the problem and its fix, and exit with status 2; an interrupt prints
``lateint: interrupted`` and exits with 130. ``--debug`` (before or after the command) shows the full traceback
instead.
"""
from __future__ import annotations

import argparse
import errno
import io
import json
import logging
import os
import re
import sys
import traceback
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence

logger = logging.getLogger("lateint")

EXIT_ERROR = 2  # as argparse's usage errors
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
ACCEPTED_SOURCES = ('a .jsonl file of {"docno", "text"} records, one JSON object per line (BEIR\'s {"_id", "title", '
                    '"text"} too); a folder in TREC layout (doc-text.trec) or BEIR layout (corpus.jsonl); a collection '
                    'name found under $LATEINT_DATA (vaswani, cacm, med, scifact); or irds:NAME (ir_datasets)')


class CLIError(ValueError):
    """A mistake in the command line's input, found by the CLI itself: printed as ``lateint: error: MESSAGE``."""


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _input_file(path: Optional[str], flag: str) -> None:
    """Refuse a ``flag`` value that is not an existing file (``None``: the flag was not given)."""
    if path is None:
        return
    if os.path.isdir(path):
        raise CLIError(f"{flag} {path} is a folder; give a file")
    if not os.path.exists(path):
        raise CLIError(f"{flag} {path} does not exist; check the path")


def _no_file_above(path: Path, flag: str) -> None:
    """Refuse a ``flag`` path to create below an existing file."""
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise CLIError(f"{flag} {path}: {parent} is a file, not a folder; choose another path")


def _output_file(path: Optional[Path], flag: str) -> None:
    """Refuse a ``flag`` file to write that is a folder or lies below a file."""
    if path is None:
        return
    if path.is_dir():
        raise CLIError(f"{flag} {path} is a folder; give a file name to write")
    _no_file_above(path, flag)


def _is_index_folder(path: Path) -> bool:
    from .index.layout import META_FILE
    return (path / META_FILE).exists() or (path / "pt_meta.json").exists()


def _existing_index(path: Path) -> Path:
    """``path`` when it is an index folder; else a :class:`CLIError` saying what it is and how to build one."""
    if path.is_file():
        raise CLIError(f"{path} is a file, not an index folder; give the folder `lateint index ... --out FOLDER` "
                       f"wrote")
    if not path.exists():
        raise CLIError(f"index {path} does not exist; build one with `lateint index COLLECTION_OR_JSONL --out {path}`")
    if not _is_index_folder(path):
        raise CLIError(f"{path} is a folder but not a lateint index (no lateint.json in it); give the folder "
                       f"`lateint index ... --out FOLDER` wrote, or build one there with `lateint index "
                       f"COLLECTION_OR_JSONL --out NEW_FOLDER`")
    return path


# ------------------------------------------------------------------------------------------------------ train
def _add_train(sub) -> None:
    from .training.config import add_config_arguments
    from .training.data import FORMATS
    from .training.trainer import TrainingConfig

    tr = sub.add_parser("train", help="train a late-interaction model",
                        description="Train a late-interaction model. Several GPUs: "
                                    "accelerate launch -m pyterrier_lateint.cli train ...")
    tr.add_argument("--data", required=True, help="training file (formats: " + ", ".join(FORMATS) + ")")
    tr.add_argument("--format", default="auto", choices=("auto",) + FORMATS, help="training file format")
    tr.add_argument("--queries", help="queries.tsv (qid \\t text) for files of ids")
    tr.add_argument("--collection", help="collection.tsv (pid \\t text) for files of ids")
    tr.add_argument("--model", default=None, help="checkpoint name or path to start from (default: all-MiniLM-L6-v2)")
    tr.add_argument("--dim", type=_positive_int, default=None, help="add a new projection head of this dimension")
    tr.add_argument("--layout", default=None, help="force a checkpoint layout")
    tr.add_argument("--config", help="JSON file of training settings")
    tr.add_argument("--no-resume", action="store_true", help="ignore checkpoints in the output folder")
    add_config_arguments(tr, TrainingConfig, "training settings (override --config)")
    tr.set_defaults(run=_run_train)


def _json_object_file(path: str, flag: str) -> None:
    """Refuse a ``flag`` file that is not UTF-8 JSON holding one object."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except UnicodeDecodeError as ex:
        raise CLIError(f"{flag} {path} is not UTF-8 text (byte 0x{ex.object[ex.start]:02x} at offset {ex.start}); "
                       f"convert it, e.g. `iconv -f latin1 -t utf-8 {path} > {path}.utf8`") from None
    except json.JSONDecodeError as ex:
        raise CLIError(f"{flag} {path}:{ex.lineno}: not valid JSON ({ex.msg} at column {ex.colno}); the file holds "
                       f"one JSON object of settings, e.g. {{\"max_steps\": 1000}}") from None
    if not isinstance(data, dict):
        raise CLIError(f"{flag} {path} holds a JSON {type(data).__name__}, not an object of settings; write e.g. "
                       f"{{\"max_steps\": 1000}}")


def _run_train(args: argparse.Namespace) -> None:
    from .colbert import ColBERT
    from .training import Trainer, TrainingConfig
    from .training.config import config_from_args

    for flag in ("data", "queries", "collection", "config"):
        _input_file(getattr(args, flag), f"--{flag}")
    if args.config:
        _json_object_file(args.config, "--config")
    config = config_from_args(args, TrainingConfig, args.config)
    model = ColBERT.from_pretrained(args.model, dim=args.dim, layout=args.layout)
    Trainer(model, config).train(args.data, format=args.format, queries=args.queries, collection=args.collection,
                                 resume=not args.no_resume)
    logger.info("trained model saved to %s/final", config.output_dir)


# ------------------------------------------------------------------------------------------------------ index
def _add_index(sub) -> None:
    ix = sub.add_parser("index", help="build a compressed late-interaction index",
                        description="Index a collection (vaswani, cacm, med, scifact, a folder in TREC or BEIR layout, "
                                    "irds:NAME) or a JSONL file of {\"docno\", \"text\"} records (BEIR's "
                                    "{\"_id\", \"title\", \"text\"} too) into a ColBERTIndex.")
    ix.add_argument("source", help="collection name, folder, irds:NAME, or a .jsonl file")
    ix.add_argument("--out", required=True, type=Path, help="index folder to write")
    ix.add_argument("--model", default=None, help="checkpoint name or path (default: all-MiniLM-L6-v2)")
    ix.add_argument("--nbits", type=int, default=2, choices=(1, 2, 4, 16), help="bits per residual dimension "
                    "(16 = uncompressed float16; default: %(default)s)")
    ix.add_argument("--overwrite", action="store_true", help="replace an existing index (never a file or a "
                    "folder that is not an index)")
    ix.set_defaults(run=_run_index)


_JSON_KINDS = {list: "list", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}


def jsonl_documents(path: Path) -> Iterator[dict[str, str]]:
    """``{"docno", "text"}`` records of a JSONL file (``_id``/``title`` accepted). Errors (:class:`CLIError`) name
    the file, the line and the fix: text that is not UTF-8, a line that is not a JSON object, a missing field."""
    def bad(n: int, problem: str) -> CLIError:
        return CLIError(f"{path}:{n}: {problem}")

    shape = 'each line must be one {"docno": ..., "text": ...} object'
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8-sig" if n == 1 else "utf-8")
            except UnicodeDecodeError as ex:
                utf8 = path.with_name(path.stem + ".utf8" + path.suffix)
                raise bad(n, f"not UTF-8 text (byte 0x{raw[ex.start]:02x} at column {ex.start + 1}); lateint reads "
                             f"UTF-8 only: convert the file, e.g. `iconv -f latin1 -t utf-8 {path} > {utf8}`") from None
            if not line.strip():
                continue
            try:
                d = json.loads(line)
            except json.JSONDecodeError as ex:
                raise bad(n, f"not valid JSON ({ex.msg} at column {ex.colno}); {shape}") from None
            if not isinstance(d, dict):
                raise bad(n, f"a JSON {_JSON_KINDS.get(type(d), type(d).__name__)}, not an object; {shape}")
            docno = d.get("docno", d.get("_id"))
            missing = [k for k, v in (("docno", docno), ("text", d.get("text"))) if v is None]
            if missing:
                raise bad(n, f"missing field {' and '.join(repr(k) for k in missing)} (the line has "
                             f"{sorted(d) or 'no fields'}); each line needs \"docno\" (or \"_id\") and \"text\"")
            if not isinstance(d["text"], str):
                raise bad(n, f"field 'text' is a JSON {_JSON_KINDS.get(type(d['text']), 'object')}, not a string")
            if isinstance(docno, (dict, list)):
                raise bad(n, f"field 'docno' is a JSON {_JSON_KINDS.get(type(docno), 'object')}; give a string")
            text = f"{d['title']} {d['text']}" if d.get("title") else d["text"]
            yield {"docno": str(docno), "text": text}


def _documents(source: str) -> Iterable[dict[str, str]]:
    """The documents ``lateint index`` reads from ``source``; every problem found before any model is loaded."""
    from .data import IRDS_NAMES, data_roots, find_collection, get_dataset
    path = Path(source)
    if path.is_file():
        if path.suffix != ".jsonl":
            raise CLIError(f"{source} is a file but not a .jsonl file; `lateint index` takes {ACCEPTED_SOURCES}. "
                           f"A file of one JSON object per line: name it .jsonl")
        n = sum(1 for _ in jsonl_documents(path))  # checks every line now, not hours into the build
        if n == 0:
            raise CLIError(f"{source} holds no documents; write one {{\"docno\", \"text\"}} JSON object per line")
        return jsonl_documents(path)
    if not (path.exists() or source.startswith("irds:") or source in IRDS_NAMES or find_collection(source)):
        raise CLIError(f"{source} does not exist (no such file or folder, and no collection of that name under "
                       f"{', '.join(str(r) for r in data_roots())}); `lateint index` takes {ACCEPTED_SOURCES}")
    return get_dataset(source).get_corpus_iter()


def _check_out(out: Path, overwrite: bool) -> None:
    """Refuse an ``--out`` that is a file, an existing index (without ``--overwrite``) or a folder of other things."""
    if out.is_file():
        raise CLIError(f"--out {out} is a file, not an index folder; choose a folder path (it is created)")
    if out.is_dir() and any(out.iterdir()):
        if not _is_index_folder(out):
            raise CLIError(f"--out {out} is a folder that holds other things, not a lateint index; choose a new or "
                           f"empty folder (--overwrite only replaces an index)")
        if not overwrite:
            raise CLIError(f"an index already exists at {out}; add --overwrite to replace it, or choose another --out")
    _no_file_above(out, "--out")


def _run_index(args: argparse.Namespace) -> None:
    from .colbert import ColBERT
    from .index import ColBERTIndex
    _check_out(args.out, args.overwrite)
    docs = _documents(args.source)
    model = ColBERT.from_pretrained(args.model)
    index = ColBERTIndex(args.out, model)
    index.indexer(nbits=args.nbits, overwrite=args.overwrite).index(docs)
    meta = index.metadata()
    print(f"indexed {meta['n_docs']} documents, {meta['n_vectors']} vectors into {args.out} "
          f"({sum(index.size_bytes().values()) / 1e6:.1f} MB, {meta['build']['seconds_total']:.0f} s)")


# ------------------------------------------------------------------------------------------------------ search
def _add_search(sub) -> None:
    se = sub.add_parser("search", help="search an index: a ranked table",
                        description="Search a ColBERTIndex with one or more queries and print a ranked table. The "
                                    "model is the one recorded in the index unless --model is given.")
    se.add_argument("index", type=Path, help="index folder")
    se.add_argument("queries", nargs="+", help="query text(s)")
    se.add_argument("-k", "--num-results", type=_positive_int, default=10,
                    help="results per query (default: %(default)s)")
    se.add_argument("--model", default=None, help="checkpoint name or path (default: the index's own)")
    se.add_argument("--mode", default="plaid", choices=("plaid", "exhaustive"), help="search mode")
    se.add_argument("--collection", default=None, help="show the text of each result from this collection")
    se.set_defaults(run=_run_search)


def _run_search(args: argparse.Namespace) -> None:
    import pandas as pd

    from .colbert import ColBERT
    from .data import get_dataset
    from .index import ColBERTIndex
    index = ColBERTIndex(_existing_index(args.index))
    collection = get_dataset(args.collection) if args.collection else None  # a wrong name fails before the search
    model = ColBERT.from_pretrained(args.model) if args.model else index.load_model()
    topics = pd.DataFrame({"qid": [str(i + 1) for i in range(len(args.queries))], "query": args.queries})
    res = index.retriever(model, num_results=args.num_results, mode=args.mode)(topics)
    cols = ["qid", "query", "rank", "docno", "score"]
    if collection is not None:
        import pyterrier as pt
        res = pt.text.get_text(collection, "text")(res)
        res["text"] = res["text"].str.slice(0, 80)
        cols.append("text")
    print(res[cols].to_markdown(index=False, floatfmt=".4f"))


# ------------------------------------------------------------------------------------------------------ experiment
def _add_experiment(sub) -> None:
    from .experiments.runner import SYSTEMS
    ex = sub.add_parser("experiment", help="BM25 vs late interaction on a collection (pt.Experiment table)",
                        description="The standard experiment (pyterrier_lateint.experiments.runner): BM25, BM25 "
                                    "re-ranked from text and from the index, end-to-end and exhaustive retrieval; AP, "
                                    "nDCG@10, RR, R@1000, mean response time, paired t-tests against BM25 (Holm). "
                                    "Runs are saved and reused.")
    ex.add_argument("collection", help="vaswani, cacm, med, scifact, a folder, or irds:NAME")
    ex.add_argument("--split", default="test", help="query split (default: %(default)s)")
    ex.add_argument("--model", default=None, help="checkpoint name or path (default: all-MiniLM-L6-v2)")
    ex.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS, help="systems to run")
    ex.add_argument("--rerank-depth", type=_positive_int, default=100, help="BM25 results re-ranked from text")
    ex.add_argument("--max-queries", type=_positive_int, default=None, help="only the first N queries")
    ex.add_argument("--save-dir", default="runs", help="folder for runs and tables (default: %(default)s)")
    ex.add_argument("--generator", default=None, help="a doc2query generator (seq2seq folder): adds BM25 + doc2query "
                                                      "and BM25 + doc2query-- rows")
    ex.add_argument("--results", type=Path, default=None, help="also write the markdown table to this file")
    ex.set_defaults(run=_run_experiment)


def _run_experiment(args: argparse.Namespace) -> None:
    from .experiments.runner import ExperimentSettings, run_experiment
    _output_file(args.results, "--results")  # checked now, not after the experiment
    if Path(args.save_dir).exists() and not Path(args.save_dir).is_dir():
        raise CLIError(f"--save-dir {args.save_dir} is a file, not a folder; choose a folder for runs and tables")
    settings = ExperimentSettings(collection=args.collection, split=args.split, model=args.model,
                                  systems=tuple(args.systems), rerank_depth=args.rerank_depth,
                                  max_queries=args.max_queries, save_dir=args.save_dir, generator=args.generator)
    result = run_experiment(settings)
    print("\n" + result.markdown())
    print(f"(runs and tables in {result.folder}; {result.meta['seconds']:.0f} s)")
    if args.results:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(result.markdown())


def _add_doc2query_train(sub) -> None:
    from .doc2query import cli as d2q_cli
    d2q_cli.add_parser(sub).set_defaults(run=_run_doc2query_train)


def _run_doc2query_train(args: argparse.Namespace) -> None:
    from .doc2query import cli as d2q_cli
    _input_file(args.pairs, "--pairs")
    d2q_cli.run(args)


# ------------------------------------------------------------------------------------------------------ cleanup
def _add_cleanup(sub) -> None:
    from .settings import cache_dir
    cl = sub.add_parser("cleanup", help="remove folders left by interrupted index builds",
                        description="Remove the temporary folders (.NAME.tmp-PID-*, .NAME.old-PID-*) that index builds "
                                    "killed part-way left behind, when their process is gone. A build of the same "
                                    "path also removes them.")
    cl.add_argument("folders", nargs="*", type=Path, help=f"folders to search, recursively (default: {cache_dir()})")
    cl.add_argument("--dry-run", action="store_true", help="list what would be removed, remove nothing")
    cl.set_defaults(run=_run_cleanup)


def _run_cleanup(args: argparse.Namespace) -> None:
    import shutil

    from .index.folders import stale_builds_under
    from .settings import cache_dir
    for folder in args.folders:
        if not folder.exists():
            raise CLIError(f"{folder} does not exist; give folders that hold indexes (default: {cache_dir()})")
        if not folder.is_dir():
            raise CLIError(f"{folder} is a file, not a folder; give folders that hold indexes (default: "
                           f"{cache_dir()})")
    folders = args.folders or [cache_dir()]
    found = [p for folder in folders for p in stale_builds_under(folder)]
    for p in found:
        size = sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
        print(f"{'would remove' if args.dry_run else 'removing'} {p} ({size / 1e6:.1f} MB)")
        if not args.dry_run:
            shutil.rmtree(p, ignore_errors=True)
    if not found:
        print(f"nothing to remove under {', '.join(str(f) for f in folders)}")


# ------------------------------------------------------------------------------------------------------ errors
# fixes the library spells for Python callers (regular expressions), and their command-line spelling
_API_TO_CLI = ((r"indexer\(\.\.\., overwrite=True\)", "`lateint index COLLECTION_OR_JSONL --out INDEX --overwrite`"),
               (r"index with overwrite=True", "index with --overwrite"),
               (r"; index\.verify\(\) checks every file", ""),
               (r"pass the model yourself", "pass --model NAME"),
               (r"ColBERT\.from_pretrained\(\) with no name loads the offline default",
                "without --model the offline default model is used"),
               (r'get_dataset\("(irds:[^"]*)"\)', r"\1"))
_OS_HINTS = ((FileNotFoundError, "check the path"), (IsADirectoryError, "give a file, not a folder"),
             (NotADirectoryError, "a file stands where a folder is expected; check the path"),
             (PermissionError, "check the permissions, or choose another path"))


def _file_being_read(ex: BaseException) -> Optional[str]:
    """The name of the innermost text file open in the frames ``ex`` passed through (``None`` if none)."""
    names = [v.name for frame, _ in traceback.walk_tb(ex.__traceback__) for v in frame.f_locals.values()
             if isinstance(v, io.TextIOWrapper) and isinstance(getattr(v, "name", None), str)]
    return names[-1] if names else None


def error_message(ex: BaseException) -> str:
    """The one-line message the command line prints for ``ex``: the problem and its fix. The library's own errors
    (``IndexNotFoundError``, a ``FileNotFoundError``; ``IndexCorruptError``, ``ModelMismatchError``, ValueErrors)
    carry messages that name the fix: they are printed as they are, with fixes spelled for Python re-spelled for the
    command line."""
    if isinstance(ex, CLIError):
        message = str(ex)
    elif isinstance(ex, UnicodeDecodeError):
        name = _file_being_read(ex)
        message = (f"{name or 'a file'} is not UTF-8 text (byte 0x{ex.object[ex.start]:02x} at offset {ex.start}); "
                   f"lateint reads UTF-8 only: convert it, e.g. `iconv -f latin1 -t utf-8 {name or 'FILE'} > "
                   f"{name or 'FILE'}.utf8` and use (or rename) that")
    elif isinstance(ex, json.JSONDecodeError):
        name = _file_being_read(ex)
        message = f"{name + ': ' if name else ''}not valid JSON ({ex.msg}); fix or regenerate the file"
    elif isinstance(ex, OSError) and ex.strerror and len(ex.args) <= 2:  # the system's own message
        where = f"{ex.filename}: " if ex.filename is not None else ""
        hint = "free some disk space" if ex.errno == errno.ENOSPC else \
            next((h for cls, h in _OS_HINTS if isinstance(ex, cls)), None)
        message = f"{where}{ex.strerror}" + (f"; {hint}" if hint else "")
    elif isinstance(ex, ModuleNotFoundError):
        message = f"{ex}; install it (pip install {ex.name}) or re-run with --debug to see what needs it"
    elif isinstance(ex, KeyError) and len(ex.args) == 1 and isinstance(ex.args[0], str):
        message = ex.args[0]
    elif isinstance(ex, (OSError, ValueError, LookupError)):
        message = str(ex) or type(ex).__name__
    else:  # a bug: say what and where, and how to see more
        frames = traceback.extract_tb(ex.__traceback__)
        where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
        message = (f"internal error{where}: {type(ex).__name__}: {ex}; re-run with --debug for the full traceback "
                   f"and report it")
    for api, cli in _API_TO_CLI:
        message = re.sub(api, cli, message)
    return " ".join(message.split())  # one line


# ------------------------------------------------------------------------------------------------------ main
def _add_debug(parser: argparse.ArgumentParser, default) -> None:
    parser.add_argument("--debug", action="store_true", default=default,
                        help="on an error, show the full traceback instead of one line")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lateint", description="pyterrier-lateint command line",
                                     epilog="An error prints one line, 'lateint: error: ...', and exits with status "
                                            "2; --debug (before or after the command) shows the traceback.")
    _add_debug(parser, False)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_index(sub)
    _add_search(sub)
    _add_experiment(sub)
    _add_train(sub)
    _add_doc2query_train(sub)
    _add_cleanup(sub)
    for command in sub.choices.values():  # --debug after the command too; SUPPRESS keeps a --debug before it
        _add_debug(command, argparse.SUPPRESS)
    return parser


def _close_progress_bars() -> None:
    """Close the progress bars the failed command left open (held by the exception's frames), so that they do not
    print over or after the error line."""
    import gc
    gc.collect()
    tqdm = sys.modules.get("tqdm")
    for bar in list(getattr(getattr(tqdm, "tqdm", None), "_instances", ())):
        bar.close()


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Run the command line on ``argv`` (default: ``sys.argv[1:]``). Errors exit with status 2 after one line on
    stderr (``--debug``: the traceback), an interrupt with 130."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # until the arguments are parsed
    try:
        args = build_parser().parse_args(argv)
        debug = args.debug
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        args.run(args)
        return
    except SystemExit as ex:  # argparse's own exits pass; a message (``raise SystemExit("...")``) is an error
        if debug or not isinstance(ex.code, str):
            raise
        message = " ".join(ex.code.split())
    except KeyboardInterrupt:
        if debug:
            raise
        message = None
    except Exception as ex:
        if debug:
            raise
        message = error_message(ex)
    _close_progress_bars()
    sys.stdout.flush()
    if message is None:
        print("lateint: interrupted", file=sys.stderr)
        raise SystemExit(EXIT_INTERRUPTED)
    print(f"lateint: error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_ERROR)


if __name__ == "__main__":
    main(sys.argv[1:])
