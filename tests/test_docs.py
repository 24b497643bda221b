"""The documentation pages (pyterrier_lateint/pt_docs/*.rst, PyTerrier's format) build, and run as written.

- The pages build with Sphinx (docs/sphinx/conf.py; autodoc imports the package), a warning being an error.
- Every page is reachable from index.rst's toctree, and every toctree entry is a page.
- The pages hold only ``.. code-block::`` directives of known kinds (``python``, optionally ``:class: online`` or
  ``:class: long``; ``bash``; ``text``), and no other literal blocks, so no example escapes the rules below.
- The code blocks follow the README's rules (tests/test_readme.py, whose functions this module uses): a ``python``
  block without a class runs offline in a fresh process and folder, exits 0 (twice in the same folder when it builds
  an index) and prints what its ``# -> TEXT`` comments say; an ``online`` or ``long`` block compiles and runs to exit
  0 against the stand-ins of tests/readme_stubs.py, its expectations checked too; the scripts and ``lateint``
  commands a ``bash`` block names exist and answer ``--help``.
- The API page documents every name the package and its subpackages export (``__all__``).

The Sphinx build and the blocks' processes are started together when the first test of this module runs,
``LATEINT_DOCS_JOBS`` (default 2) at a time, each with its share of the CPU threads, and each test then waits for its
own: the processes spend most of their time importing torch and transformers, which overlaps well. Only the selected
tests' processes are started.
"""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import textwrap
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest

from test_readme import (BLOCK_TIMEOUT, base_env, builds_index, check_output, expectations, run_against_stubs,
                         run_offline, scripts_and_commands)

ROOT = Path(__file__).resolve().parents[1]
PAGES_DIR = ROOT / "pyterrier_lateint" / "pt_docs"
CONF_DIR = ROOT / "docs" / "sphinx"
PAGES = sorted(PAGES_DIR.glob("*.rst"))
JOBS = max(1, int(os.environ.get("LATEINT_DOCS_JOBS", "2")))

DIRECTIVE = re.compile(r"^(?P<indent>[ \t]*)\.\.[ \t]+(?P<name>[\w:-]+)::[ \t]*(?P<arg>.*?)[ \t]*$")
OPTION = re.compile(r"^[ \t]*:(?P<name>[\w-]+):[ \t]*(?P<value>.*?)[ \t]*$")
LANGUAGES = {"python", "bash", "text"}
CLASSES = {"online", "long"}  # python blocks run against the stand-ins instead of offline
UNTESTED_DIRECTIVES = {"code", "sourcecode", "literalinclude", "doctest", "testcode", "ipython", "jupyter-execute"}


@dataclass(frozen=True)
class Block:
    """A ``.. code-block::`` of a page: ``line`` is the 1-based line of its first line of code."""

    page: str
    line: int
    language: str
    classes: tuple[str, ...]
    code: str

    @property
    def where(self) -> str:
        return f"pt_docs/{self.page}:{self.line}"

    @property
    def stubbed(self) -> bool:
        return bool(set(self.classes) & CLASSES)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def directives(text: str) -> list[tuple[int, str, str, dict, int, list[str], int]]:
    """Every directive of an RST text: ``(line index, name, argument, options, index of the body's first line,
    body lines, index past the body)``; the body is the lines after the options that are blank or indented deeper
    than the directive."""
    lines = text.splitlines()
    found, i = [], 0
    while i < len(lines):
        m = DIRECTIVE.match(lines[i])
        if not m:
            i += 1
            continue
        base, j, options = len(m["indent"]), i + 1, {}
        while j < len(lines) and lines[j].strip() and _indent(lines[j]) > base and OPTION.match(lines[j]):
            o = OPTION.match(lines[j])
            options[o["name"]] = o["value"]
            j += 1
        k = j
        while k < len(lines) and (not lines[k].strip() or _indent(lines[k]) > base):
            k += 1
        found.append((i, m["name"], m["arg"], options, j, lines[j:k], k))
        i = k if m["name"] == "code-block" else j  # directives nested in others' bodies (a list-table) are seen
    return found


def code_blocks(page: Path) -> list[Block]:
    blocks = []
    for _, name, arg, options, start, body, _ in directives(page.read_text(encoding="utf-8")):
        if name == "code-block":
            first = next((n for n, b in enumerate(body) if b.strip()), 0)
            blocks.append(Block(page.name, start + first + 1, arg, tuple(options.get("class", "").split()),
                                textwrap.dedent("\n".join(body)).strip("\n") + "\n"))
    return blocks


BLOCKS = [b for p in PAGES for b in code_blocks(p)]
OFFLINE = [b for b in BLOCKS if b.language == "python" and not b.stubbed]
STUBBED = [b for b in BLOCKS if b.language == "python" and b.stubbed]
BASH = [b for b in BLOCKS if b.language == "bash"]


def _ids(blocks: list[Block]) -> list[str]:
    return [f"{b.page[:-4]}-line{b.line}" for b in blocks]


