"""Reference fixtures: tiny random checkpoints written by the reference libraries themselves, and the token ids,
vectors and scores each library's own encoder gives for a few texts. ``tests/test_reference.py`` loads the same
checkpoints with pyterrier-lateint and compares, without any reference library installed.

Each stage runs in the virtual environment of one library (``benchmarks/peers/setup.sh`` creates them); run them
all, in order, with ``bash benchmarks/reference/make_fixtures.sh`` (it names the exact commands). By hand::

    .venv/bin/python benchmarks/reference/make_fixtures.py base OUT               # pyterrier-lateint: tokenizer,
                                                                                  # base encoder, our saved models
    $PEER_VENVS/plaid/bin/python  benchmarks/reference/make_fixtures.py colbert-ai OUT
    $PEER_VENVS/pylate/bin/python benchmarks/reference/make_fixtures.py pylate OUT
    $PEER_VENVS/pyterrier_colbert/bin/python benchmarks/reference/make_fixtures.py colbert-v0.2 OUT

The checkpoints are tiny (BERT, 2 layers, hidden 16, 8-d vectors) and their vocabulary is the default model's (all-MiniLM-L6-v2,
i.e. bert-base-uncased) cut down to what the texts below need: its first 104 tokens ([PAD]=0, [unused0]=1,
[unused1]=2, ..., [UNK]=100, [CLS]=101, [SEP]=102, [MASK]=103, the ids ColBERT v0.2 asserts), every punctuation
character, and every word piece of the texts. A subset of a WordPiece vocabulary that holds every piece of a text
tokenises that text exactly as the full vocabulary does, so the fixtures are small (a few hundred KB) and the
tokenisation is the default model's.

Files under OUT (``tests/data/reference``), per fixture NAME: ``NAME/`` (the checkpoint as the library saved it),
``NAME.npz`` (arrays ``RUN_{q,d}_{ids,vecs,lens}`` and ``RUN_scores``: kept token ids, their vectors concatenated
over texts, vectors per text, and the library's own score of every query/document pair) and ``NAME.json`` (the
texts, each run's settings, the command and the library versions).
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import string
import sys
import types
from pathlib import Path

import numpy as np
import torch

QUERIES = [
    "what is a neural ranking model?",
    "late interaction: token-level matching, of words!",
    "a very long query that goes on and on about retrieval, ranking, indexing, compression, late interaction, "
    "token vectors and maximum similarity, so that it is cut at the query length of thirty-two tokens",
    "colbert's maxsim (the sum of maxima)",
]
DOCS = [
    "ColBERT encodes documents, token by token; then MaxSim scores them!",
    "short doc.",
    "a document that has many more word pieces than the document length allows, so the encoder has to cut it: "
    "retrieval, ranking, indexing, compression, late interaction, token vectors, maximum similarity, queries, "
    "documents, scores, words, pieces, lengths, tokens, vectors, models, (and so on) until it stops. " * 6,
    "no punctuation here at all",
    "e-mail: x@y.org -- costs $5.00 & 100% \"quoted\" text... [brackets] {braces} #hash ~tilde",
    "x.",  # a few vectors: a query token's best similarity can be negative (see pyterrier_colbert's scores)
]
HIDDEN, DIM, QUERY_MAXLEN, DOC_MAXLEN = 16, 8, 32, 64  # the .dnn keeps v0.2's 32 / 180
MAX_POSITIONS = 192
SEED = 20240624


def bert_config(vocab_size: int):
    from transformers import BertConfig
    return BertConfig(vocab_size=vocab_size, hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=32, max_position_embeddings=MAX_POSITIONS)


def versions(*names: str) -> dict:
    """Installed versions; a package installed from git also names its commit (pip's direct_url.json)."""
    from importlib.metadata import PackageNotFoundError, distribution
    out = {"python": platform.python_version()}
    for n in names:
        try:
            dist = distribution(n)
        except PackageNotFoundError:
            out[n] = None
            continue
        out[n] = dist.version
        vcs = json.loads(dist.read_text("direct_url.json") or "{}").get("vcs_info")
        if vcs:
            out[n] += f" (git {vcs.get('requested_revision')} = {vcs.get('commit_id')})"
    return out


def write_run(arrays: dict, run: str, q_ids, q_vecs, d_ids, d_vecs, scores) -> None:
    """Store one run: kept token ids and float32 vectors of each query and document, and the library's scores."""
    for kind, ids, vecs in (("q", q_ids, q_vecs), ("d", d_ids, d_vecs)):
        ids = [np.asarray(i, dtype=np.int64).reshape(-1) for i in ids]
        vecs = [np.asarray(v, dtype=np.float32) for v in vecs]
        assert [len(i) for i in ids] == [len(v) for v in vecs], run
        arrays[f"{run}_{kind}_lens"] = np.array([len(v) for v in vecs], dtype=np.int64)
        arrays[f"{run}_{kind}_ids"] = np.concatenate(ids)
        arrays[f"{run}_{kind}_vecs"] = np.concatenate(vecs)
    arrays[f"{run}_scores"] = np.asarray(scores, dtype=np.float32)


def finish(out: Path, name: str, arrays: dict, runs: dict, library: dict, extra: dict | None = None) -> None:
    np.savez_compressed(out / f"{name}.npz", **arrays)
    meta = {"fixture": name, "command": " ".join(["python", "benchmarks/reference/make_fixtures.py"] + sys.argv[1:]),
            "library": library, "queries": QUERIES, "docs": DOCS, "runs": runs, **(extra or {})}
    (out / f"{name}.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"wrote {out / name} ({', '.join(runs)})")


def stub_unused_imports() -> None:
    """ColBERT v0.2 imports mlflow and tensorboard at module level for its training logs; encoding never uses
    them, so empty modules stand in (neither is installed in its venv)."""
    sys.modules.setdefault("mlflow", types.ModuleType("mlflow"))
    tb = types.ModuleType("torch.utils.tensorboard")
    tb.SummaryWriter = None
    sys.modules.setdefault("torch.utils.tensorboard", tb)


# ---------------------------------------------------------------------------------------------------- stage: base
def stage_base(out: Path) -> None:
    """(pyterrier-lateint venv) The cut-down tokenizer, the tiny random encoder every other stage starts from
    (``_build/base``), and two models saved by our ``save_pretrained`` for PyLate to load."""
    from transformers import AutoTokenizer, BertModel
    from pyterrier_lateint import ColBERT
    from pyterrier_lateint.models.config import PUNCTUATION
    from pyterrier_lateint.models.encoder import default_model_path

    full = AutoTokenizer.from_pretrained(str(default_model_path()))
    vocab = full.get_vocab()
    by_id = sorted(vocab, key=vocab.get)
    keep = set(by_id[:104])
    for p in string.punctuation:
        keep.update(full.tokenize(p))
    for text in QUERIES + DOCS + [". " + t for t in QUERIES + DOCS]:
        keep.update(full.tokenize(text))
    assert full.unk_token not in {t for text in QUERIES + DOCS for t in full.tokenize(text)}
    tokens = sorted(keep, key=vocab.get)
    assert tokens[:104] == by_id[:104]
    build = out / "_build"
    tok_dir = build / "tokenizer"
    tok_dir.mkdir(parents=True, exist_ok=True)
    (tok_dir / "vocab.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    (tok_dir / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "BertTokenizer", "do_lower_case": True, "tokenize_chinese_chars": True,
        "strip_accents": None, "model_max_length": 512, "unk_token": "[UNK]", "sep_token": "[SEP]",
        "pad_token": "[PAD]", "cls_token": "[CLS]", "mask_token": "[MASK]"}, indent=2))
    (tok_dir / "special_tokens_map.json").write_text(json.dumps({
        "unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
        "mask_token": "[MASK]"}, indent=2))
    small = AutoTokenizer.from_pretrained(str(tok_dir))
    for text in QUERIES + DOCS:  # the same pieces as the full vocabulary
        assert small.tokenize(text) == full.tokenize(text), text
    torch.manual_seed(SEED)
    bert = BertModel(bert_config(len(tokens)), add_pooling_layer=False).eval()
    base = build / "base"
    bert.save_pretrained(str(base))
    for f in tok_dir.iterdir():
        shutil.copy(f, base / f.name)
    print(f"vocabulary: {len(tokens)} tokens; base encoder in {base}")

    # our save_pretrained: the default model's conventions (no head, [CLS]/[SEP] dropped), and ColBERT's
    # conventions on a head-less encoder (markers, [MASK] expansion, punctuation skipped, everything else kept)
    ours = {
        "ours_hf": {"doc_maxlen": DOC_MAXLEN},
        "ours_colbert_style": {"doc_maxlen": DOC_MAXLEN, "query_marker": "[unused0]", "doc_marker": "[unused1]",
                               "query_expansion": True, "drop_special_tokens": False,
                               "doc_skiplist": PUNCTUATION},
    }
    for name, settings in ours.items():
        model = ColBERT.from_pretrained(str(base), device="cpu", precision="fp32", **settings)
        model.save_pretrained(out / name)
        (out / name / "README.md").unlink(missing_ok=True)
        print(f"saved {out / name} with {settings}")


