"""File-system steps that keep the volume consistent for readers on other pods.

Everything that becomes visible at a final path gets there by one rename
(``os.replace``) from a sibling on the same file system, so a worker never
opens a half-written file. Symlinks are always relative: the volume is
mounted at /workspace on pods and /runpod-volume on serverless workers.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import stat
import uuid
from pathlib import Path

from volume_cli.errors import UnsafePathError
from volume_cli.fsguard import check_inside as check_inside  # one implementation, shared with deps
from volume_cli.fsguard import is_inside as is_inside
from volume_cli.layout import VolumeLayout

STAGING_NAME = ".volume-cli-staging"
# Top-level folders under models/ that the engine manages; url/local dests may not use them.
MANAGED_TOP_LEVEL = frozenset({"huggingface", "modelscope", "torch", STAGING_NAME})


def staging_dir(layout: VolumeLayout) -> Path:
    """Partial downloads live on the volume so the final rename is atomic and another pod can resume."""
    return layout.models_dir / STAGING_NAME


def unique_sibling(path: Path, tag: str) -> Path:
    return path.with_name(f".{path.name}.{tag}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def disk_free(path: Path) -> int:
    """Free bytes on the file system holding ``path`` (tests monkeypatch this)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


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


def relative_symlink(link: Path, target: Path) -> None:
    """Point ``link`` at ``target`` with a relative path, replacing what is there atomically."""
    link.parent.mkdir(parents=True, exist_ok=True)
    relative = os.path.relpath(target, link.parent)
    try:
        if os.readlink(link) == relative:
            return
    except OSError:
        pass
    if link.is_dir() and not link.is_symlink():
        remove_path(link)  # a stale real copy in an older layout would shadow ours
    temp = unique_sibling(link, "link")
    os.symlink(relative, temp)
    try:
        os.replace(temp, link)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def remove_path(path: Path, *, within: Path | None = None) -> None:
    """Remove a file, symlink or folder; folders are renamed aside first so readers never see half of one.

    A symlink is removed as a link, never followed; with ``within``, a path
    that resolves outside that folder is refused instead of removed.
    """
    if within is not None:
        check_inside(path, within)
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
        return
    if not path.exists():
        return
    aside = unique_sibling(path, "trash")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return
    shutil.rmtree(aside, ignore_errors=True)


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
        remove_path(final)
    os.replace(staged, final)


def _retire(old: Path, keep_old: Path | None) -> None:
    if keep_old is None or old.is_symlink() or not old.is_dir():
        remove_path(old)
        return
    remove_path(keep_old)
    keep_old.parent.mkdir(parents=True, exist_ok=True)
    os.rename(old, keep_old)


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
                stat = os.lstat(os.path.join(folder, name))
            except FileNotFoundError:
                continue
            if not os.path.islink(os.path.join(folder, name)) and (stat.st_dev, stat.st_ino) not in seen:
                seen.add((stat.st_dev, stat.st_ino))
                total += stat.st_size
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


def is_file_of_size(path: Path, size: int | None) -> bool:
    """One ``lstat``: a regular file of the listed size (a planted link is not the file)."""
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return size is not None and stat.S_ISREG(info.st_mode) and info.st_size == size
