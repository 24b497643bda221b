"""Keeps the figures of the README and of docs/*.md equal to the results files the experiments write.

A document marks each included file::

    <!-- include: experiments/results/vaswani.md -->
    ...the file's content...
    <!-- end include -->

``shift=N`` (``<!-- include: experiments/results/scale_estimate.md shift=1 -->``) adds ``N`` levels to every
markdown heading of the file, so that a file's own ``## ...`` headings sit below the section that includes it.

``python experiments/readme.py`` rewrites the content between the markers from the files, in README.md and every
docs/*.md; ``--check`` only reports blocks that differ (exit status 1), as the tests do.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(<!-- include: (?P<path>[^ ]+)(?: shift=(?P<shift>\d+))? -->\n)(?P<body>.*?)(<!-- end include -->)",
                   re.S)
HEADING = re.compile(r"^(#{1,6}) ", re.M)


def documents(root: Path = ROOT) -> list[Path]:
    """The documents that may include results files: README.md and docs/*.md."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def content(path: str, shift: int = 0, root: Path = ROOT) -> str:
    """The text a block of ``path`` must hold: the file, its headings ``shift`` levels deeper (at most 6)."""
    text = (root / path).read_text()
    if shift:
        text = HEADING.sub(lambda m: "#" * min(6, len(m.group(1)) + shift) + " ", text)
    return text


def included(text: str, root: Path = ROOT) -> list[tuple[str, str, str]]:
    """``(path, body in the document, expected content)`` for every include block of ``text``."""
    return [(m["path"], m["body"], content(m["path"], int(m["shift"] or 0), root)) for m in BLOCK.finditer(text)]


def render(text: str, root: Path = ROOT) -> str:
    """``text`` with every include block's body replaced by its expected content."""
    return BLOCK.sub(lambda m: m.group(1) + content(m["path"], int(m["shift"] or 0), root) + m.group(5), text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="report blocks that differ from their files; change nothing")
    args = ap.parse_args()
    stale_any = False
    for doc in documents():
        text = doc.read_text()
        stale = [p for p, body, want in included(text) if body != want]
        stale_any |= bool(stale)
        name = doc.relative_to(ROOT)
        if args.check:
            for p in stale:
                print(f"{name}: block of {p} differs from the file: run python experiments/readme.py")
        elif stale:
            doc.write_text(render(text))
            print(f"{name}: updated {len(stale)} block(s): {', '.join(stale)}")
    if args.check:
        sys.exit(1 if stale_any else 0)


if __name__ == "__main__":
    main()
