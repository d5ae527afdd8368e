"""The link is the truth: after a crash at any point of a switch, status, state and rollback agree with it."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from tests.helpers import Projects
from tests.wheelfactory import IndexServer
from volume_cli.deps import deps_status, install, rollback
from volume_cli.deps.forest import current_generation
from volume_cli.flows.status import project_status
from volume_cli.layout import VolumeLayout
from volume_cli.progress import NullProgress
from volume_cli.project.definition import ProjectDefinition
from volume_cli.store.state import read_project_state

from . import racekit
from .helpers import PY

SETS = ({"m": {"packages": ["alpha==1.0"]}}, {"m": {"packages": ["delta"]}}, {"m": {"packages": ["epsilon==3.0"]}})


def _three_generations(
    layout: VolumeLayout, projects: Projects, index: IndexServer, isolated_uv: Path, *, crash_last_at: str | None
) -> tuple[list[str], ProjectDefinition]:
    generations: list[str] = []
    for groups in SETS[:2]:
        result = install(
            layout=layout,
            project=projects.make("demo", groups),
            mirror=index.url,
            cache_dir=isolated_uv,
            progress=NullProgress(),
        )
        generations.append(str(result.generation))
    last = projects.make("demo", SETS[2])
    killed = racekit.start("install", layout, last.folder, mirror=index.url, cache=isolated_uv, crash_at=crash_last_at)
    code, out = racekit.finish(killed)
    assert code == (-signal.SIGKILL if crash_last_at else 0), out
    generations.append(str(current_generation(layout, "demo", PY)))
    return generations, last


def test_a_crash_right_after_the_switch_shows_the_new_generation_and_rollback_goes_one_back(
    layout: VolumeLayout, projects: Projects, index: IndexServer, isolated_uv: Path
) -> None:
    generations, last = _three_generations(layout, projects, index, isolated_uv, crash_last_at="switched")
    assert generations[2] not in generations[:2]  # the switch happened
    status = project_status(layout, "demo", last, mirror=index.url)
    assert status.generation == generations[2]
    assert status.state == "installed", status
    detail = deps_status(layout=layout, project=last, mirror=index.url)
    assert detail.current_generation == generations[2] and detail.previous_generation == generations[1]
    assert detail.in_sync
    back = rollback(layout=layout, project=last, progress=NullProgress())
    assert back.to_generation == generations[1]  # one back, not two
    assert current_generation(layout, "demo", PY) == generations[1]
    state = read_project_state(layout, "demo")
    assert state is not None and state.deps is not None
    assert (state.deps.generation, state.deps.previous_generation) == (generations[1], generations[2])


def test_a_kill_during_rollback_after_its_switch_lets_a_second_rollback_undo_it(
    layout: VolumeLayout, projects: Projects, index: IndexServer, isolated_uv: Path
) -> None:
    generations, last = _three_generations(layout, projects, index, isolated_uv, crash_last_at=None)
    killed = racekit.start("rollback", layout, last.folder, crash_at="rollback-switched")
    code, out = racekit.finish(killed)
    assert code == -signal.SIGKILL, out
    assert current_generation(layout, "demo", PY) == generations[1]
    detail = deps_status(layout=layout, project=last, mirror=index.url)
    assert (detail.current_generation, detail.previous_generation) == (generations[1], generations[2])
    assert detail.generation_differs_from_lock and not detail.config_changed_since_lock
    assert project_status(layout, "demo", last, mirror=index.url).state == "differs from lock"
    again = racekit.start("rollback", layout, last.folder)
    code, out = racekit.finish(again)
    assert code == 0, out
    assert json.loads(out.splitlines()[-1])["generation"] == generations[2]
    assert current_generation(layout, "demo", PY) == generations[2]


def test_two_unrecorded_switches_in_a_row_still_roll_back_one_generation(
    layout: VolumeLayout, projects: Projects, index: IndexServer, isolated_uv: Path
) -> None:
    generations, _ = _three_generations(layout, projects, index, isolated_uv, crash_last_at="switched")
    # a second install crashing after its switch, before anything recorded the first crash's switch
    fourth = projects.make("demo", SETS[0])
    killed = racekit.start("install", layout, fourth.folder, mirror=index.url, cache=isolated_uv, crash_at="switched")
    code, out = racekit.finish(killed)
    assert code == -signal.SIGKILL, out
    now = str(current_generation(layout, "demo", PY))
    assert now not in generations
    detail = deps_status(layout=layout, project=fourth, mirror=index.url)
    assert (detail.current_generation, detail.previous_generation) == (now, generations[2])
    assert rollback(layout=layout, project=fourth, progress=NullProgress()).to_generation == generations[2]


def test_an_install_after_a_crash_right_after_the_switch_is_a_noop_and_records_the_truth(
    layout: VolumeLayout, projects: Projects, index: IndexServer, isolated_uv: Path
) -> None:
    generations, last = _three_generations(layout, projects, index, isolated_uv, crash_last_at="switched")
    rerun = install(layout=layout, project=last, mirror=index.url, cache_dir=isolated_uv, progress=NullProgress())
    assert rerun.noop and rerun.generation == generations[2] and rerun.previous_generation == generations[1]
    state = read_project_state(layout, "demo")
    assert state is not None and state.deps is not None
    assert (state.deps.generation, state.deps.previous_generation) == (generations[2], generations[1])


def test_a_first_install_killed_right_after_its_switch_is_usable_by_workers_and_status(
    layout: VolumeLayout, projects: Projects, index: IndexServer, isolated_uv: Path
) -> None:
    from volume_cli import runtime

    first = projects.make("demo", SETS[0])
    killed = racekit.start("install", layout, first.folder, mirror=index.url, cache=isolated_uv, crash_at="switched")
    code, out = racekit.finish(killed)
    assert code == -signal.SIGKILL, out
    assert read_project_state(layout, "demo") is None  # nothing recorded yet, but the link is there
    found = runtime.inspect("demo", layout.root, require_models=False)
    assert found.ok, found.problems
    assert found.deps_generation is not None and found.deps_generation.name == current_generation(layout, "demo", PY)
    status = project_status(layout, "demo", first, mirror=index.url)
    assert status.state == "installed" and status.generation == current_generation(layout, "demo", PY)


def test_rollback_refuses_a_previous_generation_whose_entries_are_gone(
    layout: VolumeLayout, projects: Projects, index: IndexServer, isolated_uv: Path
) -> None:
    import shutil

    from volume_cli.deps.documents import GenerationRecord, generation_record_path
    from volume_cli.errors import InstallError
    from volume_cli.store.documents import read_document

    generations, last = _three_generations(layout, projects, index, isolated_uv, crash_last_at=None)
    record = read_document(generation_record_path(layout, "demo", generations[1]), GenerationRecord)
    assert record is not None
    shutil.rmtree(layout.store_dir / record.entries[0].entry)  # damaged by hand, or by an older gc
    try:
        rollback(layout=layout, project=last, progress=NullProgress())
        raise AssertionError("rolled back onto an incomplete generation")
    except InstallError as exc:
        assert record.entries[0].entry in str(exc)
    assert current_generation(layout, "demo", PY) == generations[2]


def test_a_plain_folder_left_by_an_older_tool_becomes_the_previous_generation(
    layout: VolumeLayout, projects: Projects, index: IndexServer, isolated_uv: Path
) -> None:
    from volume_cli.deps import gc

    from .helpers import import_values

    old = layout.deps_path("demo", PY)
    old.mkdir(parents=True)
    (old / "legacy_mod.py").write_text("VALUE = 'old tool'\n")
    first = projects.make("demo", SETS[0])
    result = install(layout=layout, project=first, mirror=index.url, cache_dir=isolated_uv, progress=NullProgress())
    assert result.previous_generation is not None and result.previous_generation.startswith("legacy-")
    gc(layout=layout, grace_seconds=0, dry_run=False, progress=NullProgress())  # nothing of it is lost
    back = rollback(layout=layout, project=first, progress=NullProgress())
    assert back.to_generation == result.previous_generation
    assert import_values(layout.deps_path("demo", PY), {"v": "legacy_mod.VALUE"}) == {"v": "old tool"}
    rollback(layout=layout, project=first, progress=NullProgress())
    assert current_generation(layout, "demo", PY) == result.generation
