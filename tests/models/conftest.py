"""Fixtures for the models engine: a fake hub and projects written as project.yaml (helpers: tests/helpers.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakehub import FakeHub
from tests.helpers import ProjectMaker


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    with FakeHub() as server:
        yield server


@pytest.fixture
def make_project(tmp_path: Path) -> ProjectMaker:
    return ProjectMaker(tmp_path / "projects")
