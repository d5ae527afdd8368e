"""Completing a forest begun early: only what the changed entries bring is listed, opened and linked.

On a network volume each listing of a store folder and each folder opened is a round trip, one
after another while the generation is completed: a one-package change should not pay them for the
entries it keeps. Entries repaired in place (``--force``) are listed again.
"""

from __future__ import annotations

import importlib
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Projects
from tests.wheelfactory import IndexServer, build_wheel
from volume_cli.deps import forest as forest_module
from volume_cli.deps import install
from volume_cli.layout import VolumeLayout
from volume_cli.progress import NullProgress

from .helpers import PY, import_values

install_module = importlib.import_module("volume_cli.deps.install")  # deps.install is the function


@pytest.fixture
def index(tmp_path: Path) -> Any:
    folder = tmp_path / "wheels"
    build_wheel(folder, "nsa", "1.0", files={"ns/a/__init__.py": "A = 'a'\n"})
    for version in ("1.0", "2.0"):
        build_wheel(folder, "nsb", version, files={"ns/b/__init__.py": f"B = '{version}'\n"})
    build_wheel(folder, "oa", "1.0", files={"other/oa/__init__.py": "X = 1\n"})
    build_wheel(folder, "ob", "1.0", files={"other/ob/__init__.py": "Y = 2\n"})
    with IndexServer(folder) as server:
        yield server


def _watch_completion(monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], list[str]]:
    """The store folders listed and the forest folders opened while ``complete_forest`` runs."""
    listed: list[str] = []
    opened: list[str] = []
    real_complete, real_scandir, real_open = forest_module.complete_forest, os.scandir, os.open
    active = threading.local()  # only the thread completing the generation: the spare is brought up beside it

    def scandir(path: Any) -> Any:
        if getattr(active, "on", False):
            listed.append("/".join(Path(path).parts[-2:]))
        return real_scandir(path)

    def open_(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if getattr(active, "on", False) and flags & os.O_DIRECTORY:
            opened.append(str(path))
        return real_open(path, flags, *args, **kwargs)

    def complete(layout: VolumeLayout, folder: Path, *args: Any, **kwargs: Any) -> forest_module.Forest:
        active.on = not folder.name.startswith(".tmp-spare-")
        try:
            return real_complete(layout, folder, *args, **kwargs)
        finally:
            active.on = False

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(os, "open", open_)
    monkeypatch.setattr(install_module, "complete_forest", complete)
    return listed, opened


def test_a_one_package_change_lists_and_opens_only_what_it_changes(
    layout: VolumeLayout,
    projects: Projects,
    index: IndexServer,
    progress: NullProgress,
    isolated_uv: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    packages = ["nsa", "oa", "ob"]
    first = projects.make("demo", {"main": {"packages": [*packages, "nsb==1.0"]}})
    install(layout=layout, project=first, mirror=index.url, cache_dir=isolated_uv, progress=progress)
    listed, opened = _watch_completion(monkeypatch)
    changed = projects.make("demo", {"main": {"packages": [*packages, "nsb==2.0"]}})
    install(layout=layout, project=changed, mirror=index.url, cache_dir=isolated_uv, progress=progress)

    assert [item.split("/")[0].split("-")[0] for item in listed] == ["nsb"], listed  # not nsa's, oa's or ob's
    # The generation's folder, then the shared folder that gets a new link; not other/.
    assert [Path(path).name.startswith(".tmp-") for path in opened[:1]] == [True] and opened[1:] == ["ns"], opened
    values = {"a": "ns.a.A", "b": "ns.b.B", "x": "other.oa.X", "y": "other.ob.Y"}
    assert import_values(layout.deps_path("demo", PY), values) == {"a": "a", "b": "2.0", "x": 1, "y": 2}


def test_completing_lists_again_the_entries_repaired_in_place(tmp_path: Path) -> None:
    made = forest_module.Forest(folders=[], links=[], listed={("kept", "ns"): [("k", True)], ("fixed", "ns"): []})
    seen: list[dict[tuple[str, str], list[tuple[str, bool]]]] = []

    def plan(layout: Any, folder: Any, entries: Any, *, listed: Any) -> forest_module.Forest:
        seen.append(dict(listed))
        return forest_module.Forest(folders=[], links=[], listed=listed)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(forest_module, "_plan_forest", plan)
        patch.setattr(forest_module, "_make", lambda *args, **kwargs: None)
        forest_module.complete_forest(VolumeLayout(tmp_path), tmp_path, [], made=made, repaired={"fixed"})
    assert seen == [{("kept", "ns"): [("k", True)]}]


def test_the_store_folders_a_level_needs_are_listed_at_once(
    layout: VolumeLayout,
    projects: Projects,
    index: IndexServer,
    progress: NullProgress,
    isolated_uv: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ns/ and other/ are shared by two entries each: their four listings meet at a barrier (one after the
    other, the first would wait in vain), so a forest costs a round trip per level, not per folder."""
    barrier = threading.Barrier(4, timeout=10)
    real_scandir = os.scandir
    store = str(layout.store_dir)

    def scandir(path: Any) -> Any:
        if str(path).startswith(store) and Path(path).name in ("ns", "other"):
            barrier.wait()
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    project = projects.make("demo", {"main": {"packages": ["nsa", "nsb==1.0", "oa", "ob"]}})
    install(layout=layout, project=project, mirror=index.url, cache_dir=isolated_uv, progress=progress)
    values = {"a": "ns.a.A", "b": "ns.b.B", "x": "other.oa.X", "y": "other.ob.Y"}
    assert import_values(layout.deps_path("demo", PY), values) == {"a": "a", "b": "1.0", "x": 1, "y": 2}
