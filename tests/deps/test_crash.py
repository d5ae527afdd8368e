"""Killed installs and concurrent installs leave the volume consistent."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.helpers import Projects, generation_folders
from tests.wheelfactory import IndexServer
from volume_cli.deps import check, install
from volume_cli.deps.documents import ENTRY_MANIFEST
from volume_cli.deps.faults import CRASH_ENV, POINTS
from volume_cli.layout import VolumeLayout
from volume_cli.progress import NullProgress
from volume_cli.store.lock import LeaseLock, lock_path

from .helpers import PY, import_values, run_install_subprocess, start_install_subprocess


def _assert_converged(layout: VolumeLayout, project: str) -> None:
    assert not os.listdir(layout.deps_dir / ".staging")
    assert not generation_folders(layout, project)[1]
    for entry in os.listdir(layout.store_dir):
        assert not entry.startswith("."), entry
        assert (layout.store_dir / entry / ENTRY_MANIFEST).is_file(), entry


@pytest.mark.parametrize("point", POINTS)
def test_sigkill_during_install_keeps_a_whole_generation_and_the_rerun_converges(
    point: str, layout: VolumeLayout, projects: Projects, index: IndexServer, progress: NullProgress, isolated_uv: Path
) -> None:
    old = projects.make("demo", {"m": {"packages": ["alpha==1.0"]}})
    first = install(layout=layout, project=old, mirror=index.url, cache_dir=isolated_uv, progress=progress)
    new = projects.make("demo", {"m": {"packages": ["alpha==2.0", "gamma", "epsilon"]}})

    killed = run_install_subprocess(layout, new.folder, mirror=index.url, cache=isolated_uv, env={CRASH_ENV: point})
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    path = layout.deps_path("demo", PY)
    current = os.readlink(path)
    # The spare is built beside the install: that kill may come on either side of the switch.
    if point == "switched" or (point == "spare-built" and not current.endswith(str(first.generation))):
        # the switch is the commit point: the new set, whole
        assert not current.endswith(str(first.generation))
        assert import_values(path, {"a": "alpha.VERSION", "g": "gamma.VALUE"}) == {"a": "2.0", "g": "gamma"}
    else:
        assert current.endswith(str(first.generation))
        assert import_values(path, {"a": "alpha.VERSION"}) == {"a": "1.0"}

    rerun = install(layout=layout, project=new, mirror=index.url, cache_dir=isolated_uv, progress=progress)
    assert import_values(path, {"a": "alpha.VERSION", "g": "gamma.VALUE", "e": "epsilon.VERSION"}) == {
        "a": "2.0",
        "g": "gamma",
        "e": "3.0",
    }
    _assert_converged(layout, "demo")
    assert check(layout=layout, project=new, progress=progress, imports=False).ok
    assert install(layout=layout, project=new, mirror=index.url, cache_dir=isolated_uv, progress=progress).noop
    if point == "switched":
        assert rerun.noop and rerun.previous_generation == first.generation


def test_a_second_install_of_a_project_fails_clearly_or_waits_for_the_lock(
    layout: VolumeLayout, projects: Projects, index: IndexServer, isolated_uv: Path
) -> None:
    project = projects.make("demo", {"m": {"packages": ["delta"]}})
    holder = LeaseLock(lock_path(layout.locks_dir, "demo"), command="deps install (other pod)")
    holder.acquire()
    try:
        refused = run_install_subprocess(layout, project.folder, mirror=index.url, cache=isolated_uv, wait=0)
        assert refused.returncode == 1 and '"LockHeldError"' in refused.stdout and "other pod" in refused.stdout
        assert not layout.deps_path("demo", PY).exists()
        waiting = start_install_subprocess(layout, project.folder, mirror=index.url, cache=isolated_uv, wait=60)
        time.sleep(1.0)
        assert waiting.poll() is None  # still waiting for the lock
    finally:
        holder.release()
    out, err = waiting.communicate(timeout=120)
    assert waiting.returncode == 0, out + err
    assert import_values(layout.deps_path("demo", PY), {"d": "delta.VERSION"}) == {"d": "1.0"}


def test_concurrent_installs_sharing_distributions_keep_the_store_consistent(
    layout: VolumeLayout, projects: Projects, index: IndexServer, isolated_uv: Path, tmp_path: Path
) -> None:
    names = ["one", "two", "three"]
    definitions = [projects.make(name, {"m": {"packages": ["alpha==2.0", "gamma", "epsilon"]}}) for name in names]
    # separate uv caches, as separate pods would have
    running = [
        start_install_subprocess(
            layout, definition.folder, mirror=index.url, cache=tmp_path / f"cache-{definition.name}", wait=60
        )
        for definition in definitions
    ]
    same_project = start_install_subprocess(layout, definitions[0].folder, mirror=index.url, cache=isolated_uv, wait=60)
    for process in [*running, same_project]:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, out + err
    entries = sorted(os.listdir(layout.store_dir))
    assert [entry.split("-")[0] for entry in entries] == ["alpha", "beta", "delta", "epsilon", "gamma"]
    for definition in definitions:
        path = layout.deps_path(definition.name, PY)
        assert import_values(path, {"a": "alpha.VERSION", "g": "gamma.VALUE"}) == {"a": "2.0", "g": "gamma"}
        assert check(layout=layout, project=definition, progress=NullProgress(), imports=False).ok
        _assert_converged(layout, definition.name)
