"""End-to-end fixtures: the installed volume-cli in a subprocess, local indexes, a local hub."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakehub.server import FakeHub
from tests.helpers import MODEL_FILES, Volume, build_graph_wheels, story_env
from tests.wheelfactory import IndexServer


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_graph_wheels(tmp_path_factory.mktemp("wheels"))


@pytest.fixture
def volume(tmp_path: Path, wheelhouse: Path) -> Iterator[Volume]:
    root = tmp_path / "workspace"
    root.mkdir()
    projects = tmp_path / "projects"
    projects.mkdir()
    with IndexServer(wheelhouse) as index, FakeHub() as hub:
        hub.add_hf_repo("story-org/tiny", MODEL_FILES)
        env = story_env(tmp_path, index_url=index.url, hub_url=hub.url)
        yield Volume(root=root, projects=projects, env=env, hub=hub, index=index)
