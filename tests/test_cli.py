"""The ``lateint`` command line: ``train``'s help documents every training setting once (dashed flags, boolean
switches), a real run on a tiny model writes a loadable model, --config values are used with command-line flags
overriding them; ``cleanup`` removes what killed index builds left."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from training_fixtures import tiny_model_dir, toy_records, write_lines  # noqa: F401

from pyterrier_lateint import ColBERT, cli
from pyterrier_lateint.training import TrainingConfig

FIELDS = dataclasses.fields(TrainingConfig)


def lateint(*args: str, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "pyterrier_lateint.cli", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)


def test_train_help_documents_every_setting():
    proc = lateint("train", "--help")
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())
    for f in FIELDS:
        flag = f"--{f.name.replace('_', '-')}"
        assert f"{flag} " in text or f"{flag}," in text, f.name
        if f.type in (bool, "bool"):
            assert f"--no-{f.name.replace('_', '-')}" in text, f.name
        help_text = " ".join(f.metadata["help"].split())
        assert help_text, f"{f.name} has no help text"
        if "default" in help_text:  # states its own default: not repeated
            assert help_text in text and f"{help_text} (default" not in text, f.name
        else:
            assert f"{help_text} (default: {f.default})" in text, f.name
    for option in ("--data", "--format", "--queries", "--collection", "--model", "--dim", "--layout", "--config",
                   "--no-resume"):
        assert f"{option} " in text or text.endswith(option)
    for fmt in ("triples", "colbertv2", "pos-neg", "positive-negative", "pointwise"):
        assert fmt in text


def test_real_run_with_config_file_and_overrides(tiny_model_dir, tmp_path):  # noqa: F811
    data = write_lines(tmp_path / "train.jsonl", toy_records(6, 2, seed=5))
    config = tmp_path / "cfg.json"
    config.write_text(json.dumps({"max_steps": 5, "batch_size": 3, "learning_rate": 0.01, "seed": 7, "log_every": 1,
                                  "n_negatives": 1, "save_every": 0, "in_batch_negatives": True}))
    out = tmp_path / "run"
    proc = lateint("train", "--data", str(data), "--model", str(tiny_model_dir), "--dim", "8", "--config",
                   str(config), "--max-steps", "2", "--batch-size", "2", "--output-dir", str(out),
                   "--no-in-batch-negatives", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    model = ColBERT.from_pretrained(str(out / "final"), device="cpu")
    assert model.dim == 8
    vecs = model.encode_docs(["apple river house"])[0]
    assert vecs.shape == (3, 8)

    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    used = state["config"]
    # command-line flags win over the file ...
    assert (used["max_steps"], used["batch_size"], used["in_batch_negatives"], used["output_dir"]) == \
        (2, 2, False, str(out))
    # ... the file's other values are used ...
    assert (used["learning_rate"], used["seed"], used["log_every"], used["n_negatives"], used["save_every"]) == \
        (0.01, 7, 1, 1, 0)
    # ... and everything else keeps its default
    defaults = dataclasses.asdict(TrainingConfig())
    untouched = set(defaults) - {"max_steps", "batch_size", "in_batch_negatives", "output_dir", "learning_rate",
                                 "seed", "log_every", "n_negatives", "save_every"}
    assert {k: used[k] for k in untouched} == {k: defaults[k] for k in untouched}
    assert state["step"] == 2 and state["groups_consumed"] == 4  # two steps of two queries
    assert [h["step"] for h in state["history"]] == [1, 2]
    assert not (out / "checkpoint-5").exists()


class Recorder:
    """Stands in for Trainer and ColBERT.from_pretrained: records what the CLI passes them."""

    def __init__(self):
        self.calls = {}

    def patch(self, monkeypatch):
        import pyterrier_lateint.training as training
        rec = self

        class FakeTrainer:
            def __init__(self, model, config, validation=None):
                rec.calls["config"] = config

            def train(self, data, **kwargs):
                rec.calls["train"] = (data, kwargs)

        def fake_from_pretrained(name=None, **kwargs):
            rec.calls["model"] = (name, kwargs)
            return "model"

        monkeypatch.setattr(training, "Trainer", FakeTrainer)
        monkeypatch.setattr(ColBERT, "from_pretrained", fake_from_pretrained)
        return self


def test_arguments_reach_the_trainer(tmp_path, monkeypatch):
    rec = Recorder().patch(monkeypatch)
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"learning_rate": 0.5, "head_learning_rate": 0.25, "loss": "ce+kl", "kl_weight": 3.0}))
    cli.main(["train", "--data", "ex.json", "--format", "colbertv2", "--queries", "q.tsv", "--collection", "c.tsv",
              "--model", "some/model", "--dim", "8", "--layout", "hf", "--config", str(cfg), "--no-resume",
              "--learning-rate", "1e-4", "--warmup_ratio", "0", "--temperature", "0.05", "--grad-accum", "4",
              "--mixed-precision", "bf16", "--gradient-checkpointing"])
    config = rec.calls["config"]
    assert isinstance(config, TrainingConfig)
    assert config.learning_rate == 1e-4 and isinstance(config.learning_rate, float)
    assert (config.head_learning_rate, config.loss, config.kl_weight) == (0.25, "ce+kl", 3.0)
    assert (config.warmup_ratio, config.temperature, config.grad_accum) == (0.0, 0.05, 4)
    assert isinstance(config.grad_accum, int)
    assert (config.mixed_precision, config.gradient_checkpointing) == ("bf16", True)
    assert config.max_steps == TrainingConfig().max_steps
    assert rec.calls["model"] == ("some/model", {"dim": 8, "layout": "hf"})
    assert rec.calls["train"] == ("ex.json", {"format": "colbertv2", "queries": "q.tsv", "collection": "c.tsv",
                                              "resume": False})


@pytest.mark.parametrize("flags,value", [(["--in-batch-negatives", "--gradient-checkpointing"], True),
                                         (["--no-in-batch-negatives", "--no-gradient-checkpointing"], False),
                                         (["--in_batch_negatives", "--gradient_checkpointing"], True),
                                         ([], None)])
def test_bool_switches(monkeypatch, flags, value):
    rec = Recorder().patch(monkeypatch)
    cli.main(["train", "--data", "x.jsonl", *flags])
    defaults = TrainingConfig()
    assert rec.calls["config"].in_batch_negatives is (defaults.in_batch_negatives if value is None else value)
    assert rec.calls["config"].gradient_checkpointing is (defaults.gradient_checkpointing if value is None else value)
    assert rec.calls["train"][1]["resume"] is True


def test_bool_flag_false_overrides_config_true(tmp_path, monkeypatch):
    rec = Recorder().patch(monkeypatch)
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"in_batch_negatives": True, "gradient_checkpointing": True}))
    cli.main(["train", "--data", "x.jsonl", "--config", str(cfg), "--no-in-batch-negatives"])
    assert rec.calls["config"].in_batch_negatives is False
    assert rec.calls["config"].gradient_checkpointing is True


@pytest.mark.parametrize("args", [["--in-batch-negatives=maybe"], ["--max-steps", "ten"],
                                  ["--learning-rate", "fast"], ["--format", "csv"], []])
def test_bad_arguments_exit_with_usage(monkeypatch, capsys, args):
    rec = Recorder().patch(monkeypatch)
    argv = ["train"] + (["--data", "x.jsonl"] if args else []) + args
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    assert "usage: lateint train" in capsys.readouterr().err
    assert rec.calls == {}


def test_invalid_settings_are_refused(tmp_path, monkeypatch):
    rec = Recorder().patch(monkeypatch)
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"max_steps": 3, "epochs": 2}))
    with pytest.raises(ValueError, match="epochs"):
        cli.main(["train", "--data", "x.jsonl", "--config", str(cfg)])
    with pytest.raises(ValueError, match="mixed_precision"):
        cli.main(["train", "--data", "x.jsonl", "--mixed-precision", "fp8"])
    assert "config" not in rec.calls


def test_cleanup_removes_only_dead_builds(tmp_path, capsys):
    """A build killed part-way leaves .NAME.tmp-PID-*; cleanup removes it once PID is gone, never a live one's."""
    import os
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    stale = tmp_path / "sub" / f".x.lateint.tmp-{dead_pid}-abcd1234"
    stale.mkdir(parents=True)
    (stale / "raw.f16").write_bytes(b"0" * 1000)
    live = tmp_path / f".y.lateint.tmp-{os.getpid()}-abcd1234"
    live.mkdir()
    keep = tmp_path / "z.lateint"
    keep.mkdir()
    cli.main(["cleanup", str(tmp_path), "--dry-run"])
    assert "would remove" in capsys.readouterr().out and stale.exists()
    cli.main(["cleanup", str(tmp_path)])
    assert not stale.exists() and live.exists() and keep.exists()
    cli.main(["cleanup", str(tmp_path)])
    assert "nothing to remove" in capsys.readouterr().out
