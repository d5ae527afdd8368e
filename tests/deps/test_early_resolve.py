"""A changed config is resolved while the install takes the project's lock and tidies the volume.

uv's resolve reads the volume and writes nothing there, so it starts before the lock; its lock is
used only when the stored one does not fit and the uv.lock it started from is still the volume's.
"""

from __future__ import annotations

import importlib
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Projects
from tests.wheelfactory import IndexServer
from volume_cli import runner
from volume_cli.deps import lock as lock_module
from volume_cli.deps import lock_project
from volume_cli.deps.documents import uv_lock_path
from volume_cli.deps.forest import current_generation
from volume_cli.errors import ResolutionError
from volume_cli.layout import VolumeLayout
from volume_cli.progress import NullProgress
from volume_cli.runner import RunResult

from .helpers import PY

install_module = importlib.import_module("volume_cli.deps.install")  # deps.install is the function

ALPHA = {"main": {"packages": ["alpha"]}}
ALPHA_GAMMA = {"main": {"packages": ["alpha", "gamma"]}}


class UvRuns:
    """Counts the uv lock runs and tells when the first began and when an export ended."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, replace: Callable[[list[str]], list[str]] | None = None):
        self.locks = 0
        self.lock_began = threading.Event()
        self.exported = threading.Event()
        real = runner.run

        def run(command: list[str], *, label: str, **kwargs: Any) -> RunResult:
            if label == "uv-lock":
                self.locks += 1
                self.lock_began.set()
                command = replace(command) if replace is not None else command
            try:
                return real(command, label=label, **kwargs)
            finally:
                if label == "uv-export":
                    self.exported.set()

        monkeypatch.setattr(lock_module, "run", run)


def _install(layout: VolumeLayout, project: Any, index: IndexServer, uv_cache: Path) -> Any:
    return install_module.install(
        layout=layout, project=project, mirror=index.url, cache_dir=uv_cache, progress=NullProgress()
    )


def _early_threads() -> list[str]:
    return [thread.name for thread in threading.enumerate() if thread.name == "early-resolve"]


def test_a_changed_config_is_resolved_while_the_project_lock_is_taken(
    layout: VolumeLayout, projects: Projects, index: IndexServer, isolated_uv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _install(layout, projects.make("demo", ALPHA), index, isolated_uv)
    runs = UvRuns(monkeypatch)
    real_prepare = install_module._prepare

    def prepare(job: Any) -> list[str]:
        # Resolving after the lock, as before, would leave this waiting in vain.
        assert runs.lock_began.wait(timeout=20), "uv began resolving only after the project's lock was held"
        return real_prepare(job)

    monkeypatch.setattr(install_module, "_prepare", prepare)
    result = _install(layout, projects.make("demo", ALPHA_GAMMA), index, isolated_uv)
    assert runs.locks == 1 and result.generation != first.generation
    stored = lock_module.read_current_lock(layout, "demo")
    assert stored is not None and stored.info.pylock_sha256 == result.lock_hash
    assert "gamma" in {package.name for package in stored.info.packages}
    assert _early_threads() == []


def test_an_unchanged_config_starts_no_resolve(
    layout: VolumeLayout, projects: Projects, index: IndexServer, isolated_uv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = projects.make("demo", ALPHA)
    _install(layout, project, index, isolated_uv)
    runs = UvRuns(monkeypatch)
    assert _install(layout, project, index, isolated_uv).noop
    install_module.install(
        layout=layout, project=project, mirror=index.url, cache_dir=isolated_uv, progress=NullProgress(), force=True
    )
    assert runs.locks == 0


def test_a_uv_lock_replaced_meanwhile_is_resolved_again_under_the_lock(
    layout: VolumeLayout, projects: Projects, index: IndexServer, isolated_uv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _install(layout, projects.make("demo", ALPHA), index, isolated_uv)
    runs = UvRuns(monkeypatch)
    real_prepare = install_module._prepare

    def prepare(job: Any) -> list[str]:
        # Another writer stored its lock after ours began: ours started from a uv.lock that is gone.
        assert runs.exported.wait(timeout=20)
        path = uv_lock_path(layout, "demo")
        shutil.copyfile(path, path.with_name("uv.lock.new"))
        os.replace(path.with_name("uv.lock.new"), path)
        return real_prepare(job)

    monkeypatch.setattr(install_module, "_prepare", prepare)
    result = _install(layout, projects.make("demo", ALPHA_GAMMA), index, isolated_uv)
    assert runs.locks == 2
    stored = lock_module.read_current_lock(layout, "demo")
    assert stored is not None and stored.info.pylock_sha256 == result.lock_hash


def test_a_stored_lock_that_fits_stops_the_early_resolve(
    layout: VolumeLayout, projects: Projects, index: IndexServer, isolated_uv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`deps lock` after the edit, then `deps install`: the stored lock is used and uv is stopped, not waited for."""
    _install(layout, projects.make("demo", ALPHA), index, isolated_uv)
    changed = projects.make("demo", ALPHA_GAMMA)
    locked = lock_project(
        layout=layout, project=changed, mirror=index.url, cache_dir=isolated_uv, progress=NullProgress()
    )
    runs = UvRuns(monkeypatch, replace=lambda command: [sys.executable, "-c", "import time; time.sleep(60)"])
    started = time.monotonic()
    result = _install(layout, changed, index, isolated_uv)
    assert time.monotonic() - started < 30, "the install waited for a resolve it did not need"
    assert runs.locks == 1 and result.lock_hash == locked.lock_hash
    assert current_generation(layout, "demo", PY) == result.generation
    assert _early_threads() == []


