"""Scale ladder (issue 22): build and search collections of 10k to 1M documents made of REAL token vectors.

The collections come from :mod:`scale_corpus` (the four shared collections encoded with the default model, each
vector perturbed and re-normalised; see its docstring for the generator and ``scale_corpus.py check`` for its
checks). Queries are a seeded sample of the collections' real queries (SciFact's train queries, never its test
queries), encoded once; query encoding is excluded everywhere.

For each size:

- **build** (in a child process, so its peak resident memory is the build's alone): seconds per phase (vector
  spill, k-means sample, k-means, residual quantiser, nearest-centroid assignment, residual quantisation, inverted
  file), peak RSS, bytes per vector, index bytes;
- **search** at default settings, one query per call (median and p95 over every query of every pass) and batched
  (ms per query), **interleaved** with PLAID (colbert-ai, when ``--peers plaid``): ours, PLAID, ours, PLAID, ...
  ``--passes`` passes each over the same queries, each system in one warm process, the ratio per pass reported;
- **recall**: R@10 and R@100 against exhaustive search over the same index (``mode="exhaustive"``, also timed),
  and R@10 against exact fp32 MaxSim over the uncompressed synthetic vectors (for ours and PLAID alike);
- a **sweep** of search settings on the same index (``--sweep``), for choosing the defaults.

    python benchmarks/scale_corpus.py pool                                  # once: encode the pool
    python benchmarks/bench_scale.py --sizes 10000 100000 --peers plaid \\
        --out experiments/results/scale.md --plot experiments/results/scale.png

PLAID's index alone (80 minutes at 100,000 documents) can be built first, and searched later by a ``--reuse`` run
(which then reports the build figures of the run that built it, ``build_reused``):

    python benchmarks/bench_scale.py plaid-build --sizes 100000 --reuse [--resume]
    python benchmarks/bench_scale.py --sizes 100000 --peers plaid --keep --reuse ...

Everything is written under ``--work`` (default ``$LATEINT_CACHE/bench/scale``); ``--json`` keeps every figure.
PLAID needs its virtual environment (``benchmarks/peers/setup.sh``; ``--venvs``).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("LATEINT_NUM_THREADS", "2")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, os.environ.get("LATEINT_SRC", str(HERE.parent)))

from scale_corpus import DEFAULT_NOISE, Pool, SyntheticCorpus, build_pool, cache_root  # noqa: E402
from peers._common import peak_rss_mib, proc_status_kb  # noqa: E402

logger = logging.getLogger("bench_scale")
THREADS = 2
K = 10  # results per query of the timed searches (ours and PLAID, at their defaults for k=10)
DEPTH = 100  # results of the references (exhaustive, exact fp32) and of the R@100 run
PHASES = ("seconds_pass1", "seconds_sample", "seconds_kmeans", "seconds_quantiser", "seconds_assign",
          "seconds_quantise", "seconds_ivf")


# --- building -------------------------------------------------------------------------------------------------------
class RssSampler:
    """Resident memory of this process over time, from ``/proc/self/status``: anonymous (heap, arrays) and
    file-backed (mapped files, libraries) kB, sampled every ``every`` seconds on a thread."""

    def __init__(self, every: float = 0.2):
        import threading
        self.every, self.samples, self._stop = every, [], threading.Event()
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def now() -> tuple[int, int]:
        """(RssAnon, RssFile + RssShmem) in kB; (0, 0) where ``/proc`` does not say."""
        f = proc_status_kb("RssAnon", "RssFile", "RssShmem")
        return f.get("RssAnon", 0), f.get("RssFile", 0) + f.get("RssShmem", 0)

    def elapsed(self) -> float:
        """Seconds since the sampler started (the clock of ``samples`` and of :meth:`peaks`' windows)."""
        return time.perf_counter() - self._t0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((self.elapsed(), *self.now()))
            self._stop.wait(self.every)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def peaks(self, windows: dict[str, tuple[float, float]]) -> dict[str, list[float]]:
        """Peak ``[anon, file]`` MiB of each named ``(start, end)`` window (seconds since the sampler started);
        a window shorter than the sampling interval, with no sample in it, is left out."""
        out = {}
        for name, (a, b) in windows.items():
            inside = [(an, fi) for t, an, fi in self.samples if a <= t <= b]
            if inside:
                out[name] = [max(x[0] for x in inside) / 1024, max(x[1] for x in inside) / 1024]
        return out


def _phase_windows(build: dict, start: float) -> dict[str, tuple[float, float]]:
    """The build's phases as ``(start, end)`` seconds on the sampler's clock, from the timings in ``lateint.json``
    (the assignment and quantisation alternate chunk by chunk: one window, "compress")."""
    names = [("spill", "seconds_pass1"), ("sample", "seconds_sample"), ("k-means", "seconds_kmeans"),
             ("quantiser", "seconds_quantiser"), ("compress", "seconds_compress")]
    out, t = {}, start
    for name, key in names:
        d = float(build.get(key) or 0.0)
        out[name] = (t, t + d)
        t += d
    out["rest"] = (t, float("inf"))
    return out


def build_ours(pool_dir: Path, size: int, noise: float, seed: int, path: Path, indexer_kw: dict) -> dict:
    """Build our index of ``size`` synthetic documents at ``path`` (run in a child process); returns its figures,
    with the peak resident memory of each phase (anonymous and file-backed, MiB) to say where the peak comes from."""
    import torch

    from pyterrier_lateint.index import ColBERTIndex
    torch.set_num_threads(THREADS)
    rss = RssSampler()
    corpus = SyntheticCorpus(Pool.load(pool_dir), size, noise, seed)
    index = ColBERTIndex(path)
    start, t = rss.elapsed(), time.perf_counter()
    # without spill the indexer reads the collection twice: the function gives it a fresh stream each time
    docs = corpus.documents if indexer_kw.get("spill") is False else corpus.documents()
    index.indexer(None, overwrite=True, verbose=False, batch_size=1024, **indexer_kw).index(docs)
    wall = time.perf_counter() - t
    rss.stop()
    meta = index.metadata()
    sizes = index.size_bytes()
    windows = {"before": (0.0, start), **_phase_windows(meta["build"], start)}
    return {"build_s": wall, "peak_rss_mib": peak_rss_mib(), "peak_rss_source": "VmHWM",  # not ru_maxrss
            "rss_phases_mib": rss.peaks(windows),
            "n_docs": meta["n_docs"], "n_vectors": meta["n_vectors"], "n_centroids": meta["n_centroids"],
            "spill": meta["build"].get("spill", True),
            "kmeans_sample": meta["build"]["kmeans_sample"], "kmeans_sample_dtype": "float16",  # as the spill
            "index_bytes": int(sum(sizes.values())),
            "bytes_per_vector": sum(sizes.values()) / meta["n_vectors"],
            "phases": {k: meta["build"].get(k) for k in PHASES}}


def materialise(pool_dir: Path, size: int, noise: float, seed: int, out: Path) -> Path:
    """Write the synthetic collection as the peers' drivers read it: ``docs.npy`` float16 ``(n_vectors, dim)``,
    ``offsets.npy``; ``queries.npy``/``qoffsets.npy`` are written by the caller."""
    corpus = SyntheticCorpus(Pool.load(pool_dir), size, noise, seed)
    lens = corpus.doclens()
    offsets = np.zeros(len(lens) + 1, dtype=np.int64)
    np.cumsum(lens, out=offsets[1:])
    out.mkdir(parents=True, exist_ok=True)
    docs = np.lib.format.open_memmap(out / "docs.npy.tmp", mode="w+", dtype=np.float16,
                                     shape=(int(offsets[-1]), corpus.pool.dim))
    for c, (_, v, offs) in enumerate(corpus.chunks()):
        start = int(offsets[c * 1024])
        docs[start:start + len(v)] = v
    docs.flush()
    del docs
    os.replace(out / "docs.npy.tmp", out / "docs.npy")
    np.save(out / "offsets.npy", offsets)
    return out


def plaid_vectors(a, pool_dir: Path, pool: Pool, qidx: np.ndarray, size: int, work: Path) -> Path:
    """The collection and queries of one rung as PLAID's driver reads them, under ``work/vectors`` (kept from an
    earlier run with ``--reuse``)."""
    vec_dir = work / "vectors"
    if not (a.reuse and (vec_dir / "docs.npy").exists()):
        materialise(pool_dir, size, a.noise, a.seed, vec_dir)
    queries = [pool.queries[i] for i in qidx]
    np.save(vec_dir / "queries.npy", np.concatenate(queries).astype(np.float32))
    np.save(vec_dir / "qoffsets.npy", np.cumsum([0] + [len(q) for q in queries]))
    return vec_dir


# --- references -----------------------------------------------------------------------------------------------------
def exact_fp32(corpus: SyntheticCorpus, queries: list, depth: int = DEPTH) -> np.ndarray:
    """Top-``depth`` document numbers per query by exact MaxSim over the uncompressed (fp32) synthetic vectors:
    int64 ``(n_queries, depth)``; the collection is streamed chunk by chunk (ties: lower document first)."""
    import torch
    Q = torch.from_numpy(np.concatenate(queries).astype(np.float32))
    q_starts = np.cumsum([0] + [len(q) for q in queries])[:-1]
    best_s = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), 0), dtype=np.int64)
    for c, (_, v, offs) in enumerate(corpus.chunks()):
        sims = (torch.from_numpy(v) @ Q.T).numpy()  # (n_vectors of the chunk, T): documents' rows contiguous
        lens = np.diff(offs)
        ne = lens > 0
        per_doc = np.zeros((len(lens), Q.shape[0]), dtype=np.float32)
        per_doc[ne] = np.maximum.reduceat(sims, offs[:-1][ne], axis=0)  # (n_docs, T): best document token
        scores = np.add.reduceat(per_doc, q_starts, axis=1).T  # (n_queries, n_docs)
        scores[:, ~ne] = -np.inf
        ids = np.broadcast_to(np.arange(c * 1024, c * 1024 + len(lens)), scores.shape)
        best_s, best_i = np.concatenate([best_s, scores], 1), np.concatenate([best_i, ids], 1)
        order = _order(best_s, best_i)[:, :depth]
        best_s, best_i = np.take_along_axis(best_s, order, 1), np.take_along_axis(best_i, order, 1)
    return best_i


