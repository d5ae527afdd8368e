"""Fixtures for the dependency engine: a volume, local indexes, tiny projects.

Nothing here reaches PyPI or ~/.cache: every group points at a local index,
``mirror`` is a local index too, and uv's cache lives in the test's tmp dir.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wheelfactory import IndexServer, build_wheel

from volume_cli.layout import VolumeLayout
from volume_cli.progress import NullProgress

from .helpers import Projects


@pytest.fixture(autouse=True)
def isolated_uv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "uv-cache"
    monkeypatch.setenv("UV_PYTHON_DOWNLOADS", "never")
    monkeypatch.setenv("UV_CACHE_DIR", str(cache))
    monkeypatch.setenv("VOLUME_CLI_UV_CACHE", str(cache))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    for key in list(os.environ):
        if key.startswith(("UV_INDEX", "UV_EXTRA_INDEX", "UV_DEFAULT_INDEX", "PIP_INDEX", "PIP_EXTRA")):
            monkeypatch.delenv(key)
    return cache


@pytest.fixture
def layout(tmp_path: Path) -> VolumeLayout:
    root = tmp_path / "volume"
    root.mkdir()
    return VolumeLayout(root)


@pytest.fixture
def progress() -> NullProgress:
    return NullProgress()


@pytest.fixture
def wheels(tmp_path: Path) -> Path:
    """The main index's wheels: a small dependency graph."""
    folder = tmp_path / "wheels-main"
    build_wheel(folder, "alpha", "1.0", requires=["beta>=1"])
    build_wheel(folder, "alpha", "2.0", requires=["beta>=1"])
    build_wheel(folder, "beta", "1.0")
    build_wheel(folder, "beta", "1.5")
    build_wheel(folder, "gamma", "1.0", files={"gamma.py": "VALUE = 'gamma'\n"}, top_level=["gamma"], requires=["delta"])
    build_wheel(folder, "delta", "1.0")
    build_wheel(folder, "epsilon", "1.0")
    build_wheel(folder, "epsilon", "3.0")
    return folder


@pytest.fixture
def index(wheels: Path) -> Iterator[IndexServer]:
    with IndexServer(wheels) as server:
        yield server


@pytest.fixture
def projects(tmp_path: Path) -> Projects:
    return Projects(tmp_path / "projects")
