"""How writers change an index safely: one writer at a time (a lock), and one atomic commit point.

- :func:`writer_lock`: an exclusive ``flock`` on the index's parent folder (no lock file is left behind), held by
  every build, add, delete and compaction; re-entrant within the thread holding it. Readers never lock.
- :func:`commit_meta`: the new ``lateint.json`` (sealed with its own checksum, :func:`~.integrity.seal_json`) is
  written to a temporary file, fsynced and renamed over the old one (``os.replace`` is atomic), then the folder is
  fsynced. A reader opening before the rename sees the old state, one opening after sees the new one; a writer
  killed before it leaves the old state.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
from pathlib import Path
from typing import Any, Iterator

from .integrity import fsync_dir, seal_json

META_TMP_MARK = ".commit-"
_thread_locks: dict[str, threading.RLock] = {}  # one per locked folder: serialises this process's threads
_guard = threading.Lock()
_local = threading.local()  # per thread: folder -> (depth, fd)


@contextlib.contextmanager
def writer_lock(path: Path) -> Iterator[None]:
    """Exclusive writer lock of the index at ``path``: blocks while another process or thread writes an index in
    the same folder; re-entrant in the thread that holds it."""
    parent = Path(path).resolve().parent
    _make_folder(parent, Path(path))
    key = str(parent)
    with _guard:
        rlock = _thread_locks.setdefault(key, threading.RLock())
    held = _local.__dict__.setdefault("held", {})
    with rlock:
        if key in held:
            held[key][0] += 1
        else:
            fd = os.open(parent, os.O_RDONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except BaseException:
                os.close(fd)
                raise
            held[key] = [1, fd]
        try:
            yield
        finally:
            held[key][0] -= 1
            if held[key][0] == 0:
                fd = held.pop(key)[1]
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)


def _make_folder(folder: Path, target: Path) -> None:
    """Create ``folder`` (the parent of ``target``) and its parents; a file in the way is a clear error."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocking = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), folder)
        raise NotADirectoryError(f"cannot write {str(target)!r}: {str(blocking)!r} is a file, not a folder; choose "
                                 f"another path") from None


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically and durably (temporary file, fsync, rename, fsync folder)."""
    path = Path(path)
    tmp = path.parent / f"{path.name}{META_TMP_MARK}{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write ``obj`` as JSON to ``path`` atomically and durably (temporary file, fsync, rename, fsync folder)."""
    write_bytes_atomic(path, json.dumps(obj, indent=1).encode("utf-8"))


def commit_meta(folder: Path, meta: dict[str, Any]) -> None:
    """The commit point of a write: replace ``folder/lateint.json`` by ``meta``, sealed with its own checksum
    (:func:`~.integrity.seal_json`), atomically."""
    from .layout import META_FILE
    write_bytes_atomic(Path(folder) / META_FILE, seal_json(meta))
