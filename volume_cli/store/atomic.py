"""Crash-safe file replacement.

A reader (another pod, a worker) sees either the old file or the new one:
we write a uniquely named temp file in the same folder, fsync it, then
``os.replace`` it over the target. A kill -9 between the two leaves only a
stray temp file, which ``cleanup_stale_temp_files`` removes later.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

from volume_cli.fsguard import check_chain, volume_root_of

TEMP_MARKER = ".tmp-"


def temp_path_for(target: Path) -> Path:
    return target.with_name(f".{target.name}{TEMP_MARKER}{os.getpid()}-{uuid.uuid4().hex[:8]}")


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
