"""Folders of the original tool (runpod-model-manager), as its users have them: config.py + dependencies.yaml."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.helpers import CliResult
from tests.wheelfactory import IndexServer, build_wheel, pyenv_python
from volume_cli.config.dependencies import load_dependency_config
from volume_cli.errors import ConfigError
from volume_cli.project.discovery import discover
from volume_cli.project.legacy_import import read_legacy_config

# The original tool's format (written for these tests, not copied): groups with descriptions, a pytorch group
# on its own index, install_order, informational metadata, markers, and a commented-out group.
SPEAKER_REG_DEPENDENCIES = """\
groups:
  pytorch:
    index_url: "https://download.pytorch.org/whl/cu121"
    packages:
      - torch==2.4.1
      - torchaudio==2.4.1
    description: "PyTorch with CUDA 12.1 support"
  standard:
    index_url: null # null = default PyPI
    packages:
      - tqdm==4.67.1
      - numpy==1.23.5
      - WeTextProcessing==1.0.4.1; platform_machine != "Darwin"
      - wetext; platform_system == "Darwin"
    description: "Standard packages from PyPI"
  # funasr:
  #   index_url: null
  #   no_deps: true
  #   packages: [funasr==1.2.7]
install_order:
  - pytorch
  - standard
metadata:
  project: speaker-reg
  python_version: "3.10"
  created: "2024-11-23"
  updated: 2025-12-26
  version: 1.2
  author: someone
  description: "Speaker diarization project dependencies"