# ================================================================================ processes, run ahead
def _sphinx(out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-E", "-b", "html",
                           "-c", str(CONF_DIR), "-d", str(out / "doctrees"), str(PAGES_DIR), str(out / "html")],
                          cwd=ROOT, env=base_env(), capture_output=True, text=True, timeout=BLOCK_TIMEOUT)


def _offline(block: Block, folder: Path) -> list[subprocess.CompletedProcess]:
    """The block's run and, when it builds an index and its first run passed, its re-run in the same folder."""
    runs = [run_offline(block.code, folder)]
    if builds_index(block.code) and runs[0].returncode == 0:
        runs.append(run_offline(block.code, folder))
    return runs


HELP_CHECK = textwrap.dedent("""
    import contextlib, io, sys
    from pyterrier_lateint.cli import main
    for command in sys.argv[1:]:
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                main([command, "--help"])
        except SystemExit as e:
            if e.code not in (0, None):
                sys.exit(f"lateint {command} --help exited with {e.code}")
        if "usage:" not in out.getvalue():
            sys.exit(f"lateint {command} --help printed no usage")
""")


def _bash() -> list[tuple[str, subprocess.CompletedProcess]]:
    """``lateint CMD --help`` of every command the bash blocks name, in one process; ``python SCRIPT --help`` of
    every script they name."""
    scripts, commands = scripts_and_commands([b.code for b in BASH])
    out = [("lateint " + " ".join(sorted(commands)),
            subprocess.run([sys.executable, "-c", HELP_CHECK, *sorted(commands)], cwd=ROOT, env=base_env(),
                           capture_output=True, text=True, timeout=300))]
    for script in sorted(scripts):
        out.append((script, subprocess.run([sys.executable, str(ROOT / script), "--help"], cwd=ROOT, env=base_env(),
                                           capture_output=True, text=True, timeout=300)))
    return out


def _cost(work: tuple) -> int:
    """Longest first, so that the last process to finish starts early."""
    kind = work[0]
    if kind == "offline":
        return 3 if builds_index(work[1].code) else 1
    return {"stubs": 2, "sphinx": 2, "bash": 0}[kind]


class Runner:
    """Starts the processes of the selected tests ``JOBS`` at a time; :meth:`result` waits for one."""

    def __init__(self, tmp_path_factory, works: list[tuple]):
        self.tmp = tmp_path_factory
        self.stub_cache = tmp_path_factory.mktemp("docs-stub-cache")
        self.pool = ThreadPoolExecutor(max_workers=JOBS, thread_name_prefix="docs")
        self.futures: dict[tuple, Future] = {}
        for work in sorted(works, key=_cost, reverse=True):
            self.submit(work)

    def submit(self, work: tuple) -> Future:
        if work not in self.futures:
            kind = work[0]
            if kind == "sphinx":
                self.futures[work] = self.pool.submit(_sphinx, self.tmp.mktemp("sphinx"))
            elif kind == "offline":
                self.futures[work] = self.pool.submit(_offline, work[1], self.tmp.mktemp("offline"))
            elif kind == "stubs":
                block = work[1]
                self.futures[work] = self.pool.submit(run_against_stubs, block.code, f"pt_docs/{block.page}:{block.line}",
                                                      self.tmp.mktemp("stubs"), self.stub_cache)
            else:
                self.futures[work] = self.pool.submit(_bash)
        return self.futures[work]

    def result(self, work: tuple):
        return self.submit(work).result()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def _work_of(item) -> Optional[tuple]:
    """The process a test of this module waits for, or None."""
    if getattr(item, "module", None) is None or item.module.__name__ != __name__:
        return None
    name = getattr(item, "originalname", item.name)
    block = item.callspec.params.get("block") if hasattr(item, "callspec") else None
    return {"test_pages_build_with_sphinx_without_warnings": ("sphinx",),
            "test_offline_block_runs": ("offline", block),
            "test_stubbed_block_runs_against_stubs": ("stubs", block),
            "test_bash_blocks_name_real_scripts_and_commands": ("bash",)}.get(name)


