"""The package's import contracts (``.importlinter``: the layers settings -> base | data | maxsim -> models -> colbert
-> index | training -> doc2query -> experiments -> cli; no import circle inside any folder; private modules used
only inside their package) hold, the checks really catch an upward import and a circle, and no module imports a
private name of another."""
from __future__ import annotations

import ast
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


def package_copy_with(root: Path, module: str, code: str) -> Path:
    """A copy of the package and its contracts under ``root``, with ``code`` appended to ``module`` (a path inside
    the package); returns ``root``."""
    shutil.copytree(REPO / "pyterrier_lateint", root / "pyterrier_lateint",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / ".importlinter", root / ".importlinter")
    target = root / "pyterrier_lateint" / module
    target.write_text(target.read_text() + "\n\n" + code)
    return root


def test_layers_kept():
    proc = lint_imports(REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "BROKEN" not in proc.stdout and "0 broken" in proc.stdout


def test_an_upward_import_is_caught(tmp_path):
    """A copy of the package in which the models layer imports the index (a layer above it) breaks the contract."""
    proc = lint_imports(package_copy_with(tmp_path, "models/encoder.py",
                                          "def _upward():\n    from ..index import ColBERTIndex  # noqa\n"))
    assert proc.returncode != 0
    assert "pyterrier_lateint.models.encoder -> pyterrier_lateint.index" in proc.stdout


def test_a_circle_inside_a_folder_is_caught(tmp_path):
    """A copy of the package in which the index's layout module imports the artifact (which imports, through the
    reader, the layout) breaks the no-circle contract of ``pyterrier_lateint.index``."""
    proc = lint_imports(package_copy_with(tmp_path, "index/layout.py",
                                          "def _circle():\n    from .artifact import ColBERTIndex  # noqa\n"))
    assert proc.returncode != 0
    assert "No import circle" in proc.stdout and "BROKEN" in proc.stdout
    assert ".layout -> .artifact" in proc.stdout


def private_imports(root: Path) -> list[str]:
    """``from X import _name`` statements (a private name of another module) in the package under ``root``."""
    found = []
    for path in sorted((root / "pyterrier_lateint").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module != "__future__":
                found += [f"{path.relative_to(root)}:{node.lineno}: from {'.' * node.level}{node.module or ''} "
                          f"import {a.name}" for a in node.names if a.name.startswith("_")
                          and not a.name.startswith("__")]
    return found


def test_no_module_imports_a_private_name(tmp_path):
    assert private_imports(REPO) == []
    # the scan itself finds one
    (tmp_path / "pyterrier_lateint").mkdir()
    (tmp_path / "pyterrier_lateint" / "m.py").write_text("from .build import _hidden\n")
    assert private_imports(tmp_path) == ["pyterrier_lateint/m.py:1: from .build import _hidden"]