"""

SPEAKER_REG_CONFIG = '''\
"""Speaker diarization (the original tool's plugin)."""
from pathlib import Path

from ..base import BaseProject


class SpeakerDiarizationProject(BaseProject):
    @property
    def name(self) -> str:
        return "speaker-reg"

    @property
    def models(self):
        return {
            "modelscope": [
                "iic/speech_campplus_speaker-diarization_common",
                "damo/speech_fsmn_vad_zh-cn-16k-common-pytorch",
            ],
            "huggingface": ["pyannote/segmentation-3.0"],
        }

    @property
    def dependencies_config(self) -> str:
        return str(Path(__file__).parent / "dependencies.yaml")

    @property
    def python_version(self) -> str:
        return "3.10"

    @property
    def local_models_path(self) -> str:
        return "/workspace/models"

    def download_models(self, model_cache):
        print("downloading", model_cache)
        raise SystemExit("this file must never be executed by volume-cli")
'''


def _original_folder(parent: Path, name: str = "speaker_reg", *, dependencies: str = SPEAKER_REG_DEPENDENCIES) -> Path:
    folder = parent / name
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text("")
    (folder / "config.py").write_text(SPEAKER_REG_CONFIG)
    (folder / "dependencies.yaml").write_text(dependencies)
    return folder


def test_informational_metadata_keys_are_accepted(tmp_path: Path) -> None:
    folder = _original_folder(tmp_path)
    config = load_dependency_config(folder / "dependencies.yaml")
    assert config.metadata is not None and config.metadata.project == "speaker-reg"
    assert config.metadata.unknown_keys == ["author", "created", "updated", "version"]
    assert [name for name, _ in config.ordered_groups] == ["pytorch", "standard"]


def test_empty_index_url_means_the_default_index(tmp_path: Path) -> None:
    path = tmp_path / "dependencies.yaml"
    path.write_text('groups:\n  main:\n    index_url: ""\n    packages: [six]\n')
    group = load_dependency_config(path).groups["main"]
    assert group.index_url is None
    assert group.effective_index_url("http://mirror/simple") == "http://mirror/simple"


def test_unquoted_python_version_says_quote_it(tmp_path: Path) -> None:
    path = tmp_path / "dependencies.yaml"
    path.write_text("groups:\n  main:\n    packages: [six]\nmetadata:\n  python_version: 3.10\n")
    with pytest.raises(ConfigError) as caught:
        load_dependency_config(path)
    assert 'quote it: "3.10"' in caught.value.message


def test_folder_with_metadata_project_is_adopted_and_listed(tmp_path: Path, cli: object) -> None:
    projects = tmp_path / "projects"
    folder = _original_folder(projects)
    discovery = discover([projects], env={}, cwd=tmp_path)
    assert not discovery.broken
    definition = discovery.projects["speaker-reg"]
    assert definition.folder == folder and definition.python_version == "3.10"
    assert [model.model_dump()["source"] for model in definition.models] == ["modelscope", "modelscope", "huggingface"]
    listed: CliResult = cli("projects", "list", "--projects-dir", str(projects))  # type: ignore[operator]
    assert listed.exit_code == 0, listed
    assert "adopted from" in listed.stdout and "projects import" in listed.stdout


def test_config_py_is_read_without_running_it(tmp_path: Path) -> None:
    folder = _original_folder(tmp_path)
    legacy = read_legacy_config(folder / "config.py")
    assert (legacy.name, legacy.python_version) == ("speaker-reg", "3.10")
    assert legacy.models[0] == {"source": "modelscope", "model_id": "iic/speech_campplus_speaker-diarization_common"}
    loaded = {getattr(module, "__file__", None) for module in list(sys.modules.values())}
    assert str(folder / "config.py") not in loaded  # read, never imported


def test_projects_import_writes_project_yaml(tmp_path: Path, cli: object) -> None:
    projects = tmp_path / "projects"
    folder = _original_folder(projects)
    result: CliResult = cli("projects", "import", str(folder))  # type: ignore[operator]
    assert result.exit_code == 0, result
    written = yaml.safe_load((folder / "project.yaml").read_text())
    assert written["name"] == "speaker-reg" and written["python_version"] == "3.10"
    assert len(written["models"]) == 3
    checked: CliResult = cli("projects", "check", "--projects-dir", str(projects))  # type: ignore[operator]
    assert checked.exit_code == 0, checked
    again: CliResult = cli("projects", "import", str(folder))  # type: ignore[operator]
    assert again.exit_code == 1 and "already has a project file" in again.stderr


@pytest.fixture
def original_index(tmp_path: Path) -> Iterator[IndexServer]:
    wheels = tmp_path / "wheels"
    for name, version in [
        ("torch", "2.4.1"),
        ("torchaudio", "2.4.1"),
        ("tqdm", "4.67.1"),
        ("numpy", "1.23.5"),
        ("WeTextProcessing", "1.0.4.1"),
    ]:
        build_wheel(wheels, name, version)
    with IndexServer(wheels) as server:
        yield server


def test_a_folder_copied_from_the_original_tool_installs_as_it_is(
    tmp_path: Path, original_index: IndexServer, cli: object
) -> None:
    if pyenv_python("3.10") is None and shutil.which("python3.10") is None:
        pytest.skip("needs a CPython 3.10")
    source = _original_folder(
        tmp_path / "original" / "src" / "projects",
        # Only the pytorch index is pointed at the local server: the machine cannot reach download.pytorch.org.
        dependencies=SPEAKER_REG_DEPENDENCIES.replace("https://download.pytorch.org/whl/cu121", original_index.url),
    )
    projects, root = tmp_path / "projects", tmp_path / "volume"
    shutil.copytree(source, projects / source.name)
    root.mkdir()
    args = ["--root", str(root), "--projects-dir", str(projects), "--index-url", original_index.url]
    installed: CliResult = cli("deps", "install", "--project", "speaker-reg", *args)  # type: ignore[operator]
    assert installed.exit_code == 0, installed
    site = root / "python-deps" / "py3.10" / "speaker-reg"
    names = {path.name.split("-")[0].lower() for path in site.resolve().rglob("*.dist-info")}
    assert {"torch", "torchaudio", "tqdm", "numpy", "wetextprocessing"} <= names
    assert "wetext" not in names  # its marker is for macOS only
