"""Shared fixtures: a temporary volume root, project folders, a CLI runner."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import CliResult, ProjectsFolder
from volume_cli.layout import VolumeLayout
from volume_cli.progress import NullProgress


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No test reads the developer's volume, projects path, caches or mirror."""
    for name in ("VOLUME_CLI_ROOT", "VOLUME_CLI_PROJECTS_PATH", "VOLUME_CLI_INDEX_URL", "VOLUME_CLI_DEBUG", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)
    for name in ("VOLUME_CLI_LOCAL_CACHE", "VOLUME_CLI_LOCAL_COPY"):  # a developer's choice for the worker copy
        monkeypatch.delenv(name, raising=False)
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("UV_PYTHON_DOWNLOADS", "never")
    monkeypatch.setenv("UV_CACHE_DIR", str(cache / "uv"))
    monkeypatch.setenv("VOLUME_CLI_UV_CACHE", str(cache / "uv"))
    for key in list(os.environ):
        # A developer's index settings must never reach the tests' local indexes.
        if key.startswith(("UV_INDEX", "UV_EXTRA_INDEX", "UV_DEFAULT_INDEX", "PIP_INDEX", "PIP_EXTRA")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache / "xdg"))
    monkeypatch.setenv("HF_HOME", str(cache / "hf"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("COLUMNS", "200")


@pytest.fixture
def volume_root(tmp_path: Path) -> Path:
    root = tmp_path / "volume"
    root.mkdir()
    return root


@pytest.fixture
def layout(volume_root: Path) -> VolumeLayout:
    return VolumeLayout(volume_root)


@pytest.fixture
def progress() -> NullProgress:
    return NullProgress()


@pytest.fixture
def projects_folder(tmp_path: Path) -> ProjectsFolder:
    folder = tmp_path / "projects"
    folder.mkdir()
    return ProjectsFolder(folder)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """Run the CLI in-process through its real entry point (error mapping included)."""
    from volume_cli.cli.main import run

    def invoke(*args: str, env: dict[str, str] | None = None) -> CliResult:
        for key, value in (env or {}).items():
            monkeypatch.setenv(key, value)
        capsys.readouterr()
        try:
            run(list(args))
            code = 0
        except SystemExit as exit_:
            code = int(exit_.code or 0) if not isinstance(exit_.code, str) else 1
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    yield invoke
