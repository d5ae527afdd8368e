"""Fixtures for the dependency engine: a volume, local indexes, tiny projects.

Nothing here reaches PyPI or ~/.cache: every group points at a local index,
``mirror`` is a local index too, and uv's cache lives in the test's tmp dir.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import Projects, build_graph_wheels
from tests.wheelfactory import IndexServer


@pytest.fixture
def isolated_uv() -> Path:
    """The per-test uv cache the root conftest set up (local disk, never the volume)."""
    return Path(os.environ["UV_CACHE_DIR"])


@pytest.fixture
def wheels(tmp_path: Path) -> Path:
    """The main index's wheels: a small dependency graph."""
    return build_graph_wheels(tmp_path / "wheels-main")


@pytest.fixture
def index(wheels: Path) -> Iterator[IndexServer]:
    with IndexServer(wheels) as server:
        yield server


@pytest.fixture
def projects(tmp_path: Path) -> Projects:
    return Projects(tmp_path / "projects")
