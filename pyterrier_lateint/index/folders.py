"""The life of an index folder on disk: check the target, build in a temporary folder beside it, move it into place
(one rename, or two over an old index), roll back what a killed writer left.

Every writer that replaces a whole folder (:class:`~.build.ColBERTIndexer`, compaction in :mod:`.mutation`, the
sharded indexer) goes through :func:`replacing` under its writer lock; every writer first calls :func:`recover`.
Temporary folders are named ``.NAME.tmp-PID-RANDOM`` (a build) and ``.NAME.old-PID-RANDOM`` (the index being
replaced); one whose process is gone is stale and removed by the next writer (or ``lateint clean``).
"""
from __future__ import annotations

import logging
import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from .integrity import fsync_dir
from .layout import META_FILE, SHARDED_META_FILE, describe_entries, is_index_folder

logger = logging.getLogger(__name__)

TMP_MARK, OLD_MARK = ".tmp-", ".old-"


def check_target(path: Path, overwrite: bool, is_index: Callable[[Path], bool] = is_index_folder) -> bool:
    """Whether an index may be written at ``path``: nothing there, or an empty folder (returns False), or an index
    (``is_index``) that ``overwrite`` allows to replace (returns True). Raises ``FileExistsError`` for an index
    without ``overwrite``, and for anything that is not an index, whatever ``overwrite`` says: a file, a broken
    link, or a folder of other files (never deleted)."""
    path = Path(path)
    if (path.is_symlink() and not path.exists()) or (path.exists() and not path.is_dir()):
        what = "a broken symbolic link" if path.is_symlink() and not path.exists() else "a file"
        raise FileExistsError(f"{str(path)!r} is {what}, not an index folder; choose another path or remove it "
                              f"yourself (nothing was changed)")
    if not path.exists():
        return False
    if is_index(path):
        if not overwrite:
            raise FileExistsError(f"an index already exists at {str(path)!r}; use indexer(..., overwrite=True) to "
                                  f"replace it, or choose another path")
        return True
    if any(path.iterdir()):
        raise FileExistsError(f"{str(path)!r} exists and is not a lateint index (it holds {describe_entries(path)});"
                              f" choose another path or remove it yourself (overwrite=True only replaces an index; "
                              f"nothing was changed)")
    return False


def new_temp_folder(path: Path) -> Path:
    """A fresh ``.NAME.tmp-PID-RANDOM`` folder beside the index ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}{TMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    return tmp


def recover(path: Path, markers: tuple[str, ...] = (META_FILE, SHARDED_META_FILE)) -> list[Path]:
    """Called by every writer, under the writer lock, before it writes: roll back a replacement that a killed
    writer left between its two renames (the old index, a folder holding one of the completion ``markers``, is
    back at ``path``), then remove stale temporary folders. Returns the folders removed."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        olds = [p for p in stale_builds(path) if OLD_MARK in p.name]
        complete = [p for p in olds if any((p / m).exists() for m in markers)]
        if complete:
            logger.warning("rolling back an interrupted replacement of %s (restoring %s)", path, complete[-1])
            os.replace(complete[-1], path)
    return remove_stale_builds(path)


def move_into_place(tmp: Path, path: Path, is_index: Callable[[Path], bool] = is_index_folder) -> None:
    """Rename the complete folder ``tmp`` to ``path``: nothing or an empty folder there is replaced by one rename;
    an index (``is_index``) by two (a writer killed between them is rolled back by :func:`recover`), then deleted.
    Anything else raises ``FileExistsError`` (:func:`check_target`) and is left as it is."""
    fsync_dir(tmp)
    if path.is_dir() and not path.is_symlink() and is_index(path):
        trash = path.parent / f".{path.name}{OLD_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}"
        os.replace(path, trash)
        os.replace(tmp, path)
        shutil.rmtree(trash, ignore_errors=True)
        return
    if path.exists() or path.is_symlink():
        check_target(path, overwrite=True, is_index=is_index)  # a file or a folder of other files: refused
    try:
        os.replace(tmp, path)  # atomic; over an empty folder too (and fails if files appeared in it meanwhile)
    except OSError as e:
        raise FileExistsError(f"cannot move the new index into {str(path)!r} ({e}); choose another path or empty "
                              f"it yourself") from None


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _is_stale(folder: Path, index_name: str, mark: str) -> bool:
    pid = folder.name[len(index_name) + 1 + len(mark):].split("-", 1)[0]
    return folder.is_dir() and (not pid.isdigit() or not _process_alive(int(pid)))


def stale_builds(path: Path) -> list[Path]:
    """Temporary folders next to ``path`` left by builds of it whose process is gone (killed, crashed machine)."""
    path = Path(path)
    return sorted(p for mark in (TMP_MARK, OLD_MARK) for p in path.parent.glob(f".{path.name}{mark}*")
                  if _is_stale(p, path.name, mark))


def stale_builds_under(folder: Path) -> list[Path]:
    """:func:`stale_builds` of every index path under ``folder`` (searched recursively)."""
    found = []
    for mark in (TMP_MARK, OLD_MARK):
        for p in Path(folder).rglob(f".*{mark}*"):
            name = p.name[1:p.name.rindex(mark)]
            if p.name.startswith(".") and _is_stale(p, name, mark):
                found.append(p)
    return sorted(set(found))


def remove_stale_builds(path: Path) -> list[Path]:
    """Remove :func:`stale_builds` of ``path``; returns what was removed."""
    removed = stale_builds(path)
    for p in removed:
        logger.info("removing %s, left by an interrupted build", p)
        shutil.rmtree(p, ignore_errors=True)
    return removed


@contextmanager
def replacing(path: Path, is_index: Callable[[Path], bool] = is_index_folder) -> Iterator[Path]:
    """A fresh temporary folder beside ``path`` for the body to fill; moved into place (:func:`move_into_place`)
    when the body returns, removed when anything raises (the target is then as it was). Call under the writer lock,
    after :func:`recover` and :func:`check_target`."""
    tmp = new_temp_folder(path)
    try:
        yield tmp
        move_into_place(tmp, path, is_index)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextmanager
def scratch_folder(path: Path) -> Iterator[Path]:
    """A fresh temporary folder beside ``path`` for intermediate files, removed when the body ends (either way)."""
    tmp = new_temp_folder(path)
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
