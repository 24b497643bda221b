"""File integrity of a format-2 index: every file's committed size and checksums, recorded in ``lateint.json``.

``meta["files"][name] = {"size": bytes, "crc32": [[end, crc], ...]}``: the committed size and the CRC-32 of
consecutive byte ranges ``[previous end, end)``. Immutable files have one range; appendable arrays get one range
per append, so an add checksums only what it wrote. :func:`check_sizes` (at every open: one ``stat`` per file)
refuses missing and truncated files; :func:`verify` (``index.verify()``, or ``ColBERTIndex(path, verify=True)``)
re-reads everything and compares checksums. Errors name the file and the fix.
"""
from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Any

CHUNK = 2 ** 24


class IndexCorruptError(ValueError):
    """A file of the index is missing, truncated or altered."""


def crc32_range(path: Path, start: int = 0, end: int | None = None) -> int:
    """CRC-32 of bytes ``[start, end)`` of ``path`` (to the end of the file when ``end`` is None)."""
    crc = 0
    with open(path, "rb") as f:
        f.seek(start)
        left = None if end is None else end - start
        while left is None or left > 0:
            buf = f.read(CHUNK if left is None else min(CHUNK, left))
            if not buf:
                break
            crc = zlib.crc32(buf, crc)
            if left is not None:
                left -= len(buf)
    return crc


def record(path: Path) -> dict[str, Any]:
    """The record of a whole (immutable) file: its size and one checksum range."""
    size = os.path.getsize(path)
    return {"size": size, "crc32": [[size, crc32_range(path, 0, size)]]}


def extend_record(rec: dict[str, Any] | None, path: Path, new_size: int) -> dict[str, Any]:
    """``rec`` of an appendable file grown to ``new_size`` bytes: one more range for the appended bytes."""
    old = 0 if rec is None else int(rec["size"])
    ranges = [] if rec is None else [list(r) for r in rec["crc32"]]
    if new_size > old:
        ranges.append([new_size, crc32_range(path, old, new_size)])
    return {"size": new_size, "crc32": ranges}


def _fix(folder: Path) -> str:
    return (f"rebuild the index (indexer(..., overwrite=True)) or restore {str(folder)!r} from a copy; "
            f"index.verify() checks every file")


def check_sizes(folder: Path, files: dict[str, dict], appendable: set[str]) -> None:
    """Cheap check: every recorded file exists with its committed size (appendable files: at least that size,
    the rest being an interrupted append that readers ignore)."""
    for name, rec in files.items():
        p = Path(folder) / name
        try:
            size = os.stat(p).st_size
        except FileNotFoundError:
            raise IndexCorruptError(f"index {str(folder)!r}: file {name!r} is missing; {_fix(folder)}") from None
        want = int(rec["size"])
        if size < want or (size != want and name not in appendable):
            raise IndexCorruptError(f"index {str(folder)!r}: file {name!r} has {size} bytes, {want} expected "
                                    f"({'truncated' if size < want else 'altered'}); {_fix(folder)}")


def verify(folder: Path, files: dict[str, dict], appendable: set[str]) -> int:
    """Full check: sizes, then every checksum range. Returns the bytes checked."""
    check_sizes(folder, files, appendable)
    total = 0
    for name, rec in files.items():
        start = 0
        for end, crc in rec["crc32"]:
            got = crc32_range(Path(folder) / name, start, end)
            if got != crc:
                raise IndexCorruptError(f"index {str(folder)!r}: file {name!r} fails its checksum in bytes "
                                        f"{start}..{end} (crc32 {got:08x}, {crc:08x} recorded): its content was "
                                        f"altered; {_fix(folder)}")
            total += end - start
            start = end
    return total


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())