@pytest.fixture(scope="module")
def runner(request, tmp_path_factory):
    works = [w for w in (_work_of(item) for item in request.session.items) if w is not None]
    # processes running side by side share the cores: each gets its share of threads (torch's, numba's and the
    # search pool's), unless the environment already says, instead of all spinning on all of them
    threads = str(max(1, (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
                      // JOBS))
    with pytest.MonkeyPatch.context() as mp:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS", "LATEINT_NUM_THREADS"):
            if JOBS > 1 and name not in os.environ:
                mp.setenv(name, threads)
        r = Runner(tmp_path_factory, list(dict.fromkeys(works)))
        yield r
        r.close()


def _check_output(stdout: str, block: Block) -> None:
    try:
        check_output(stdout, block.code, block.line)
    except AssertionError as e:
        raise AssertionError(f"{block.where}: {e}") from None


# ================================================================================ the pages
def test_pages_build_with_sphinx_without_warnings(runner):
    proc = runner.result(("sphinx",))
    assert proc.returncode == 0, f"sphinx-build -W failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"


def _toctree_entries(page: Path) -> list[str]:
    entries = []
    for _, name, _, _, _, body, _ in directives(page.read_text(encoding="utf-8")):
        if name == "toctree":
            for line in body:
                line = line.strip()
                if line and not line.startswith(":"):
                    m = re.fullmatch(r"(?:.*<(?P<target>[^>]+)>|(?P<plain>\S+))", line)
                    entries.append(m["target"] or m["plain"])
    return entries


def test_every_page_is_reachable_from_the_index_toctree():
    names = {p.stem for p in PAGES}
    assert "index" in names
    seen, todo = {"index"}, ["index"]
    while todo:
        page = todo.pop()
        for entry in _toctree_entries(PAGES_DIR / f"{page}.rst"):
            assert entry in names, f"{page}.rst's toctree names {entry!r}, which is not a page"
            if entry not in seen:
                seen.add(entry)
                todo.append(entry)
    assert seen == names, f"pages not reachable from index.rst's toctree: {sorted(names - seen)}"


def test_pages_hold_only_known_code_blocks():
    assert OFFLINE and STUBBED and BASH
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        spans = set()
        for i, name, arg, options, _, _, end in directives(text):
            assert name not in UNTESTED_DIRECTIVES, f"{page.name}:{i + 1}: use `.. code-block::`, not `.. {name}::`"
            if name == "code-block":
                assert arg in LANGUAGES, f"{page.name}:{i + 1}: code-block language {arg!r} not in {LANGUAGES}"
                classes = set(options.get("class", "").split())
                assert classes <= CLASSES and (arg == "python" or not classes), (page.name, i + 1, classes)
                assert len(classes) <= 1, f"{page.name}:{i + 1}: one of {CLASSES} at most"
                spans.update(range(i, end))
        for n, line in enumerate(text.splitlines()):
            if n not in spans and line.rstrip().endswith("::") and not DIRECTIVE.match(line):
                raise AssertionError(f"{page.name}:{n + 1}: a literal block (`::`) is not run by the tests; "
                                     f"use `.. code-block::`")


def test_api_page_documents_every_export():
    documented = set(re.findall(r"^\.\. auto\w+::\s*(\S+)", (PAGES_DIR / "api.rst").read_text(), re.M))
    missing = []
    package_dir = ROOT / "pyterrier_lateint"
    for init in [package_dir / "__init__.py", *sorted(package_dir.glob("*/__init__.py"))]:
        package = ".".join(init.parent.relative_to(ROOT).parts)
        exported = next((ast.literal_eval(node.value) for node in ast.parse(init.read_text()).body
                         if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__"
                                                                 for t in node.targets)), [])
        for name in exported:
            # a name is documented under its package, or under the top level when both export it
            if f"{package}.{name}" not in documented and f"pyterrier_lateint.{name}" not in documented:
                missing.append(f"{package}.{name}")
    assert not missing, f"api.rst documents none of {missing}"


# ================================================================================ the code blocks
@pytest.mark.parametrize("block", OFFLINE, ids=_ids(OFFLINE))
def test_offline_block_that_prints_says_what(block):
    n_prints = len(re.findall(r"\bprint\(", block.code))
    assert len(expectations(block.code)) >= n_prints, \
        f"{block.where}: {n_prints} print(...) but {len(expectations(block.code))} `# -> ` expected outputs"


@pytest.mark.parametrize("block", OFFLINE, ids=_ids(OFFLINE))
def test_offline_block_runs(block, runner):
    runs = runner.result(("offline", block))
    for n, proc in enumerate(runs):
        again = " on a re-run in the same folder" if n else ""
        assert proc.returncode == 0, f"{block.where} failed{again}:\n{proc.stderr[-4000:]}"
        _check_output(proc.stdout, block)
    if builds_index(block.code):
        assert len(runs) == 2


@pytest.mark.parametrize("block", STUBBED, ids=_ids(STUBBED))
def test_stubbed_block_compiles(block):
    compile(block.code, block.where, "exec")


@pytest.mark.parametrize("block", STUBBED, ids=_ids(STUBBED))
def test_stubbed_block_runs_against_stubs(block, runner):
    proc = runner.result(("stubs", block))
    assert proc.returncode == 0, \
        f"{block.where} failed against the stubs:\n{proc.stdout[-2000:]}\n{proc.stderr[-6000:]}"
    _check_output(proc.stdout, block)


def test_bash_blocks_name_real_scripts_and_commands(runner):
    scripts, commands = scripts_and_commands([b.code for b in BASH])
    assert commands
    for what, proc in runner.result(("bash",)):
        assert proc.returncode == 0, f"{what} --help failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        if what in scripts:
            assert "usage:" in proc.stdout, (what, proc.stdout[-2000:])
