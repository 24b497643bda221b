"""Peer comparison (issues 3, 22, 24): our ColBERTIndex against fast-plaid, Stanford PLAID (colbert-ai) and
pyterrier_colbert's end-to-end dense retrieval, on Vaswani.

Every system indexes and searches EXACTLY the same vectors: Vaswani encoded once with our default model
(``ColBERT.from_pretrained(precision="fp32")``, cached as fp32 .npy under
``~/.cache/pyterrier_lateint/bench/peers/``). Query encoding is excluded everywhere (precomputed query vectors).
Each peer runs in its own virtual environment through a driver script (``benchmarks/peers/*_driver.py``) kept warm
(``--serve``); ours runs in this process. The systems are built one after the other, then, after one untimed round,
the timed passes are **interleaved** (ours, fast-plaid, PLAID, pyterrier_colbert, ours, ...; ``--passes`` passes
each over the same queries, one query per call), so that load on a shared machine hits every system alike.
Reported per system: the median and p95 over every query of every pass, and per pass the ratio to ours (of the
pass's median and of its p95), summarised by the median and the spread (min-max) of those per-pass ratios. After
the passes, each system's batched timing (where it has a batched API) and the variant settings of the drivers (same
index, timed without interleaving) are measured. Recall against exact fp32 MaxSim and nDCG@10 use the last pass's
results. Prints a markdown table. Threads: 2 for everyone (``OMP_NUM_THREADS=2``, ``torch.set_num_threads(2)``, our
numba pool = 2; ``BENCH_THREADS`` sets another number for every system).

pyterrier_colbert's text scorer (``ColBERTFactory.text_scorer()``, re-ranking BM25's results from text) is compared
in ``benchmarks/bench_reference.py``; here it is its end-to-end dense retrieval (``ColBERTFactory.end_to_end()``:
ColBERT v0.2's faiss IVFPQ ANN search -> exact MaxSim re-ranking of the candidates from the stored vectors), built
by its own ``ColBERTIndexer``; see ``benchmarks/peers/pyterrier_colbert_driver.py`` for what is patched.

    flock /tmp/heavy.lock python benchmarks/bench_peers.py                # all systems, all of Vaswani
    python benchmarks/bench_peers.py --systems ours pyterrier_colbert      # a subset
    python benchmarks/bench_peers.py --max-docs 500 --max-queries 5 --passes 2   # a smoke run (own cache folder)
    python benchmarks/bench_peers.py --prepare-only                        # encode + exact ranking only

Peer installation: ``bash benchmarks/peers/setup.sh [MIRRORS]`` creates every environment (``PEERS="fastplaid plaid
pyterrier_colbert"`` for only these). Venvs live outside the repo, in ``$PEER_VENVS``, default
``~/.cache/pyterrier_lateint/peer-venvs``, or the folder given by ``--venvs``. What it runs:

    # fast-plaid (the engine of PyLate's PLAID index); the version suffix names the torch it was built for
    python3 -m venv $PEER_VENVS/fastplaid
    $PEER_VENVS/fastplaid/bin/pip install --upgrade pip
    $PEER_VENVS/fastplaid/bin/pip install fast-plaid==1.7.0.2110 torch==2.11.0 numpy
    #   (torch 2.11.0 from PyPI is a CUDA build, ~3 GB with its nvidia-* wheels; it runs on CPU)

    # Stanford ColBERT / PLAID (colbert-ai); JIT-compiles its C++ CPU kernels with ninja + gcc at first search
    python3 -m venv $PEER_VENVS/plaid
    $PEER_VENVS/plaid/bin/pip install --upgrade pip
    $PEER_VENVS/plaid/bin/pip install torch==2.13.0+cpu colbert-ai==0.2.22 faiss-cpu "transformers<4.45" \\
        numpy ninja setuptools            # (a CPU torch wheel)

    # pyterrier_colbert on ColBERT v0.2 (neither is on PyPI: from GitHub, or from local mirrors of
    # terrierteam/pyterrier_colbert and cmacdonald/ColBERT), faiss-cpu instead of faiss-gpu, no Java needed
    python3 -m venv $PEER_VENVS/pyterrier_colbert
    $PEER_VENVS/pyterrier_colbert/bin/pip install --upgrade pip
    $PEER_VENVS/pyterrier_colbert/bin/pip install torch==2.13.0 transformers==4.44.2 python-terrier==0.13.2 \\
        ujson numpy pandas scikit-learn more-itertools faiss-cpu matplotlib
    $PEER_VENVS/pyterrier_colbert/bin/pip install --no-deps "git+https://github.com/cmacdonald/ColBERT.git@v0.2" \\
        "git+https://github.com/terrierteam/pyterrier_colbert.git@ba5c86c0bc8da450dee361140541f35b5349a492"
"""
from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