def _order(scores: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Per row, positions by descending score, ties by lower id."""
    return np.stack([np.lexsort((i, -s)) for s, i in zip(scores, ids)])


def recall(system: list, reference: list, k: int) -> float:
    """Mean over queries of ``|top-k(system) & top-k(reference)| / |top-k(reference)|``."""
    vals = [len(set(a[:k]) & set(b[:k])) / max(1, len(b[:k])) for a, b in zip(system, reference) if len(b)]
    return float(np.mean(vals)) if vals else float("nan")


# --- searching ------------------------------------------------------------------------------------------------------
class Ours:
    """Our index searched in this process, through the retriever (what a user calls)."""

    def __init__(self, path: Path, queries: list, k: int = K, warm_up: bool = True, **params):
        import torch

        from pyterrier_lateint.index import ColBERTIndex
        torch.set_num_threads(THREADS)
        self.index = ColBERTIndex(path)
        self.frame = pd.DataFrame({"qid": [str(i) for i in range(len(queries))], "query_embs": queries})
        self.params = params
        self.retriever = self.index.retriever(num_results=k, **params)
        self.rows = [self.frame.iloc[i:i + 1] for i in range(len(self.frame))]
        for r in self.rows if warm_up else ():  # warm-up of the timed passes: numba compilation, page cache
            self.retriever.transform(r)

    def ranked(self, res: pd.DataFrame) -> list:
        by_q = {q: g.sort_values("rank").docno.str[1:].astype(np.int64).to_numpy() for q, g in res.groupby("qid")}
        return [by_q.get(str(i), np.zeros(0, dtype=np.int64)) for i in range(len(self.rows))]

    def one_pass(self) -> tuple[list, list]:
        """One query per call over every query: (ms per query, ranked document numbers per query)."""
        ms, out = [], []
        for r in self.rows:
            t = time.perf_counter()
            res = self.retriever.transform(r)
            ms.append(1000 * (time.perf_counter() - t))
            out.append(res)
        return ms, self.ranked(pd.concat(out, ignore_index=True))

    def batched(self) -> tuple[float, list]:
        t = time.perf_counter()
        res = self.retriever.transform(self.frame)
        return 1000 * (time.perf_counter() - t) / len(self.rows), self.ranked(res)

    def exhaustive(self) -> tuple[float, list]:
        retr = self.index.retriever(num_results=DEPTH, mode="exhaustive")
        t = time.perf_counter()
        res = retr.transform(self.frame)
        return 1000 * (time.perf_counter() - t) / len(self.rows), self.ranked(res)


class Plaid:
    """colbert-ai's PLAID in its own virtual environment, kept warm: ``plaid_driver.py --serve`` builds the index,
    then answers one pass over the queries per request."""

    def __init__(self, venvs: Path, vectors: Path, work: Path, nbits: int = 2, reuse: bool = False):
        py = venvs / "plaid" / "bin" / "python"
        if not py.exists():
            raise SystemExit(f"no PLAID environment at {py.parent.parent}: run benchmarks/peers/setup.sh or pass "
                             f"--venvs")
        env = dict(os.environ, OMP_NUM_THREADS=str(THREADS), BENCH_THREADS=str(THREADS))
        self.log = open(work / "plaid.log", "w")
        self.proc = subprocess.Popen([str(py), "-u", str(HERE / "peers" / "plaid_driver.py"), str(vectors),
                                      str(work / "plaid"), "--nbits", str(nbits), "--k", str(K), "--serve"]
                                     + (["--reuse"] if reuse else []),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True,
                                     env=env)
        self.built = self._read()

    def _read(self) -> dict:
        for line in self.proc.stdout:
            if line.startswith("@@RESULT@@"):
                return json.loads(line[len("@@RESULT@@"):])
        raise RuntimeError(f"the PLAID driver ended without a result; see {self.log.name}")

    def one_pass(self) -> tuple[list, list]:
        self.proc.stdin.write("pass\n")
        self.proc.stdin.flush()
        r = self._read()
        return r["per_query_ms"], [np.asarray(t, dtype=np.int64) for t in r["topk"]]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=60)
        self.log.close()


def pcts(ms: list) -> tuple[float, float]:
    return float(np.median(ms)), float(np.percentile(ms, 95))


def growth_exponent(xs: list, ys: list) -> float:
    """Least-squares slope of log(y) on log(x): y ~ x**slope."""
    if len(xs) < 2:
        return float("nan")
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


# --- one size -------------------------------------------------------------------------------------------------------
def run_size(a, pool_dir: Path, pool: Pool, qidx: np.ndarray, size: int) -> dict:
    work = a.work / f"n{size}"
    work.mkdir(parents=True, exist_ok=True)
    queries = [pool.queries[i] for i in qidx]
    from pyterrier_lateint.index.search import SearchParams
    d = SearchParams().for_k(K, size)  # the defaults at this size
    row: dict = {"docs": size, "settings": f"{d.nprobe}:{d.ncandidates}:{d.nexact}", "noise": a.noise,
                 "passes": a.passes, "command": " ".join(sys.argv[1:])}
    cmd = [sys.executable, __file__, "_build", "--size", str(size), "--noise", str(a.noise), "--seed", str(a.seed),
           "--index", str(work / "ours.lateint"), "--pool", str(pool_dir)] + (["--no-spill"] if a.no_spill else [])
    saved = work / "ours_build.json"  # the build's figures, kept beside the index for --reuse
    from pyterrier_lateint.index import ColBERTIndex
    if a.reuse and saved.exists() and ColBERTIndex(work / "ours.lateint").built():
        row["ours_build"] = json.loads(saved.read_text())
        logger.info("reusing the index built earlier at %s (--reuse)", work / "ours.lateint")
    else:
        logger.info("building ours: %s", " ".join(cmd))
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        row["ours_build"] = json.loads(out.strip().splitlines()[-1])
        saved.write_text(json.dumps(row["ours_build"]))
    logger.info("ours built: %s", row["ours_build"])
    exact = None
    if size <= a.exact_max:
        corpus = SyntheticCorpus(pool, size, a.noise, a.seed)
        t = time.perf_counter()
        exact = exact_fp32(corpus, queries)
        row["exact_fp32_s"] = time.perf_counter() - t
    ours = Ours(work / "ours.lateint", queries)
    plaid = None
    if "plaid" in a.peers and size <= a.plaid_max:
        vec_dir = plaid_vectors(a, pool_dir, pool, qidx, size, work)
        t = time.perf_counter()
        plaid = Plaid(a.venvs, vec_dir, work, a.nbits, a.reuse)
        row["plaid_build"] = {k: plaid.built[k] for k in ("build_s", "index_bytes", "n_vectors", "settings",
                                                          "system", "peak_rss_mib", "build_reused")
                              if k in plaid.built}
        row["plaid_build"]["bytes_per_vector"] = plaid.built["index_bytes"] / plaid.built["n_vectors"]
        logger.info("PLAID built in %.0fs (wall incl. start %.0fs)", plaid.built["build_s"], time.perf_counter() - t)
    passes = {"ours": [], "plaid": []}
    try:
        for p in range(a.passes):  # interleaved: ours, PLAID, ours, PLAID, ...
            passes["ours"].append(ours.one_pass())
            if plaid is not None:
                passes["plaid"].append(plaid.one_pass())
            logger.info("pass %d: ours median %.1f ms%s", p, pcts(passes["ours"][-1][0])[0],
                        f", PLAID median {pcts(passes['plaid'][-1][0])[0]:.1f} ms" if plaid else "")
    finally:
        if plaid is not None:
            plaid.close()
    row["ours_ms_per_pass"] = [pcts(ms) for ms, _ in passes["ours"]]
    row["ours_ms"] = pcts([x for ms, _ in passes["ours"] for x in ms])
    ours_top = passes["ours"][-1][1]
    row["ours_batched_ms"], _ = ours.batched()
    row["exhaustive_ms"], exh = cached_exhaustive(ours, work, qidx, a.reuse)
    _, top100 = Ours(work / "ours.lateint", queries, k=DEPTH, warm_up=False).batched()  # recall only, untimed
    row["ours_R10_exh"], row["ours_R100_exh"] = recall(ours_top, exh, 10), recall(top100, exh, 100)
    row["ours_top10"] = [[int(d) for d in t[:10]] for t in ours_top]  # kept: recall against a reference computed later
    if exact is not None:
        row["ours_R10_fp32"] = recall(ours_top, exact, 10)
        row["exh_R10_fp32"] = recall(exh, exact, 10)
    if plaid is not None:
        row["plaid_ms_per_pass"] = [pcts(ms) for ms, _ in passes["plaid"]]
        row["plaid_ms"] = pcts([x for ms, _ in passes["plaid"] for x in ms])
        ratios = [(pcts(pm)[0] / pcts(om)[0], pcts(pm)[1] / pcts(om)[1])
                  for (om, _), (pm, _) in zip(passes["ours"], passes["plaid"])]
        row["speedup_per_pass"] = ratios  # PLAID / ours, (median, p95), one pair per pass
        if exact is not None:
            row["plaid_R10_fp32"] = recall(passes["plaid"][-1][1], exact, 10)
        row["plaid_R10_exh"] = recall(passes["plaid"][-1][1], exh, 10)
        row["plaid_top10"] = [[int(d) for d in t[:10]] for t in passes["plaid"][-1][1]]
    if a.sweep:
        row["sweep"] = sweep(work / "ours.lateint", queries, exh, exact, a.sweep)
    logger.info("size %d: %s", size, {k: v for k, v in row.items() if k != "sweep"})
    return row


def cached_exhaustive(ours: Ours, work: Path, qidx: np.ndarray, reuse: bool) -> tuple[float, list]:
    """Exhaustive search's time (ms per query) and top ``DEPTH`` per query, kept in ``work/exhaustive.json``: with
    ``--reuse``, a reference computed earlier on the same index (same ``lateint.json``) and queries is read back
    (about 22 minutes at 1M documents), so that a sweep of settings on a reused index costs only the sweep."""
    cache = work / "exhaustive.json"
    key = {"index": hashlib.sha256((Path(ours.index.path) / "lateint.json").read_bytes()).hexdigest(),
           "queries": [int(i) for i in qidx], "depth": DEPTH}
    if reuse and cache.exists():
        saved = json.loads(cache.read_text())
        if saved["key"] == key:
            logger.info("exhaustive reference read from %s (--reuse)", cache)
            return saved["ms"], [np.asarray(t, dtype=np.int64) for t in saved["top"]]
    ms, top = ours.exhaustive()
    cache.write_text(json.dumps({"key": key, "ms": ms, "top": [[int(d) for d in t] for t in top]}))
    return ms, top


def sweep(path: Path, queries: list, exh: list, exact: list, settings: list) -> list:
    """R@10 (against exhaustive search and exact fp32) and one-query-per-call latency of each search setting
    ``NPROBE:NCANDIDATES:NEXACT``, two passes each, on the same index."""
    out = []
    for s in settings:
        nprobe, ncand, nexact = (int(x) for x in s.split(":"))
        o = Ours(path, queries, nprobe=nprobe, ncandidates=ncand, nexact=nexact)
        ms, top = o.one_pass()
        ms2, _ = o.one_pass()
        out.append({"setting": s, "R10_exh": recall(top, exh, 10), "ms": pcts(ms + ms2),
                    "R10_fp32": recall(top, exact, 10) if exact is not None else None})
        logger.info("sweep %s: %s", s, out[-1])
    return out


# --- report ---------------------------------------------------------------------------------------------------------
def _f3(x: float | None) -> str:
    """Three decimals, or "n/a" for a figure not measured at that size (e.g. beyond ``--exact-max``)."""
    return "n/a" if x is None else f"{x:.3f}"


def table(rows: list, a) -> str:
    commands = [r["command"] for r in rows if r.get("command")] + [c for r in rows for c in r.get("sweep_commands", [])]
    runs = "; ".join(f"`python benchmarks/bench_scale.py {c}`" for c in commands)
    lines = [f"Synthetic collections of real token vectors (`benchmarks/scale_corpus.py`: the four shared "
             f"collections encoded with the default model, noise {rows[0].get('noise', a.noise)}), "
             f"{len(rows[0]['queries'])} real queries, k={K} (R@100: a k={DEPTH} run), 2 threads; search one query "
             f"per call over {rows[0].get('passes', a.passes)} passes, interleaved with PLAID's where it ran (ours, "
             f"PLAID, ours, ...: median and p95 over every query of every pass); our search settings "
             f"(nprobe:ncandidates:nexact) " + ", ".join(f"{r.get('settings', '?')} at {r['docs']:,}" for r in rows)
             + f". Measured by {runs}; printed by `python benchmarks/bench_scale.py {' '.join(a.argv)}`.", ""]
    head = ["docs", "vectors", "centroids", "system", "build s", "peak RSS GiB", "B/vector", "search ms p50",
            "p95", "batched ms/q", "R@10 vs exhaustive", "R@100 vs exhaustive", "R@10 vs exact fp32",
            "exhaustive ms/q"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        b = r["ours_build"]
        lines.append("| " + " | ".join([
            f"{r['docs']:,}", f"{b['n_vectors']:,}", f"{b['n_centroids']:,}",
            "ours" if b.get("spill", True) else "ours (no spill)", f"{b['build_s']:.0f}",
            f"{b['peak_rss_mib'] / 1024:.2f}", f"{b['bytes_per_vector']:.1f}", f"{r['ours_ms'][0]:.1f}",
            f"{r['ours_ms'][1]:.1f}", f"{r['ours_batched_ms']:.1f}", f"{r['ours_R10_exh']:.3f}",
            f"{r['ours_R100_exh']:.3f}", _f3(r.get('ours_R10_fp32')), f"{r['exhaustive_ms']:.0f}"]) + " |")
        if "plaid_build" in r:
            pb = r["plaid_build"]
            lines.append("| " + " | ".join([
                "", "", "", "PLAID", f"{pb['build_s']:.0f}",
                f"{pb['peak_rss_mib'] / 1024:.2f}" if "peak_rss_mib" in pb else "", f"{pb['bytes_per_vector']:.1f}",
                f"{r['plaid_ms'][0]:.1f}", f"{r['plaid_ms'][1]:.1f}", "", f"{r['plaid_R10_exh']:.3f}", "",
                _f3(r.get('plaid_R10_fp32')), ""]) + " |")
    lines.append("")
    phases = ["spill", "sample", "k-means", "quantiser", "assign", "quantise", "IVF"]
    lines += ["Build phases (ours, seconds): " + "; ".join(
        f"{r['docs']:,} docs: " + ", ".join(f"{n} {r['ours_build']['phases'][p]:.1f}" for n, p in zip(phases, PHASES)
                                            if r["ours_build"]["phases"].get(p) is not None) for r in rows) + ".", ""]
    old_rss = [r for r in rows if r["ours_build"].get("peak_rss_source") != "VmHWM"]
    if old_rss:
        lines += ["Peak RSS of the " + ", ".join(f"{r['docs']:,}" for r in old_rss) + "-document build(s): "
                  "getrusage's ru_maxrss of the build process, which also holds the benchmark process's resident "
                  "memory at the moment the build was started (a child started by fork + exec keeps its parent's "
                  "peak there); later runs report the build's own peak (VmHWM).", ""]
    mem = [r for r in rows if r["ours_build"].get("rss_phases_mib")]
    if mem:
        lines += ["Peak resident memory of each build phase (ours, GiB: anonymous + file-backed; sampled every 0.2 s): "
                  + "; ".join(f"{r['docs']:,} docs: " + ", ".join(
                      f"{n} {v[0] / 1024:.2f} + {v[1] / 1024:.2f}"
                      for n, v in r["ours_build"]["rss_phases_mib"].items()) for r in mem) + ".", ""]
    speed = [r for r in rows if "speedup_per_pass" in r]
    for r in speed:
        med = [x[0] for x in r["speedup_per_pass"]]
        p95 = [x[1] for x in r["speedup_per_pass"]]
        lines.append(f"PLAID / ours at {r['docs']:,} docs, per pass (median; p95): "
                     + ", ".join(f"{m:.2f}x; {q:.2f}x" for m, q in zip(med, p95))
                     + f" (median of passes {np.median(med):.2f}x; {np.median(p95):.2f}x). Build: "
                     f"{r['plaid_build']['build_s'] / r['ours_build']['build_s']:.2f}x.")
    if speed:
        lines.append("")
    if len(rows) > 1:
        xs = [r["docs"] for r in rows]
        lines.append(f"Growth exponents (y ~ docs^e, least squares over the sizes): ours search median "
                     f"{growth_exponent(xs, [r['ours_ms'][0] for r in rows]):.2f}, p95 "
                     f"{growth_exponent(xs, [r['ours_ms'][1] for r in rows]):.2f}, build "
                     f"{growth_exponent(xs, [r['ours_build']['build_s'] for r in rows]):.2f}, exhaustive "
                     f"{growth_exponent(xs, [r['exhaustive_ms'] for r in rows]):.2f}"
                     + (f"; PLAID search median {growth_exponent([r['docs'] for r in speed], [r['plaid_ms'][0] for r in speed]):.2f}, build "
                        f"{growth_exponent([r['docs'] for r in speed], [r['plaid_build']['build_s'] for r in speed]):.2f}"
                        if len(speed) > 1 else "") + ".")
        lines.append("")
    sweeps = [r for r in rows if r.get("sweep")]
    if sweeps:
        lines += ["Search settings on the same indexes (NPROBE:NCANDIDATES:NEXACT; R@10 vs exhaustive / vs exact "
                  "fp32; median ms):", ""]
        settings = list(dict.fromkeys(s["setting"] for r in sweeps for s in r["sweep"]))
        lines += ["| setting | " + " | ".join(f"{r['docs']:,} docs" for r in sweeps) + " |",
                  "|---|" + "---|" * len(sweeps)]

        def cell(r: dict, setting: str) -> str:
            m = next((m for m in r["sweep"] if m["setting"] == setting), None)
            return "-" if m is None else f"{m['R10_exh']:.3f} / {_f3(m.get('R10_fp32'))} / {m['ms'][0]:.1f}"
        for s in settings:
            lines.append(f"| {s} | " + " | ".join(cell(r, s) for r in sweeps) + " |")
        lines += ["", "(-: not measured at that size. A column's latencies come from one process, except where "
                  "--sweep-inputs added settings from other runs: " + (", ".join(f"{r['docs']:,} documents" for r in
                                                                                sweeps if r.get("sweep_commands"))
                                                                      or "none") + "; compare those with care.)", ""]
    return "\n".join(lines)


def summary(rows: list, a) -> str:
    """The README's short table: per size, ours and PLAID (where it ran), with the per-pass speed ratios' median and
    the growth exponents; full figures in :func:`table`."""
    lines = [f"Printed by `python benchmarks/bench_scale.py {' '.join(a.argv)}` (the full table, commands and build "
             f"phases: docs/benchmarks.md, Scale).", "",
             "| documents | vectors | system | build s | peak RSS GiB | B/vector | search ms p50 / p95 | "
             "PLAID / ours p50 ; p95 | R@10 vs exhaustive | R@10 vs exact fp32 |", "|" + "---|" * 10]
    for r in rows:
        b = r["ours_build"]
        ratio = ""
        if "speedup_per_pass" in r:
            med, p95 = zip(*r["speedup_per_pass"])
            ratio = f"{np.median(med):.2f}x ; {np.median(p95):.2f}x"
        lines.append(f"| {r['docs']:,} | {b['n_vectors']:,} | {'ours' if b.get('spill', True) else 'ours (no spill)'}"
                     f" | {b['build_s']:.0f} | {b['peak_rss_mib'] / 1024:.2f} | {b['bytes_per_vector']:.1f} | "
                     f"{r['ours_ms'][0]:.1f} / {r['ours_ms'][1]:.1f} | {ratio} | {r['ours_R10_exh']:.3f} | "
                     f"{_f3(r.get('ours_R10_fp32'))} |")
        if "plaid_build" in r:
            pb = r["plaid_build"]
            rss = f"{pb['peak_rss_mib'] / 1024:.2f}" if "peak_rss_mib" in pb else ""
            lines.append(f"|  |  | PLAID | {pb['build_s']:.0f} | {rss} | {pb['bytes_per_vector']:.1f} | "
                         f"{r['plaid_ms'][0]:.1f} / {r['plaid_ms'][1]:.1f} |  | {r['plaid_R10_exh']:.3f} | "
                         f"{_f3(r.get('plaid_R10_fp32'))} |")
    if len(rows) > 1:
        xs = [r["docs"] for r in rows]
        sp = [r for r in rows if "plaid_ms" in r]
        px = [r["docs"] for r in sp]
        lines += ["", "Growth exponents (y ~ documents^e): ours search median "
                  f"{growth_exponent(xs, [r['ours_ms'][0] for r in rows]):.2f}, build "
                  f"{growth_exponent(xs, [r['ours_build']['build_s'] for r in rows]):.2f}"
                  + (f"; PLAID search median {growth_exponent(px, [r['plaid_ms'][0] for r in sp]):.2f}, build "
                     f"{growth_exponent(px, [r['plaid_build']['build_s'] for r in sp]):.2f}" if len(sp) > 1 else "")
                  + "."]
    return "\n".join(lines) + "\n"


def _label(name: str, xs: list, ys: list) -> str:
    return f"{name} (e={growth_exponent(xs, ys):.2f})" if len(xs) > 1 else f"{name} (one size)"


def plot(rows: list, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    xs = [r["docs"] for r in rows]
    sp = [r for r in rows if "plaid_ms" in r]
    for ax, key, title in ((axes[0], "ms", "search, one query per call (median ms)"), (axes[1], "build", "build (s)")):
        ys = [r["ours_ms"][0] for r in rows] if key == "ms" else [r["ours_build"]["build_s"] for r in rows]
        ax.loglog(xs, ys, "o-", label=_label("ours", xs, ys))
        every = list(ys)
        if sp:
            px = [r["docs"] for r in sp]
            py = [r["plaid_ms"][0] for r in sp] if key == "ms" else [r["plaid_build"]["build_s"] for r in sp]
            ax.loglog(px, py, "s--", label=_label("PLAID", px, py))
            every += py
        ax.set_ylim(min(every) / 3, max(every) * 3)  # a decade or more, so that slopes read true
        ax.set_xlabel("documents")
        ax.set_title(title)
        ax.legend()
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def report(rows: list, a) -> None:
    """Print the table; write it to ``--out`` and the plot to ``--plot`` when asked."""
    text = table(rows, a)
    print(text)
    if a.out:
        a.out.write_text(text)
    if a.summary:
        a.summary.write_text(summary(rows, a))
    if a.plot:
        plot(rows, a.plot)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("cmd", nargs="?", default="run", choices=["run", "report", "plaid-build", "_build"],
                   help="run: measure the sizes; report: print the table (and plot) of earlier runs' --json files "
                        "(--inputs), e.g. sizes measured by separate commands")
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    p.add_argument("--queries", type=int, default=200, help="real queries sampled (seeded)")
    p.add_argument("--noise", type=float, default=DEFAULT_NOISE)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--nbits", type=int, default=2)
    p.add_argument("--passes", type=int, default=5)
    p.add_argument("--peers", nargs="*", default=[], choices=["plaid"])
    p.add_argument("--plaid-max", type=int, default=100_000, help="largest size PLAID is run at")
    p.add_argument("--exact-max", type=int, default=100_000,
                   help="largest size at which the exact fp32 MaxSim reference runs (725 s at 100,000 documents)")
    p.add_argument("--venvs", type=Path, default=Path(os.environ.get("PEER_VENVS") or
                                                      Path.home() / ".cache" / "pyterrier_lateint" / "peer-venvs"))
    p.add_argument("--sweep", nargs="*", default=[], help="search settings NPROBE:NCANDIDATES:NEXACT to sweep")
    p.add_argument("--work", type=Path, default=None)
    p.add_argument("--out", type=Path, help="markdown table")
    p.add_argument("--summary", type=Path, help="the README's short markdown table")
    p.add_argument("--plot", type=Path, help="log-log plot (PNG)")
    p.add_argument("--json", type=Path, help="every figure")
    p.add_argument("--inputs", type=Path, nargs="*", default=[], help="report: the --json files of earlier runs")
    p.add_argument("--sweep-inputs", type=Path, nargs="*", default=[],
                   help="report: --json files of further sweeps on the same indexes (their settings are added to the "
                        "sweep table of the rung of the same size)")
    p.add_argument("--keep", action="store_true", help="keep the indexes and vectors under --work")
    p.add_argument("--no-spill", action="store_true",
                   help="build ours with indexer(spill=False): the collection generated twice instead of its float16 "
                        "vectors spilled to disk (n_vectors * 768 bytes: 67 GB at 1M documents)")
    p.add_argument("--reuse", action="store_true",
                   help="search an index kept by an earlier --keep run of the same size (its build figures are read "
                        "from ours_build.json beside it) instead of building it again")
    p.add_argument("--resume", action="store_true",
                   help="plaid-build: continue PLAID's interrupted build (its plan, k-means codec and chunks kept)")
    # _build (child process)
    p.add_argument("--size", type=int)
    p.add_argument("--index", type=Path)
    p.add_argument("--pool", type=Path)
    a = p.parse_args()
    a.argv = sys.argv[1:]
    if a.cmd == "_build":
        kw = {"nbits": a.nbits, **({"spill": False} if a.no_spill else {})}
        print(json.dumps(build_ours(a.pool, a.size, a.noise, a.seed, a.index, kw)))
        return
    if a.cmd == "report":
        rows = sorted((r for f in a.inputs for r in json.loads(f.read_text())), key=lambda r: r["docs"])
        for f in a.sweep_inputs:  # more sweeps on the same indexes, run by other commands: each setting's first
            for extra in json.loads(f.read_text()):
                for r in rows:
                    if r["docs"] == extra["docs"]:
                        have = {m["setting"] for m in r.get("sweep", [])}
                        r["sweep"] = r.get("sweep", []) + [m for m in extra.get("sweep", [])
                                                           if m["setting"] not in have]
                        r.setdefault("sweep_commands", []).append(extra["command"])
        a.sizes = [r["docs"] for r in rows]
        report(rows, a)
        return
    a.work = a.work or cache_root() / "runs"
    pool_dir = build_pool()
    pool = Pool.load(pool_dir)
    qidx = np.sort(np.random.default_rng(a.seed).choice(len(pool.queries), min(a.queries, len(pool.queries)),
                                                        replace=False))
    if a.cmd == "plaid-build":  # PLAID's index alone (80 min at 100,000 documents), searched later by run --reuse
        for size in a.sizes:
            work = a.work / f"n{size}"
            vec_dir = plaid_vectors(a, pool_dir, pool, qidx, size, work)
            py = a.venvs / "plaid" / "bin" / "python"
            env = dict(os.environ, OMP_NUM_THREADS=str(THREADS), BENCH_THREADS=str(THREADS))
            with open(work / "plaid_build.log", "w") as log:
                subprocess.run([str(py), "-u", str(HERE / "peers" / "plaid_driver.py"), str(vec_dir),
                                str(work / "plaid"), "--nbits", str(a.nbits), "--k", str(K), "--build-only"]
                               + (["--reuse"] if a.reuse else []) + (["--resume"] if a.resume else []),
                               check=True, stderr=log, env=env)
        return
    rows = []
    for size in a.sizes:
        row = run_size(a, pool_dir, pool, qidx, size)
        row["queries"] = [pool.qids[i] for i in qidx]
        rows.append(row)
        if a.json:
            a.json.write_text(json.dumps(rows, indent=1))
        if not a.keep:
            shutil.rmtree(a.work / f"n{size}", ignore_errors=True)
    report(rows, a)


if __name__ == "__main__":
    main()
