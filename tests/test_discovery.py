"""Finding projects: the repo's own, extra folders, duplicates, scaffolding."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import ProjectsFolder
from volume_cli.errors import ConfigError, DuplicateProjectError, ProjectNotFoundError
from volume_cli.project.discovery import PROJECTS_PATH_ENV, bundled_projects_dir, discover
from volume_cli.project.scaffold import scaffold_project

REPO_PROJECTS = Path(__file__).resolve().parent.parent / "projects"


def test_repo_projects_are_discovered_from_a_checkout(tmp_path: Path) -> None:
    discovery = discover(cwd=tmp_path, env={})
    assert bundled_projects_dir() == REPO_PROJECTS
    assert {"demo", "speaker-diarization"} <= set(discovery.projects)
    speaker = discovery.get("speaker-diarization")
    assert speaker.python_version == "3.10"
    assert speaker.plugin is not None
    assert speaker.models[0].key == "modelscope/iic/speech_campplus_speaker-diarization_common"
    groups = speaker.dependencies.groups
    assert groups["pytorch"].index_url == "https://download.pytorch.org/whl/cu121"
    assert groups["funasr"].no_deps and groups["funasr"].packages == ["funasr==0.8.8"]
    assert len(groups["standard"].packages) == 22
    demo = discovery.get("demo")
    assert demo.plugin is None and demo.definition_file.name == "project.yaml"


def test_extra_folder_and_env_path(projects_folder: ProjectsFolder, tmp_path: Path) -> None:
    projects_folder.add_yaml_project("alpha")
    other = tmp_path / "more"
    other.mkdir()
    ProjectsFolder(other).add_yaml_project("beta_project", name="beta-project")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    discovery = discover([projects_folder.path], env={PROJECTS_PATH_ENV: str(other)}, cwd=elsewhere)
    assert {"alpha", "beta-project", "demo"} <= set(discovery.projects)
    assert discovery.get("beta-project").folder == other / "beta_project"


def test_cwd_projects_folder_replaces_the_bundled_one(projects_folder: ProjectsFolder) -> None:
    projects_folder.add_yaml_project("alpha")
    discovery = discover(cwd=projects_folder.path.parent, env={})
    assert set(discovery.projects) == {"alpha"}


def test_duplicate_names_name_both_folders(projects_folder: ProjectsFolder, tmp_path: Path) -> None:
    projects_folder.add_yaml_project("alpha")
    other = tmp_path / "other"
    other.mkdir()
    ProjectsFolder(other).add_yaml_project("alpha_copy", name="alpha")
    with pytest.raises(DuplicateProjectError) as info:
        discover([projects_folder.path, other], env={}, cwd=tmp_path).get("alpha")
    message = info.value.message
    assert str(projects_folder.path / "alpha") in message and str(other / "alpha_copy") in message


def test_unknown_project_lists_known_ones(projects_folder: ProjectsFolder) -> None:
    projects_folder.add_yaml_project("alpha")
    with pytest.raises(ProjectNotFoundError) as info:
        discover([projects_folder.path], env={}, cwd=projects_folder.path).get("gamma")
    assert "alpha" in info.value.message and info.value.hint and "projects list" in info.value.hint


def test_broken_plugin_names_file_and_line(projects_folder: ProjectsFolder) -> None:
    folder = projects_folder.path / "broken"
    folder.mkdir()
    (folder / "project.py").write_text("from volume_cli import Project\n\nraise RuntimeError('boom')\n")
    with pytest.raises(ConfigError) as info:
        discover([projects_folder.path], env={}, cwd=projects_folder.path).get("broken")
    assert info.value.message.startswith(f"{folder / 'project.py'}:3: importing the plugin failed: RuntimeError: boom")


def test_plugin_with_bad_attributes(projects_folder: ProjectsFolder) -> None:
    folder = projects_folder.path / "bad"
    folder.mkdir()
    (folder / "project.py").write_text(
        "from volume_cli import Project\n\nclass Bad(Project):\n    name = 'bad'\n    python_version = '3.x'\n"
    )
    with pytest.raises(ConfigError) as info:
        discover([projects_folder.path], env={}, cwd=projects_folder.path).get("bad")
    assert f"{folder / 'project.py'}: python_version: python version must look like" in info.value.message


def test_scaffold_then_discovered_and_valid(tmp_path: Path) -> None:
    result = scaffold_project(name="my-asr", python_version="3.10", parent=tmp_path / "projects")
    assert result.folder == tmp_path / "projects" / "my_asr"
    definition = discover([tmp_path / "projects"], env={}, cwd=tmp_path).get("my-asr")
    assert definition.plugin is not None
    assert definition.dependencies.groups["standard"].packages == ["requests>=2.31"]
    assert definition.dependencies.metadata is not None and definition.dependencies.metadata.python_version == "3.10"
