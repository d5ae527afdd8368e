"""End-to-end fixtures: the installed volume-cli in a subprocess, local indexes, a local hub."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakehub.server import FakeHub
from tests.helpers import MODEL_FILES, Volume, build_graph_wheels
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
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("VOLUME_CLI_", "UV_", "PIP_", "HF_", "MODELSCOPE_"))
        }
        env.update(
            {
                "VOLUME_CLI_INDEX_URL": index.url,
                "UV_PYTHON_DOWNLOADS": "never",
                "UV_CACHE_DIR": str(tmp_path / "uv-cache"),
                "VOLUME_CLI_UV_CACHE": str(tmp_path / "uv-cache"),
                "XDG_CACHE_HOME": str(tmp_path / "xdg"),
                "HF_ENDPOINT": hub.url,
                "HF_HOME": str(tmp_path / "client-hf-home"),
                "HF_HUB_DISABLE_TELEMETRY": "1",
                "NO_COLOR": "1",
            }
        )
        yield Volume(root=root, projects=projects, env=env, hub=hub, index=index)