# ---------------------------------------------------------------------------------------------- stage: colbert-ai
def stage_colbert_ai(out: Path) -> None:
    """(colbert-ai venv) ``Checkpoint(base, config).save()`` -> a ColBERT v2 folder; encoded by ``Checkpoint``'s own
    ``queryFromText``/``docFromText``, scored by colbert-ai's ``colbert_score``."""
    from colbert.infra import ColBERTConfig
    from colbert.modeling.checkpoint import Checkpoint
    from colbert.modeling.colbert import colbert_score

    os.chdir(out)  # relative paths: artifact.metadata records the base model's path as given
    base = Path("_build") / "base"
    config = ColBERTConfig(checkpoint=str(base), dim=DIM, query_maxlen=QUERY_MAXLEN, doc_maxlen=DOC_MAXLEN,
                           mask_punctuation=True,
                           attend_to_mask_tokens=False)
    torch.manual_seed(SEED + 1)
    Checkpoint(str(base), colbert_config=config).save("colbert_ai")
    arrays, runs = {}, {}
    for run, override in (("default", ColBERTConfig()), ("attend", ColBERTConfig(attend_to_mask_tokens=True))):
        ckpt = Checkpoint("colbert_ai", colbert_config=override, verbose=0).eval()
        with torch.inference_mode():
            q_ids, _ = ckpt.query_tokenizer.tensorize(QUERIES)
            Q = ckpt.queryFromText(QUERIES, bsize=64)
            d_ids, d_mask = ckpt.doc_tokenizer.tensorize(DOCS)
            keep = torch.tensor(ckpt.mask(d_ids, skiplist=ckpt.skiplist))
            D, doclens = ckpt.docFromText(DOCS, bsize=64, keep_dims="flatten")
            D_padded, D_mask = ckpt.doc(d_ids, d_mask, keep_dims="return_mask")
            scores = torch.stack([colbert_score(Q[i:i + 1], D_padded, D_mask, config=ckpt.colbert_config)
                                  for i in range(len(QUERIES))])
        d_vecs = torch.split(D, doclens)
        write_run(arrays, run, list(q_ids), list(Q), [i[k] for i, k in zip(d_ids, keep)], d_vecs, scores)
        runs[run] = {"attend_to_mask_tokens": ckpt.colbert_config.attend_to_mask_tokens,
                     "mask_punctuation": ckpt.colbert_config.mask_punctuation,
                     "query_maxlen": ckpt.colbert_config.query_maxlen, "doc_maxlen": ckpt.colbert_config.doc_maxlen}
    finish(out, "colbert_ai", arrays, runs, versions("colbert-ai", "torch", "transformers"),
           {"load": {"path": "colbert_ai"}})


