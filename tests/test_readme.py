"""The README runs as written: every ```python block (offline) executes in a fresh process and folder; ```python
online blocks (they need the Hugging Face Hub or ir_datasets downloads) and ```python long blocks (offline, but
longer than a test) at least compile; every script and command
that a ```bash block names exists and answers --help; and every figure included from experiments/results/ equals the
file the experiment wrote."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
FENCE = re.compile(r"^```(?P<info>[^\n]*)\n(?P<code>.*?)^```", re.S | re.M)
BLOCKS = [(m["info"].strip(), m["code"], README[:m.start()].count("\n") + 1) for m in FENCE.finditer(README)]
OFFLINE = [(code, line) for info, code, line in BLOCKS if info == "python"]
ONLINE = [(code, line) for info, code, line in BLOCKS if info in ("python online", "python long")]
BASH = [(code, line) for info, code, line in BLOCKS if info == "bash"]


def test_readme_has_both_kinds_of_blocks():
    assert OFFLINE and ONLINE and BASH
    assert all(info in ("python", "python online", "python long", "bash", "text", "") for info, _, _ in BLOCKS), \
        [info for info, _, _ in BLOCKS]


@pytest.mark.parametrize("code,line", OFFLINE, ids=[f"line{line}" for _, line in OFFLINE])
def test_offline_block_runs(code, line, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "MPLBACKEND": "Agg",
           "PYTHONPATH": str(ROOT)}
    env.pop("LATEINT_PRECISION", None)  # the README runs at the package's defaults, not the tests' fp32
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, f"README block at line {line} failed:\n{proc.stderr[-4000:]}"
    # runs again in the same folder (no FileExistsError from a previous run)
    if "index(" in code or "indexer(" in code:
        again = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                               timeout=600)
        assert again.returncode == 0, f"README block at line {line} failed on a re-run:\n{again.stderr[-4000:]}"


@pytest.mark.parametrize("code,line", ONLINE, ids=[f"line{line}" for _, line in ONLINE])
def test_online_block_compiles(code, line):
    compile(code, f"README.md:{line}", "exec")


def test_bash_blocks_name_real_scripts_and_commands():
    scripts = {s for code, _ in BASH for s in re.findall(r"python (experiments/\w+\.py|benchmarks/\w+\.py)", code)}
    commands = {c for code, _ in BASH for c in re.findall(r"^\s*lateint (\S+)", code, re.M)}
    assert scripts and "experiments/run.py" in scripts
    for script in sorted(scripts):
        proc = subprocess.run([sys.executable, str(ROOT / script), "--help"], capture_output=True, text=True,
                              timeout=120, cwd=ROOT)
        assert proc.returncode == 0 and "usage:" in proc.stdout, (script, proc.stderr[-2000:])
    for command in sorted(commands):
        proc = subprocess.run([sys.executable, "-m", "pyterrier_lateint.cli", command, "--help"], capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0, (command, proc.stderr[-2000:])


def test_included_results_equal_their_files():
    sys.path.insert(0, str(ROOT / "experiments"))
    import readme
    blocks = readme.included(README)
    assert blocks, "the README includes no results file"
    for path, body, content in blocks:
        assert body == content, f"{path} changed since the README was updated: run python experiments/readme.py"


def test_every_results_file_names_its_command():
    for path in (ROOT / "experiments" / "results").glob("*.md"):
        assert re.search(r"`(python|lateint) [^`]+`", path.read_text()), f"{path.name} does not name its command"
