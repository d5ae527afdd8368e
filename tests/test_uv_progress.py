"""The uv download watcher measures what appeared in uv's cache, without walking what was already there."""

from __future__ import annotations

from pathlib import Path

import pytest

from volume_cli.deps import uv_progress
from volume_cli.deps.uv_progress import UvInstallWatcher
from volume_cli.progress import NullProgress, Task


class _Recorded:
    def __init__(self) -> None:
        self.completed = 0.0

    def advance(self, amount: float = 1) -> None:
        self.completed += amount

    def update(
        self, *, completed: float | None = None, total: float | None = None, description: str | None = None
    ) -> None:
        self.completed = self.completed if completed is None else completed

    def finish(self) -> None:
        pass


class _Recording(NullProgress):
    def __init__(self) -> None:
        super().__init__()
        self.tasks: dict[str, _Recorded] = {}

    def task(self, description: str, *, total: float | None = None, unit: str = "items") -> Task:
        return self.tasks.setdefault(description, _Recorded())


def _write(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)


def _warm_cache(cache: Path) -> None:
    for number in range(50):
        _write(cache / "archive-v0" / f"old{number}" / "pkg" / "mod.py", 1000)
    _write(cache / "wheels-v5" / "index" / "old.http", 300)


def test_bytes_and_packages_count_only_what_appeared(tmp_path: Path) -> None:
    cache = tmp_path / "uv-cache"
    _warm_cache(cache)
    watcher = UvInstallWatcher(progress := _Recording(), cache_dir=cache, packages=3, total_bytes=None)
    _write(cache / ".tmpA1b2" / "partial.whl", 700)  # a download in flight
    _write(cache / "archive-v0" / "new1" / "pkg" / "a.py", 1500)
    _write(cache / "archive-v0" / "old3" / "pkg" / "grown.py", 99)  # never counted: an archive is immutable
    (cache / ".tmpLink").symlink_to(tmp_path / "elsewhere", target_is_directory=True)  # never walked
    _write(tmp_path / "elsewhere" / "big.bin", 10_000)
    watcher._poll()
    assert watcher.grown == 2200 + (cache / ".tmpLink").lstat().st_size
    assert progress.tasks["prepared"].completed == 1


def test_a_fresh_cache_counts_everything_once(tmp_path: Path) -> None:
    cache = tmp_path / "uv-cache"
    cache.mkdir()
    watcher = UvInstallWatcher(progress := _Recording(), cache_dir=cache, packages=2, total_bytes=None)
    _write(cache / "archive-v0" / "a" / "x.py", 400)
    _write(cache / "archive-v0" / "b" / "y.py", 600)
    _write(cache / "CACHEDIR.TAG", 43)
    watcher._poll()
    assert watcher.grown == 1043
    assert progress.tasks["prepared"].completed == 2


def test_starting_walks_nothing_already_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "uv-cache"
    _warm_cache(cache)
    walked: list[Path] = []
    real = uv_progress.tree_size
    monkeypatch.setattr(uv_progress, "tree_size", lambda root: walked.append(root) or real(root))
    with UvInstallWatcher(_Recording(), cache_dir=cache, packages=1, total_bytes=100) as watcher:
        _write(cache / "archive-v0" / "new" / "m.py", 250)
    assert walked == [cache / "archive-v0" / "new"]  # the final poll walked only the new archive
    assert watcher.grown == 100  # capped at the lock's total while uv runs
