"""The README and the pages of docs/ run as written, and print what they say.

- Every ```python block ("offline") runs in a fresh process and folder and exits 0 (twice in the same folder when it
  builds an index: a re-run meets no FileExistsError), and prints what it says: every ``# -> TEXT`` comment in it
  is an expectation, and each TEXT appears in the block's stdout (of each run), in the order of the comments, after
  runs of whitespace are made one space in both; ``...`` in TEXT stands for anything, and a remark may follow TEXT
  after two spaces and a ``#``. Every offline block that prints carries at least one expectation.
- Every ```python online block (it needs the Hugging Face Hub or ir_datasets downloads) and ```python long block
  (longer than a test as written) compiles, and runs to exit 0 in a fresh process and folder against the stand-ins
  of tests/readme_stubs.py, imported first: tiny random checkpoints for Hub names and a local folder for Hub
  uploads, small local ir_datasets registrations, collections cut to a few hundred documents, training capped at 2
  steps of batch 2, a local Ray cluster with enough logical CPUs; the block itself runs unchanged, through the
  project's real code. Its ``# -> `` expectations, if any, are checked the same way. A block that fails through a
  known bug of the package (``KNOWN_BUGS``) xfails on that bug's error only, and fails once it runs.
- Every script and command that a ```bash block names exists and answers --help.
- Every figure included from experiments/results/ equals the file the experiment wrote, and each results file names
  its command."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
README = (ROOT / "README.md").read_text()
#: the markdown documents whose blocks run: the README and the pages of docs/ (benchmarks, results, design)
DOCS = {"README.md": README, **{f"docs/{p.name}": p.read_text() for p in sorted((ROOT / "docs").glob("*.md"))}}
FENCE = re.compile(r"^```(?P<info>[^\n]*)\n(?P<code>.*?)^```", re.S | re.M)
#: (info, code, where): ``where`` names the document and line, e.g. ``README.md:42``
BLOCKS = [(m["info"].strip(), m["code"], f"{doc}:{text[:m.start()].count(chr(10)) + 1}")
          for doc, text in DOCS.items() for m in FENCE.finditer(text)]
OFFLINE = [(code, line) for info, code, line in BLOCKS if info == "python"]
ONLINE = [(code, line) for info, code, line in BLOCKS if info in ("python online", "python long")]
BASH = [(code, line) for info, code, line in BLOCKS if info == "bash"]
EXPECT = re.compile(r"#\s*->\s*(.*?)\s*$", re.M)  # `print(x)   # -> 2 ['c', 'a']`
BLOCK_TIMEOUT = 1800  # seconds; the Vaswani index block takes minutes, more when other jobs share the cores


def expectations(code: str) -> list[str]:
    """The expected texts of a block's ``# -> TEXT`` comments, in order (a remark after ``TEXT`` follows two spaces
    and a ``#``: ``# -> 2 ['c', 'a']  # live documents``)."""
    return [t for t in (m.split("  #")[0].strip() for m in EXPECT.findall(code)) if t]


def _squash(text: str) -> str:
    return " ".join(text.split())


def check_output(stdout: str, code: str, line: str | int) -> None:
    """Each expected text of ``code`` occurs in ``stdout``, in order, after runs of whitespace are made one space in
    both; ``...`` in an expected text stands for anything (``# -> [ 1.92... -0.03...]``)."""
    out, at = _squash(stdout), 0
    for text in expectations(code):
        for piece in filter(None, (_squash(p) for p in text.split("..."))):
            found = out.find(piece, at)
            assert found >= 0, (f"block at {line}: {piece!r} (of `# -> {text}`) not in its output"
                                + (" after the previous expectation" if out.find(piece) >= 0 else "")
                                + f"; it printed:\n{stdout[-6000:]}")
            at = found + len(piece)


def base_env() -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "MPLBACKEND": "Agg",
           "PYTHONPATH": str(ROOT)}
    env.pop("LATEINT_PRECISION", None)  # the README runs at the package's defaults, not the tests' fp32
    return env


def builds_index(code: str) -> bool:
    """Whether an offline block builds an index: it then runs a second time in the same folder."""
    return "index(" in code or "indexer(" in code


def run_offline(code: str, folder: Path) -> subprocess.CompletedProcess:
    """One run of an offline block in ``folder``: a fresh process, at the package's default settings."""
    return subprocess.run([sys.executable, "-c", code], cwd=folder, env=base_env(), capture_output=True, text=True,
                          timeout=BLOCK_TIMEOUT)


