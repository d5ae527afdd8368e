"""Spare forests: the next install renames one in as its generation and changes only what differs.

A spare is the forest of a generation's entries, made beside an install (``deps/forest.py``).
It must give the same generation a forest built at once would, never be taken when it is not
the forest of its entries, and go with the generation it copies.
"""

from __future__ import annotations

import importlib
import os
import shutil
from pathlib import Path

import pytest

from tests.helpers import Projects, generation_folders
from tests.wheelfactory import IndexServer
from volume_cli.deps import check, gc, install
from volume_cli.deps.documents import EntryInfo
from volume_cli.deps.forest import adopt_forest, build_forest, complete_forest, spare_dir, start_forest
from volume_cli.layout import VolumeLayout
from volume_cli.progress import NullProgress

from .helpers import PY, import_values, store_entry, tree_snapshot


def _entries(layout: VolumeLayout) -> tuple[EntryInfo, EntryInfo, EntryInfo]:
    one = store_entry(layout, "one-1", {"ns/a.py": "", "one.py": "", "bin/one": ""})
    two = store_entry(layout, "two-1", {"ns/b.py": "", "two.py": ""})
    three = store_entry(layout, "three-1", {"three.py": ""})
    return one, two, three


def test_a_spare_brought_to_other_entries_equals_a_forest_built_at_once(tmp_path: Path) -> None:
    layout = VolumeLayout(tmp_path / "volume")
    one, two, three = _entries(layout)
    spare = layout.generations_dir("p", PY) / "spare"
    spare.mkdir(parents=True)
    start_forest(layout, spare, [one, three])  # ns/ is a link to one-1 here, a real folder once two-1 comes
    made = adopt_forest(layout, spare, [one, three])
    assert made is not None
    complete_forest(layout, spare, [one, two], made=made)
    whole = spare.with_name("whole")
    whole.mkdir()
    build_forest(layout, whole, [one, two])
    assert tree_snapshot(spare) == tree_snapshot(whole)


@pytest.mark.parametrize("damage", ["extra name", "missing link", "link for a folder", "missing in a real folder"])
def test_a_folder_that_is_not_the_forest_of_its_entries_is_never_adopted(tmp_path: Path, damage: str) -> None:
    layout = VolumeLayout(tmp_path / "volume")
    one, two, _ = _entries(layout)
    spare = layout.generations_dir("p", PY) / "spare"
    spare.mkdir(parents=True)
    start_forest(layout, spare, [one, two])
    assert adopt_forest(layout, spare, [one, two]) is not None
    if damage == "extra name":
        (spare / "stray.py").symlink_to("nowhere")
    elif damage == "missing link":
        (spare / "two.py").unlink()
    elif damage == "link for a folder":
        decoy = tmp_path / "decoy"  # the names the real folder holds, behind a link
        shutil.copytree(spare / "ns", decoy, symlinks=True)
        shutil.rmtree(spare / "ns")
        (spare / "ns").symlink_to(decoy)
    else:
        (spare / "ns" / "b.py").unlink()  # an entry repaired in place since holds a file the spare lacks
    assert adopt_forest(layout, spare, [one, two]) is None


def _install(layout: VolumeLayout, projects: Projects, index: IndexServer, uv: Path, packages: list[str]) -> str:
    project = projects.make("demo", {"m": {"packages": packages}})
    result = install(layout=layout, project=project, mirror=index.url, cache_dir=uv, progress=NullProgress())
    assert check(layout=layout, project=project, progress=NullProgress(), imports=False).ok
    return str(result.generation)


