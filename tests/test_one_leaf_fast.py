"""A one-package change pays for the change, not for the whole generation (issue 8, one leaf ≤ 0.5× raw uv).

On the simulated network volume (kernel cache off, so counts are exact): the plan reads
the current generation through its record instead of walking every dist-info link into
the store, and what it reads still agrees with the disk when the store lost an entry.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.deps.helpers import PY, import_values, run_install_subprocess, store_entry, tree_snapshot
from tests.helpers import generation_folders
from tests.netvol.fixture import netvol  # noqa: F401 (fixture)
from tests.netvol.mount import NetVol
from tests.test_netvol_install import (  # noqa: F401 (fixtures)
    PROJECT,
    SHAPES,
    Bench,
    _uv_cache,
    bench,
    netvol_options,
    wheel_index,
)
from tests.wheelfactory import build_wheel
from volume_cli.deps import check, install
from volume_cli.deps import lock as lock_module
from volume_cli.deps import scratch as scratch_module
from volume_cli.deps.bytecode import IN_PROCESS_MAX_SOURCES, compile_bytecode
from volume_cli.deps.documents import EntryInfo, install_intent_path, read_generation_record
from volume_cli.deps.faults import CRASH_ENV
from volume_cli.deps.forest import build_forest, complete_forest, start_forest
from volume_cli.deps.install import InstallResult, fast_noop_record
from volume_cli.deps.plan import read_installed
from volume_cli.deps.scratch import scratch_dir
from volume_cli.errors import InstallError, ResolutionError, SubprocessError
from volume_cli.layout import VolumeLayout
from volume_cli.progress import NullProgress
from volume_cli.project.definition import ProjectDefinition
from volume_cli.runner import start_detached
from volume_cli.store.state import read_project_state

install_module = sys.modules["volume_cli.deps.install"]


def _install(on: Bench, project: ProjectDefinition) -> InstallResult:
    return install(
        layout=on.layout, project=project, mirror=on.index.url, cache_dir=_uv_cache(), progress=NullProgress()
    )


def _current_record_entries(layout: VolumeLayout, generation: str | None) -> list[EntryInfo]:
    record = read_generation_record(layout, PROJECT, str(generation))
    assert record is not None
    return list(record.entries)


def test_the_plan_reads_linked_dist_infos_from_the_record_not_through_the_links(bench: Bench) -> None:  # noqa: F811
    project = bench.project()
    bench.install(project)
    layout = bench.layout
    generation = os.readlink(layout.deps_path(PROJECT, PY)).rsplit("/", 1)[-1]
    entries = _current_record_entries(layout, generation)
    from_disk = read_installed(layout.deps_path(PROJECT, PY))
    bench.netvol.reset()
    from_record = read_installed(layout.deps_path(PROJECT, PY), recorded=entries, store_dir=layout.store_dir)
    counts = bench.netvol.reset()
    print(f"read_installed through the record: {counts}")
    assert from_record == from_disk
    assert set(from_record) == set(SHAPES)
    assert counts["open"] == counts["read"] == 0  # no METADATA opened: one readlink per dist-info
    assert counts["readlink"] <= len(SHAPES) + 2


def test_a_dist_info_the_record_does_not_know_is_read_from_its_metadata(bench: Bench) -> None:  # noqa: F811
    bench.install(bench.project())
    layout = bench.layout
    generation = os.readlink(layout.deps_path(PROJECT, PY)).rsplit("/", 1)[-1]
    entries = [entry for entry in _current_record_entries(layout, generation) if entry.name != "pubio"]
    installed = read_installed(layout.deps_path(PROJECT, PY), recorded=entries, store_dir=layout.store_dir)
    assert installed["pubio"].version == "1.0"  # from its METADATA
    assert installed["pubio"].entry is not None


def test_a_store_entry_lost_from_under_the_generation_is_installed_again(bench: Bench, netvol: NetVol) -> None:  # noqa: F811
    bench.install(bench.project())
    layout = bench.layout
    lost = next(name for name in os.listdir(layout.store_dir) if name.startswith("pubcore-"))
    shutil.rmtree(layout.store_dir / lost)  # not through gc: the record still names it
    installed = read_installed(
        layout.deps_path(PROJECT, PY),
        recorded=_current_record_entries(layout, os.readlink(layout.deps_path(PROJECT, PY)).rsplit("/", 1)[-1]),
        store_dir=layout.store_dir,
    )
    assert "pubcore" not in installed  # the disk, not the record, says what is there
    bench.install(bench.project(leaf="2.0"))
    assert import_values(layout.deps_path(PROJECT, PY), {"v": "pubcore.sub0.m1.X", "leaf": "publeaf.VERSION"}) == {
        "v": 1,
        "leaf": "2.0",
    }
    assert (layout.store_dir / lost).is_dir()


def test_a_kill_after_the_early_forest_keeps_the_old_generation_and_the_rerun_converges(bench: Bench) -> None:  # noqa: F811
    first = _install(bench, bench.project())
    new = bench.project(leaf="2.0")
    killed = run_install_subprocess(
        bench.layout, new.folder, mirror=bench.index.url, cache=_uv_cache(), env={CRASH_ENV: "early-forest-built"}
    )
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    path = bench.layout.deps_path(PROJECT, PY)
    assert os.readlink(path).endswith(str(first.generation))
    assert generation_folders(bench.layout, PROJECT)[1], "the kill came before the early forest"
    assert import_values(path, {"leaf": "publeaf.VERSION"}) == {"leaf": "1.0"}
    rerun = _install(bench, new)
    assert rerun.previous_generation == first.generation
    assert import_values(path, {"leaf": "publeaf.VERSION", "core": "pubcore.sub0.m1.X"}) == {"leaf": "2.0", "core": 1}
    assert not generation_folders(bench.layout, PROJECT)[1]
    assert check(layout=bench.layout, project=new, progress=NullProgress(), imports=False).ok


def test_a_failed_uv_install_leaves_no_early_forest_behind(bench: Bench, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    first = _install(bench, bench.project())
    monkeypatch.setattr(install_module, "_uv_install", _failing_uv_install)
    with pytest.raises(InstallError, match="no uv here"):
        _install(bench, bench.project(leaf="2.0"))
    assert generation_folders(bench.layout, PROJECT) == ([str(first.generation)], [])
    assert os.readlink(bench.layout.deps_path(PROJECT, PY)).endswith(str(first.generation))


def _failing_uv_install(**_: object) -> None:
    time.sleep(0.2)  # the early forest is being linked meanwhile
    raise InstallError("no uv here")


def test_the_forest_completed_from_an_early_part_equals_one_built_at_once(tmp_path: Path) -> None:
    layout = VolumeLayout(tmp_path / "volume")
    shared = store_entry(layout, "one-1", {"ns/a.py": "", "one.py": "", "bin/one": ""})
    other = store_entry(layout, "two-1", {"ns/b.py": "", "two.py": ""})
    early = layout.generations_dir(PROJECT, PY) / "early"
    early.mkdir(parents=True)
    made = start_forest(layout, early, [other])  # ns/ is a link to two-1 here, a real folder when both are in
    links = len(complete_forest(layout, early, [shared, other], made=made).links)
    whole = early.with_name("whole")
    whole.mkdir()
    assert links == build_forest(layout, whole, [shared, other])
    assert tree_snapshot(early) == tree_snapshot(whole)


THIS_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


def test_a_few_sources_of_this_pythons_version_compile_here_unchecked_hash(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "good.py").write_text("X = 1\n")
    (tmp_path / "pkg" / "py2.py").write_text("print 'old'\n")
    # No second Python: an interpreter that does not exist is never started.
    compile_bytecode(tmp_path, interpreter=tmp_path / "no-python", python_version=THIS_PYTHON)
    (good,) = (tmp_path / "pkg" / "__pycache__").glob("good.cpython-*.pyc")
    assert good.name == f"good.{sys.implementation.cache_tag}.pyc"  # never an .opt-1.pyc
    assert int.from_bytes(good.read_bytes()[4:8], "little") == 0b01  # PEP 552: hash-based, unchecked
    assert not list((tmp_path / "pkg" / "__pycache__").glob("py2.*"))


def test_another_version_or_many_sources_compile_in_the_target_interpreter(tmp_path: Path) -> None:
    (tmp_path / "one.py").write_text("X = 1\n")
    other = "3.99" if THIS_PYTHON != "3.99" else "3.98"
    with pytest.raises(SubprocessError):
        compile_bytecode(tmp_path, interpreter=tmp_path / "no-python", python_version=other)
    for number in range(IN_PROCESS_MAX_SOURCES):
        (tmp_path / f"m{number}.py").write_text("")
    with pytest.raises(SubprocessError):
        compile_bytecode(tmp_path, interpreter=tmp_path / "no-python", python_version=THIS_PYTHON)
    compile_bytecode(tmp_path, interpreter=Path(sys.executable), python_version=THIS_PYTHON)
    assert len(list((tmp_path / "__pycache__").glob("*.pyc"))) == IN_PROCESS_MAX_SOURCES + 1


def test_the_scratch_folder_is_removed_off_the_critical_path_and_never_left_behind(
    bench: Bench,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bench.install(bench.project())
    scratch = scratch_dir(bench.layout, _uv_cache())
    # A slow `rm` first on PATH: the install must return before it is done, and the folder must go anyway.
    slow = tmp_path / "slow-bin"
    slow.mkdir()
    (slow / "rm").write_text(f'#!/bin/sh\nsleep 1.5\nexec {shutil.which("rm")} "$@"\n')
    (slow / "rm").chmod(0o755)
    monkeypatch.setenv("PATH", f"{slow}{os.pathsep}{os.environ['PATH']}")
    bench.install(bench.project(leaf="2.0"))
    assert os.listdir(scratch) != []  # still being removed: nobody waited for it
    deadline = time.monotonic() + 30
    while os.listdir(scratch) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert os.listdir(scratch) == []


def test_the_scratch_folder_is_removed_where_rm_cannot_start(
    bench: Bench,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bench.install(bench.project())
    scratch = scratch_dir(bench.layout, _uv_cache())
    monkeypatch.setattr(scratch_module, "start_detached", lambda command, label: False)
    bench.install(bench.project(leaf="2.0"))
    assert os.listdir(scratch) == []


def test_a_detached_command_that_cannot_start_says_so(tmp_path: Path) -> None:
    assert start_detached([str(tmp_path / "no-such-program")], label="test") is False
    marker = tmp_path / "made"
    assert start_detached(["touch", str(marker)], label="test") is True
    deadline = time.monotonic() + 10
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists()


def _temporary_generations(layout: VolumeLayout) -> list[str]:
    return generation_folders(layout, PROJECT)[1]


def test_the_kept_entries_are_linked_while_uv_locks(bench: Bench, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    bench.install(bench.project())
    seen: list[int] = []
    real_resolve = lock_module.resolve

    def resolve(**kwargs: object) -> object:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            links = [
                name
                for folder in _temporary_generations(bench.layout)
                for name in os.listdir(bench.layout.generations_dir(PROJECT, PY) / folder)
            ]
            if len(links) >= len(SHAPES):
                break
            time.sleep(0.01)
        seen.append(len(links))
        return real_resolve(**kwargs)

    monkeypatch.setattr(lock_module, "resolve", resolve)  # a changed config is resolved early, beside the lock
    intents: list[list[str]] = []
    real_intent = install_module.record_intent

    def record_intent(layout: VolumeLayout, **kwargs: Any) -> None:
        intents.append(kwargs["entries"])
        real_intent(layout, **kwargs)

    monkeypatch.setattr(install_module, "record_intent", record_intent)
    removed = bench.projects.make(PROJECT, {"main": {"packages": ["pubcore", "pubtiny", "publeaf==1.0"]}})
    _install(bench, removed)
    assert seen and seen[0] >= len(SHAPES), "the forest was not linked while uv locked"
    assert len(intents) == 1, "a removal needs no second intent: it links only entries the first one names"
    assert import_values(bench.layout.deps_path(PROJECT, PY), {"v": "pubtiny.VERSION"}) == {"v": "1.0"}
    assert not (bench.layout.deps_path(PROJECT, PY) / "pubio").exists()
    assert not _temporary_generations(bench.layout)
    assert check(layout=bench.layout, project=removed, progress=NullProgress(), imports=False).ok


def test_a_guess_that_installs_nothing_leaves_no_forest_and_no_intent(bench: Bench) -> None:  # noqa: F811
    first = _install(bench, bench.project())
    same = bench.projects.make(PROJECT, {"main": {"packages": ["pubcore", "pubio", "pubtiny", "publeaf>=1.0,<2"]}})
    result = _install(bench, same)
    assert result.noop and result.generation == first.generation
    assert generation_folders(bench.layout, PROJECT) == ([str(first.generation)], [])
    assert not install_intent_path(bench.layout, PROJECT).exists()
    assert fast_noop_record(bench.layout, PROJECT, PY, same.config_hash(mirror=bench.index.url)) is not None


def test_a_failed_lock_leaves_no_forest_and_no_intent(bench: Bench, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    first = _install(bench, bench.project())

    def resolve(**_: object) -> None:
        time.sleep(0.3)  # the guess is being linked meanwhile
        raise ResolutionError("no resolver here")

    monkeypatch.setattr(lock_module, "resolve", resolve)  # a changed config is resolved early, beside the lock
    with pytest.raises(ResolutionError):
        _install(bench, bench.project(leaf="2.0"))
    assert generation_folders(bench.layout, PROJECT) == ([str(first.generation)], [])
    assert not install_intent_path(bench.layout, PROJECT).exists()


_LEAF_IN_A_FRESH_PROCESS = """
import json, sys
from pathlib import Path
from volume_cli.deps import install
from volume_cli.layout import VolumeLayout
from volume_cli.progress import NullProgress
from volume_cli.runner import start_detached
from volume_cli.project.definition import ProjectDefinition
from volume_cli.project.discovery import load_project_folder
root, folder, mirror, cache = sys.argv[1:5]
install(layout=VolumeLayout(Path(root)), project=load_project_folder(Path(folder)), mirror=mirror,
        cache_dir=Path(cache), progress=NullProgress())
