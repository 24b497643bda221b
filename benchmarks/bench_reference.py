"""pyterrier-lateint against the reference implementations, on real text: each library writes its own checkpoint of
the default encoder (all-MiniLM-L6-v2 with a seeded random 128-d head; PyLate also reads what our
``save_pretrained`` writes), re-ranks BM25's top 100 with its own re-ranker, and we load the same checkpoint and
re-rank the same frame.

    .venv/bin/python benchmarks/bench_reference.py                      # 5 queries of Vaswani and CACM
    .venv/bin/python benchmarks/bench_reference.py --queries 50 --passes 5 --collections vaswani scifact

Per checkpoint and precision (fp32, and our default: bf16 on a CPU with bf16 units): token ids equal (queries,
first 200 distinct documents), the largest vector difference, the largest MaxSim difference over all rows, Kendall
tau of each query's 100 scores (mean), top-10 overlap (mean), nDCG@10 of both rankings, and the wall time of one
re-ranking of the whole frame by the library's re-ranker and by ours at its default precision (alternating passes
after a warm-up, median). The default run (5 queries x 100 documents per collection, CACM for punctuation-rich
text) took 20 to 40 minutes on a shared 2-core CPU.
The libraries run in their own environments (``benchmarks/peers/setup.sh``; ``$PEER_VENVS``), one at a time, each
with ``BENCH_THREADS`` (2) torch threads, as ours. Prints one markdown table.

Reference re-rankers: colbert-ai ``Checkpoint.queryFromText`` + ``doc`` + ``colbert_score`` per query; PyLate
``encode`` + ``pylate.rank.rerank`` per query; pyterrier_colbert ``ColBERTFactory(checkpoint).text_scorer()``
(ColBERT v0.2 ``slow_rerank``) on the whole frame, compared with ``from_pretrained(dnn, doc_skiplist=())``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "reference" / "driver.py"
DEFAULT_VENVS = Path(os.environ.get("PEER_VENVS", Path.home() / ".cache" / "pyterrier_lateint" / "peer-venvs"))
VENV = {"colbert-ai": "plaid", "pylate": "pylate", "pyterrier_colbert": "pyterrier_colbert"}
THREADS = int(os.environ.get("BENCH_THREADS", "2"))
N_DOCS = 200


def plain_base(work: Path) -> Path:
    """The default encoder as a plain transformers folder (config, weights, tokenizer; no sentence-transformers
    modules, which PyLate would read as its own)."""
    from pyterrier_lateint.models.encoder import default_model_path
    src, dst = default_model_path(), work / "minilm"
    if not dst.exists():
        dst.mkdir(parents=True)
        for name in ("config.json", "model.safetensors", "vocab.txt", "tokenizer.json", "tokenizer_config.json",
                     "special_tokens_map.json"):
            shutil.copy(src / name, dst / name)
    return dst


def python_of(lib: str, venvs: Path) -> str:
    exe = venvs / VENV[lib] / "bin" / "python"
    if not exe.exists():
        sys.exit(f"{exe} is missing: create the reference environments with bash benchmarks/peers/setup.sh")
    return str(exe)


def result(text: str) -> dict:
    return json.loads(text.rsplit("@@RESULT@@", 1)[1].strip().splitlines()[0])


def env() -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "BENCH_THREADS": str(THREADS),
            "REF_N_DOCS": str(N_DOCS)}


def checkpoints(work: Path, venvs: Path) -> dict[str, Path]:
    """Each library's checkpoint of the default encoder (made once), and ours saved for PyLate."""
    base = plain_base(work)
    paths = {"colbert-ai": work / "ckpt-colbert-ai", "pylate": work / "ckpt-pylate",
             "pyterrier_colbert": work / "ckpt-v02" / "colbert.dnn"}
    for lib, path in paths.items():
        if not path.exists():
            proc = subprocess.run([python_of(lib, venvs), str(DRIVER), "make", lib, str(base), str(path)], env=env(),
                                  capture_output=True, text=True, timeout=1200)
            if proc.returncode != 0 or "@@RESULT@@" not in proc.stdout:
                sys.exit(f"making the {lib} checkpoint failed:\n{proc.stderr[-3000:]}")
    ours = work / "ckpt-ours"
    if not ours.exists():
        from pyterrier_lateint import ColBERT
        ColBERT.from_pretrained(None, device="cpu", precision="fp32").save_pretrained(ours)
    paths["ours"] = ours
    return paths


