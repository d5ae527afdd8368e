"""Live progress of a ``uv pip install`` whose own bars are off (its output is a pipe, not a terminal).

uv 0.8-0.13 writes nothing while it downloads: only ``Downloading NAME (SIZE)`` when a large transfer
starts, `` Downloaded NAME`` when it ends, and the ``Prepared``/``Installed``/`` + `` lines at the end.
So bytes are measured where uv puts them: it streams each wheel straight into its cache (unzipped under
``archive-v0``, via temporary folders in the cache root), so what appeared there since the start tracks
the download; a package is prepared when its folder appears in ``archive-v0``. Unzipped wheels can be
larger than the lock's file sizes, so the byte count is capped at the lock's total while uv runs.

Only what is new is walked: the start takes two listings, not a walk of the whole cache (the 44-wheel
set's warm cache holds 19k files: two walks of it cost a one-leaf install ~0.2 s of CPU).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from types import TracebackType

from volume_cli.progress import Progress, Task

POLL_SECONDS = 0.25


def tree_size(root: Path) -> int:
    """Bytes of the regular files under ``root``; files vanishing mid-walk (uv renames) are skipped."""
    total = 0
    stack = [str(root)]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        elif entry.is_file(follow_symlinks=False):
                            total += entry.stat(follow_symlinks=False).st_size
                    except OSError:
                        continue
        except OSError:
            continue
    return total


def _names(folder: Path) -> set[str]:
    try:
        return set(os.listdir(folder))
    except OSError:
        return set()


class _CacheGrowth:
    """What appeared in uv's cache since it was made: new top-level folders (uv's temp ones) and new archives."""

    def __init__(self, cache_dir: Path) -> None:
        self.archives = cache_dir / "archive-v0"
        self.cache_dir = cache_dir
        self.top = _names(cache_dir)
        self.unpacked = _names(self.archives)

    def new_archives(self) -> set[str]:
        return _names(self.archives) - self.unpacked

    def new_bytes(self) -> int:
        # A cache that had no archive-v0 gets it as a new top-level folder: walked there, not twice.
        fresh = [self.cache_dir / name for name in _names(self.cache_dir) - self.top]
        if "archive-v0" in self.top:
            fresh += [self.archives / name for name in self.new_archives()]
        # A link is counted as itself (lstat), never walked: the walk stays inside uv's cache.
        return sum(tree_size(path) if _real_folder(path) else _file_size(path) for path in fresh)


def _real_folder(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def _file_size(path: Path) -> int:
    try:
        return path.lstat().st_size
    except OSError:
        return 0


class UvInstallWatcher:
    """Polls the uv cache from a thread and drives a bytes task and a packages task."""

    def __init__(self, progress: Progress, *, cache_dir: Path, packages: int, total_bytes: int | None) -> None:
        self._packages = packages
        self._total_bytes = total_bytes
        self._stop = threading.Event()
        self._growth = _CacheGrowth(cache_dir)
        self.grown = 0
        self.downloaded: Task = progress.task(
            "downloading", total=float(total_bytes) if total_bytes else None, unit="bytes"
        )
        self.prepared: Task = progress.task("prepared", total=float(packages), unit="packages")
        self._thread = threading.Thread(target=self._loop, name="volume-cli-uv-progress", daemon=True)

    def _poll(self) -> None:
        grown = self._growth.new_bytes()
        if self._total_bytes:
            grown = min(grown, self._total_bytes)
        self.grown = grown
        self.downloaded.update(completed=float(grown))
        done = min(self._packages, len(self._growth.new_archives()))
        self.prepared.update(completed=float(done))

    def _loop(self) -> None:
        pause = POLL_SECONDS
        while not self._stop.wait(pause):
            started = time.monotonic()
            self._poll()
            # A warm cache of the torch stack holds tens of thousands of files: walking it must stay
            # a small share of a core (2-core pods), so the pause grows with the walk's cost.
            pause = max(POLL_SECONDS, 10 * (time.monotonic() - started))

    def __enter__(self) -> UvInstallWatcher:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
        if exc_type is None:
            # What was fetched, not the lock's total: a warm cache downloads nothing and must say so.
            self._poll()
            self.downloaded.update(total=float(self.grown))
            self.downloaded.finish()
            self.prepared.finish()
