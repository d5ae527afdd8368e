"""One broken project folder breaks only itself; a name never silently resolves to someone else's folder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import CliResult, ProjectsFolder, volume_cli_command
from volume_cli.errors import ConfigError, DuplicateProjectError, ProjectNotFoundError
from volume_cli.project.discovery import bundled_projects_dir, discover

Cli = Callable[..., CliResult]

BROKEN_FOLDERS: dict[str, Callable[[Path], None]] = {
    "bad-yaml": lambda folder: (folder / "project.yaml").write_text("name: [unclosed\n"),
    "bad-python-version": lambda folder: (folder / "project.yaml").write_text("name: bravo\npython_version: '3.99'\n"),
    "plugin-raises": lambda folder: (folder / "project.py").write_text("raise RuntimeError('boom')\n"),
    "plugin-exits": lambda folder: (folder / "project.py").write_text("import sys\nsys.exit(3)\n"),
    "plugin-no-class": lambda folder: (folder / "project.py").write_text("X = 1\n"),
    "both-files": lambda folder: [
        (folder / "project.py").write_text("X = 1\n"),
        (folder / "project.yaml").write_text("name: bravo\n"),
    ],
}


def _break(projects_folder: ProjectsFolder, how: str) -> Path:
    folder = projects_folder.path / "bravo"
    folder.mkdir()
    BROKEN_FOLDERS[how](folder)
    return folder


@pytest.mark.parametrize("how", sorted(BROKEN_FOLDERS))
def test_a_broken_project_breaks_only_itself(how: str, projects_folder: ProjectsFolder, cli: Cli) -> None:
    projects_folder.add_yaml_project("alpha")
    broken = _break(projects_folder, how)
    dirs = ("--projects-dir", str(projects_folder.path))

    # Commands for alpha work while bravo is broken.
    listed = cli("deps", "list", "--project", "alpha", *dirs)
    assert listed.exit_code == 0, listed.stderr
    assert "six==1.17.0" in listed.stdout

    # Asking for bravo gives bravo's own problem, not "not found".
    asked = cli("deps", "list", "--project", "bravo", *dirs)
    assert asked.exit_code == 1 and str(broken) in asked.stderr and "internal error" not in asked.stderr

    # projects check / list show both, bravo as broken with its problem.
    checked = cli("projects", "check", *dirs)
    assert checked.exit_code == 1, checked.stdout + checked.stderr
    assert "ok" in checked.stdout and "alpha" in checked.stdout
    assert "bravo" in checked.stdout and str(broken) in checked.stdout + checked.stderr
    rows = json.loads(cli("projects", "list", *dirs, "--json").stdout)
    by_folder = {row["folder"]: row for row in rows}
    assert by_folder[str(projects_folder.path / "alpha")]["error"] is None
    assert by_folder[str(broken)]["error"]


def test_check_one_broken_project_by_name(projects_folder: ProjectsFolder, cli: Cli) -> None:
    projects_folder.add_yaml_project("alpha")
    _break(projects_folder, "plugin-exits")
    dirs = ("--projects-dir", str(projects_folder.path))
    assert cli("projects", "check", "--project", "alpha", *dirs).exit_code == 0
    bravo = cli("projects", "check", "--project", "bravo", *dirs)
    assert bravo.exit_code == 1 and "sys.exit(3)" in bravo.stdout + bravo.stderr


def test_folder_with_only_dependencies_yaml_is_reported(projects_folder: ProjectsFolder, cli: Cli) -> None:
    projects_folder.add_yaml_project("alpha")
    lonely = projects_folder.path / "charlie"
    lonely.mkdir()
    (lonely / "dependencies.yaml").write_text("groups:\n  main:\n    packages: [six]\n")
    dirs = ("--projects-dir", str(projects_folder.path))
    checked = cli("projects", "check", *dirs)
    output = checked.stdout + checked.stderr
    assert checked.exit_code == 1 and str(lonely) in output and "no project.yaml or project.py" in output
    asked = cli("deps", "list", "--project", "charlie", *dirs)
    assert asked.exit_code == 1 and "no project.yaml or project.py" in asked.stderr
    assert "project.yaml" in asked.stderr.split("next:")[1]


def test_local_folder_with_only_dependencies_yaml_does_not_fall_back_to_bundled(tmp_path: Path) -> None:
    """A user's projects/speaker_diarization/dependencies.yaml must never install the bundled package set."""
    local = tmp_path / "projects" / "speaker_diarization"
    local.mkdir(parents=True)
    (local / "dependencies.yaml").write_text("groups:\n  main:\n    packages: [six]\n")
    discovery = discover(cwd=tmp_path, env={})
    assert "speaker-diarization" not in discovery.projects
    with pytest.raises(ConfigError) as info:
        discovery.get("speaker-diarization")
    assert str(local) in info.value.message