print(json.dumps(sorted(name for name in sys.modules if name.startswith("volume_cli.models"))))
"""


def test_a_project_without_models_recorded_as_such_never_imports_the_models_engine(bench: Bench) -> None:  # noqa: F811
    bench.install(bench.project())
    state = read_project_state(bench.layout, PROJECT)
    assert state is not None and state.models is not None and state.models.model_keys == []
    new = bench.project(leaf="2.0")
    arguments = [str(bench.layout.root), str(new.folder), bench.index.url, str(_uv_cache())]
    done = subprocess.run(
        [sys.executable, "-c", _LEAF_IN_A_FRESH_PROCESS, *arguments], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == []
    assert read_project_state(bench.layout, PROJECT).models == state.models  # type: ignore[union-attr]


def test_an_entry_lost_before_the_switch_still_stops_the_switch(bench: Bench, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    first = _install(bench, bench.project())
    lost = next(name for name in os.listdir(bench.layout.store_dir) if name.startswith("pubio-"))
    real_crash_point = install_module.crash_point

    def crash_point(name: str) -> None:
        if name == "generation-recorded":  # as a concurrent gc would, after the forest linked it
            shutil.rmtree(bench.layout.store_dir / lost)
        real_crash_point(name)

    monkeypatch.setattr(install_module, "crash_point", crash_point)
    with pytest.raises(InstallError, match=f"disappeared.*{lost}"):
        _install(bench, bench.project(leaf="2.0"))
    assert os.readlink(bench.layout.deps_path(PROJECT, PY)).endswith(str(first.generation))


def test_a_lost_entry_sharing_a_namespace_folder_is_installed_again(bench: Bench) -> None:  # noqa: F811
    for name in ("nsone", "nstwo"):
        build_wheel(
            bench.index.folder, name, "1.0", files={f"pubns/{name}.py": f"NAME = {name!r}\n"}, top_level=["pubns"]
        )
    packages = ["pubtiny", "nsone", "nstwo"]
    bench.install(bench.projects.make(PROJECT, {"main": {"packages": packages}}))
    path = bench.layout.deps_path(PROJECT, PY)
    assert (path / "pubns").is_dir() and not (path / "pubns").is_symlink()  # a real folder: both provide it
    lost = next(name for name in os.listdir(bench.layout.store_dir) if name.startswith("nsone-"))
    shutil.rmtree(bench.layout.store_dir / lost)
    bench.install(bench.projects.make(PROJECT, {"main": {"packages": [*packages, "publeaf==2.0"]}}))
    assert import_values(path, {"one": "pubns.nsone.NAME", "two": "pubns.nstwo.NAME", "leaf": "publeaf.VERSION"}) == {
        "one": "nsone",
        "two": "nstwo",
        "leaf": "2.0",
    }
    assert not _temporary_generations(bench.layout)
