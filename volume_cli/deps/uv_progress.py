"""Live progress of a ``uv pip install`` whose own bars are off (its output is a pipe, not a terminal).

uv 0.8-0.13 writes nothing while it downloads: only ``Downloading NAME (SIZE)`` when a large transfer
starts, `` Downloaded NAME`` when it ends, and the ``Prepared``/``Installed``/`` + `` lines at the end.
So bytes are measured where uv puts them: it streams each wheel straight into its cache (unzipped under
``archive-v0``, via temporary folders in the cache root), so the cache's growth since the start tracks the
download; a package is prepared when its folder appears in ``archive-v0``. Unzipped wheels can be larger
than the lock's file sizes, so the byte count is capped at the lock's total while uv runs.
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


def _archive_count(cache_dir: Path) -> int:
    try:
        return sum(1 for _ in os.scandir(cache_dir / "archive-v0"))
    except OSError:
        return 0


class UvInstallWatcher:
    """Polls the uv cache from a thread and drives a bytes task and a packages task."""

    def __init__(self, progress: Progress, *, cache_dir: Path, packages: int, total_bytes: int | None) -> None:
        self._cache_dir = cache_dir
        self._packages = packages
        self._total_bytes = total_bytes
        self._stop = threading.Event()
        self._start_size = tree_size(cache_dir)
        self._start_archives = _archive_count(cache_dir)
        self.grown = 0
        self.downloaded: Task = progress.task(
            "downloading", total=float(total_bytes) if total_bytes else None, unit="bytes"
        )
        self.prepared: Task = progress.task("prepared", total=float(packages), unit="packages")
        self._thread = threading.Thread(target=self._loop, name="volume-cli-uv-progress", daemon=True)

    def _poll(self) -> None:
        grown = max(0, tree_size(self._cache_dir) - self._start_size)
        if self._total_bytes:
            grown = min(grown, self._total_bytes)
        self.grown = grown
        self.downloaded.update(completed=float(grown))
        done = min(self._packages, max(0, _archive_count(self._cache_dir) - self._start_archives))
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