def bm25_frame(name: str, n_queries: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    from pyterrier_lateint.data import get_dataset
    from pyterrier_lateint.experiments import pisa_bm25
    coll = get_dataset(name)
    qrels = coll.get_qrels()
    topics = coll.get_topics()
    topics = topics[topics["qid"].astype(str).isin(set(qrels["qid"].astype(str)))].head(n_queries)  # judged ones
    res = pisa_bm25(coll, num_results=100)(topics)
    texts = coll.texts()
    res["text"] = res["docno"].map(texts)
    frame = res[["qid", "query", "docno", "text"]].reset_index(drop=True)
    frame["qid"], frame["docno"] = frame["qid"].astype(str), frame["docno"].astype(str)
    return frame, qrels


class Server:
    """A reference library in its own process: encodes and re-ranks once at start, then a timed pass per call."""

    def __init__(self, lib: str, ckpt: Path, frame_path: Path, out: Path, base: Path, venvs: Path):
        self.lib = lib
        self.proc = subprocess.Popen([python_of(lib, venvs), str(DRIVER), "serve", lib, str(ckpt), str(frame_path),
                                      str(out), str(base)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, env=env())
        self.ready = self._read()
        self.arrays = dict(np.load(out / f"{lib}.npz"))

    def _read(self) -> dict:
        for line in self.proc.stdout:
            if line.startswith("@@RESULT@@"):
                return json.loads(line[len("@@RESULT@@"):])
        raise RuntimeError(f"{self.lib} driver exited with {self.proc.wait()}")

    def timed_pass(self) -> float:
        self.proc.stdin.write("pass\n")
        self.proc.stdin.flush()
        return self._read()["pass_s"]

    def close(self) -> None:
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        self.proc.wait(timeout=60)


def split(arrays: dict, kind: str) -> tuple[list, list]:
    off = np.r_[0, np.cumsum(arrays[f"{kind}_lens"])]
    n = len(off) - 1
    return ([arrays[f"{kind}_ids"][off[i]:off[i + 1]] for i in range(n)],
            [arrays[f"{kind}_vecs"][off[i]:off[i + 1]] for i in range(n)])


def compare_vectors(model, frame: pd.DataFrame, ref: dict, strip_query_specials: bool) -> dict:
    queries = list(dict.fromkeys(frame["query"]))
    docs = list(dict.fromkeys(frame["text"]))[:N_DOCS]
    out = {}
    for kind, texts, is_query in (("q", queries, True), ("d", docs, False)):
        vecs, ids = (model.encode_queries if is_query else model.encode_docs)(texts, return_ids=True)
        r_ids, r_vecs = split(ref, kind)
        if is_query and strip_query_specials:  # PyLate keeps [CLS]/[SEP] query vectors the saved model drops
            r_ids, r_vecs = [i[1:-1] for i in r_ids], [v[1:-1] for v in r_vecs]
        same = [np.array_equal(a, b) for a, b in zip(ids, r_ids)]
        out[f"{kind}_ids"] = f"{sum(same)}/{len(same)}"
        diffs = [float(np.abs(a - b).max(initial=0)) for a, b, s in zip(vecs, r_vecs, same) if s]
        out[f"{kind}_vec"] = max(diffs) if diffs else float("nan")
    return out


def rank_metrics(frame: pd.DataFrame, ours: np.ndarray, theirs: np.ndarray, qrels: pd.DataFrame) -> dict:
    import ir_measures
    from scipy.stats import kendalltau
    taus, overlaps = [], []
    for _, idx in frame.groupby("qid", sort=False).indices.items():
        a, b = ours[idx], theirs[idx]
        taus.append(kendalltau(a, b).statistic)
        overlaps.append(len(set(np.argsort(-a, kind="stable")[:10]) & set(np.argsort(-b, kind="stable")[:10])) / 10)
    q = qrels.rename(columns={"qid": "query_id", "docno": "doc_id", "label": "relevance"})
    q["query_id"], q["doc_id"] = q["query_id"].astype(str), q["doc_id"].astype(str)
    q = q[q["query_id"].isin(set(frame["qid"]))]
    nd = []
    for scores in (ours, theirs):
        run = pd.DataFrame({"query_id": frame["qid"], "doc_id": frame["docno"], "score": scores})
        nd.append(ir_measures.calc_aggregate([ir_measures.nDCG @ 10], q, run)[ir_measures.nDCG @ 10])
    return {"tau": float(np.nanmean(taus)), "top10": float(np.mean(overlaps)), "ndcg_ours": nd[0], "ndcg_ref": nd[1]}


CASES = [  # (label, reference library, checkpoint key, our loading settings)
    ("colbert-ai folder", "colbert-ai", "colbert-ai", {}),
    ("PyLate folder", "pylate", "pylate", {}),
    ("v0.2 .dnn (ColBERTFactory)", "pyterrier_colbert", "pyterrier_colbert", {"doc_skiplist": ()}),
    ("our save_pretrained (default model)", "pylate", "ours", {}),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--queries", type=int, default=5, help="first N judged test queries of each collection (5)")
    ap.add_argument("--passes", type=int, default=3, help="timed re-ranking passes, interleaved (3)")
    ap.add_argument("--collections", nargs="+", default=["vaswani", "cacm"])
    ap.add_argument("--venvs", type=Path, default=DEFAULT_VENVS)
    ap.add_argument("--work", type=Path, default=None, help="checkpoints and frames (default: the cache)")
    ap.add_argument("--md", type=Path, default=None, help="also write the table to this file")
    ap.add_argument("--resume", action="store_true", help="keep the cases a previous run of this size finished")
    args = ap.parse_args()
    import torch
    torch.set_num_threads(THREADS)
    from pyterrier_lateint import ColBERT
    from pyterrier_lateint.settings import cache_dir
    work = (args.work or cache_dir() / "bench" / "reference").resolve()
    work.mkdir(parents=True, exist_ok=True)
    ckpts = checkpoints(work, args.venvs)
    base = plain_base(work)
    rows: list[dict] = []
    saved = work / f"results-q{args.queries}-p{args.passes}.json"  # per case as it finishes: --resume skips those
    done = json.loads(saved.read_text()) if args.resume and saved.exists() else []
    for coll in args.collections:
        frame, qrels = bm25_frame(coll, args.queries)
        frame_path = work / f"frame-{coll}.json"
        frame_path.write_text(frame.to_json(orient="records"))
        for label, lib, key, settings in CASES:
            previous = [r for r in done if (r["collection"], r["case"]) == (coll, label)]
            if previous:
                rows.extend(previous)
                continue
            out = work / f"out-{coll}-{key}"
            server = Server(lib, ckpts[key], frame_path, out, base, args.venvs)
            extra = {"base_model": str(base)} if key == "pyterrier_colbert" else {}
            models = {p: ColBERT.from_pretrained(str(ckpts[key]), device="cpu", precision=p, **extra, **settings)
                      for p in ("fp32", None)}
            theirs = server.arrays["scores"]
            results = {}
            for p, model in models.items():
                ours = model.text_scorer()(frame)
                ours = ours.set_index(["qid", "docno"]).loc[list(zip(frame["qid"], frame["docno"])), "score"]
                ours = ours.to_numpy(dtype=np.float64)
                results[p] = {**compare_vectors(model, frame, server.arrays, key == "ours"),
                              "maxsim": float(np.abs(ours - theirs).max()),
                              **rank_metrics(frame, ours, theirs, qrels), "precision": model.precision}
            times = {"ref": [], "ours": []}  # ours at its default precision
            for i in range(args.passes):
                for who in (("ref", "ours") if i % 2 == 0 else ("ours", "ref")):  # alternate who goes first
                    if who == "ref":
                        times["ref"].append(server.timed_pass())
                    else:
                        t = time.perf_counter()
                        models[None].text_scorer()(frame)
                        times["ours"].append(time.perf_counter() - t)
            server.close()
            for p, r in results.items():
                timing = {"t_ref": float(np.median(times["ref"])), "t_ours": float(np.median(times["ours"]))} \
                    if p is None else {}
                rows.append({"collection": coll, "case": label, "reference": lib, **r, **timing})
            saved.write_text(json.dumps(rows, indent=2, default=str))
            print(f"done: {coll} / {label}", file=sys.stderr, flush=True)
    command = "python benchmarks/bench_reference.py " + " ".join(sys.argv[1:])
    lines = [f"Printed by `{command.strip()}`: the first {args.queries} judged test queries of each collection, "
             f"BM25 (PISA) top 100 each, re-ranked; ids and vectors of every query and the first {N_DOCS} distinct documents; "
             f"re-ranking time: ours at its default precision, {args.passes} alternating passes after a warm-up, "
             f"median; {THREADS} torch threads each.", "",
             "| collection | checkpoint (reference re-ranker) | ours at | ids equal q / d | max abs diff vectors | "
             "max abs diff score | Kendall tau | top-10 overlap | nDCG@10 ours / ref | re-rank s: ref / ours |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['collection']} | {r['case']} ({r['reference']}) | {r['precision']} | {r['q_ids']} / "
                     f"{r['d_ids']} | {np.nanmax([r['q_vec'], r['d_vec']]):.1e} | {r['maxsim']:.1e} | "
                     f"{r['tau']:.4f} | {r['top10']:.3f} | {r['ndcg_ours']:.4f} / {r['ndcg_ref']:.4f} | "
                     + (f"{r['t_ref']:.2f} / {r['t_ours']:.2f} |" if "t_ref" in r else "|"))
    text = "\n".join(lines) + "\n"
    print(text)
    if args.md:
        args.md.write_text(text)


if __name__ == "__main__":
    main()