def test_the_next_install_renames_the_spare_in_and_leaves_a_spare_of_its_own_generation(
    layout: VolumeLayout, projects: Projects, index: IndexServer, isolated_uv: Path
) -> None:
    first = _install(layout, projects, index, isolated_uv, ["alpha==1.0", "gamma"])
    spare = spare_dir(layout, "demo", PY, first)
    assert spare.is_dir() and tree_snapshot(spare) == tree_snapshot(layout.generations_dir("demo", PY) / first)
    inode = spare.stat().st_ino

    second = _install(layout, projects, index, isolated_uv, ["alpha==2.0", "gamma"])
    folder = layout.generations_dir("demo", PY) / second
    assert folder.stat().st_ino == inode  # renamed in, not linked anew
    assert import_values(layout.deps_path("demo", PY), {"a": "alpha.VERSION", "g": "gamma.VALUE"}) == {
        "a": "2.0",
        "g": "gamma",
    }
    assert tree_snapshot(spare_dir(layout, "demo", PY, second)) == tree_snapshot(folder)
    assert generation_folders(layout, "demo") == (sorted([first, second]), [])


@pytest.mark.parametrize("spoil", ["tampered", "record gone"])
def test_a_spare_that_cannot_be_trusted_is_not_used_and_the_install_is_whole(
    layout: VolumeLayout, projects: Projects, index: IndexServer, isolated_uv: Path, spoil: str
) -> None:
    first = _install(layout, projects, index, isolated_uv, ["alpha==1.0", "gamma"])
    spare = spare_dir(layout, "demo", PY, first)
    if spoil == "tampered":
        (spare / "alpha").unlink()  # the new generation would miss alpha were the spare trusted
    else:
        os.rename(spare, spare_dir(layout, "demo", PY, "g19990101T000000-000000"))  # no record names it
    second = _install(layout, projects, index, isolated_uv, ["alpha==1.0", "gamma", "epsilon==3.0"])
    path = layout.deps_path("demo", PY)
    assert import_values(path, {"a": "alpha.VERSION", "e": "epsilon.VERSION"}) == {"a": "1.0", "e": "3.0"}
    assert spare_dir(layout, "demo", PY, second).is_dir()


def test_gc_keeps_the_spare_of_a_kept_generation_and_removes_the_others(
    layout: VolumeLayout, projects: Projects, index: IndexServer, isolated_uv: Path
) -> None:
    first = _install(layout, projects, index, isolated_uv, ["alpha==1.0"])
    second = _install(layout, projects, index, isolated_uv, ["alpha==2.0"])
    third = _install(layout, projects, index, isolated_uv, ["alpha==2.0", "gamma"])
    generations = layout.generations_dir("demo", PY)
    orphan = spare_dir(layout, "demo", PY, first)  # its generation goes: so does its spare
    orphan.mkdir()
    older_format = generations / f".spare-0-{third}"
    older_format.mkdir()

    report = gc(layout=layout, grace_seconds=0, dry_run=False, progress=NullProgress())
    assert sorted(report.generations_removed) == sorted(
        [f"demo/{first}", f"demo/{orphan.name}", f"demo/{older_format.name}"]
    )
    assert generation_folders(layout, "demo") == (sorted([second, third]), [])
    assert spare_dir(layout, "demo", PY, third).is_dir()


def test_the_spare_is_in_place_before_the_intent_that_protects_its_temp_folder_is_cleared(
    layout: VolumeLayout, projects: Projects, index: IndexServer, isolated_uv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Else a gc between the two would take the spare's temp folder, no longer named by an intent, for a leftover."""
    _install(layout, projects, index, isolated_uv, ["alpha==1.0"])
    install_module = importlib.import_module("volume_cli.deps.install")
    real_clear = install_module.clear_intent
    seen: list[list[str]] = []

    def clear_intent(layout: VolumeLayout, project: str) -> None:
        seen.append(sorted(os.listdir(layout.generations_dir(project, PY))))
        real_clear(layout, project)

    monkeypatch.setattr(install_module, "clear_intent", clear_intent)
    second = _install(layout, projects, index, isolated_uv, ["alpha==2.0"])
    assert seen, "the install cleared no intent"
    assert not [name for name in seen[-1] if name.startswith(".tmp-")], seen[-1]
    assert spare_dir(layout, "demo", PY, second).name in seen[-1]
