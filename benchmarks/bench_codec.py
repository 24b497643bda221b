"""Codec comparison (issue 15): bytes, quality and speed of each residual codec on every shared collection.

For each collection the default model's fp32 vectors are encoded once and cached (``bench_peers.prepare``); every
codec then indexes exactly those vectors and is measured against exact MaxSim over them:

- bytes/vector: every file of the index on disk divided by the number of vectors;
- R@10: top-10 overlap of end-to-end search (default settings) with exact MaxSim over fp32 vectors;
- nDCG@10 of end-to-end search and of the codec's own exhaustive search, next to exact fp32 MaxSim's;
- build seconds (from vectors: no encoding), and one-query latency (median and p95 over the queries, each the median
  of ``--repeats`` passes), query encoding excluded, 2 threads.

    flock /tmp/heavy.lock python benchmarks/bench_codec.py                        # all collections, default codecs
    python benchmarks/bench_codec.py vaswani --codecs pq:2 scalar:2 pq:4           # a subset
    python benchmarks/bench_codec.py --peers                                       # + PLAID and fast-plaid

Tuning note: nothing here is tuned on test queries; the codec has no free parameter besides ``nbits``.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_peers import (DEFAULT_VENVS, K, md_table, ndcg, prepare, recall, run_ours,  # noqa: E402
                         run_peer)

COLLECTIONS = ("vaswani", "cacm", "med", "scifact")
DEFAULT_CODECS = ("scalar:2", "pq:2", "pq:4")


def exact_ndcg(folder: Path) -> float:
    ex = np.load(folder / "exact.npz")["idx"]
    return ndcg([r[:K].tolist() for r in ex], folder)


def measure(folder: Path, work: Path, kind: str, nbits: int, repeats: int) -> dict:
    t = time.perf_counter()
    r = run_ours(folder, work, nbits, repeats, codec=kind)
    ex = np.load(folder / "exact.npz")["idx"]
    lat = np.asarray(r["per_query_ms"])
    return {"codec": f"{kind} {nbits}-bit", "settings": r["settings"],
            "B/vector": round(r["index_bytes"] / r["n_vectors"], 1),
            "R@10": recall(r["topk"], ex), "nDCG@10": ndcg(r["topk"], folder),
            "nDCG@10 exhaustive": ndcg(r["topk_exhaustive"], folder),
            "build s": round(r["build_s"], 1), "ms/query median": float(np.median(lat)),
            "ms/query p95": float(np.percentile(lat, 95)), "_wall": time.perf_counter() - t}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("collections", nargs="*", default=list(COLLECTIONS))
    p.add_argument("--codecs", nargs="+", default=list(DEFAULT_CODECS), help="KIND:NBITS, e.g. pq:2 scalar:2")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--peers", action="store_true", help="also PLAID and fast-plaid (their venvs: bench_peers.py)")
    p.add_argument("--venvs", type=Path, default=DEFAULT_VENVS)
    p.add_argument("--json", type=Path, help="also write the rows here")
    p.add_argument("--plot", type=Path, help="also draw bytes/vector against R@10 and nDCG@10 loss into this PNG")
    p.add_argument("--plot-from", type=Path, help="only draw --plot from the rows of an earlier --json")
    args = p.parse_args()
    if args.plot_from:
        plot(json.loads(args.plot_from.read_text()), args.plot)
        return
    all_rows = []
    for coll in args.collections:
        folder = prepare(coll)
        exact = exact_ndcg(folder)
        rows = [{"codec": "exact MaxSim, fp32 vectors", "R@10": 1.0,
                 "nDCG@10": exact}]
        with tempfile.TemporaryDirectory(prefix="bench-codec-") as tmp:
            for spec in args.codecs:
                kind, nbits = spec.split(":")
                row = measure(folder, Path(tmp), kind, int(nbits), args.repeats)
                row.pop("_wall")
                rows.append(row)
                print(coll, row, file=sys.stderr, flush=True)
            if args.peers:
                for name in ("plaid", "fast-plaid"):
                    r = run_peer(name, folder, Path(tmp), 2, args.repeats, venvs=args.venvs)
                    if "error" in r:
                        rows.append({"codec": name, "settings": r["error"].splitlines()[0]})
                        continue
                    ex = np.load(folder / "exact.npz")["idx"]
                    lat = np.asarray(r["per_query_ms"])
                    rows.append({"codec": name, "settings": r.get("settings", ""),
                                 "B/vector": round(r["index_bytes"] / r["n_vectors"], 1),
                                 "R@10": recall(r["topk"], ex), "nDCG@10": ndcg(r["topk"], folder),
                                 "build s": round(r["build_s"], 1), "ms/query median": float(np.median(lat)),
                                 "ms/query p95": float(np.percentile(lat, 95))})
        print(f"\n### {coll}: {json.loads((folder / 'meta.json').read_text())['collection']}, "
              f"{len(np.load(folder / 'offsets.npy')) - 1} documents\n")
        print(md_table(rows), flush=True)
        all_rows += [{"collection": coll, **r} for r in rows]
    if args.json:
        args.json.write_text(json.dumps(all_rows, indent=1))
    if args.plot:
        plot(all_rows, args.plot)


def plot(rows: list[dict], path: Path) -> None:
    """Two panels, bytes/vector on x: R@10 against exact MaxSim, and nDCG@10 minus exact fp32 MaxSim's; one marker
    per codec, one colour per collection."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    colls = list(dict.fromkeys(r["collection"] for r in rows))
    codecs = list(dict.fromkeys(r["codec"] for r in rows if r.get("B/vector")))
    markers = dict(zip(codecs, "osD^v<>p*h"))
    for ci, coll in enumerate(colls):
        exact = next(r["nDCG@10"] for r in rows if r["collection"] == coll and r["codec"].startswith("exact"))
        for r in rows:
            if r["collection"] != coll or not r.get("B/vector"):
                continue
            kw = dict(color=f"C{ci}", marker=markers[r["codec"]], s=40)
            axes[0].scatter(r["B/vector"], r["R@10"], **kw)
            axes[1].scatter(r["B/vector"], r["nDCG@10"] - exact, **kw)
    axes[0].set_ylabel("R@10 vs exact MaxSim (fp32)")
    axes[1].set_ylabel("nDCG@10 minus exact fp32 MaxSim")
    axes[1].axhline(-0.005, color="grey", ls="--", lw=1)
    axes[1].axhline(0, color="grey", lw=0.5)
    axes[0].axhline(0.97, color="grey", ls="--", lw=1)
    for ax in axes:
        ax.set_xlabel("bytes per vector (all index files)")
        ax.axvline(100, color="grey", ls=":", lw=1)
    from matplotlib.lines import Line2D
    handles = [Line2D([], [], color=f"C{i}", marker="o", ls="", label=c) for i, c in enumerate(colls)]
    handles += [Line2D([], [], color="black", marker=m, ls="", label=c) for c, m in markers.items()]
    fig.legend(handles=handles, fontsize=8, loc="center right")
    fig.suptitle("Codecs on the same vectors (default model): size against quality")
    fig.tight_layout(rect=(0, 0, 0.86, 1))
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
