"""The ``lateint`` command line: ``train``'s help documents every training setting once (dashed flags, boolean
switches), a real run on a tiny model writes a loadable model, --config values are used with command-line flags
overriding them; ``cleanup`` removes what killed index builds left. Every error is one line ``lateint: error: ...``
with exit status 2 (``--debug``, before or after the command: the traceback), an interrupt exits with 130."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from cli_helpers import cli_error
from training_fixtures import tiny_model_dir, toy_records, write_lines  # noqa: F401

from pyterrier_lateint import ColBERT, cli
from pyterrier_lateint.index import IndexNotFoundError, ModelMismatchError
from pyterrier_lateint.index.integrity import IndexCorruptError
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


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run in ``tmp_path``, where the training files the tests name exist."""
    monkeypatch.chdir(tmp_path)
    for name in ("ex.json", "q.tsv", "c.tsv", "x.jsonl"):
        (tmp_path / name).write_text("")
    return tmp_path


def test_arguments_reach_the_trainer(tmp_path, monkeypatch, in_tmp):
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
def test_bool_switches(monkeypatch, in_tmp, flags, value):
    rec = Recorder().patch(monkeypatch)
    cli.main(["train", "--data", "x.jsonl", *flags])
    defaults = TrainingConfig()
    assert rec.calls["config"].in_batch_negatives is (defaults.in_batch_negatives if value is None else value)
    assert rec.calls["config"].gradient_checkpointing is (defaults.gradient_checkpointing if value is None else value)
    assert rec.calls["train"][1]["resume"] is True


def test_bool_flag_false_overrides_config_true(tmp_path, monkeypatch, in_tmp):
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


def test_invalid_settings_are_refused(tmp_path, monkeypatch, capsys, in_tmp):
    rec = Recorder().patch(monkeypatch)
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"max_steps": 3, "epochs": 2}))
    assert "epochs" in cli_error(capsys, "train", "--data", "x.jsonl", "--config", cfg)
    assert "mixed_precision" in cli_error(capsys, "train", "--data", "x.jsonl", "--mixed-precision", "fp8")
    assert "config" not in rec.calls


def test_train_refuses_missing_files_and_bad_config(tmp_path, monkeypatch, capsys, in_tmp):
    rec = Recorder().patch(monkeypatch)
    assert cli_error(capsys, "train", "--data", "nothere.jsonl") == \
        "--data nothere.jsonl does not exist; check the path"
    assert cli_error(capsys, "train", "--data", "x.jsonl", "--queries", tmp_path) == \
        f"--queries {tmp_path} is a folder; give a file"
    assert cli_error(capsys, "train", "--data", "x.jsonl", "--config", "none.json") == \
        "--config none.json does not exist; check the path"
    (tmp_path / "bad.json").write_text('{"max_steps": 3,\n "seed": }')
    assert cli_error(capsys, "train", "--data", "x.jsonl", "--config", "bad.json") == \
        '--config bad.json:2: not valid JSON (Expecting value at column 10); the file holds one JSON object of ' \
        'settings, e.g. {"max_steps": 1000}'
    (tmp_path / "list.json").write_text('[3]')
    assert cli_error(capsys, "train", "--data", "x.jsonl", "--config", "list.json") == \
        '--config list.json holds a JSON list, not an object of settings; write e.g. {"max_steps": 1000}'
    (tmp_path / "latin.json").write_bytes('{"output_dir": "café"}'.encode("latin-1"))
    assert cli_error(capsys, "train", "--data", "x.jsonl", "--config", "latin.json").startswith(
        "--config latin.json is not UTF-8 text (byte 0xe9 at offset 19); convert it, e.g. `iconv -f latin1 -t utf-8")
    assert rec.calls == {}


def test_doc2query_train_errors_are_one_line(tmp_path, capsys):
    assert cli_error(capsys, "doc2query-train", "--output-dir", tmp_path / "x") == \
        "doc2query-train: give exactly one of --pairs FILE and --collection NAME"
    assert cli_error(capsys, "doc2query-train", "--pairs", tmp_path / "p.tsv", "--output-dir", tmp_path / "x") == \
        f"--pairs {tmp_path / 'p.tsv'} does not exist; check the path"


def test_cleanup_refuses_missing_folder_and_file(tmp_path, capsys):
    from pyterrier_lateint.settings import cache_dir
    assert cli_error(capsys, "cleanup", tmp_path / "none") == \
        f"{tmp_path / 'none'} does not exist; give folders that hold indexes (default: {cache_dir()})"
    (tmp_path / "afile").write_text("x")
    assert cli_error(capsys, "cleanup", tmp_path / "afile", "--dry-run") == \
        f"{tmp_path / 'afile'} is a file, not a folder; give folders that hold indexes (default: {cache_dir()})"