# -------------------------------------------------------------------------------------------------- stage: pylate
def _pylate_encode(model, arrays: dict, run: str) -> None:
    import torch.nn.functional as F
    from pylate import scores as pscores
    out = {}
    for kind, texts, is_query in (("q", QUERIES, True), ("d", DOCS, False)):
        vecs = model.encode(texts, is_query=is_query, batch_size=64, convert_to_numpy=False)
        raw = model.encode(texts, is_query=is_query, batch_size=64, output_value=None, convert_to_numpy=False)
        ids = [i[m.bool()] for i, m in zip(raw["input_ids"], raw["masks"])]
        for v, r, m in zip(vecs, raw["token_embeddings"], raw["masks"]):  # the two paths agree
            assert torch.allclose(v, F.normalize(r[m.bool()], p=2, dim=-1), atol=1e-6)
        out[kind] = (ids, [v.float() for v in vecs])
    s = torch.stack([torch.stack([pscores.colbert_scores(q[None], d[None])[0, 0] for d in out["d"][1]])
                     for q in out["q"][1]])
    write_run(arrays, run, *out["q"], *out["d"], s)


def stage_pylate(out: Path) -> None:
    """(PyLate venv) ``models.ColBERT(base, ...)`` (PyLate adds [Q]/[D] and a random Dense head) saved with
    ``.save()`` and encoded by ``models.ColBERT(folder).encode``; scores by ``pylate.scores.colbert_scores``. Also
    PyLate's encoding of the folders our ``save_pretrained`` wrote (stage base)."""
    from pylate import models
    base = out / "_build" / "base"
    torch.manual_seed(SEED + 2)
    models.ColBERT(str(base), embedding_size=DIM, query_length=QUERY_MAXLEN, document_length=DOC_MAXLEN,
                   device="cpu").save(str(out / "pylate"))
    (out / "pylate" / "README.md").unlink(missing_ok=True)  # the generated model card (large, not needed)
    lib = versions("pylate", "sentence-transformers", "torch", "transformers")
    arrays, runs = {}, {}
    for run, kw in (("default", {}), ("attend", {"attend_to_expansion_tokens": True})):
        model = models.ColBERT(str(out / "pylate"), device="cpu", **kw).eval()
        _pylate_encode(model, arrays, run)
        runs[run] = {"attend_to_expansion_tokens": model.attend_to_expansion_tokens,
                     "query_length": model.query_length, "document_length": model.document_length,
                     "query_prefix": model.query_prefix, "document_prefix": model.document_prefix}
    finish(out, "pylate", arrays, runs, lib, {"load": {"path": "pylate"}})
    for name in ("ours_hf", "ours_colbert_style"):
        model = models.ColBERT(str(out / name), device="cpu").eval()
        arrays = {}
        _pylate_encode(model, arrays, "pylate")
        finish(out, name, arrays, {"pylate": {"modules": [type(m).__name__ for m in model],
                                              "dense_out": model[-1].out_features,
                                              "skiplist_words": model.skiplist_words}}, lib,
               {"load": {"path": name}, "written_by": "pyterrier_lateint save_pretrained (stage base)"})


