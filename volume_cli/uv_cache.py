"""uv's package cache on the pod's local disk: where it is, how big, and cleaning it.

The first install of a torch + CUDA stack leaves ~6 GB there (wheels unpacked
for hard-linking). It is never on the volume, so it is lost with the pod anyway,
but it fills the container disk. Its size is measured only on request: a walk of
a few hundred thousand files takes seconds, too slow for every ``status``.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from volume_cli import runner
from volume_cli.deps.uvtool import default_cache_dir, uv_binary, uv_environment


@dataclass(frozen=True)
class UvCacheUsage:
    path: Path
    exists: bool
    # None when not measured (``status`` without ``--uv-cache``).
    size_bytes: int | None = None
    files: int | None = None


@dataclass(frozen=True)
class UvCacheCleanReport:
    path: Path
    bytes_freed: int
    dry_run: bool


def _walk_size(path: Path) -> tuple[int, int]:
    """Bytes and files under ``path``; hard links are counted once, symlinks not followed."""
    total = 0
    files = 0
    seen: set[tuple[int, int]] = set()
    stack = [path]
    while stack:
        current = stack.pop()
        try:
            entries = list(os.scandir(current))
        except OSError:
            continue  # uv may delete temp folders while we walk
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                    continue
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            key = (info.st_dev, info.st_ino)
            if key in seen:
                continue
            seen.add(key)
            total += info.st_blocks * 512 if hasattr(info, "st_blocks") else info.st_size
            files += 1
    return total, files


def uv_cache_usage(*, cache_dir: Path | None = None, measure: bool) -> UvCacheUsage:
    path = cache_dir or default_cache_dir()
    if not path.is_dir():
        return UvCacheUsage(path=path, exists=False, size_bytes=0 if measure else None, files=0 if measure else None)
    if not measure:
        return UvCacheUsage(path=path, exists=True)
    size, files = _walk_size(path)
    return UvCacheUsage(path=path, exists=True, size_bytes=size, files=files)


def clean_uv_cache(*, cache_dir: Path | None = None, dry_run: bool) -> UvCacheCleanReport:
    """Empty volume-cli's own uv cache with ``uv cache clean``; the next install downloads again.

    uv's command is used (not rmtree) because it takes uv's cache lock, so a
    concurrent install on this pod is not broken mid-link.
    """
    path = cache_dir or default_cache_dir()
    before = uv_cache_usage(cache_dir=path, measure=True).size_bytes or 0
    if dry_run or not path.is_dir():
        return UvCacheCleanReport(path=path, bytes_freed=before if dry_run else 0, dry_run=dry_run)
    with tempfile.TemporaryDirectory(prefix="volume-cli-uv-") as config_home:
        env = uv_environment(cache_dir=path, config_home=Path(config_home))
        runner.run([uv_binary(), "cache", "clean", "--cache-dir", str(path)], label="uv-cache-clean", env=env)
    after = uv_cache_usage(cache_dir=path, measure=True).size_bytes or 0
    return UvCacheCleanReport(path=path, bytes_freed=max(before - after, 0), dry_run=False)
