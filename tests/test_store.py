"""Metadata store: atomic writes survive kill -9, old formats migrate, new ones are refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from volume_cli.errors import StateError
from volume_cli.fileops import atomic_write_text, cleanup_stale_temp_files
from volume_cli.layout import VolumeLayout
from volume_cli.store.documents import read_document
from volume_cli.store.state import ProjectState, ensure_volume_info, read_project_state, write_project_state


def test_kill_between_write_and_replace_leaves_old_file_valid(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    atomic_write_text(target, '{"version": "old"}')
    script = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        from volume_cli import fileops
        def die(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGKILL)
        fileops.os.replace = die
        fileops.atomic_write_text(Path({str(target)!r}), '{{"version": "new"}}' * 1000)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == -9, result.stderr
    assert json.loads(target.read_text()) == {"version": "old"}
    leftovers = [path for path in tmp_path.iterdir() if path.name != "state.json"]
    assert len(leftovers) == 1 and ".tmp-" in leftovers[0].name
    assert cleanup_stale_temp_files(tmp_path, older_than_seconds=3600) == 0  # still young: may be in use
    os.utime(leftovers[0], (0, 0))
    assert cleanup_stale_temp_files(tmp_path, older_than_seconds=3600) == 1
    assert [path.name for path in tmp_path.iterdir()] == ["state.json"]


def test_project_state_round_trip_is_relative(tmp_path: Path) -> None:
    layout = VolumeLayout(tmp_path)
    state = ProjectState(project="demo", python_version="3.11")
    write_project_state(layout, state)
    loaded = read_project_state(layout, "demo")
    assert loaded is not None and loaded.project == "demo" and loaded.schema_version == ProjectState.SCHEMA_VERSION
    assert str(tmp_path) not in (layout.project_state_dir("demo") / "state.json").read_text()
    assert read_project_state(layout, "absent") is None


def test_format_1_migrates_and_drops_absolute_paths(tmp_path: Path) -> None:
    layout = VolumeLayout(tmp_path)
    path = layout.project_state_dir("demo") / "state.json"
    path.parent.mkdir(parents=True)
    path.write_text(
        json.dumps(
            {
                "schema_version": 1,
                "project": "demo",
                "python_version": "3.10",
                "root": "/workspace",
                "deps_path": "/workspace/python-deps/py3.10/.generations/demo/g0001",
                "installed_packages": {"torch==2.4.1": "2.4.1"},
                "last_install": "2025-01-02T03:04:05+00:00",
            }
        )
    )
    state = read_project_state(layout, "demo")
    assert state is not None and state.schema_version == 2
    assert state.deps is not None and state.deps.generation == "g0001"
    assert state.deps.config_hash == "unknown"  # so status reports the config as changed
    assert "/workspace" not in state.model_dump_json()


def test_newer_format_is_refused_with_upgrade_hint(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"schema_version": 99, "project": "x", "python_version": "3.10"}))
    with pytest.raises(StateError) as info:
        read_document(path, ProjectState)
    assert "newer volume-cli" in info.value.message and info.value.hint and "upgrade" in info.value.hint


@pytest.mark.parametrize("content", ["{not json", "[]", '{"schema_version": 2, "project": 3}'])
def test_damaged_state_is_a_clear_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "state.json"
    path.write_text(content)
    with pytest.raises(StateError) as info:
        read_document(path, ProjectState)
    assert str(path) in info.value.message


def test_volume_info_written_once(tmp_path: Path) -> None:
    layout = VolumeLayout(tmp_path)
    first = ensure_volume_info(layout, "0.1.0")
    second = ensure_volume_info(layout, "9.9.9")
    assert first.created_at == second.created_at and second.created_by == "0.1.0"


def test_concurrent_state_updates_from_two_processes_keep_both_records(tmp_path: Path) -> None:
    """The deps and models engines update one state.json; neither may undo the other."""
    script = textwrap.dedent(
        """
        import sys
        from datetime import datetime, timezone
        from pathlib import Path
        from volume_cli.layout import VolumeLayout
        from volume_cli.store.state import DepsRecord, ModelsRecord, update_project_state
        layout, kind = VolumeLayout(Path(sys.argv[1])), sys.argv[2]
        now = datetime.now(timezone.utc)
        for index in range(25):
            if kind == "deps":
                record = DepsRecord(generation=f"g{index}", generation_path="x", config_hash="c", installed_at=now,
                                    package_count=index, size_bytes=index, tool_version="t")
                update_project_state(layout, "demo", "3.11", lambda s: s.model_copy(update={"deps": record}))
            else:
                record = ModelsRecord(downloaded_at=now, config_hash="m", model_keys=[f"k{index}"], size_bytes=index)
                update_project_state(layout, "demo", "3.11", lambda s: s.model_copy(update={"models": record}))
        """
    )
    workers = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path), kind]) for kind in ("deps", "models")]
    assert [worker.wait(timeout=120) for worker in workers] == [0, 0]
    state = read_project_state(VolumeLayout(tmp_path), "demo")
    assert state is not None and state.deps is not None and state.models is not None
    assert state.deps.generation == "g24" and state.models.model_keys == ["k24"]
