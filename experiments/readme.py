"""Keeps the README's figures equal to the results files the experiments write.

The README marks each included file::

    <!-- include: experiments/results/vaswani.md -->
    ...the file's content...
    <!-- end include -->

``python experiments/readme.py`` rewrites the content between the markers from the files; ``--check`` only reports
blocks that differ (exit status 1), as the tests do.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(<!-- include: (?P<path>[^ ]+) -->\n)(?P<body>.*?)(<!-- end include -->)", re.S)


def included(readme: str, root: Path = ROOT) -> list[tuple[str, str, str]]:
    """``(path, body in the README, file content)`` for every include block."""
    return [(m["path"], m["body"], (root / m["path"]).read_text()) for m in BLOCK.finditer(readme)]


def render(readme: str, root: Path = ROOT) -> str:
    return BLOCK.sub(lambda m: m.group(1) + (root / m["path"]).read_text() + m.group(4), readme)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="report blocks that differ from their files; change nothing")
    args = ap.parse_args()
    path = ROOT / "README.md"
    readme = path.read_text()
    stale = [p for p, body, content in included(readme) if body != content]
    if args.check:
        for p in stale:
            print(f"README block of {p} differs from the file: run python experiments/readme.py")
        sys.exit(1 if stale else 0)
    path.write_text(render(readme))
    print(f"updated {len(stale)} block(s): {', '.join(stale) or 'none'}")


if __name__ == "__main__":
    main()