THREADS = int(os.environ.get("BENCH_THREADS", "2"))
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))
os.environ.setdefault("MKL_NUM_THREADS", str(THREADS))
os.environ.setdefault("LATEINT_NUM_THREADS", str(THREADS))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

# $LATEINT_SRC: import pyterrier_lateint from another checkout (e.g. a `git archive HEAD` snapshot while the working
# tree is being edited); default: this repository.
sys.path.insert(0, os.environ.get("LATEINT_SRC", str(Path(__file__).resolve().parents[1])))

CACHE = Path(os.environ.get("LATEINT_BENCH_CACHE", Path.home() / ".cache" / "pyterrier_lateint" / "bench")) / "peers"
PEERS = Path(__file__).resolve().parent / "peers"
DEFAULT_VENVS = Path(os.environ.get("PEER_VENVS") or Path.home() / ".cache" / "pyterrier_lateint" / "peer-venvs")
K = 10
SYSTEMS = ("ours", "fast-plaid", "plaid", "pyterrier_colbert")  # also the order of the interleaved passes
PEER_VENV = {"fast-plaid": "fastplaid", "plaid": "plaid", "pyterrier_colbert": "pyterrier_colbert"}
PEER_DRIVER = {"fast-plaid": "fastplaid_driver.py", "plaid": "plaid_driver.py",
               "pyterrier_colbert": "pyterrier_colbert_driver.py"}
logger = logging.getLogger("bench_peers")


# --- shared vectors -------------------------------------------------------------------------------------------------
def prepare(collection: str = "vaswani", max_docs: int | None = None, max_queries: int | None = None) -> Path:
    """Encode the collection once (fp32) and cache vectors, offsets, query vectors, ids and the exact ranking.

    ``max_docs`` / ``max_queries``: only the collection's first documents / topics (a smoke run), cached in their
    own folder. Files in the returned folder: ``docs.npy`` float32 (T, dim), ``offsets.npy`` int64 (n_docs+1,),
    ``queries.npy`` float32 (Tq, dim), ``qoffsets.npy`` int64 (n_queries+1,), ``meta.json`` (docnos, qids,
    texts of the queries, model signature, timings), ``exact.npz`` (top-1000 doc indices/scores per query of
    brute-force MaxSim over the fp32 vectors)."""
    import torch

    from pyterrier_lateint import ColBERT
    from pyterrier_lateint.data import load_collection
    torch.set_num_threads(THREADS)
    model = ColBERT.from_pretrained(precision="fp32")
    sig = hashlib.sha1(json.dumps(model.signature(), sort_keys=True).encode()).hexdigest()[:10]
    subset = (f"-first{max_docs}docs" if max_docs else "") + (f"-first{max_queries}q" if max_queries else "")
    out = CACHE / f"{collection}-{sig}-fp32{subset}"
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "meta.json").exists():
        coll = load_collection(collection)
        docs = list(itertools.islice(coll.get_corpus_iter(), max_docs))
        topics = coll.get_topics()
        topics = topics.head(max_queries) if max_queries else topics
        logger.info("encoding %d documents and %d queries of %s into %s", len(docs), len(topics), collection, out)
        t = time.perf_counter()
        vecs = model.encode_docs([d["text"] for d in docs], batch_size=64, show_progress=True)
        enc_docs_s = time.perf_counter() - t
        offs = np.zeros(len(vecs) + 1, dtype=np.int64)
        np.cumsum([len(v) for v in vecs], out=offs[1:])
        np.save(out / "docs.npy", np.concatenate(vecs).astype(np.float32))
        np.save(out / "offsets.npy", offs)
        t = time.perf_counter()
        qv = model.encode_queries(topics["query"].tolist())
        enc_q_s = time.perf_counter() - t
        qoffs = np.zeros(len(qv) + 1, dtype=np.int64)
        np.cumsum([len(q) for q in qv], out=qoffs[1:])
        np.save(out / "queries.npy", np.concatenate(qv).astype(np.float32))
        np.save(out / "qoffsets.npy", qoffs)
        meta = {"collection": collection, "signature": model.signature(), "precision": "fp32",
                "max_docs": max_docs, "max_queries": max_queries,
                "docnos": [d["docno"] for d in docs], "qids": topics["qid"].tolist(),
                "queries": topics["query"].tolist(), "encode_docs_s": enc_docs_s, "encode_queries_s": enc_q_s}
        (out / "meta.json").write_text(json.dumps(meta))
    if not (out / "exact.npz").exists():
        from pyterrier_lateint.maxsim import maxsim_packed
        vectors, offsets, qvecs = load_vectors(out)
        idx, sc = [], []
        for q in qvecs:
            s = maxsim_packed(q, vectors, offsets)
            top = np.lexsort((np.arange(len(s)), -s))[:1000]
            idx.append(top)
            sc.append(s[top])
        np.savez(out / "exact.npz", idx=np.stack(idx), scores=np.stack(sc))
    return out


