"""``status`` tells the truth: models have their own column, a rollback shows as "differs from lock"."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import packages_groups, write_project
from tests.wheelfactory import IndexServer, build_wheel
from volume_cli.deps import install, rollback
from volume_cli.flows.status import project_status
from volume_cli.layout import VolumeLayout
from volume_cli.progress import NullProgress
from volume_cli.project.definition import ProjectDefinition
from volume_cli.project.discovery import load_project_folder

PY = f"{sys.version_info.major}.{sys.version_info.minor}"
MODEL = [{"source": "huggingface", "repo_id": "org/model"}]


@pytest.fixture
def index(tmp_path: Path) -> Iterator[IndexServer]:
    folder = tmp_path / "wheels"
    build_wheel(folder, "alpha", "1.0")
    build_wheel(folder, "alpha", "2.0")
    with IndexServer(folder) as server:
        yield server


def _project(base: Path, packages: list[str], *, models: list[dict[str, Any]] | None = None) -> ProjectDefinition:
    folder = write_project(
        base / "projects" / "demo", name="demo", models=models or None, groups=packages_groups({"m": packages})
    )
    return load_project_folder(folder)


def _install(layout: VolumeLayout, project: ProjectDefinition, index: IndexServer) -> None:
    install(layout=layout, project=project, mirror=index.url, progress=NullProgress())


def test_missing_models_do_not_show_in_the_deps_column(
    layout: VolumeLayout, index: IndexServer, tmp_path: Path
) -> None:
    project = _project(tmp_path, ["alpha==1.0"], models=MODEL)
    _install(layout, project, index)
    status = project_status(layout, "demo", project, mirror=index.url)
    assert status.state == "installed"  # the dependencies are fine
    assert status.models_state == "missing"
    assert status.models_missing == ["huggingface/model/org/model"]


def test_models_state_without_models_and_before_any_install(
    layout: VolumeLayout, index: IndexServer, tmp_path: Path
) -> None:
    project = _project(tmp_path, ["alpha==1.0"])
    status = project_status(layout, "demo", project, mirror=index.url)
    assert (status.state, status.models_state) == ("not installed", "none")


def test_after_a_rollback_status_says_differs_from_lock_not_config_changed(
    layout: VolumeLayout, index: IndexServer, tmp_path: Path
) -> None:
    _install(layout, _project(tmp_path, ["alpha==1.0"]), index)
    project = _project(tmp_path, ["alpha==2.0"])
    _install(layout, project, index)
    rollback(layout=layout, project=project, progress=NullProgress())
    status = project_status(layout, "demo", project, mirror=index.url)
    assert status.state == "differs from lock"
    assert status.config_changed is False
    edited = _project(tmp_path, ["alpha==1.0"])  # the config now asks for something the lock does not hold
    assert project_status(layout, "demo", edited, mirror=index.url).state == "config changed"


def test_the_status_table_shows_deps_and_models_states_apart(
    layout: VolumeLayout, index: IndexServer, tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # only this test's projects are discovered
    project = _project(tmp_path, ["alpha==1.0"], models=MODEL)
    _install(layout, project, index)
    result = cli(
        "status", "--root", str(layout.root), "--projects-dir", str(tmp_path / "projects"), "--index-url", index.url
    )
    assert result.exit_code == 0, result.stdout + result.stderr
    row = next(line for line in result.stdout.splitlines() if line.lstrip().startswith("demo"))
    assert "installed" in row and "models missing" not in row and "0/1" in row
    data = cli(
        "status",
        "--root",
        str(layout.root),
        "--projects-dir",
        str(tmp_path / "projects"),
        "--index-url",
        index.url,
        "--json",
    )
    (item,) = json.loads(data.stdout)["projects"]
    assert (item["state"], item["models_state"], item["deps"]["missing_entries"]) == ("installed", "missing", [])


def test_status_tells_when_the_current_generation_lost_store_entries(
    layout: VolumeLayout, index: IndexServer, tmp_path: Path
) -> None:
    import shutil

    project = _project(tmp_path, ["alpha==1.0"])
    _install(layout, project, index)
    (entry,) = [name for name in os.listdir(layout.store_dir) if name.startswith("alpha-1.0")]
    shutil.rmtree(layout.store_dir / entry)  # what a gc racing an install used to do
    status = project_status(layout, "demo", project, mirror=index.url)
    assert status.state == "error" and any(entry in problem for problem in status.problems), status.problems
    assert any("deps install --force" in problem for problem in status.problems)
    install(layout=layout, project=project, mirror=index.url, force=True, progress=NullProgress())
    assert project_status(layout, "demo", project, mirror=index.url).state == "installed"
