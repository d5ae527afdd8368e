"""Storing a resolved lock: pylock.toml and uv.lock written at once, lock.json (which names them) after both."""

from __future__ import annotations

import importlib
import threading
from pathlib import Path

import pytest

from tests.helpers import Projects
from tests.wheelfactory import IndexServer
from volume_cli.deps import lock as lock_module
from volume_cli.deps import lock_project
from volume_cli.deps.documents import lock_info_path
from volume_cli.deps.forest import current_generation
from volume_cli.layout import VolumeLayout
from volume_cli.progress import NullProgress

from .helpers import PY

install_module = importlib.import_module("volume_cli.deps.install")  # deps.install is the function


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


def test_an_install_stores_its_fresh_lock_while_uv_installs(
    layout: VolumeLayout,
    projects: Projects,
    index: IndexServer,
    progress: NullProgress,
    isolated_uv: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The lock's writes wait on the volume, uv on the pod: stored before the install, they added to its time."""
    project = projects.make("demo", {"main": {"packages": ["alpha"]}})
    uv_started = threading.Event()
    real_uv, real_write = install_module._uv_install, lock_module.atomic_write_text

    def uv_install(**kwargs: object) -> None:
        uv_started.set()
        real_uv(**kwargs)  # type: ignore[arg-type]

    def write(target: Path, text: str) -> None:
        assert uv_started.wait(timeout=20), "the lock was stored before uv ran"
        real_write(target, text)

    monkeypatch.setattr(install_module, "_uv_install", uv_install)
    monkeypatch.setattr(lock_module, "atomic_write_text", write)
    result = install_module.install(
        layout=layout, project=project, mirror=index.url, cache_dir=isolated_uv, progress=progress
    )
    stored = lock_module.read_current_lock(layout, "demo")
    assert stored is not None and stored.info.pylock_sha256 == result.lock_hash


def test_a_lock_that_cannot_be_stored_fails_the_install_before_its_switch(
    layout: VolumeLayout,
    projects: Projects,
    index: IndexServer,
    progress: NullProgress,
    isolated_uv: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = install_module.install(
        layout=layout,
        project=projects.make("demo", {"main": {"packages": ["alpha"]}}),
        mirror=index.url,
        cache_dir=isolated_uv,
        progress=progress,
    )

    def full(target: Path, text: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(lock_module, "atomic_write_text", full)
    with pytest.raises(OSError):
        install_module.install(
            layout=layout,
            project=projects.make("demo", {"main": {"packages": ["alpha", "gamma"]}}),
            mirror=index.url,
            cache_dir=isolated_uv,
            progress=progress,
        )
    assert current_generation(layout, "demo", PY) == first.generation
    stored = lock_module.read_current_lock(layout, "demo")
    assert stored is not None and stored.info.pylock_sha256 == first.lock_hash
