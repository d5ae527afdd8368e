"""File operations both engines and the metadata store share: every change a reader can see is one rename.

A reader (another pod, a worker) sees either the old file or the new one:
we write a uniquely named temp file in the same folder, fsync it, then
``os.replace`` it over the target. A kill -9 between the two leaves only a
stray temp file, which ``cleanup_stale_temp_files`` removes later. A folder
is removed by renaming it aside (``TRASH_PREFIX``) first, so nobody sees half
of it; symlinks are always relative, since the volume is mounted at
/workspace on pods and /runpod-volume on serverless workers.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import stat
import time
import uuid
from pathlib import Path

from volume_cli.errors import UnsafePathError
from volume_cli.fsguard import check_chain, check_inside, volume_root_of

TEMP_MARKER = ".tmp-"
TRASH_PREFIX = ".trash-"  # a folder being removed; a run killed mid-removal leaves it for the next one


def unique_sibling(path: Path, tag: str) -> Path:
    """A hidden name beside ``path`` that no other process picks: same file system, so a rename is atomic."""
    return path.with_name(f".{path.name}.{tag}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def temp_path_for(target: Path) -> Path:
    """Where a new version of ``target`` is written before it replaces ``target`` (``cleanup_stale_temp_files``)."""
    return unique_sibling(target, TEMP_MARKER.strip(".-"))


def atomic_write_bytes(target: Path, data: bytes, *, mode: int = 0o644) -> None:
    root = volume_root_of(target)
    if root is not None:  # a link planted above a state file, lock, log or boot file would take the write outside
        check_chain(target, root)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_path_for(target)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def atomic_write_text(target: Path, text: str) -> None:
    atomic_write_bytes(target, text.encode("utf-8"))


def cleanup_stale_temp_files(folder: Path, *, older_than_seconds: float = 3600.0) -> int:
    """Remove temp files left by killed writers; young ones may still be in use."""
    removed = 0
    cutoff = time.time() - older_than_seconds
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return 0
    for entry in entries:
        if TEMP_MARKER in entry.name and entry.name.startswith("."):
            try:
                if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                continue
    return removed


def open_partial_for_append(path: Path) -> int:
    """A descriptor appending to ``path``, refusing to follow a symlink planted there (O_NOFOLLOW)."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        return os.open(path, flags, 0o644)
    except OSError as exc:
        if os.path.islink(path):
            raise UnsafePathError(
                f"refused to write through the symlink {path}", hint="remove the planted link and run again"
            ) from exc
        raise