def load_vectors(folder: Path, mmap: bool = False) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """(document vectors float32 (T, dim), offsets int64 (n_docs+1,), query vectors: float32 (n_i, dim) each)."""
    vectors = np.load(folder / "docs.npy", mmap_mode="r" if mmap else None)
    offsets = np.load(folder / "offsets.npy")
    Q, qoff = np.load(folder / "queries.npy"), np.load(folder / "qoffsets.npy")
    return vectors, offsets, [Q[qoff[i]:qoff[i + 1]] for i in range(len(qoff) - 1)]


# --- systems --------------------------------------------------------------------------------------------------------
class Ours:
    """Our ColBERTIndex, in this process: built from ``doc_embs``, searched by ``retriever(mode="plaid")`` on the
    numba CPU path, one query per call (what a user calls). ``codec`` and ``indexer_kw`` go to ``index.indexer``."""

    name = "ours"

    def __init__(self, folder: Path, work: Path, nbits: int, codec: str = "pq", **indexer_kw):
        import torch

        from pyterrier_lateint.index import ColBERTIndex
        from pyterrier_lateint.index.search import SearchParams
        torch.set_num_threads(THREADS)
        meta = json.loads((folder / "meta.json").read_text())
        vectors, offsets, qvecs = load_vectors(folder)
        self.docnos = meta["docnos"]
        self.pos = {d: i for i, d in enumerate(self.docnos)}

        def gen():
            for i, d in enumerate(self.docnos):
                yield {"docno": d, "doc_embs": vectors[offsets[i]:offsets[i + 1]]}
        self.index = ColBERTIndex(work / "ours")
        t = time.perf_counter()
        self.index.indexer(None, nbits=nbits, overwrite=True, verbose=False, batch_size=1024, codec=codec,
                           **indexer_kw).index(gen())
        build_s = time.perf_counter() - t
        self.retriever = self.index.retriever(num_results=K, mode="plaid", backend="numba")
        self.frame = pd.DataFrame({"qid": meta["qids"], "query": meta["queries"], "query_embs": qvecs})
        self.rows = [self.frame.iloc[i:i + 1] for i in range(len(self.frame))]
        for r in self.rows:  # warm-up: numba compilation, page cache
            self.retriever.transform(r)
        r = self.index.reader()
        sp = SearchParams().for_k(K, r.n_live)
        self.built = {"system": "ours: ColBERTIndex (numba CPU)", "build_s": build_s,
                      "index_bytes": int(sum(self.index.size_bytes().values())), "n_vectors": int(offsets[-1]),
                      "settings": f"{r.codec.describe()}, centroids={r.meta.get('n_centroids')}, "
                                  f"nprobe={sp.nprobe}, ncandidates={sp.ncandidates}, nexact={sp.nexact} (defaults)",
                      "threads": f"numba pool {os.environ.get('LATEINT_NUM_THREADS')}, torch {torch.get_num_threads()}"}

    def ranked(self, res: pd.DataFrame) -> list[list[int]]:
        """A result frame -> per query (in the frame's order) the document numbers by rank."""
        by_q = {q: [self.pos[d] for d in g.sort_values("rank").docno] for q, g in res.groupby("qid", sort=False)}
        return [by_q.get(q, []) for q in self.frame.qid]

    def one_pass(self) -> tuple[list[float], list[list[int]]]:
        """One query per call over every query: (ms per query, document numbers by rank per query)."""
        ms, out = [], []
        for r in self.rows:
            t = time.perf_counter()
            out.append(self.retriever.transform(r))
            ms.append(1000 * (time.perf_counter() - t))
        return ms, self.ranked(pd.concat(out, ignore_index=True))

    def extras(self) -> dict:
        """Batched search (ms per query, after a warm-up call) and exhaustive search's top k over the same index."""
        self.retriever.transform(self.frame.iloc[:12])
        t = time.perf_counter()
        self.retriever.transform(self.frame)
        batched = 1000 * (time.perf_counter() - t) / len(self.frame)
        exhaustive = self.index.retriever(num_results=K, mode="exhaustive", backend="numba").transform(self.frame)
        return {"batched_ms_per_q": batched, "topk_exhaustive": self.ranked(exhaustive)}

    def close(self) -> None:
        pass


