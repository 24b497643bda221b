"""The standard experiment on any collection: BM25 against late-interaction re-ranking and retrieval, one
``pt.Experiment`` table with paired t-tests against BM25 (Holm-corrected), saved runs reused on re-runs.

Systems (``--systems``; all by default):

- ``bm25``: PISA BM25 (the baseline);
- ``text``: BM25's top ``rerank_depth`` re-ranked by MaxSim from the documents' text (``model.text_scorer()``);
- ``index-scorer``: BM25's top 1000 re-ranked from the index's stored vectors (``index.scorer()``);
- ``e2e``: end-to-end retrieval from the compressed index (``index.retriever()``);
- ``exhaustive``: exact MaxSim of every document in the index (the index's ground truth);
- with ``generator`` (a doc2query seq2seq folder): ``BM25 + doc2query`` and ``BM25 + doc2query-- (keep 70%)``
  (:func:`pyterrier_lateint.doc2query.doc2query_rows`), and any other ``(name, transformer)`` in ``extra_systems``.

Measures: AP, nDCG@10, RR, R@1000 and mean response time per query (ms). Runs are saved under
``save_dir/COLLECTION-SPLIT/MODEL.HASH.CODEC/`` and reused when the same experiment runs again; the response time of a
reused run is the one measured when it ran (kept in ``timings.json``), marked in ``reused``.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import pandas as pd
import pyterrier as pt

from ..colbert import ColBERT
from ..data import get_dataset
from . import AnyCollection, lateint_index, model_tag, pisa_bm25

logger = logging.getLogger(__name__)

SYSTEMS = ("bm25", "text", "index-scorer", "e2e", "exhaustive")
MEASURES = ("AP", "nDCG@10", "RR", "R@1000")


@dataclass
class ExperimentSettings:
    """What :func:`run_experiment` runs.

    Args:
        collection: a local name (``vaswani``, ``cacm``, ``med``, ``scifact``), a folder, or ``irds:NAME``
            (default ``"vaswani"``).
        split: the query split (default ``"test"``).
        model: the checkpoint (Hub name or folder); ``None`` (default): the offline default model.
        systems: which of ``bm25``, ``text``, ``index-scorer``, ``e2e``, ``exhaustive`` to run (default all).
        rerank_depth: BM25 results re-ranked by the ``text`` system (default 100).
        nbits: bits per residual dimension of the index (default 2).
        num_results: documents per query of BM25 and the index's retrievers (default 1000).
        max_queries: the first N queries only (quick looks); ``None`` (default): all.
        save_dir: where run folders are written (default ``"runs"``).
        generator: a doc2query seq2seq folder, adding the doc2query rows; ``None`` (default): none.

    Raises:
        ValueError: on an unknown system.

    Example:
        .. code-block:: python

            from pyterrier_lateint.experiments.runner import ExperimentSettings, run_experiment

            settings = ExperimentSettings(collection="scifact", systems=("bm25", "text", "e2e"), max_queries=50)
            print(run_experiment(settings).markdown())
    """
    collection: str = "vaswani"
    split: str = "test"
    model: Optional[str] = None
    systems: tuple[str, ...] = SYSTEMS
    rerank_depth: int = 100
    nbits: int = 2
    num_results: int = 1000
    max_queries: Optional[int] = None
    save_dir: str = "runs"
    generator: Optional[str] = None

    def __post_init__(self) -> None:
        unknown = [s for s in self.systems if s not in SYSTEMS]
        if unknown:
            raise ValueError(f"unknown systems {unknown}; choose from {SYSTEMS}")
        self.systems = tuple(self.systems)


@dataclass
class ExperimentResult:
    """What :func:`run_experiment` returns.

    Args:
        settings: the settings that were run.
        table: one row per system (measures, ``<measure> p`` Holm-corrected p-values against BM25, ``mrt (ms)``).
        per_query: ``name, qid, measure, value``.
        folder: where runs and tables were written.
        meta: collection, split, number of queries, model name, settings, reused runs and seconds taken.

    Example:
        .. code-block:: python

            result = run_experiment(ExperimentSettings(collection="vaswani"))
            result.table, result.folder / "table.md"
    """
    settings: ExperimentSettings
    table: pd.DataFrame
    per_query: pd.DataFrame
    folder: Path
    meta: dict[str, Any] = field(default_factory=dict)

    def markdown(self) -> str:
        """The table as markdown, with a line saying what was run.

        Returns:
            str: the heading line, a blank line and the table.
        """
        m = self.meta
        head = (f"{m['collection']} ({m['split']}): {m['n_queries']} queries, model {m['model']}; p: paired t-test "
                f"against BM25, Holm-corrected; mrt: mean response time per query in ms"
                + (f" (reused runs, timed when they ran: {', '.join(m['reused'])})" if m.get("reused") else ""))
        return head + "\n\n" + self.table.to_markdown(index=False) + "\n"


def system_names(settings: ExperimentSettings) -> dict[str, str]:
    """The display name of each system (the names in the experiment table).

    Args:
        settings: the experiment settings (the ``text`` system's name gives ``rerank_depth``).

    Returns:
        dict: system key (``bm25``, ``text``, ...) -> name.
    """
    return {"bm25": "BM25", "text": f"BM25 top{settings.rerank_depth} then text scorer",
            "index-scorer": "BM25 then index scorer", "e2e": "ColBERT end-to-end", "exhaustive": "ColBERT exhaustive"}


def build_systems(collection: AnyCollection, model: ColBERT, settings: ExperimentSettings
                  ) -> list[tuple[str, pt.Transformer]]:
    """``(name, transformer)`` for each of ``settings.systems``; builds the indices they need (cached).

    Args:
        collection: the collection.
        model: the late-interaction model.
        settings: the experiment settings.

    Returns:
        list: ``(name, transformer)`` pairs, in the order of ``settings.systems``, then the doc2query rows.
    """
    names = system_names(settings)
    bm25 = pisa_bm25(collection, num_results=settings.num_results)
    needs_index = {"index-scorer", "e2e", "exhaustive"} & set(settings.systems)
    index = lateint_index(collection, model, nbits=settings.nbits) if needs_index else None
    make = {
        "bm25": lambda: bm25,
        "text": lambda: bm25 % settings.rerank_depth >> pt.text.get_text(collection, "text")
        >> model.text_scorer(verbose=True),
        "index-scorer": lambda: bm25 >> index.scorer(model, verbose=True),
        "e2e": lambda: index.retriever(model, num_results=settings.num_results, verbose=True),
        "exhaustive": lambda: index.retriever(model, mode="exhaustive", num_results=settings.num_results,
                                              verbose=True),
    }
    systems = [(names[s], make[s]()) for s in settings.systems]
    if settings.generator:
        from ..doc2query import doc2query_rows
        systems += doc2query_rows(collection, settings.generator, model)
    return systems


def _run_folder(settings: ExperimentSettings, collection: AnyCollection, model: ColBERT) -> Path:
    from ..index.codec import DEFAULT_KIND
    queries = f".first{settings.max_queries}" if settings.max_queries else ""
    # the codec is part of the key: saved runs of indexes with another codec are not reused
    return Path(settings.save_dir) / f"{collection.name}-{settings.split}{queries}" / f"{model_tag(model)}.{DEFAULT_KIND}"


def eval_measures() -> list:
    """AP, nDCG@10, RR and R@1000 as ir_measures objects.

    Returns:
        list: the measures.
    """
    from ir_measures import AP, RR, R, nDCG
    return [AP, nDCG @ 10, RR, R @ 1000]


def run_experiment(settings: ExperimentSettings, *, model: Optional[ColBERT] = None,
                   extra_systems: Sequence[tuple[str, pt.Transformer]] = ()) -> ExperimentResult:
    """Run (or reuse) every system on the collection's queries.

    Writes ``experiment.csv``, ``table.md``, ``perquery.csv`` and ``meta.json`` (and ``timings.json``) to the run
    folder ``save_dir/COLLECTION-SPLIT/MODEL.HASH.CODEC/``.

    Args:
        settings: what to run.
        model: the model; default loaded from ``settings.model``.
        extra_systems: further ``(name, transformer)`` rows.

    Returns:
        ExperimentResult: the table, per-query values, folder and metadata.

    Example:
        .. code-block:: python

            from pyterrier_lateint.experiments.runner import ExperimentSettings, run_experiment

            result = run_experiment(ExperimentSettings(collection="vaswani", max_queries=20))
            print(result.markdown())
    """
    start = time.perf_counter()
    collection = get_dataset(settings.collection)
    topics, qrels = collection.get_topics(settings.split), collection.get_qrels(settings.split)
    if settings.max_queries:
        topics = topics.head(settings.max_queries)
    model = model or ColBERT.from_pretrained(settings.model)
    logger.info("experiment on %s (%s, %d queries) with %s", collection, settings.split, len(topics), model)
    systems = build_systems(collection, model, settings) + list(extra_systems)
    names = [n for n, _ in systems]
    folder = _run_folder(settings, collection, model)
    folder.mkdir(parents=True, exist_ok=True)
    reused = [n for n in names if (folder / f"{n}.res.gz").exists()]
    raw = pt.Experiment([s for _, s in systems], topics, qrels, eval_metrics=eval_measures() + ["mrt"], names=names,
                        baseline=0, correction="holm", save_dir=str(folder), save_mode="reuse", verbose=True)
    mrt = _timings(folder, raw, reused)
    per_query = pd.read_csv(folder / "perquery.csv", dtype={"qid": str})  # written by pt.Experiment
    per_query = per_query[per_query["name"].isin(names)].reset_index(drop=True)
    table = compact_table(raw, mrt)
    meta = {"collection": collection.name, "split": settings.split, "n_queries": int(len(topics)),
            "model": model.name, "settings": dataclasses.asdict(settings), "reused": reused,
            "seconds": round(time.perf_counter() - start, 1)}
    result = ExperimentResult(settings, table, per_query, folder, meta)
    table.to_csv(folder / "experiment.csv", index=False)
    (folder / "table.md").write_text(result.markdown())
    (folder / "meta.json").write_text(json.dumps(meta, indent=1, default=str))
    return result


def _timings(folder: Path, raw: pd.DataFrame, reused: list[str]) -> dict[str, float]:
    """Mean response time (ms) per system: measured now, or, for reused runs, when they were computed."""
    path = folder / "timings.json"
    stored = json.loads(path.read_text()) if path.exists() else {}
    measured = dict(zip(raw["name"], raw["mrt"]))
    out = {n: stored.get(n, measured[n]) if n in reused else measured[n] for n in raw["name"]}
    stored.update({n: out[n] for n in raw["name"] if n not in reused or n not in stored})
    path.write_text(json.dumps(stored, indent=1))
    return out


def compact_table(raw: pd.DataFrame, mrt: Optional[dict[str, float]] = None) -> pd.DataFrame:
    """The experiment table in short: measures, p-values and response times.

    Measures (4 decimals), Holm-corrected p-values against the baseline (3 significant digits, empty for the
    baseline itself and where both systems are equal on every query) and, given ``mrt``, mean response time (ms).

    Args:
        raw: ``pt.Experiment``'s table (with a baseline and ``correction="holm"``).
        mrt: mean response time per system name, in ms; default none (no column).

    Returns:
        pandas.DataFrame: ``name``, each measure and its ``<measure> p``, and ``mrt (ms)``.
    """
    cols: dict[str, Any] = {"name": raw["name"]}
    for m in MEASURES:
        cols[m] = raw[m].round(4)
        cols[f"{m} p"] = raw[f"{m} p-value corrected"].map(lambda p: "" if p != p else f"{p:.3g}")
    if mrt is not None:
        cols["mrt (ms)"] = raw["name"].map(mrt).round(1)
    return pd.DataFrame(cols)
