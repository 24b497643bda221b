"""Paper estimate of index bytes, machines and latency for MS MARCO and a 100x larger corpus (issue 14).

Measures, on a real index of Vaswani (default 384-d model, pq 2-bit codec) with one thread, the per-unit cost of
each stage of :func:`pyterrier_lateint.index.search.search_plaid` (centroid product, probe selection, stage 1 per
inverted-file posting walked, stage 2 per candidate vector, exact stage per vector scored) and the index's bytes
per vector, then scales them to larger corpora sharded over machines as :mod:`pyterrier_lateint.sharded.search`
searches them (round 1: stages 1-2 on every shard; round 2: exact scoring of the globally chosen ``nexact``
documents). Only the "measured" table is measured; every "estimate" is arithmetic on it plus the printed assumptions.

    python benchmarks/estimate_scale.py                    # the cached Vaswani index of experiments/run.py
    python benchmarks/estimate_scale.py --index PATH --out experiments/results/scale_estimate.md

``ladder``: the same kind of arithmetic re-fitted on the measured scale ladder (``bench_scale.py --json`` files):
each build phase's cost per unit of the work it grows with, search latency as a power of the collection size, peak
memory as a line in the vectors; predictions for held-out rungs (``--check``, set against their measurement), for a
million documents and for MS MARCO's 8.8M passages on one machine.

    python benchmarks/estimate_scale.py ladder --fit experiments/results/scale_10k.json \
        experiments/results/scale_100k.json --check experiments/results/scale_300k.json \
        --out experiments/results/scale_fit.md
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
from pathlib import Path

os.environ["LATEINT_NUM_THREADS"] = "1"  # one thread per query and shard, set before the package is imported
os.environ["OMP_NUM_THREADS"] = "1"

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
logger = logging.getLogger("estimate_scale")
GiB = 2 ** 30
COLBERTV2_PASSAGES, COLBERTV2_VECTORS = 8.8e6, 600e6  # MS MARCO v1 as ColBERTv2/PLAID index it (about 600M)


def find_index(path: Path | None, model):
    """The index to measure: ``path``, else the cached Vaswani index that ``experiments/run.py`` builds; exits 2
    when there is none."""
    from pyterrier_lateint.experiments import model_tag
    from pyterrier_lateint.index import ColBERTIndex
    from pyterrier_lateint.index.codec import DEFAULT_KIND
    from pyterrier_lateint.settings import cache_dir
    path = path or cache_dir() / "index" / f"vaswani.{model_tag(model)}.{DEFAULT_KIND}2bit.lateint"
    index = ColBERTIndex(path)
    if not index.built():
        print(f"no built index at {path}: build the cached Vaswani index with `python experiments/run.py` "
              f"(see `python experiments/run.py --help`), or pass --index PATH", file=sys.stderr)
        sys.exit(2)
    return index


def measure_stages(reader, queries: list, k: int, reps: int):
    """One row per query: its units of work and the median (over ``reps`` runs after one warm-up) per-unit cost in
    ns: centroid product per (centroid x padded token), probe selection per (centroid x token), stage 1 per posting
    walked, stage 2 per candidate vector, exact stage per vector and per (vector x lane group)."""
    import numpy as np
    import pandas as pd
    from pyterrier_lateint.index.search import (SearchParams, _top_probes, centroid_scores, exact_padded,
                                                pad_queries, query_slice, select_top, stage_candidates,
                                                stage_interaction)
    from pyterrier_lateint.index.simd import LANES
    p, K = SearchParams().for_k(k, reader.n_live), reader.codec.n_centroids
    ivf, offsets = np.asarray(reader.ivf_offsets), np.asarray(reader.offsets)
    rows = []
    for q in queries:
        Q, q_off, lens = pad_queries([q], reader.codec)
        nq, T = int(lens[0]), len(Q)
        runs = []
        for rep in range(reps + 1):  # the first run warms up (numba compilation, page cache)
            t0 = time.perf_counter()
            St = query_slice(centroid_scores(reader, Q), q_off, 0)
            t1 = time.perf_counter()
            probes = _top_probes(St, nq, p.nprobe)  # timed alone: stage 1 repeats it, its cost grows with K
            t2 = time.perf_counter()
            ids, _ = stage_candidates(reader, St, nq, p)
            t3 = time.perf_counter()
            c = select_top(ids, stage_interaction(reader, St, ids), p.nexact) if len(ids) > p.nexact else ids
            c = np.sort(c)
            t4 = time.perf_counter()
            exact_padded(reader, Q, c, St, parallel=False)
            t5 = time.perf_counter()
            if rep:
                runs.append(np.diff([t0, t1, t2, t3, t4, t5]) * 1e9)
        prod, probe, s1, s2, ex = np.median(runs, axis=0)
        pr = probes[:nq, :p.nprobe].astype(np.int64)
        postings = int((ivf[pr + 1] - ivf[pr]).sum())
        v2, vx = int((offsets[ids + 1] - offsets[ids]).sum()), int((offsets[c + 1] - offsets[c]).sum())
        groups = T // LANES
        rows.append({"tokens": nq, "lane groups": groups, "postings": postings, "stage 2 vectors": v2,
                     "exact vectors": vx, "product ns/(centroid x padded token)": prod / (K * T),
                     "probe selection ns/(centroid x token)": probe / (K * nq),
                     "stage 1 ns/posting": (s1 - probe) / max(postings, 1), "stage 2 ns/vector": s2 / max(v2, 1),
                     "exact ns/vector": ex / max(vx, 1), "exact ns/(vector x lane group)": ex / max(vx * groups, 1),
                     "stage ms (St, s1, s2, exact)": (prod, s1, s2, ex)})
    return pd.DataFrame(rows)


def simulate_stage1(n_docs: int, list_len: int, nq: int, k: int, runs: int = 15,
                    total_docs: int | None = None) -> float:
    """Median ms of stage 1's walk and candidate cut (probe selection excluded) in a synthetic shard of ``n_docs``
    documents whose probed posting lists hold ``list_len`` random sorted ids each: its postings hit two
    ``(n_docs,)`` accumulators at random (cache misses), which Vaswani's 11k documents cannot show. Random
    centroid scores (2,048 centroids) for ``nq`` tokens; ``runs`` random queries after three warm-ups. The search
    settings are the defaults for ``total_docs`` (the whole collection; default ``n_docs``)."""
    import numpy as np
    from pyterrier_lateint.index.search import (SearchParams, _probe_candidates, _scratch, _top_probes,
                                                select_top_positions)
    p, rng, K, times = SearchParams().for_k(k, total_docs or n_docs), np.random.default_rng(0), 2048, []
    for run in range(runs + 3):  # three warm-ups: the allocator settles on this array size
        St = rng.standard_normal((K, max(16, -(-nq // 16) * 16)), dtype=np.float32)
        probes = _top_probes(St, nq, p.nprobe)
        probed = np.unique(probes[:nq, :p.nprobe])  # only probed lists are walked: the others stay empty
        lens = np.zeros(K, dtype=np.int64)
        lens[probed] = list_len
        offs = np.zeros(K + 1, dtype=np.int64)
        np.cumsum(lens, out=offs[1:])
        gaps = rng.exponential(n_docs / list_len, size=(len(probed), list_len))
        docs = np.minimum(np.cumsum(gaps, axis=1), n_docs - 1).astype(np.int32).ravel()
        t0 = time.perf_counter()
        acc, mark = _scratch(n_docs)  # as stage_candidates: accumulators kept zeroed between queries
        ids, approx = _probe_candidates(St, nq, probes, p.nprobe, offs, docs, n_docs, None, acc, mark)
        select_top_positions(ids, approx, p.ncandidates)
        if run >= 3:
            times.append(1000 * (time.perf_counter() - t0))
    return float(np.median(times))


def measure_encoding(model, texts: list[str], reps: int) -> float:
    """Median ms to encode one query (one at a time, one torch thread), after one warm-up pass."""
    import numpy as np
    times = []
    for rep in range(reps + 1):
        for t in texts:
            t0 = time.perf_counter()
            model.encode_queries([t])
            if rep:
                times.append(1000 * (time.perf_counter() - t0))
    return float(np.median(times))


def merge_ms(n_shards: int, k: int, n_docs: int) -> float:
    """Median ms of the coordinator's merges (:func:`merge_candidates` of ``n_shards`` x ``ncandidates`` stage-1/2
    results, then :func:`merge_top_k` of ``nexact`` exact scores), on random scores."""
    import numpy as np
    from pyterrier_lateint.index.search import SearchParams
    from pyterrier_lateint.sharded.search import merge_candidates, merge_top_k
    p, rng, times = SearchParams().for_k(k, n_docs), np.random.default_rng(0), []
    parts = [(np.arange(p.ncandidates, dtype=np.int64) + s * 10 ** 7, rng.random(p.ncandidates, dtype=np.float32),
              rng.random(p.ncandidates, dtype=np.float32)) for s in range(n_shards)]
    for _ in range(6):
        t0 = time.perf_counter()
        ids = merge_candidates(parts, p)
        merge_top_k([(ids, rng.random(len(ids), dtype=np.float32))], k)
        times.append(1000 * (time.perf_counter() - t0))
    return float(np.median(times[1:]))


def geometry(index) -> dict:
    """Bytes of the measured index by what they scale with (per vector, posting, document, centroid, fixed)."""
    meta, sizes = index.metadata(), index.size_bytes()
    group = {"residuals": "residual", "codes": "code", "token_ids": "code", "doclens": "doc", "offsets": "doc",
             "docnos": "doc", "centroids": "centroid", "codebooks": "fixed"}
    g: dict = {}
    for name, size in sizes.items():
        kind = ("posting" if name.endswith("docs.npy") else "centroid") if name.startswith("ivf") else \
            group.get(name.split(".")[0], "fixed")
        g[kind] = g.get(kind, 0) + size
    return {"bytes": g, "total": sum(sizes.values()), "n_docs": meta["n_docs"], "n_vectors": meta["n_vectors"],
            "n_postings": meta["n_ivf_postings"], "K": meta["n_centroids"], "dim": meta["dim"], "nbits": meta["nbits"],
            "codec": meta["codec"], "scale_byte": "scale" in meta["codec"]}


def estimate(name: str, n_docs: float, n_vectors: float, dim: int, nq: int, encode_ms: float, geo: dict,
             c: dict, args) -> dict:
    """One scenario's estimated index bytes, machines and per-query latency (ms), from measured constants ``c``
    (ns per unit) and the measured index geometry ``geo``."""
    from pyterrier_lateint.index.kmeans import default_n_centroids
    from pyterrier_lateint.index.search import SearchParams
    p = SearchParams().for_k(args.k, int(n_docs))  # the defaults at this collection's size
    K = default_n_centroids(int(n_vectors))
    nb, b = geo["nbits"], geo["bytes"]
    resid = dim * nb / 8 + geo["scale_byte"]
    ppv = geo["n_postings"] / geo["n_vectors"]
    per_vec = (2 if K <= 2 ** 16 else 4) + resid + ppv * b["posting"] / geo["n_postings"]
    per_doc = b.get("doc", 0) / geo["n_docs"]
    per_shard = K * dim * 2 + (K + 1) * 8 + b.get("fixed", 0) * dim / geo["dim"]  # fp16 centroids, ivf offsets
    data = n_vectors * per_vec + n_docs * per_doc
    usable = args.ram_gb * GiB * args.ram_fraction
    shards = max(1, math.ceil(data / (usable - per_shard)))
    vpp = n_vectors / n_docs
    T = max(16, -(-nq // 16) * 16)
    list_len = n_vectors / shards * ppv / K  # mean postings per centroid in one shard
    postings = nq * p.nprobe * list_len * c["skew"]  # walked per query and shard
    product = K * T * c["product ns/(centroid x padded token)"] * dim / geo["dim"] / 1e6
    probe = K * nq * c["probe selection ns/(centroid x token)"] / 1e6
    s1 = simulate_stage1(int(n_docs / shards), round(list_len * c["skew"]), nq, args.k, total_docs=int(n_docs))
    s2 = min(p.ncandidates, n_docs / shards) * vpp * c["stage 2 ns/vector"] / 1e6
    exact = p.nexact * vpp * (T // 16) * c["exact ns/(vector x lane group)"] * (resid / c["resid"]) / 1e6
    merge = merge_ms(shards, args.k, int(n_docs))
    round1, round2 = product + probe + s1 + s2, exact  # round 2 reuses round 1's centroid scores
    total = encode_ms + 2 * args.rtt_ms + round1 + merge + round2
    return {"scenario": name, "passages": f"{n_docs / 1e6:,.1f}M", "vectors": f"{n_vectors / 1e9:,.2f}B",
            "dim": dim, "bytes/vector": f"{per_vec:.1f}", "index GiB": f"{(data + shards * per_shard) / GiB:,.1f}",
            "centroids K": K, "postings/centroid/shard": f"{list_len:,.0f}",
            "postings walked/shard/query": f"{postings:,.0f}",
            "machines = shards": shards, "query tokens": nq, "encode ms": f"{encode_ms:.1f}",
            "round 1 ms (St + probe + stage 1 + stage 2)":
                f"{round1:.1f} ({product:.1f} + {probe:.1f} + {s1:.1f} + {s2:.1f})",
            "merge ms": f"{merge:.2f}", "round 2 ms (exact)": f"{round2:.1f}",
            "network ms": f"{2 * args.rtt_ms:.1f}", "latency ms": f"{total:.1f}",
            "core-ms/query (all shards)": f"{encode_ms + shards * round1 + merge + round2:,.0f}"}


# --- ladder: re-fitted on the measured scale ladder ----------------------------------------------------------------
LADDER_PHASES = (  # (key in the build's timings, name, what the phase's work grows with)
    ("seconds_pass1", "spill", "vectors"),
    ("seconds_sample", "k-means sample", "sample"),
    ("seconds_kmeans", "k-means", "sample x centroids"),
    ("seconds_quantiser", "quantiser", "centroids"),
    ("seconds_assign", "assign", "vectors x centroids"),
    ("seconds_quantise", "quantise", "vectors"),
    ("seconds_ivf", "IVF", "vectors"),
    ("rest", "rest (token statistics, files)", "vectors"),
)


def _ladder_units(n_vectors: float, k: float, sample: float) -> dict[str, float]:
    return {"vectors": n_vectors, "sample": sample, "sample x centroids": sample * k, "centroids": k,
            "vectors x centroids": n_vectors * k}


def _rung(row: dict) -> dict:
    """The figures of one ``bench_scale.py`` row that the fit uses."""
    b = row["ours_build"]
    phases = {key: float(b["phases"].get(key) or 0.0) for key, _, _ in LADDER_PHASES if key != "rest"}
    phases["rest"] = max(0.0, float(b["build_s"]) - sum(phases.values()))
    sampled = b.get("rss_phases_mib", {}).values()
    anon = [v[0] for v in sampled]
    # the build's own peak: VmHWM, else the sampled peak; older rows' ru_maxrss held the benchmark's memory too
    peak = float(b["peak_rss_mib"]) / 1024 if b.get("peak_rss_source") == "VmHWM" else \
        max(v[0] + v[1] for v in sampled) / 1024 if anon else None
    by_phase = b.get("rss_phases_mib", {})
    others = [v[0] for k, v in by_phase.items() if k not in ("before", "sample", "k-means")]
    return {"docs": int(row["docs"]), "vectors": int(b["n_vectors"]), "centroids": int(b["n_centroids"]),
            "sample": int(b["kmeans_sample"]), "phases": phases, "build_s": float(b["build_s"]),
            "peak_rss_gib": peak, "peak_anon_gib": max(anon) / 1024 if anon else None,
            "kmeans_anon_gib": by_phase["k-means"][0] / 1024 if "k-means" in by_phase else None,
            "other_anon_gib": max(others) / 1024 if others else None,
            "file_gib": max(v[1] for v in by_phase.values()) / 1024 if by_phase else None,
            "sample_value_bytes": 2 if b.get("kmeans_sample_dtype") == "float16" else 4,
            "bytes_per_vector": float(b["bytes_per_vector"]), "search_ms": float(row["ours_ms"][0]),
            "search_p95_ms": float(row["ours_ms"][1]), "exhaustive_ms": float(row["exhaustive_ms"])}


def _power_fit(xs: list[float], ys: list[float], min_exponent: float | None = None) -> tuple[float, float]:
    """``y = a x^e`` by least squares in log-log; one point gives ``e = 0``. ``min_exponent``: ``e`` is raised to it
    when the fit is lower (and ``a`` re-fitted), for costs that cannot fall as the collection grows."""
    import numpy as np
    if len(xs) < 2:
        return float(ys[0]), 0.0
    e, log_a = np.polyfit(np.log(xs), np.log(ys), 1)
    if min_exponent is not None and e < min_exponent:
        e = min_exponent
        log_a = float(np.mean(np.log(ys) - e * np.log(xs)))
    return float(np.exp(log_a)), float(e)


def fit_ladder(rungs: list[dict], dim: int = 384) -> dict:
    """Unit costs (seconds per unit, ratio of sums over ``rungs``) of each build phase; power laws in documents
    for search median, p95 and exhaustive search; a line in vectors for peak RSS; mean bytes/vector and
    vectors/document. Memory: the k-means phase's anonymous peak is a base plus its sample (``dim`` values of 2
    bytes each in this version's float16 sample; 4 in rungs built before it), every other phase's is bounded by a
    chunk and taken as the largest measured; file-backed pages (libraries) as measured."""
    units = [_ladder_units(r["vectors"], r["centroids"], r["sample"]) for r in rungs]
    cost = {key: sum(r["phases"][key] for r in rungs) / sum(u[unit] for u in units) for key, _, unit in LADDER_PHASES}
    docs = [r["docs"] for r in rungs]
    mem = [r for r in rungs if r["kmeans_anon_gib"] is not None]
    return {"cost": cost, "search": _power_fit(docs, [r["search_ms"] for r in rungs], 0.0),
            "p95": _power_fit(docs, [r["search_p95_ms"] for r in rungs], 0.0),
            "exhaustive": _power_fit(docs, [r["exhaustive_ms"] for r in rungs], 0.0),
            "raw_exponents": {k: _power_fit(docs, [r[k] for r in rungs])[1]
                              for k in ("search_ms", "search_p95_ms", "exhaustive_ms")},
            # memory: k-means holds its sample (float16 now) on top of a base; the other phases hold one chunk
            "kmeans_base_gib": (sum(r["kmeans_anon_gib"] - r["sample"] * dim * r["sample_value_bytes"] / GiB
                                    for r in mem) / len(mem)) if mem else None,
            "other_anon_gib": max(r["other_anon_gib"] for r in mem) if mem else None,
            "file_gib": max(r["file_gib"] for r in mem) if mem else None, "mem_from": [r["docs"] for r in mem],
            "dim": dim,
            "bytes_per_vector": sum(r["bytes_per_vector"] for r in rungs) / len(rungs),
            "vectors_per_doc": sum(r["vectors"] for r in rungs) / sum(docs), "from": docs}


def predict_ladder(fit: dict, docs: float, vectors: float | None = None, sample_value_bytes: int = 2) -> dict:
    """Predicted build phases, build time, memory, bytes and latencies for ``docs`` documents (``vectors``:
    default the ladder's vectors per document), with the defaults the indexer would choose; ``sample_value_bytes``:
    2 for this version's float16 k-means sample, 4 to check a rung built before it."""
    from pyterrier_lateint.index.build import default_kmeans_sample
    from pyterrier_lateint.index.kmeans import default_n_centroids
    n = vectors if vectors is not None else docs * fit["vectors_per_doc"]
    k = default_n_centroids(int(n))
    sample = min(n, default_kmeans_sample(k))
    u = _ladder_units(n, k, sample)
    phases = {key: fit["cost"][key] * u[unit] for key, _, unit in LADDER_PHASES}
    (a_s, e_s), (a_p, e_p), (a_x, e_x) = fit["search"], fit["p95"], fit["exhaustive"]
    out = {"docs": docs, "vectors": n, "centroids": k, "sample": sample, "phases": phases,
           "build_s": sum(phases.values()),
           "peak_rss_gib": None,
           "index_gib": n * fit["bytes_per_vector"] / GiB, "search_ms": a_s * docs ** e_s,
           "search_p95_ms": a_p * docs ** e_p, "exhaustive_ms": a_x * docs ** e_x}
    if fit["kmeans_base_gib"] is not None:
        out["kmeans_anon_gib"] = fit["kmeans_base_gib"] + sample * fit["dim"] * sample_value_bytes / GiB
        out["peak_anon_gib"] = max(out["kmeans_anon_gib"], fit["other_anon_gib"])
        out["peak_rss_gib"] = out["peak_anon_gib"] + fit["file_gib"]
    return out


def ladder_report(fit: dict, checks: list[dict], targets: list[tuple[str, float, float | None]],
                  command: str) -> str:
    """Markdown: the fitted constants, then predicted (and, for held-out rungs, measured) figures per size."""
    import pandas as pd

    def t(x: float) -> str:
        return f"{x:,.0f}" if x >= 100 else f"{x:,.3g}"

    def hours(x: float) -> str:
        return f"{x:,.0f} s" if x < 3600 else f"{x:,.0f} s ({x / 3600:.1f} h)"
    lines = [f"Printed by `{command}`: fitted on the rungs of {', '.join(f'{d:,}' for d in fit['from'])} "
             f"documents; every figure below that is not marked measured is arithmetic on the fit.", "",
             "Fitted constants (build phases: seconds of the fit rungs / their units of work):", ""]
    rows = [{"build phase": name, "grows with": unit, "ns per unit": f"{fit['cost'][key] * 1e9:.4g}"}
            for key, name, unit in LADDER_PHASES]
    lines += [pd.DataFrame(rows).to_markdown(index=False), ""]
    (a_s, e_s), (a_p, e_p), (a_x, e_x) = fit["search"], fit["p95"], fit["exhaustive"]
    raw = fit["raw_exponents"]
    rss = (f"resident memory (GiB): k-means phase {fit['kmeans_base_gib']:.2f} + its float16 sample, other phases "
           f"{fit['other_anon_gib']:.2f} (anonymous), + {fit['file_gib']:.2f} file-backed (from the per-phase peaks of "
           f"the builds of {', '.join(f'{d:,}' for d in fit['mem_from'])} documents)") \
        if fit["kmeans_base_gib"] is not None else "no per-phase memory in the fit rungs"
    lines += [f"Search median ms = {a_s:.3g} docs^{e_s:.3f}; p95 = {a_p:.3g} docs^{e_p:.3f}; exhaustive ms = "
              f"{a_x:.3g} docs^{e_x:.3f} (least-squares exponents {raw['search_ms']:.3f}, {raw['search_p95_ms']:.3f}, "
              f"{raw['exhaustive_ms']:.3f}, raised to 0 where below: more documents never make a query cheaper); "
              f"{rss}; {fit['bytes_per_vector']:.1f} B/vector; {fit['vectors_per_doc']:.1f} vectors/document.", ""]
    cols: dict[str, dict[str, str]] = {}
    keys = [("vectors", "vectors"), ("centroids", "centroids"), ("sample", "k-means sample")]
    keys += [(("phase", key), f"{name} s") for key, name, _ in LADDER_PHASES]
    keys += [("build_s", "build s"), ("peak_rss_gib", "peak RSS GiB"), ("peak_anon_gib", "peak anonymous GiB"),
             ("kmeans_anon_gib", "k-means phase anonymous GiB"),
             ("index_gib", "index GiB"), ("search_ms", "search median ms"), ("search_p95_ms", "search p95 ms"),
             ("exhaustive_ms", "exhaustive ms/query")]

    def get(d: dict, key):
        if isinstance(key, tuple):
            return d["phases"].get(key[1])
        if key == "index_gib" and "index_gib" not in d and "bytes_per_vector" in d:
            return d["vectors"] * d["bytes_per_vector"] / GiB
        return d.get(key)
    for m in checks:
        pr = predict_ladder(fit, m["docs"], m["vectors"], m["sample_value_bytes"])
        col = {}
        for key, label in keys:
            pv, mv = get(pr, key), get(m, key)
            if pv is None or mv is None:
                col[label] = "" if mv is None else f"measured {t(mv)}"
            elif key in ("vectors", "centroids", "sample"):
                col[label] = t(mv)
            else:
                col[label] = f"{t(pv)} / {t(mv)} ({100 * (pv - mv) / mv:+.0f}%)"
        cols[f"{m['docs']:,} docs: predicted / measured"] = col
    for name, docs, vectors in targets:
        pr = predict_ladder(fit, docs, vectors)
        cols[f"{name}: predicted"] = {label: (hours(get(pr, key)) if key == "build_s" else t(get(pr, key)))
                                      for key, label in keys if get(pr, key) is not None}
    lines += [pd.DataFrame(cols).fillna("").to_markdown(), ""]
    return "\n".join(lines)


def ladder_main(argv: list[str]) -> None:
    """Fit the ladder model on measured rungs, check it on held-out rungs, predict 1M documents and MS MARCO."""
    import json
    ap = argparse.ArgumentParser(prog="estimate_scale.py ladder", description=ladder_main.__doc__)
    ap.add_argument("--fit", type=Path, nargs="+", required=True, help="bench_scale.py --json files to fit on")
    ap.add_argument("--check", type=Path, nargs="*", default=[], help="held-out rungs: predicted against measured")
    ap.add_argument("--msmarco-vectors-per-passage", type=float, default=None,
                    help="vectors per MS MARCO passage (default: the ladder's vectors per document)")
    ap.add_argument("--dim", type=int, default=384, help="vector dimensions of the ladder (the default model's)")
    ap.add_argument("--out", type=Path, help="also write the markdown here")
    a = ap.parse_args(argv)

    def rungs(files: list[Path]) -> list[dict]:
        return [_rung(r) for f in files for r in json.loads(f.read_text())]
    fit = fit_ladder(rungs(a.fit), a.dim)
    mm = a.msmarco_vectors_per_passage
    targets = [("1,000,000 docs", 1e6, None),
               ("MS MARCO v1 (8.8M passages)", COLBERTV2_PASSAGES, COLBERTV2_PASSAGES * mm if mm else None)]
    text = ladder_report(fit, rungs(a.check), targets, "python benchmarks/estimate_scale.py " + " ".join(sys.argv[1:]))
    print(text)
    if a.out:
        a.out.write_text(text)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "ladder":
        ladder_main(sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", type=Path, help="a built ColBERTIndex of Vaswani (default: experiments' cached one)")
    ap.add_argument("--reps", type=int, default=5, help="timed runs per query after one warm-up")
    ap.add_argument("--k", type=int, default=10, help="results per query (SearchParams().for_k(k, n_docs))")
    ap.add_argument("--ram-gb", type=float, default=64, help="RAM per machine, GiB")
    ap.add_argument("--ram-fraction", type=float, default=0.75, help="share of RAM the index may fill (page cache)")
    ap.add_argument("--rtt-ms", type=float, default=0.5, help="network round trip per search round, ms")
    ap.add_argument("--vectors-per-passage", type=float, default=COLBERTV2_VECTORS / COLBERTV2_PASSAGES,
                    help="MS MARCO vectors per passage with the 384-d default model (default: ColBERTv2's ratio)")
    ap.add_argument("--query-tokens", type=int, default=12, help="MS MARCO query tokens, default model")
    ap.add_argument("--colbertv2-query-tokens", type=int, default=32, help="ColBERTv2 query tokens ([MASK]-padded)")
    ap.add_argument("--encoder-flops-ratio", type=float, default=8.0,
                    help="ColBERTv2 (BERT-base) / MiniLM-L6 encoder cost per query (12x768^2 / 6x384^2 = 8)")
    ap.add_argument("--out", type=Path, help="also write the markdown to this file")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    import numpy as np
    import pandas as pd
    import torch
    torch.set_num_threads(1)
    from pyterrier_lateint import ColBERT
    from pyterrier_lateint.data import load_collection

    model = ColBERT.from_pretrained()
    index = find_index(args.index, model)
    geo = geometry(index)
    topics = load_collection("vaswani").get_topics()
    logger.info("encoding %d queries with %s", len(topics), model)
    queries = model.encode_queries(topics["query"].tolist())
    encode_ms = measure_encoding(model, topics["query"].tolist(), reps=2)
    logger.info("timing the search stages of %s (%d runs per query)", index, args.reps)
    reader = index.reader()
    df = measure_stages(reader, queries, args.k, args.reps)
    unit_cols = [col for col in df.columns if "ns/" in col]
    mean_list = geo["n_postings"] / geo["K"]
    from pyterrier_lateint.index.search import SearchParams
    p = SearchParams().for_k(args.k, reader.n_live)
    skew = df["postings"] / (df["tokens"] * p.nprobe * mean_list)
    const = {col: float(df[col].median()) for col in unit_cols}
    const.update(skew=float(skew.median()), resid=geo["dim"] * geo["nbits"] / 8 + geo["scale_byte"])

    def f(x: float) -> str:
        return f"{x:,.3g}" if abs(x) < 1000 else f"{x:,.0f}"

    measured = [{"constant": col, "median": f(df[col].median()), "p95": f(np.percentile(df[col], 95))}
                for col in unit_cols + ["tokens", "postings", "stage 2 vectors", "exact vectors"]]
    measured.append({"constant": "probe skew: postings walked / (tokens x nprobe x mean list length)",
                     "median": f(skew.median()), "p95": f(np.percentile(skew, 95))})
    st = np.array(df["stage ms (St, s1, s2, exact)"].tolist()) / 1e6
    for j, stage in enumerate(("centroid product", "stage 1 (probe + walk)", "stage 2", "exact")):
        measured.append({"constant": f"{stage} ms per query", "median": f(np.median(st[:, j])),
                         "p95": f(np.percentile(st[:, j], 95))})
    measured.append({"constant": "query encoding ms (one query, 1 torch thread)", "median": f(encode_ms), "p95": ""})
    b = geo["bytes"]
    geo_rows = [{"bytes of": kind, "bytes": f"{v:,}", "bytes/vector": f"{v / geo['n_vectors']:.2f}"}
                for kind, v in sorted(b.items())] + [{"bytes of": "total", "bytes": f"{geo['total']:,}",
                                                      "bytes/vector": f"{geo['total'] / geo['n_vectors']:.2f}"}]
    vpp = args.vectors_per_passage
    scen = [("MS MARCO v1, ColBERTv2 128-d", COLBERTV2_PASSAGES, COLBERTV2_VECTORS, 128,
             args.colbertv2_query_tokens, encode_ms * args.encoder_flops_ratio),
            ("MS MARCO v1, default 384-d", COLBERTV2_PASSAGES, COLBERTV2_PASSAGES * vpp, 384, args.query_tokens,
             encode_ms),
            ("100x MS MARCO, ColBERTv2 128-d", 100 * COLBERTV2_PASSAGES, 100 * COLBERTV2_VECTORS, 128,
             args.colbertv2_query_tokens, encode_ms * args.encoder_flops_ratio),
            ("100x MS MARCO, default 384-d", 100 * COLBERTV2_PASSAGES, 100 * COLBERTV2_PASSAGES * vpp, 384,
             args.query_tokens, encode_ms)]
    est = pd.DataFrame([estimate(*s, geo, const, args) for s in scen]).set_index("scenario").T

    command = "python benchmarks/estimate_scale.py " + " ".join(a for a in sys.argv[1:])
    ppv = geo["n_postings"] / geo["n_vectors"]
    from pyterrier_lateint.index.kmeans import CENTROIDS_PER_SQRT
    text = "\n".join([
        f"Printed by `{command.strip()}` ({len(df)} Vaswani queries x {args.reps} runs, one thread, "
        f"k={args.k}, {p}).", "",
        f"## Measured: {index.path.name} ({geo['n_docs']:,} docs, {geo['n_vectors']:,} vectors, {geo['dim']}-d, "
        f"{geo['codec']}, {geo['K']:,} centroids, {geo['n_postings']:,} postings = {ppv:.3f} per vector)", "",
        "Per-unit costs: per query, the median of its runs; then median and p95 over queries.", "",
        pd.DataFrame(measured).to_markdown(index=False), "", pd.DataFrame(geo_rows).to_markdown(index=False), "",
        "## Estimates (arithmetic on the measurements above, stage 1 timed on synthetic shards; not measured on "
        "such corpora)", "",
        est.to_markdown(), "", "Assumptions:", "",
        f"- MS MARCO v1: 8.8M passages, ~600M token vectors with ColBERTv2 (128-d), ColBERTv2's own count (about "
        f"600M for 8.8M passages). The 384-d default model is assumed to give {vpp:.1f} vectors per passage "
        f"(`--vectors-per-passage`; default: ColBERTv2's ratio; our model keeps punctuation, drops [CLS]/[SEP]). "
        f"100x: 880M passages, ~60B vectors.",
        f"- Bytes per vector: uint16 centroid code (K <= 2^16) + {geo['nbits']}-bit residual (dim x nbits / 8 bytes)"
        f"{' + 1 scale byte' if geo['scale_byte'] else ''} + {ppv:.3f} postings x 4 bytes (Vaswani's ratio; coarser "
        f"centroids at scale merge more of a document's vectors into one posting, so likely an overestimate); "
        f"per passage {b.get('doc', 0) / geo['n_docs']:.1f} bytes (offsets, doclens, docnos; Vaswani's); per shard a "
        f"copy of the float16 centroids and IVF offsets.",
        f"- Centroids: `default_n_centroids` = 2^floor(log2({CENTROIDS_PER_SQRT} sqrt(n))) capped at 2^16 = 65,536 "
        f"(PLAID uses ~16 sqrt(n), 2^18 for MS MARCO): at the cap, posting lists grow linearly with the corpus, so "
        f"stage 1 walks more postings per probe than PLAID's list sizes would give (2^18 / 2^16 = 4x for MS MARCO).",
        f"- Machines = shards = ceil(index bytes / ({args.ram_gb:g} GiB x {args.ram_fraction:g})): the index is "
        f"memory-mapped and must stay in the page cache. Memory, not CPU, sets the count; 'core-ms/query' is the "
        f"CPU time one query costs the cluster (throughput ~ cores x 1000 / it per second).",
        f"- Latency (one thread per shard per query, shards in parallel) = encoding + 2 x {args.rtt_ms:g} ms RTT + "
        f"round 1 (centroid product K x padded tokens, probe selection K x tokens, stage 1 timed here on a synthetic "
        f"shard with that many passages and posting lists of (postings per centroid in the shard x probe skew) "
        f"random ids hitting per-passage accumulators at random; "
        f"stage 2 = ncandidates x vectors/passage) + coordinator "
        f"merge (measured with random scores for that many shards) + round 2 (exact stage = nexact x "
        f"vectors/passage x lane groups, worst case: all on one shard; the centroid scores are kept from round 1).",
        f"- 128-d: product scaled by dim/{geo['dim']}, exact stage by residual bytes; stage 1 and 2 costs do not "
        f"depend on dim. Query tokens: {args.query_tokens} for the default model (MS MARCO queries are short), "
        f"{args.colbertv2_query_tokens} for ColBERTv2 ([MASK]-padded). ColBERTv2 encoding = measured MiniLM "
        f"encoding x {args.encoder_flops_ratio:g} (BERT-base / MiniLM-L6 cost per token).",
        "- Per-unit costs were measured with K = {:,} (St of K x 16 floats fits in L2); at K = 65,536 St is 4-8 MB "
        "and stages 1-2 read it at random, so their per-unit costs may be higher than measured here.".format(geo["K"]),
        ""])
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        logger.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