def run_against_stubs(code: str, line: str | int, tmp_path: Path, stub_cache: Path) -> subprocess.CompletedProcess:
    """One run of an online or long block (``line``: where it is, e.g. ``README.md:42``) in a fresh folder under
    ``tmp_path``, against the stand-ins of tests/readme_stubs.py (``stub_cache``: the stand-ins shared by the
    session's blocks)."""
    work, world = tmp_path / "work", tmp_path / "world"
    work.mkdir()
    world.mkdir()
    block = world / "block.py"
    block.write_text(code, encoding="utf-8")
    env = {**base_env(), "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT)]),
           "README_STUB_CACHE": str(stub_cache), "README_STUB_WORLD": str(world),
           "HF_HOME": str(world / "hf"), "PYTERRIER_HOME": str(world / "pyterrier"),
           "IR_DATASETS_HOME": str(world / "ir_datasets"), "LATEINT_CACHE": str(world / "lateint-cache")}
    runner = "import sys, readme_stubs; readme_stubs.run_block(sys.argv[1], sys.argv[2])"
    return subprocess.run([sys.executable, "-c", runner, str(block), str(line)], cwd=work, env=env,
                          capture_output=True, text=True, timeout=BLOCK_TIMEOUT)


SCRIPT = re.compile(r"python (experiments/\w+\.py|benchmarks/\w+\.py)")  # a script a ```bash block runs
COMMAND = re.compile(r"^\s*lateint (\S+)", re.M)  # a `lateint` command a ```bash block runs


def scripts_and_commands(codes: list[str]) -> tuple[set[str], set[str]]:
    """The scripts (``experiments/X.py``, ``benchmarks/X.py``) and ``lateint`` commands that bash blocks name."""
    return ({s for code in codes for s in SCRIPT.findall(code)}, {c for code in codes for c in COMMAND.findall(code)})


def test_readme_has_both_kinds_of_blocks():
    assert OFFLINE and ONLINE and BASH
    assert all(info in ("python", "python online", "python long", "bash", "text", "") for info, _, _ in BLOCKS), \
        [info for info, _, _ in BLOCKS]


@pytest.mark.parametrize("code,line", OFFLINE, ids=[line for _, line in OFFLINE])
def test_offline_block_that_prints_says_what(code, line):
    if re.search(r"\bprint\(", code):
        assert expectations(code), f"block at {line} prints but shows no `# -> ` expected output"


@pytest.mark.parametrize("code,line", OFFLINE, ids=[line for _, line in OFFLINE])
def test_offline_block_runs(code, line, tmp_path):
    proc = run_offline(code, tmp_path)
    assert proc.returncode == 0, f"block at {line} failed:\n{proc.stderr[-4000:]}"
    check_output(proc.stdout, code, line)
    # runs again in the same folder (no FileExistsError from a previous run)
    if builds_index(code):
        again = run_offline(code, tmp_path)
        assert again.returncode == 0, f"block at {line} failed on a re-run:\n{again.stderr[-4000:]}"
        check_output(again.stdout, code, line)


@pytest.mark.parametrize("code,line", ONLINE, ids=[line for _, line in ONLINE])
def test_online_block_compiles(code, line):
    compile(code, str(line), "exec")


@pytest.fixture(scope="session")
def stub_cache(tmp_path_factory) -> Path:
    """Stand-in checkpoints and inputs, built by the first block that needs them and shared by the others."""
    return tmp_path_factory.mktemp("readme-stub-cache")


# blocks that fail through a known bug of the package: a key the block contains -> (what its error output holds,
# the bug). The test then xfails on that error only, and fails once the block passes (remove the entry).
KNOWN_BUGS: dict[str, tuple[str, str]] = {}


@pytest.mark.parametrize("code,line", ONLINE, ids=[line for _, line in ONLINE])
def test_online_block_runs_against_stubs(code, line, tmp_path, stub_cache):
    proc = run_against_stubs(code, line, tmp_path, stub_cache)
    for key, (error, bug) in KNOWN_BUGS.items():
        if key in code:
            assert proc.returncode != 0, f"block at {line} runs now: remove its KNOWN_BUGS entry ({bug})"
            if error in proc.stderr:
                pytest.xfail(bug)
    assert proc.returncode == 0, \
        f"block at {line} failed against the stubs:\n{proc.stdout[-2000:]}\n{proc.stderr[-6000:]}"
    check_output(proc.stdout, code, line)


def test_bash_blocks_name_real_scripts_and_commands():
    scripts, commands = scripts_and_commands([code for code, _ in BASH])
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
    assert readme.included(README), "the README includes no results file"
    for doc, text in DOCS.items():
        for path, body, content in readme.included(text):
            assert body == content, f"{path} changed since {doc} was updated: run python experiments/readme.py"


def test_every_results_file_names_its_command():
    for path in (ROOT / "experiments" / "results").glob("*.md"):
        assert re.search(r"`(python|lateint) [^`]+`", path.read_text()), f"{path.name} does not name its command"
