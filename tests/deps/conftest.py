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

from .helpers import Projects


@pytest.fixture
def isolated_uv() -> Path:
    """The per-test uv cache the root conftest set up (local disk, never the volume)."""
    return Path(os.environ["UV_CACHE_DIR"])


@pytest.fixture
def wheels(tmp_path: Path) -> Path:
    """The main index's wheels: a small dependency graph."""
    folder = tmp_path / "wheels-main"
    build_wheel(folder, "alpha", "1.0", requires=["beta>=1"])
    build_wheel(folder, "alpha", "2.0", requires=["beta>=1"])
    build_wheel(folder, "beta", "1.0")
    build_wheel(folder, "beta", "1.5")
    build_wheel(
        folder, "gamma", "1.0", files={"gamma.py": "VALUE = 'gamma'\n"}, top_level=["gamma"], requires=["delta"]
    )
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