def peer_command(name: str, folder: Path, work: Path, nbits: int, repeats: int, venvs: Path,
                 serve: bool) -> tuple[list[str], dict]:
    """The command line and environment of a peer's driver (its venv's python; ``THREADS`` threads everywhere).
    Raises FileNotFoundError when the peer's virtual environment is missing."""
    python = venvs / PEER_VENV[name] / "bin" / "python"
    if not python.exists():
        raise FileNotFoundError(f"{python} missing: run benchmarks/peers/setup.sh (or pass --venvs)")
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS), "MKL_NUM_THREADS": str(THREADS),
           "RAYON_NUM_THREADS": str(THREADS), "BENCH_THREADS": str(THREADS), "PYTHONPATH": ""}
    cmd = [str(python), "-u", str(PEERS / PEER_DRIVER[name]), str(folder), str(work / name), "--nbits", str(nbits),
           "--k", str(K), "--repeats", str(repeats)] + (["--serve"] if serve else [])
    return cmd, env


class Peer:
    """A peer's driver in the peer's virtual environment, kept warm: ``DRIVER --serve`` builds the index and answers
    ``pass`` (one timed pass over the queries, one per call), ``extras`` (batched timing, variant settings) and
    ``quit`` (``benchmarks/peers/_common.serve``). Its standard error and non-result output go to ``log``."""

    def __init__(self, name: str, folder: Path, work: Path, nbits: int, repeats: int, venvs: Path):
        self.name = name
        cmd, env = peer_command(name, folder, work, nbits, repeats, venvs, serve=True)
        self.log_path = work / f"{name}.log"
        self.log = open(self.log_path, "w")
        logger.info("starting %s: %s", name, " ".join(cmd))
        t = time.perf_counter()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True,
                                     env=env)
        try:
            self.built = self._read()  # after the build and the driver's warm-up pass
        except Exception:
            self.close()
            raise
        self.built["start_wall_s"] = time.perf_counter() - t

    def _read(self) -> dict:
        """The driver's next result; its other output is copied to the log."""
        for line in self.proc.stdout:
            if line.startswith("@@RESULT@@"):
                out = json.loads(line[len("@@RESULT@@"):])
                if "error" in out:
                    raise RuntimeError(f"{self.name} driver: {out['error']}")
                return out
            self.log.write(line)
        self.log.flush()
        rc = self.proc.wait()
        tail = self.log_path.read_text()[-3000:]
        raise RuntimeError(f"the {self.name} driver ended (exit {rc}) without a result; {self.log_path} ends:\n{tail}")

    def _request(self, cmd: str) -> dict:
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        return self._read()

    def one_pass(self) -> tuple[list[float], list[list[int]]]:
        """One timed pass in the driver: (ms per query, document numbers by rank per query)."""
        r = self._request("pass")
        return r["per_query_ms"], r["topk"]

    def extras(self) -> dict:
        """``batched_ms_per_q`` (None without a batched API) and ``extra`` (variant settings), from the driver."""
        return self._request("extras")

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=120)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def run_ours(folder: Path, work: Path, nbits: int, repeats: int, codec: str = "pq", **indexer_kw) -> dict:
    """Ours alone, not interleaved (``bench_codec.py``): build, warm-up, ``repeats`` timed passes (per query the
    median, ms), batched and exhaustive search. ``codec`` and ``indexer_kw`` go to ``index.indexer``."""
    ours = Ours(folder, work, nbits, codec, **indexer_kw)
    passes = [ours.one_pass() for _ in range(repeats)]
    return {**ours.built, "per_query_ms": np.median([ms for ms, _ in passes], axis=0).tolist(),
            "topk": passes[-1][1], **ours.extras()}


