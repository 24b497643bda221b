"""File integrity of a format-2 index: every file's committed size and checksums, recorded in ``lateint.json``.

``meta["files"][name] = {"size": bytes, "crc32": [[end, crc], ...]}``: the committed size and the CRC-32 of
consecutive byte ranges ``[previous end, end)``. Immutable files have one range; appendable arrays get one range
per append, so an add checksums only what it wrote. ``lateint.json`` itself is sealed (:func:`seal_json`): its
first key ``meta_checksum`` and last key ``meta_crc32`` hold the CRC-32 of its own bytes (the value zeroed), so a
changed byte anywhere in it is detected when it is read (metadata written before the seal still opens).

Three levels of checking, every error an :class:`IndexCorruptError` naming the file and the fix:

- :func:`check_sizes`: every file exists with its committed size (one ``stat`` per file).
- :func:`check_at_open` (every open): sizes, plus the checksums of every file except the ``deferred`` ones: the
  per-vector data whose size grows with the number of vectors (codes, residuals, token ids, inverted-file
  postings), which the reader checks structurally instead (headers, value ranges), and files search never reads
  (``token_stats.npz``, checked when it is read).
- :func:`verify` (``index.verify()``, or ``ColBERTIndex(path, verify=True)``): sizes and every checksum.
"""
from __future__ import annotations

import json
import os
import re
import zlib
from pathlib import Path
from typing import Any

CHUNK = 2 ** 24
SEAL_KIND_KEY, SEAL_CRC_KEY = "meta_checksum", "meta_crc32"  # first and last key of a sealed lateint.json
SEAL_KIND = "crc32 of this file, with the value of meta_crc32 zeroed"
_SEAL_ZERO = "00000000"


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


def corrupt(folder: Path, name: str, problem: str) -> IndexCorruptError:
    """The error for file ``name`` of the index at ``folder``: ``problem`` (what is wrong), then the fix."""
    return IndexCorruptError(f"index {str(folder)!r}: file {name!r} {problem}; {_fix(folder)}")


def seal_json(meta: dict[str, Any]) -> bytes:
    """``meta`` as sealed JSON bytes: ``meta_checksum`` first, ``meta_crc32`` (8 hex digits: the CRC-32 of the
    bytes written, with those digits zeroed) last. Keys of an earlier seal in ``meta`` are replaced."""
    body = {k: v for k, v in meta.items() if k not in (SEAL_KIND_KEY, SEAL_CRC_KEY)}
    text = json.dumps({SEAL_KIND_KEY: SEAL_KIND, **body, SEAL_CRC_KEY: _SEAL_ZERO}, indent=1)
    head, tail = text.rsplit(_SEAL_ZERO, 1)
    return f"{head}{zlib.crc32(text.encode('utf-8')):08x}{tail}".encode("utf-8")


def unseal_json(raw: bytes, meta: dict[str, Any], folder: Path, name: str) -> dict[str, Any]:
    """Check the seal of the JSON bytes ``raw`` (parsed: ``meta``) and return ``meta`` without the seal's keys.
    Metadata without either key (written before the seal existed) passes unchecked; with only one of them, or a
    checksum that does not match, raises :class:`IndexCorruptError` naming ``name``."""
    kind, crc = meta.get(SEAL_KIND_KEY), meta.get(SEAL_CRC_KEY)
    if kind is None and crc is None:
        return meta
    if kind != SEAL_KIND or not isinstance(crc, str) or not re.fullmatch(r"[0-9a-f]{8}", crc):
        raise corrupt(folder, name, f"has a damaged checksum ({SEAL_KIND_KEY}={kind!r}, {SEAL_CRC_KEY}={crc!r}): "
                                    f"its content was altered")
    mark = f'"{SEAL_CRC_KEY}": "{crc}"'.encode("utf-8")
    at = raw.rfind(mark)
    zeroed = raw[:at] + f'"{SEAL_CRC_KEY}": "{_SEAL_ZERO}"'.encode("utf-8") + raw[at + len(mark):]
    got = zlib.crc32(zeroed)
    if at < 0 or got != int(crc, 16):
        raise corrupt(folder, name, f"fails its checksum (crc32 {got:08x}, {crc} recorded): its content was "
                                    f"altered")
    return {k: v for k, v in meta.items() if k not in (SEAL_KIND_KEY, SEAL_CRC_KEY)}


def check_sizes(folder: Path, files: dict[str, dict], appendable: set[str]) -> None:
    """Cheap check: every recorded file exists with its committed size (appendable files: at least that size,
    the rest being an interrupted append that readers ignore)."""
    for name, rec in files.items():
        p = Path(folder) / name
        try:
            st = os.stat(p)
        except FileNotFoundError:
            raise corrupt(folder, name, "is missing") from None
        except NotADirectoryError:
            raise corrupt(folder, name, f"cannot be reached ({str(folder)!r} is not a folder)") from None
        if not os.path.isfile(p):
            raise corrupt(folder, name, "is not a regular file")
        size, want = st.st_size, int(rec["size"])
        if size < want or (size != want and name not in appendable):
            raise corrupt(folder, name, f"has {size} bytes, {want} expected "
                                        f"({'truncated' if size < want else 'altered'})")


def _check_crcs(folder: Path, name: str, rec: dict[str, Any]) -> int:
    """Compare every checksum range of file ``name``; returns the bytes checked."""
    start = 0
    for end, crc in rec["crc32"]:
        got = crc32_range(Path(folder) / name, start, end)
        if got != crc:
            raise corrupt(folder, name, f"fails its checksum in bytes {start}..{end} (crc32 {got:08x}, {crc:08x} "
                                        f"recorded): its content was altered")
        start = end
    return start


def check_at_open(folder: Path, files: dict[str, dict], appendable: set[str], deferred: set[str]) -> int:
    """The check of every open: sizes, then the checksums of every file not in ``deferred`` (the per-vector data,
    checked by :func:`verify` only). Returns the bytes checksummed."""
    check_sizes(folder, files, appendable)
    return sum(_check_crcs(folder, name, rec) for name, rec in files.items() if name not in deferred)


def verify(folder: Path, files: dict[str, dict], appendable: set[str]) -> int:
    """Full check: sizes, then every checksum range. Returns the bytes checked."""
    check_sizes(folder, files, appendable)
    return sum(_check_crcs(folder, name, rec) for name, rec in files.items())


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())