def test_a_failed_early_resolve_fails_the_install_with_its_own_error(
    layout: VolumeLayout, projects: Projects, index: IndexServer, isolated_uv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _install(layout, projects.make("demo", ALPHA), index, isolated_uv)
    runs = UvRuns(monkeypatch)
    with pytest.raises(ResolutionError, match="no-such-package"):
        _install(
            layout, projects.make("demo", {"main": {"packages": ["alpha", "no-such-package"]}}), index, isolated_uv
        )
    assert runs.locks == 1  # the error is the early resolve's, not a second resolve's
    assert current_generation(layout, "demo", PY) == first.generation
    assert _early_threads() == []


def test_an_unexpected_error_in_the_early_resolve_is_raised_by_the_install_without_a_traceback(
    layout: VolumeLayout,
    projects: Projects,
    index: IndexServer,
    isolated_uv: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _install(layout, projects.make("demo", ALPHA), index, isolated_uv)

    def broken(**_: object) -> None:
        raise RuntimeError("a bug in resolving")

    monkeypatch.setattr(lock_module, "resolve", broken)
    with pytest.raises(RuntimeError, match="a bug in resolving"):  # the CLI maps it as any other bug
        _install(layout, projects.make("demo", ALPHA_GAMMA), index, isolated_uv)
    assert "Traceback" not in capsys.readouterr().err  # not printed by the thread on its way out
    assert _early_threads() == []


def test_a_planted_uv_lock_link_is_not_followed(
    layout: VolumeLayout,
    projects: Projects,
    index: IndexServer,
    isolated_uv: Path,
    tmp_path: Path,
) -> None:
    _install(layout, projects.make("demo", ALPHA), index, isolated_uv)
    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("version = 1\nSECRET-TOKEN-4711 = [\n")
    path = uv_lock_path(layout, "demo")
    path.unlink()
    path.symlink_to(secret)
    result = _install(layout, projects.make("demo", ALPHA_GAMMA), index, isolated_uv)
    assert current_generation(layout, "demo", PY) == result.generation
    assert not path.is_symlink() and "SECRET-TOKEN-4711" not in path.read_text()
    assert secret.read_text().startswith("version = 1")
    logs = layout.logs_dir
    assert not logs.is_dir() or all("SECRET-TOKEN-4711" not in log.read_text() for log in logs.iterdir())