def run_peer(name: str, folder: Path, work: Path, nbits: int, repeats: int, venvs: Path = DEFAULT_VENVS,
             timeout: int = 3000) -> dict:
    """A peer alone, not interleaved (``bench_codec.py``): its driver without ``--serve`` (build, warm-up,
    ``repeats`` timed passes: per query the median, ms; its variants); ``{"system", "error"}`` on failure."""
    try:
        cmd, env = peer_command(name, folder, work, nbits, repeats, venvs, serve=False)
    except FileNotFoundError as ex:
        return {"system": name, "error": str(ex)}
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t
    if proc.returncode != 0 or "@@RESULT@@" not in proc.stdout:
        tail = (proc.stdout[-1500:] + "\n" + proc.stderr[-3000:]).strip()
        return {"system": name, "error": f"exit {proc.returncode} after {wall:.0f}s:\n{tail}"}
    out = json.loads(proc.stdout.rsplit("@@RESULT@@", 1)[1].strip().splitlines()[0])
    out["driver_wall_s"] = wall
    return out


def interleave(systems: list, passes: int, results: dict, warmup: int = 1) -> None:
    """``warmup`` untimed rounds (each system was warmed up after its own build, but the later builds evicted its
    caches), then ``passes`` rounds of one timed pass per system, in order (ours, fast-plaid, ...). Appends (ms per
    query, top k per query) to ``results[name]["passes"]``; a system that fails is closed, its error recorded, and
    the others go on. Finally each system's ``extras()`` (batched timing, variants) update its results."""
    live = list(systems)
    for p in range(-warmup, passes):
        for s in list(live):
            try:
                out = s.one_pass()
            except Exception as ex:  # noqa: BLE001 - a peer's failure is reported, the benchmark goes on
                where = f"pass {p}" if p >= 0 else "the untimed round"
                logger.error("%s failed in %s: %s", s.name, where, ex)
                results[s.name]["error"] = f"{where}: {ex}"
                s.close()
                live.remove(s)
                continue
            if p >= 0:
                results[s.name]["passes"].append(out)
        if p >= 0:
            logger.info("pass %d: %s", p, ", ".join(
                f"{s.name} median {np.median(results[s.name]['passes'][-1][0]):.1f} ms" for s in live))
    for s in live:
        try:
            results[s.name].update(s.extras())
        except Exception as ex:  # noqa: BLE001
            logger.error("%s failed in its extras: %s", s.name, ex)
            results[s.name]["error"] = f"extras: {ex}"


# --- metrics and report ---------------------------------------------------------------------------------------------
def recall(topk: list[list[int]], exact_idx: np.ndarray, k: int = K) -> float:
    """Mean over queries of |top k ∩ exact top k| / k."""
    return float(np.mean([len(set(r[:k]) & set(e[:k].tolist())) / k for r, e in zip(topk, exact_idx)]))


def ndcg(topk: list[list[int]], folder: Path, k: int = K) -> float:
    """nDCG@k of the document numbers by rank per query, against the collection's qrels."""
    import ir_measures
    from ir_measures import nDCG

    from pyterrier_lateint.data import load_collection
    meta = json.loads((folder / "meta.json").read_text())
    docnos = meta["docnos"]
    run = pd.DataFrame([{"query_id": q, "doc_id": docnos[d], "score": float(k - rank)}
                        for q, r in zip(meta["qids"], topk) for rank, d in enumerate(r[:k])])
    qrels = load_collection(meta["collection"]).get_qrels().rename(
        columns={"qid": "query_id", "docno": "doc_id", "label": "relevance"})
    return float(ir_measures.calc_aggregate([nDCG @ k], qrels, run)[nDCG @ k])