# -------------------------------------------------------------------------------------------- stage: colbert-v0.2
def stage_colbert_v02(out: Path) -> None:
    """(pyterrier_colbert venv: ColBERT v0.2 + pyterrier_colbert) A v1 ``.dnn`` written as ColBERT v0.2's training
    writes it (``save_checkpoint`` with its argparse arguments), loaded by v0.2's ``load_model`` and encoded by
    ``ModelInference``, with and without ``--mask-punctuation``; and pyterrier_colbert's ``ColBERTModelOnlyFactory``
    (what ``ColBERTFactory`` loads models with) on the same file, with its default ``mask_punctuation=False`` and
    with ``True``. v0.2 loads its tokenizer and base model as ``bert-base-uncased``: run from a folder holding a
    ``bert-base-uncased`` folder (the tiny base encoder), as the Hub cannot be reached."""
    stub_unused_imports()
    work = out / "_build" / "v02"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    shutil.copytree(out / "_build" / "base", work / "bert-base-uncased")
    os.chdir(work)
    from argparse import Namespace
    from colbert.evaluation.load_model import load_model
    from colbert.modeling.colbert import ColBERT
    from colbert.modeling.inference import ModelInference
    from colbert.utils.parser import Arguments
    from colbert.utils.utils import save_checkpoint
    import colbert.evaluation.load_model
    import colbert.modeling.colbert
    import colbert.modeling.inference
    import colbert.parameters
    cpu = torch.device("cpu")  # v0.2 hard-codes CUDA; the same patch pyterrier_colbert applies with gpu=False
    for module in (colbert.parameters, colbert.evaluation.load_model, colbert.modeling.colbert,
                   colbert.modeling.inference):
        module.DEVICE = cpu

    parser = Arguments(description="fixture")
    parser.add_model_parameters()
    parser.add_model_training_parameters()
    parser.add_training_input()
    # v0.2's default lengths (32 / 180, the lengths ColBERTFactory fixes), trained with --mask-punctuation
    arguments = vars(parser.parser.parse_args([
        "--triples", "triples.tsv", "--dim", str(DIM), "--mask-punctuation", "--bsize", "2", "--accum", "1",
        "--run", "fixture"]))
    torch.manual_seed(SEED + 3)
    colbert = ColBERT.from_pretrained("bert-base-uncased", query_maxlen=arguments["query_maxlen"],
                                      doc_maxlen=arguments["doc_maxlen"], dim=DIM, similarity_metric="cosine",
                                      mask_punctuation=True)
    dst = out / "colbert_v02"
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir()
    dnn = dst / "colbert.dnn"
    save_checkpoint(str(dnn), 0, 0, colbert, torch.optim.SGD(colbert.parameters(), lr=0.0), arguments)
    base = dst / "base"  # the base model's configuration and tokenizer (what base_model= points at)
    base.mkdir()
    for f in (out / "_build" / "base").iterdir():
        if f.name in ("config.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
            shutil.copy(f, base / f.name)

    arrays, runs = {}, {}
    for run, mask in (("v02_mask", True), ("v02_nomask", False)):
        args = Namespace(query_maxlen=arguments["query_maxlen"], doc_maxlen=arguments["doc_maxlen"], dim=DIM,
                         similarity="cosine", mask_punctuation=mask, checkpoint=str(dnn))
        model, _ = load_model(args, do_print=False)
        inference = ModelInference(model, amp=False)
        with torch.inference_mode():
            Q, q_ids, _ = inference.queryFromText(QUERIES, with_ids=True)
            d_ids, d_mask = inference.doc_tokenizer.tensorize(DOCS)
            D = inference.doc(d_ids, d_mask, keep_dims=True)  # (n, L, dim), zero rows where masked
            keep = torch.tensor(model.mask(d_ids))
            scores = torch.stack([model.score(Q[i:i + 1].expand(len(DOCS), -1, -1), D) for i in range(len(QUERIES))])
        write_run(arrays, run, list(q_ids), list(Q), [i[k] for i, k in zip(d_ids, keep)],
                  [d[k] for d, k in zip(D, keep)], scores)
        runs[run] = {"library": "ColBERT v0.2 load_model + ModelInference", "mask_punctuation": mask,
                     "score": "ColBERT.score on docFromText's padded batch (masked rows are zero vectors)"}

    import pandas as pd
    import pyterrier as pt
    pt.started = lambda: True  # pyterrier_colbert asserts a started JVM at import; encoding needs none
    from pyterrier_colbert.ranking import ColBERTModelOnlyFactory
    for run, kw in (("ptcolbert_default", {}), ("ptcolbert_mask", {"mask_punctuation": True})):
        # as ColBERTFactory(checkpoint) loads a model: lengths fixed at 32 / 180 (the file's are the same here),
        # the file's mask_punctuation ignored; dim must be given (its default is 128)
        factory = ColBERTModelOnlyFactory(str(dnn), gpu=False, dim=DIM, **kw)
        qdf = pd.DataFrame({"qid": [str(i) for i in range(len(QUERIES))], "query": QUERIES})
        q = factory.query_encoder()(qdf.copy())
        res = pd.DataFrame([(str(i), qt, f"d{j}", dt) for i, qt in enumerate(QUERIES) for j, dt in enumerate(DOCS)],
                           columns=["qid", "query", "docno", "text"])
        ddf = factory.text_encoder()(pd.DataFrame({"docno": [f"d{j}" for j in range(len(DOCS))], "text": DOCS}))
        scored = factory.text_scorer()(res)
        scores = np.zeros((len(QUERIES), len(DOCS)), dtype=np.float32)
        for row in scored.itertuples():
            scores[int(row.qid), int(row.docno[1:])] = row.score
        d_keep = [(e.abs().sum(-1) > 0) for e in ddf["doc_embs"]]  # text_encoder zeroes masked rows
        write_run(arrays, run, list(q["query_toks"]), [e.float() for e in q["query_embs"]],
                  [t[k] for t, k in zip(ddf["doc_toks"], d_keep)], [e[k].float() for e, k in zip(ddf["doc_embs"], d_keep)],
                  scores)
        runs[run] = {"library": "pyterrier_colbert ColBERTModelOnlyFactory (ColBERTFactory's model)",
                     "mask_punctuation": factory.args.mask_punctuation, "amp": factory.args.amp,
                     "score": "text_scorer (v0.2 slow_rerank: masked and padded rows are zero vectors)"}
    lib = versions("ColBERT", "pyterrier-colbert", "python-terrier", "torch", "transformers")
    lib["sources"] = ["https://github.com/cmacdonald/ColBERT (tag v0.2)",
                      "https://github.com/terrierteam/pyterrier_colbert (main)"]
    finish(out, "colbert_v02", arrays, runs, lib,
           {"load": {"path": "colbert_v02/colbert.dnn", "base_model": "colbert_v02/base"},
            "arguments": {k: v for k, v in arguments.items()}})
    shutil.rmtree(work)


STAGES = {"base": stage_base, "colbert-ai": stage_colbert_ai, "pylate": stage_pylate,
          "colbert-v0.2": stage_colbert_v02}

if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in STAGES:
        sys.exit(f"usage: make_fixtures.py {{{'|'.join(STAGES)}}} OUT_DIR")
    torch.set_num_threads(1)
    out_dir = Path(sys.argv[2]).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    STAGES[sys.argv[1]](out_dir)
