"""The package's layer contract (``.importlinter``: settings -> base | data | maxsim -> models -> colbert ->
index | training -> doc2query -> experiments -> cli) holds, and the check really catches an upward import."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    code = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    return subprocess.run([sys.executable, "-c", code, "--config", str(root / ".importlinter"), "--no-cache"],
                          capture_output=True, text=True, cwd=root, env={"PYTHONPATH": str(root), "PATH": ""},
                          timeout=120)


def test_layers_kept():
    proc = lint_imports(REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "BROKEN" not in proc.stdout and "0 broken" in proc.stdout


def test_an_upward_import_is_caught(tmp_path):
    """A copy of the package in which the models layer imports the index (a layer above it) breaks the contract."""
    shutil.copytree(REPO / "pyterrier_lateint", tmp_path / "pyterrier_lateint",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / ".importlinter", tmp_path / ".importlinter")
    encoder = tmp_path / "pyterrier_lateint" / "models" / "encoder.py"
    encoder.write_text(encoder.read_text() + "\n\ndef _upward():\n    from ..index import ColBERTIndex  # noqa\n")
    proc = lint_imports(tmp_path)
    assert proc.returncode != 0
    assert "pyterrier_lateint.models.encoder -> pyterrier_lateint.index" in proc.stdout
