"""The GPU (torch) path against the CPU (numba) path on Vaswani with the default model config; prints one markdown
table (the rows of issue 12) and writes it as JSON with ``--out``.

    python benchmarks/bench_gpu.py                                 # on a CUDA machine, the real default model
    python benchmarks/bench_gpu.py --random-weights                # same config, random weights (speed only)
    python benchmarks/bench_gpu.py --device cpu --max-docs 2000    # dry run: the torch path on the CPU

Rows: end-to-end top-10 (query encoding included) one query at a time and all queries in one call; exhaustive
top-10 in one call; the index scorer over 1,000 candidates per query; ``encode_docs`` at fp32 / bf16 / fp16, cold
(a fresh model's first call) and warm (its second call); a training step (forward + backward + AdamW over 16
queries x 8 documents). Rankings: the mean top-10 overlap of the two paths on the same query vectors. Speed does
not depend on the weights, so ``--random-weights`` times a randomly initialised model of the default config
(``--model-dir``: a folder with its config and tokenizer, default the installed default model's).
Sized to run in under 5 minutes on one H200 with 16 host cores.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

logger = logging.getLogger("bench_gpu")


def find_data(arg: str | None) -> Path:
    """The folder holding ``vaswani/``: ``--data``, else ``shared/data`` or ``../shared/data`` (from the working
    directory or the checkout)."""
    here = Path(__file__).resolve().parents[1]
    cands = [Path(arg)] if arg else []
    cands += [b / "shared" / "data" for b in (Path.cwd(), Path.cwd().parent, here, here.parent)]
    for c in cands:
        if (c / "vaswani").is_dir():
            return c.resolve()
        if c.name == "vaswani" and c.is_dir():
            return c.parent.resolve()
    raise SystemExit(f"no vaswani/ folder in {[str(c) for c in cands]}; pass --data FOLDER")


def model_folder(model_dir: str | None, random_weights: bool, workdir: Path) -> Path:
    """The checkpoint to load: the default model's folder, or with ``random_weights`` a copy of its config and
    tokenizer with randomly initialised weights of the same shapes."""
    if model_dir is None:
        from pyterrier_lateint.models.encoder import default_model_path
        model_dir = str(default_model_path())
    src = Path(model_dir)
    if not random_weights:
        return src
    import torch
    from transformers import AutoConfig, AutoModel
    dst = workdir / "random-model"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.safetensors", "*.bin", "*.onnx", "*.h5", "*.msgpack"))
    torch.manual_seed(0)
    AutoModel.from_config(AutoConfig.from_pretrained(src)).save_pretrained(dst)
    return dst


def timed(fn, repeat: int = 1) -> tuple[float, object]:
    """(seconds per call, last result) over ``repeat`` calls after one untimed warm-up call."""
    out = fn()
    t = time.perf_counter()
    for _ in range(repeat):
        out = fn()
    return (time.perf_counter() - t) / repeat, out


def overlap(a, b, k: int = 10) -> float:
    """Mean over queries of |top-k(a) & top-k(b)| / k (per-query (ids, scores) lists)."""
    return float(np.mean([len(set(x[0][:k].tolist()) & set(y[0][:k].tolist())) / k
                          if len(x[0]) or len(y[0]) else 1.0 for x, y in zip(a, b)]))


def train_step_rate(model, texts: list[str], queries: list[str], device, precision: str, steps: int) -> float:
    """Queries per second of full training steps (16 queries x 8 documents: forward, MaxSim, cross-entropy,
    backward, AdamW) on ``model.module``; ``precision``: ``fp32`` or an autocast dtype name."""
    import torch
    from pyterrier_lateint.training.losses import maxsim_scores
    from pyterrier_lateint.training.trainer import Batch

    class G:  # a training group: a query, its positive then its negatives
        def __init__(self, q, docs):
            self.query, self.docs, self.teacher = q, docs, None

    rng = np.random.default_rng(0)
    B, n = 16, 8
    module = model.module
    module.train()
    opt = torch.optim.AdamW(module.parameters(), lr=1e-5)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")

    def step() -> None:
        groups = [G(queries[int(rng.integers(len(queries)))], [texts[int(i)] for i in rng.integers(len(texts), size=n)])
                  for _ in range(B)]
        batch = Batch(model, groups).to(device)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            Q = module(batch.q_ids, batch.q_att.long())
            D = module(batch.d_ids, batch.d_att.long())
        scores = maxsim_scores(Q.float(), batch.q_keep, D.float(), batch.d_keep)
        loss = torch.nn.functional.cross_entropy(scores, torch.arange(B, device=device) * n)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        if device.type == "cuda":
            torch.cuda.synchronize()

    step()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    rate = steps * B / (time.perf_counter() - t)
    module.eval()
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default=None, help="torch device of the GPU path (default: cuda when available)")
    ap.add_argument("--data", default=None, help="folder holding vaswani/ (default: shared/data or ../shared/data)")
    ap.add_argument("--model-dir", default=None, help="checkpoint folder (default: the installed default model)")
    ap.add_argument("--random-weights", action="store_true", help="random weights of the model's config")
    ap.add_argument("--max-docs", type=int, default=None, help="index only the first N documents (dry runs)")
    ap.add_argument("--max-queries", type=int, default=None, help="only the first N queries (dry runs)")
    ap.add_argument("--encode-docs", type=int, default=None,
                    help="documents per encode_docs measurement (default: every indexed document)")
    ap.add_argument("--precisions", nargs="+", default=["fp32", "bf16", "fp16"])
    ap.add_argument("--train-steps", type=int, default=20)
    ap.add_argument("--nbits", type=int, default=2)
    ap.add_argument("--out", default=None, help="also write the results as JSON here")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    import torch
    data = find_data(args.data)
    os.environ["LATEINT_DATA"] = str(data)
    import pandas as pd
    from pyterrier_lateint import ColBERT
    from pyterrier_lateint.data import load_collection
    from pyterrier_lateint.index import ColBERTIndex
    from pyterrier_lateint.index.backends import NumbaBackend, TorchBackend
    from pyterrier_lateint.index.search import SearchParams
    from pyterrier_lateint.models.runtime import CUDA_DEFAULT_PRECISION

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dev = str(device)
    gpu_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    workdir = Path(tempfile.mkdtemp(prefix="bench-gpu-"))
    try:
        folder = model_folder(args.model_dir, args.random_weights, workdir)
        coll = load_collection("vaswani")
        docs = pd.DataFrame(list(coll.get_corpus_iter()))
        if args.max_docs:
            docs = docs.iloc[:args.max_docs].reset_index(drop=True)
        topics = coll.get_topics()
        if args.max_queries:
            topics = topics.iloc[:args.max_queries].reset_index(drop=True)
        texts, qtexts = docs.text.tolist(), topics["query"].tolist()
        dev_model = ColBERT.from_pretrained(str(folder), device=dev)
        cpu_model = ColBERT.from_pretrained(str(folder), device="cpu")
        logger.info("%d documents, %d queries; %s model precision %s, CPU model %s", len(docs), len(topics), dev,
                    dev_model.precision, cpu_model.precision)

        t = time.perf_counter()
        index = ColBERTIndex(workdir / "vaswani.lateint")
        index.indexer(dev_model, nbits=args.nbits, verbose=False).index(docs.to_dict("records"))
        build_s = time.perf_counter() - t
        reader = index.reader()
        logger.info("index built in %.1f s: %d vectors", build_s, reader.n_vectors)

        rows: list[tuple[str, str, str]] = []
        res: dict = {"device": gpu_name, "torch_device": dev, "n_docs": len(docs), "n_queries": len(topics),
                     "random_weights": args.random_weights, "nbits": args.nbits,
                     "precision_device": dev_model.precision, "precision_cpu": cpu_model.precision}

        def both(name: str, fn_dev, fn_cpu, unit: str = "ms/query", scale: float = 1e3) -> None:
            a, b = fn_dev(), fn_cpu()
            res[name] = {"torch": a, "numba": b}
            rows.append((name, f"{a * scale:,.2f} {unit}", f"{b * scale:,.2f} {unit}"))
            logger.info("%s: torch %.3f, numba %.3f %s", name, a * scale, b * scale, unit)

        nq = len(topics)
        r_dev = index.retriever(dev_model, num_results=10, backend="torch", device=dev)
        r_cpu = index.retriever(cpu_model, num_results=10, backend="numba")

        def one_at_a_time(r):
            frames = [topics.iloc[[i]] for i in range(nq)]
            r.transform(frames[0])
            t0 = time.perf_counter()
            for f in frames:
                r.transform(f)
            return (time.perf_counter() - t0) / nq
        both("E2E k=10, one query at a time, incl. query encoding", lambda: one_at_a_time(r_dev),
             lambda: one_at_a_time(r_cpu))
        both("E2E k=10, all queries in one call, incl. encoding",
             lambda: timed(lambda: r_dev.transform(topics), 3)[0] / nq,
             lambda: timed(lambda: r_cpu.transform(topics), 3)[0] / nq)
        x_dev = index.retriever(dev_model, num_results=10, mode="exhaustive", backend="torch", device=dev)
        x_cpu = index.retriever(cpu_model, num_results=10, mode="exhaustive", backend="numba")
        both("exhaustive k=10, all queries in one call, incl. encoding",
             lambda: timed(lambda: x_dev.transform(topics))[0] / nq,
             lambda: timed(lambda: x_cpu.transform(topics))[0] / nq)

        # search alone on the same query vectors: speed and rankings of the two kernels
        qv = dev_model.encode_queries(qtexts)
        tb, nb = TorchBackend(dev), NumbaBackend()
        p = SearchParams()
        both("search alone (plaid k=10, batched, same query vectors)",
             lambda: timed(lambda: tb.plaid(reader, qv, 10, p), 3)[0] / nq,
             lambda: timed(lambda: nb.plaid(reader, qv, 10, p), 3)[0] / nq)
        res["overlap_plaid"] = overlap(tb.plaid(reader, qv, 10, p), nb.plaid(reader, qv, 10, p))
        res["overlap_exhaustive"] = overlap(tb.exhaustive(reader, qv, 10), nb.exhaustive(reader, qv, 10))
        rows.append(("top-10 overlap torch vs numba (plaid / exhaustive, same query vectors)",
                     f"{res['overlap_plaid']:.3f} / {res['overlap_exhaustive']:.3f}", ""))

        rng = np.random.default_rng(0)
        n_cand = min(1000, len(docs))
        cand = pd.DataFrame({"qid": np.repeat(topics.qid.to_numpy(), n_cand),
                             "query": np.repeat(topics["query"].to_numpy(), n_cand),
                             "docno": np.concatenate([docs.docno.to_numpy()[rng.choice(len(docs), n_cand,
                                                                                              replace=False)]
                                                      for _ in range(nq)])})
        s_dev = index.scorer(dev_model, backend="torch", device=dev)
        s_cpu = index.scorer(cpu_model, backend="numba")
        both(f"index scorer over {n_cand:,} candidates, incl. encoding",
             lambda: timed(lambda: s_dev.transform(cand))[0] / nq,
             lambda: timed(lambda: s_cpu.transform(cand))[0] / nq)

        # encoding: a fresh model per precision; cold = its first call, warm = its second
        enc = {}
        enc_texts = texts[:args.encode_docs] if args.encode_docs else texts
        for prec in args.precisions:
            try:
                m = ColBERT.from_pretrained(str(folder), device=dev, precision=prec)
            except ValueError as ex:  # e.g. fp16 on a CPU
                rows.append((f"encode_docs, {prec}", f"n/a ({ex})", ""))
                continue
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            m.encode_docs(enc_texts)
            cold = len(enc_texts) / (time.perf_counter() - t0)
            t0 = time.perf_counter()
            m.encode_docs(enc_texts)
            warm = len(enc_texts) / (time.perf_counter() - t0)
            enc[prec] = {"cold": cold, "warm": warm}
            mark = " (default)" if prec == dev_model.precision else ""
            rows.append((f"encode_docs, {prec}{mark}, cold then warm", f"{cold:,.0f} then {warm:,.0f} docs/s", ""))
            logger.info("encode_docs %s: %.0f then %.0f docs/s", prec, cold, warm)
            del m
        res["encode_docs"] = enc
        if enc:
            best = max(enc, key=lambda k: enc[k]["warm"])
            res["fastest_precision"] = best
            rows.append(("fastest encoding precision (warm)", best,
                         f"CUDA default now: {CUDA_DEFAULT_PRECISION}" if device.type == "cuda" else ""))

        for prec in (["fp32", "bf16"] if device.type == "cuda" else ["fp32"]):
            m = ColBERT.from_pretrained(str(folder), device=dev, precision="fp32")
            steps = args.train_steps if device.type == "cuda" else max(2, args.train_steps // 10)
            rate = train_step_rate(m, texts, qtexts, device, prec, steps)
            res[f"train_{prec}"] = rate
            rows.append((f"training step (16 queries x 8 docs), {prec}{'' if prec == 'fp32' else ' autocast'}",
                         f"{rate:,.1f} queries/s ({rate / 16:,.2f} steps/s)", ""))
            del m

        col = f"torch path ({gpu_name})" if device.type == "cuda" else f"torch path ({dev})"
        print(f"\nVaswani, {len(docs):,} documents, {nq} queries, nbits={args.nbits}, "
              f"{'random' if args.random_weights else 'real'} weights of the default model config; "
              f"device precision {dev_model.precision}, CPU precision {cpu_model.precision}; "
              f"CPU threads {torch.get_num_threads()}; index build {build_s:.1f} s\n")
        print(f"| measured | {col} | CPU path (numba) |")
        print("|---|---|---|")
        for name, a, b in rows:
            print(f"| {name} | {a} | {b} |")
        if args.out:
            Path(args.out).write_text(json.dumps(res, indent=1, default=str))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