def test_users_project_shadows_bundled_one_with_a_note(tmp_path: Path, cli: Cli) -> None:
    mine = tmp_path / "mine"
    ProjectsFolder(mine).add_yaml_project("speaker_diarization", name="speaker-diarization", python="3.11")
    discovery = discover([mine], env={}, cwd=tmp_path)
    chosen = discovery.get("speaker-diarization")
    assert chosen.folder == mine / "speaker_diarization"
    note = discovery.note_for("speaker-diarization")
    assert note and str(mine / "speaker_diarization") in note and str(bundled_projects_dir()) in note
    assert "demo" in discovery.projects  # the other bundled projects are still there

    listed = cli("deps", "list", "--project", "speaker-diarization", "--projects-dir", str(mine))
    assert listed.exit_code == 0, listed.stderr
    assert "six==1.17.0" in listed.stdout and "torch" not in listed.stdout
    assert "note:" in listed.stderr and "bundled" in listed.stderr


def test_two_user_folders_with_one_name_break_only_that_name(projects_folder: ProjectsFolder, tmp_path: Path) -> None:
    projects_folder.add_yaml_project("alpha")
    projects_folder.add_yaml_project("delta")
    other = tmp_path / "other"
    ProjectsFolder(other).add_yaml_project("alpha_copy", name="alpha")
    discovery = discover([projects_folder.path, other], env={}, cwd=tmp_path)
    assert discovery.get("delta").folder == projects_folder.path / "delta"
    with pytest.raises(DuplicateProjectError) as info:
        discovery.get("alpha")
    assert str(projects_folder.path / "alpha") in info.value.message and str(other / "alpha_copy") in info.value.message


def test_unknown_name_mentions_broken_folders(projects_folder: ProjectsFolder) -> None:
    projects_folder.add_yaml_project("alpha")
    _break(projects_folder, "bad-yaml")
    discovery = discover([projects_folder.path], env={}, cwd=projects_folder.path)
    with pytest.raises(ProjectNotFoundError) as info:
        discovery.get("zulu")
    assert "could not be read" in info.value.message and info.value.hint and "projects check" in info.value.hint


def test_a_plugin_printing_at_import_does_not_corrupt_json_or_env(projects_folder: ProjectsFolder, cli: Cli) -> None:
    folder = projects_folder.path / "chatty"
    folder.mkdir()
    (folder / "project.py").write_text(
        "from volume_cli import Project\nprint('hello from the plugin')\n\n"
        "class Chatty(Project):\n    name = 'chatty'\n    python_version = '3.11'\n"
    )
    (folder / "dependencies.yaml").write_text("groups:\n  main:\n    packages: [six]\n")
    result = cli("projects", "list", "--projects-dir", str(projects_folder.path), "--json")
    assert result.exit_code == 0, result.stderr
    assert any(row["name"] == "chatty" for row in json.loads(result.stdout))
    assert "hello from the plugin" in result.stderr


def test_a_broken_copy_of_a_bundled_project_is_not_replaced_by_the_bundled_one(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    folder = mine / "speaker_diarization"
    folder.mkdir(parents=True)
    (folder / "project.py").write_text("this is not python\n")
    (folder / "dependencies.yaml").write_text("groups:\n  main:\n    packages: [six]\n")
    discovery = discover([mine], env={}, cwd=tmp_path)
    with pytest.raises(ConfigError) as info:
        discovery.get("speaker-diarization")
    assert str(folder / "project.py") in info.value.message
    assert discovery.get("demo").folder.parent == bundled_projects_dir()


def test_unreadable_folders_are_reported_not_skipped(projects_folder: ProjectsFolder, tmp_path: Path) -> None:
    """Root ignores file modes, so the check runs in a subprocess without CAP_DAC_OVERRIDE."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv")
    projects_folder.add_yaml_project("alpha")
    locked = projects_folder.add_yaml_project("bravo")
    other = tmp_path / "other"
    ProjectsFolder(other).add_yaml_project("charlie")
    locked.chmod(0)
    other.chmod(0)
    try:
        argv = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--", *volume_cli_command()]
        argv += ["projects", "check", "--projects-dir", str(projects_folder.path)]
        env = {**os.environ, "NO_COLOR": "1", "VOLUME_CLI_PROJECTS_PATH": str(other)}
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)
    finally:
        locked.chmod(0o755)
        other.chmod(0o755)
    output = result.stdout + result.stderr
    assert result.returncode == 1 and "internal error" not in output, output
    assert "ok     alpha" in output
    assert f"{locked}: cannot read the project folder" in output
    assert f"{other}: cannot list this projects folder" in output
