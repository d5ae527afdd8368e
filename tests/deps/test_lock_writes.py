"""Storing a resolved lock: pylock.toml and uv.lock written at once, lock.json (which names them) after both."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.helpers import Projects
from tests.wheelfactory import IndexServer
from volume_cli.deps import lock as lock_module
from volume_cli.deps import lock_project
from volume_cli.deps.documents import lock_info_path
from volume_cli.layout import VolumeLayout
from volume_cli.progress import NullProgress


def test_the_two_lock_files_are_written_at_once_and_lock_json_last(
    layout: VolumeLayout,
    projects: Projects,
    index: IndexServer,
    progress: NullProgress,
    isolated_uv: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    project = projects.make("demo", {"main": {"packages": ["alpha"]}})
    barrier = threading.Barrier(2, timeout=10)  # written one after the other, the first would wait in vain
    real = lock_module.atomic_write_text
    events: list[str] = []

    def meeting(target: Path, text: str) -> None:
        barrier.wait()
        real(target, text)
        events.append(target.name)

    monkeypatch.setattr(lock_module, "atomic_write_text", meeting)
    result = lock_project(layout=layout, project=project, mirror=index.url, cache_dir=isolated_uv, progress=progress)
    assert result.changed and sorted(events) == ["pylock.toml", "uv.lock"]
    assert lock_info_path(layout, "demo").is_file()


def test_a_failed_uv_lock_write_leaves_lock_json_as_it_was(
    layout: VolumeLayout,
    projects: Projects,
    index: IndexServer,
    progress: NullProgress,
    isolated_uv: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = projects.make("demo", {"main": {"packages": ["alpha"]}})
    lock_project(layout=layout, project=first, mirror=index.url, cache_dir=isolated_uv, progress=progress)
    before = lock_info_path(layout, "demo").read_bytes()
    real = lock_module.atomic_write_text

    def failing(target: Path, text: str) -> None:
        if target.name == "uv.lock":
            raise OSError(28, "No space left on device")
        real(target, text)

    monkeypatch.setattr(lock_module, "atomic_write_text", failing)
    changed = projects.make("demo", {"main": {"packages": ["alpha", "gamma"]}})
    with pytest.raises(OSError):
        lock_project(layout=layout, project=changed, mirror=index.url, cache_dir=isolated_uv, progress=progress)
    assert lock_info_path(layout, "demo").read_bytes() == before  # it names the old pylock: not trusted now
    assert lock_module.read_current_lock(layout, "demo") is None
