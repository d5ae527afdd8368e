"""``next:`` and ``undo with:`` lines carry the ``--root``/``--projects-dir`` the user passed, so they run as printed."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ProjectsFolder
from tests.wheelfactory import IndexServer, build_wheel
from volume_cli.cli.hints import given_options, with_user_options

PY = f"{sys.version_info.major}.{sys.version_info.minor}"


def _next_line(stderr: str) -> str:
    return next(line for line in stderr.splitlines() if line.startswith("next:"))


def test_unknown_project_hint_keeps_the_projects_dir(cli: Any, tmp_path: Path, projects_folder: ProjectsFolder) -> None:
    root = tmp_path / "vol dir"  # a space: the printed command must quote it
    root.mkdir()
    result = cli("status", "--root", str(root), "--projects-dir", str(projects_folder.path), "-p", "nope")
    assert result.exit_code == 1
    line = _next_line(result.stderr)
    assert f"volume-cli projects list --projects-dir {shlex.quote(str(projects_folder.path))}" in line
    assert "--root" not in line  # projects list has no --root: never print an option that is a usage error


def test_hint_rewriting_only_adds_what_the_command_accepts() -> None:
    given = given_options(["deps", "install", "--root=/tmp/v", "--projects-dir", "/tmp/p", "-p", "x"])
    assert given == (("--root", "/tmp/v"), ("--projects-dir", "/tmp/p"))
    hint = "run: volume-cli deps rollback --project x, then volume-cli projects check"
    assert with_user_options(hint, given) == (
        "run: volume-cli deps rollback --project x --root /tmp/v --projects-dir /tmp/p, "
        "then volume-cli projects check --projects-dir /tmp/p"
    )
    already = "volume-cli status --root /elsewhere"
    assert with_user_options(already, given) == "volume-cli status --root /elsewhere --projects-dir /tmp/p"
    assert with_user_options("volume-cli nosuch thing", given) == "volume-cli nosuch thing"
    assert with_user_options("volume-cli deps install -p x", ()) == "volume-cli deps install -p x"


@pytest.fixture
def index(tmp_path: Path) -> Iterator[IndexServer]:
    folder = tmp_path / "wheels"
    build_wheel(folder, "alpha", "1.0")
    build_wheel(folder, "alpha", "2.0")
    with IndexServer(folder) as server:
        yield server


def test_undo_line_after_an_install_keeps_root_and_projects_dir(
    cli: Any, volume_root: Path, projects_folder: ProjectsFolder, index: IndexServer
) -> None:
    deps = "groups:\n  main:\n    packages: [alpha=={}]\n"
    folder = projects_folder.add_yaml_project("undo_me", python=PY, dependencies=deps.format("1.0"))
    common = ["--root", str(volume_root), "--projects-dir", str(projects_folder.path), "--index-url", index.url]
    first = cli("deps", "install", "-p", "undo-me", *common)
    assert first.exit_code == 0, first.stderr
    (folder / "dependencies.yaml").write_text(deps.format("2.0"))
    second = cli("deps", "install", "-p", "undo-me", *common)
    assert second.exit_code == 0, second.stderr
    undo = next(line for line in second.stdout.splitlines() if line.startswith("undo with:"))
    command = shlex.split(undo.removeprefix("undo with:"))
    assert command[:3] == ["volume-cli", "deps", "rollback"]
    rolled = cli(*command[1:])
    assert rolled.exit_code == 0, rolled.stderr