def failing_cleanup(monkeypatch, ex: BaseException) -> None:
    """``lateint cleanup`` raises ``ex``."""
    def run(args):
        raise ex
    monkeypatch.setattr(cli, "_run_cleanup", run)


def _open_and_decode(path) -> None:
    with open(path, encoding="utf-8") as f:
        f.read()


@pytest.mark.parametrize("ex,expected", [
    (IndexNotFoundError("no index at 'x'"), "no index at 'x'"),
    (IndexCorruptError("index 'x': file 'codes.bin' is missing; rebuild the index (indexer(..., overwrite=True)) or "
                       "restore 'x' from a copy; index.verify() checks every file"),
     "index 'x': file 'codes.bin' is missing; rebuild the index (`lateint index COLLECTION_OR_JSONL --out INDEX "
     "--overwrite`) or restore 'x' from a copy"),
    (ModelMismatchError("built with another model"), "built with another model"),
    (PermissionError(13, "Permission denied", "/root/x"),
     "/root/x: Permission denied; check the permissions, or choose another path"),
    (FileNotFoundError(2, "No such file or directory", "q.tsv"), "q.tsv: No such file or directory; check the path"),
    (KeyError("3 docnos not in the collection"), "3 docnos not in the collection"),
    (ValueError("a value\nover two lines"), "a value over two lines"),
    (SystemExit("doc2query-train: give exactly one"), "doc2query-train: give exactly one"),
], ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else "")
def test_library_errors_are_one_line(monkeypatch, capsys, ex, expected):
    failing_cleanup(monkeypatch, ex)
    assert cli_error(capsys, "cleanup") == expected


def test_undecodable_file_is_named(tmp_path, monkeypatch, capsys):
    """A UnicodeDecodeError raised while a file is open names that file and suggests iconv."""
    path = tmp_path / "corpus.jsonl"
    path.write_bytes("caf\xe9".encode("latin-1"))

    def run(args):
        _open_and_decode(path)
    monkeypatch.setattr(cli, "_run_cleanup", run)
    assert cli_error(capsys, "cleanup") == \
        f"{path} is not UTF-8 text (byte 0xe9 at offset 3); lateint reads UTF-8 only: convert it, e.g. `iconv -f " \
        f"latin1 -t utf-8 {path} > {path}.utf8` and use (or rename) that"


def test_unexpected_error_says_where_and_suggests_debug(monkeypatch, capsys):
    failing_cleanup(monkeypatch, ZeroDivisionError("division by zero"))
    message = cli_error(capsys, "cleanup")
    assert message.startswith("internal error at test_cli.py:")
    assert message.endswith("ZeroDivisionError: division by zero; re-run with --debug for the full traceback and "
                            "report it")


@pytest.mark.parametrize("argv", [["--debug", "cleanup"], ["cleanup", "--debug"]])
def test_debug_before_or_after_the_command_raises(monkeypatch, argv):
    failing_cleanup(monkeypatch, ZeroDivisionError("division by zero"))
    with pytest.raises(ZeroDivisionError):
        cli.main(argv)
    failing_cleanup(monkeypatch, SystemExit("doc2query-train: give exactly one"))
    with pytest.raises(SystemExit, match="give exactly one"):
        cli.main(argv)


def test_interrupt_exits_130(monkeypatch, capsys):
    failing_cleanup(monkeypatch, KeyboardInterrupt())
    caught = None
    try:  # not pytest.raises: a KeyboardInterrupt escaping it would stop the whole session
        cli.main(["cleanup"])
    except BaseException as ex:  # noqa: B036
        caught = ex
    assert isinstance(caught, SystemExit) and caught.code == 130
    assert capsys.readouterr().err == "lateint: interrupted\n"
    with pytest.raises(KeyboardInterrupt):
        cli.main(["cleanup", "--debug"])


def test_command_line_error_is_one_line_and_debug_shows_the_traceback(tmp_path):
    """The installed command: status 2 and one line on stderr; with --debug, the traceback."""
    proc = lateint("search", str(tmp_path / "afile.lateint"), "query", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == f"lateint: error: index {tmp_path / 'afile.lateint'} does not exist; build one with " \
                          f"`lateint index COLLECTION_OR_JSONL --out {tmp_path / 'afile.lateint'}`\n"
    proc = lateint("--debug", "search", str(tmp_path / "afile.lateint"), "query", cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback (most recent call last)" in proc.stderr
    assert proc.stderr.rstrip().endswith(f"CLIError: index {tmp_path / 'afile.lateint'} does not exist; build one "
                                         f"with `lateint index COLLECTION_OR_JSONL --out {tmp_path / 'afile.lateint'}`")


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