def read_regular_file(path: Path) -> bytes | None:
    """``path``'s bytes if it is a regular file; None when missing, a symlink (never followed) or not a file.

    One open instead of a check and then a read: a link planted in between is not followed, and a
    FIFO (opened without waiting for a writer) is refused instead of blocking the read.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        handle = os.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # the last component is a symlink
            return None
        raise
    try:
        if not stat.S_ISREG(os.fstat(handle).st_mode):
            return None
        with os.fdopen(handle, "rb", closefd=False) as file:
            return file.read()
    finally:
        os.close(handle)


def relative_symlink(link: Path, target: Path, *, replace: bool = True) -> None:
    """Point ``link`` at ``target`` with a relative path.

    ``replace``: whatever is at ``link`` is swapped for the new link in one rename (a real folder there, a
    stale copy of an older layout, is removed first); otherwise ``link`` must not exist yet.
    """
    relative = os.path.relpath(target, link.parent)
    if not replace:
        os.symlink(relative, link)
        return
    link.parent.mkdir(parents=True, exist_ok=True)
    try:
        if os.readlink(link) == relative:
            return
    except OSError:
        pass
    if link.is_dir() and not link.is_symlink():
        remove_tree(link, checked=True)  # a stale real copy in an older layout would shadow ours
    temp = unique_sibling(link, "link")
    os.symlink(relative, temp)
    try:
        os.replace(temp, link)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def set_aside(path: Path) -> Path | None:
    """Rename ``path`` to a trash name beside it (one atomic step); None when it is gone. The slow delete comes later."""
    aside = path.with_name(f"{TRASH_PREFIX}{path.name}-{uuid.uuid4().hex[:6]}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return None
    return aside


def remove_tree(path: Path, *, root: Path | None = None, within: Path | None = None, checked: bool = False) -> None:
    """Remove a file, symlink or folder; a folder is set aside first so nobody sees half of it.

    A link is removed as a link, never followed. A planted link must not send the removal elsewhere:
    ``within`` (the models caches, where links are ours): the path must resolve inside that folder;
    otherwise ``root`` (found from the path's name when not given: python-deps/, .metadata/) must hold
    it through real folders only. ``checked``: the caller has already checked the path one of these ways.
    """
    if within is not None:
        check_inside(path, within)
    elif not checked:
        base = root if root is not None else volume_root_of(path)
        if base is None:
            raise UnsafePathError(
                f"refused to remove {path}: it is not under a volume's python-deps/ or .metadata/ folder",
                hint="check the record or path that named it; nothing was removed",
            )
        check_chain(path, base)
    try:
        info = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return
    if not stat.S_ISDIR(info.st_mode):
        path.unlink(missing_ok=True)
        return
    try:
        aside = set_aside(path)
    except OSError:
        aside = path  # cannot rename here (a busy mount point): delete in place
    if aside is not None:
        discard_tree(aside)  # rmtree itself never follows links inside the tree


def discard_tree(path: str | Path) -> None:
    """``shutil.rmtree(path, ignore_errors=True)``, including the one error CPython lets escape.

    Before 3.12, rmtree's ``fstat`` of the folder it just opened is not covered by ``ignore_errors``; on a
    network file system, a folder another run is removing at the same moment answers it with ESTALE
    (seen with two installs at once on the simulated volume), which would fail an install over a leftover.
    """
    try:
        shutil.rmtree(path, ignore_errors=True)
    except OSError:
        pass


def swap_into_place(staged: Path, final: Path, *, keep_old: Path | None = None) -> None:
    """Move a finished file or folder to ``final``, replacing an older copy by rename-swap.

    ``keep_old``: where a replaced folder goes instead of being deleted, so a reader
    that opened it a moment ago can finish (the one kept before it is deleted).
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    if staged.is_dir() and (final.exists() or final.is_symlink()):
        if exchange_paths(staged, final):  # readers never miss ``final``; ``staged`` now holds the old copy
            _retire(staged, keep_old)
            return
        old = unique_sibling(final, "old")
        os.rename(final, old)
        try:
            os.rename(staged, final)
        except BaseException:
            os.rename(old, final)
            raise
        _retire(old, keep_old)
        return
    if final.is_dir() and not final.is_symlink():
        remove_tree(final, checked=True)
    os.replace(staged, final)


def _retire(old: Path, keep_old: Path | None) -> None:
    if keep_old is None or old.is_symlink() or not old.is_dir():
        remove_tree(old, checked=True)
        return
    remove_tree(keep_old, checked=True)
    keep_old.parent.mkdir(parents=True, exist_ok=True)
    os.rename(old, keep_old)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def exchange_paths(first: Path, second: Path) -> bool:
    """Swap two paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported.

    Replacing a folder otherwise takes two renames, between which readers find nothing.
    """
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(code, os.strerror(code), str(second))


def tree_bytes(path: Path) -> int:
    """Bytes of regular files under ``path`` (symlinks not followed, so shared blobs count once)."""
    if path.is_symlink():
        return 0
    if path.is_file():
        return path.stat().st_size
    total = 0
    seen: set[tuple[int, int]] = set()  # hard links (ModelScope revisions share unchanged files) count once
    for folder, _dirs, files in os.walk(path):
        for name in files:
            try:
                info = os.lstat(os.path.join(folder, name))
            except FileNotFoundError:
                continue
            if not stat.S_ISLNK(info.st_mode) and (info.st_dev, info.st_ino) not in seen:
                seen.add((info.st_dev, info.st_ino))
                total += info.st_size
    return total


def remove_empty_parents(path: Path, stop: Path) -> None:
    """Remove empty folders from ``path`` up to (not including) ``stop``."""
    current = path
    while current != stop and stop in current.parents and not current.is_symlink():
        try:
            current.rmdir()
        except OSError:
            return
        current = current.parent


def is_file_of_size(path: Path, size: int | None) -> bool:
    """One ``lstat``: a regular file of the listed size (a planted link is not the file)."""
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return size is not None and stat.S_ISREG(info.st_mode) and info.st_size == size


def disk_free(path: Path) -> int:
    """Free bytes on the file system holding ``path`` (tests monkeypatch this)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free