def pct(ms: list[float]) -> tuple[float, float]:
    """(median, p95) in ms."""
    return float(np.median(ms)), float(np.percentile(ms, 95))


def per_pass_ratios(passes: list, ref_passes: list) -> tuple[list[float], list[float]]:
    """Per pass: this system's median / ours and its p95 / ours (pass i against our pass i)."""
    med, p95 = [], []
    for (ms, _), (ref, _) in zip(passes, ref_passes):
        med.append(pct(ms)[0] / pct(ref)[0])
        p95.append(pct(ms)[1] / pct(ref)[1])
    return med, p95


def spread(ratios: list[float]) -> str:
    """Median of the per-pass ratios and their min-max."""
    return f"{np.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})" if ratios else "n/a"


def md_table(rows: list[dict]) -> str:
    """A markdown table of ``rows`` (columns in order of first appearance; floats to 3 significant digits)."""
    cols = list(dict.fromkeys(c for r in rows for c in r))
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c, "")
            cells.append(f"{v:.3g}" if isinstance(v, float) else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report(results: dict, folder: Path) -> list[dict]:
    """The table's rows: every system (and its variants), ours' exhaustive search, exact MaxSim."""
    exact = np.load(folder / "exact.npz")["idx"]
    ours = results.get("ours")
    ours = ours if ours and ours["passes"] and "error" not in ours else None
    ours_ms = [x for ms, _ in ours["passes"] for x in ms] if ours else None
    rows = []
    for name, r in results.items():
        if not r.get("passes"):
            rows.append({"system": r.get("system", name), "settings": "FAILED (see below)"})
            continue
        all_ms = [x for ms, _ in r["passes"] for x in ms]
        row = {"system": r["system"] + (" (FAILED, see below)" if "error" in r else ""), "settings": r["settings"],
               "build s": r["build_s"], "bytes/vec (index files)": r["index_bytes"] / r["n_vectors"],
               "ms/q median (1 at a time)": pct(all_ms)[0], "ms/q p95": pct(all_ms)[1]}
        if ours is not None:
            med, p95 = per_pass_ratios(r["passes"], ours["passes"])
            row["median / ours, per pass: median (min-max)"] = spread(med)
            row["p95 / ours, per pass: median (min-max)"] = spread(p95)
        batched = r.get("batched_ms_per_q")
        row["ms/q batched"] = batched if batched is not None else "n/a"
        if ours is not None:
            row["batched / ours"] = batched / ours["batched_ms_per_q"] \
                if batched is not None and ours.get("batched_ms_per_q") else "n/a"
        row["R@10 vs exact fp32"] = recall(r["passes"][-1][1], exact)
        row["nDCG@10"] = ndcg(r["passes"][-1][1], folder)
        rows.append(row)
        for e in r.get("extra", []):  # more search settings on the same index, timed without interleaving
            vrow = {"system": r["system"] + " (variant)", "settings": e["settings"],
                    "ms/q median (1 at a time)": pct(e["per_query_ms"])[0], "ms/q p95": pct(e["per_query_ms"])[1]}
            if ours_ms is not None:
                vrow["median / ours, per pass: median (min-max)"] = \
                    f"{pct(e['per_query_ms'])[0] / pct(ours_ms)[0]:.2f}x (not interleaved)"
                vrow["p95 / ours, per pass: median (min-max)"] = \
                    f"{pct(e['per_query_ms'])[1] / pct(ours_ms)[1]:.2f}x (not interleaved)"
            vrow["ms/q batched"] = e["batched_ms_per_q"] if e.get("batched_ms_per_q") is not None else "n/a"
            vrow["R@10 vs exact fp32"] = recall(e["topk"], exact)
            vrow["nDCG@10"] = ndcg(e["topk"], folder)
            rows.append(vrow)
        if "topk_exhaustive" in r:
            rows.append({"system": r["system"] + ", exhaustive search (same index)",
                         "settings": "mode='exhaustive': every document scored from the index (reference for "
                                     "its compression alone)",
                         "R@10 vs exact fp32": recall(r["topk_exhaustive"], exact),
                         "nDCG@10": ndcg(r["topk_exhaustive"], folder)})
    rows.append({"system": "exact MaxSim (brute force, fp32, numpy)", "settings": "reference",
                 "R@10 vs exact fp32": 1.0, "nDCG@10": ndcg([e[:K].tolist() for e in exact], folder)})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS)
    p.add_argument("--nbits", type=int, default=2)
    p.add_argument("--passes", type=int, default=5,
                   help="interleaved timed passes per system over the queries, one query per call (default 5)")
    p.add_argument("--repeats", type=int, default=3,
                   help="timed passes of each variant setting of the drivers (per query the median; default 3)")
    p.add_argument("--max-docs", type=int, help="only the collection's first N documents (default: all)")
    p.add_argument("--max-queries", type=int, help="only the first N queries (default: all)")
    p.add_argument("--prepare-only", action="store_true")
    p.add_argument("--keep", action="store_true", help="keep the indices and the drivers' logs (printed folder)")
    p.add_argument("--json", type=Path, help="also write all raw results here")
    p.add_argument("--venvs", type=Path, default=DEFAULT_VENVS,
                   help="folder of the peers' virtual environments (benchmarks/peers/setup.sh; default: %(default)s)")
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    t0 = time.perf_counter()
    folder = prepare(max_docs=a.max_docs, max_queries=a.max_queries)
    logger.info("vectors: %s (prepared in %.0fs)", folder, time.perf_counter() - t0)
    if a.prepare_only:
        return
    meta = json.loads((folder / "meta.json").read_text())
    work = Path(tempfile.mkdtemp(prefix="bench-peers-"))
    order = [s for s in SYSTEMS if s in a.systems]
    results: dict[str, dict] = {}
    systems = []
    try:
        for name in order:  # built one after the other, then kept warm
            t = time.perf_counter()
            try:
                s = Ours(folder, work, a.nbits) if name == "ours" else \
                    Peer(name, folder, work, a.nbits, a.repeats, a.venvs)
            except Exception as ex:  # noqa: BLE001 - a peer's failure is reported, the benchmark goes on
                logger.error("%s failed to build: %s", name, ex)
                results[name] = {"system": name, "error": f"build: {ex}", "passes": []}
                continue
            systems.append(s)
            results[name] = {**s.built, "passes": []}
            logger.info("%s built in %.0fs (wall %.0fs): %s", name, s.built["build_s"], time.perf_counter() - t,
                        s.built["settings"])
        interleave(systems, a.passes, results)
    finally:
        for s in systems:
            s.close()
        if a.keep:
            logger.info("indices and logs kept in %s", work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    if a.json:
        a.json.write_text(json.dumps(results))
    rows = report(results, folder)
    n_docs, n_vec = len(meta["docnos"]), int(np.load(folder / "offsets.npy")[-1])
    subset = " (the first documents only: --max-docs)" if meta.get("max_docs") else ""
    print(f"\n{meta['collection']}: {n_docs} docs{subset}, {n_vec} vectors of dim "
          f"{np.load(folder / 'docs.npy', mmap_mode='r').shape[1]} (our default model, fp32), {len(meta['qids'])} "
          f"queries, top-{K}, {THREADS} threads each, {os.cpu_count()} CPU cores; query encoding excluded (same "
          f"precomputed query vectors for all). Timing: one untimed round, then {a.passes} interleaved passes per "
          f"system ({', '.join(s.name for s in systems)}, ...), one query per call, each system in one warm process; "
          f"median and p95 over every query of every pass; ratios to ours per pass (pass i against our pass i), their "
          f"median and min-max. Variants: same index, per query the median of {a.repeats} timed pass(es) after a "
          f"warm-up, not interleaved.\n")
    print(md_table(rows))
    print()
    ours = results.get("ours")
    for name, r in results.items():
        if name != "ours" and r.get("passes") and ours and ours.get("passes") and "error" not in ours:
            med, p95 = per_pass_ratios(r["passes"], ours["passes"])
            print(f"- {r['system']} / ours per pass (median; p95): "
                  + ", ".join(f"{m:.2f}x; {q:.2f}x" for m, q in zip(med, p95))
                  + f". Build: {r['build_s'] / ours['build_s']:.2f}x.")
    print("- pyterrier_colbert's text scorer (re-ranking from text) is compared in benchmarks/bench_reference.py.")
    for name, r in results.items():
        if "error" in r:
            print(f"- {r.get('system', name)} failed: {r['error']}")


if __name__ == "__main__":
    main()
