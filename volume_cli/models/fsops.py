"""File-system steps that keep the volume consistent for readers on other pods.

Everything that becomes visible at a final path gets there by one rename
(``os.replace``) from a sibling on the same file system, so a worker never
opens a half-written file. Symlinks are always relative: the volume is
mounted at /workspace on pods and /runpod-volume on serverless workers.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

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


def remove_path(path: Path) -> None:
    """Remove a file, symlink or folder; folders are renamed aside first so readers never see half of one."""
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


def swap_into_place(staged: Path, final: Path) -> None:
    """Move a finished file or folder to ``final``, replacing an older copy by rename-swap."""
    final.parent.mkdir(parents=True, exist_ok=True)
    if staged.is_dir() and (final.exists() or final.is_symlink()):
        old = unique_sibling(final, "old")
        os.rename(final, old)
        try:
            os.rename(staged, final)
        except BaseException:
            os.rename(old, final)
            raise
        remove_path(old)
        return
    if final.is_dir() and not final.is_symlink():
        remove_path(final)
    os.replace(staged, final)


def tree_bytes(path: Path) -> int:
    """Bytes of regular files under ``path`` (symlinks not followed, so shared blobs count once)."""
    if path.is_symlink():
        return 0
    if path.is_file():
        return path.stat().st_size
    total = 0
    for folder, _dirs, files in os.walk(path):
        for name in files:
            try:
                stat = os.lstat(os.path.join(folder, name))
            except FileNotFoundError:
                continue
            if not os.path.islink(os.path.join(folder, name)):
                total += stat.st_size
    return total


def remove_empty_parents(path: Path, stop: Path) -> None:
    """Remove empty folders from ``path`` up to (not including) ``stop``."""
    current = path
    while current != stop and stop in current.parents:
        try:
            current.rmdir()
        except OSError:
            return
        current = current.parent
