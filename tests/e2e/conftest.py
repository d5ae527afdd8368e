"""End-to-end fixtures: the installed volume-cli in a subprocess, local indexes, a local hub."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import volume_cli_command
from tests.fakehub.server import FakeHub
from tests.wheelfactory import IndexServer, build_wheel

PY = f"{sys.version_info.major}.{sys.version_info.minor}"
MODEL_FILES = {
    "config.json": b'{"model_type": "story", "hidden_size": 4}',
    "model.safetensors": bytes(range(256)) * 64,
    "tokenizer.txt": b"hello\nworld\n",
}


@dataclass
class Volume:
    """A temporary volume root, projects folder and environment for the CLI."""

    root: Path
    projects: Path
    env: dict[str, str]
    hub: FakeHub
    index: IndexServer
    calls: list[list[str]] = field(default_factory=list)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [*volume_cli_command(), *args]
        if "--root" not in args and args and args[0] not in {"projects", "--help"}:
            argv += ["--root", str(self.root)]
        if (
            args
            and args[0] not in {"gc", "doctor", "--help"}
            and "--projects-dir" not in args
            and args[:2] != ("models", "rm")
        ):
            argv += ["--projects-dir", str(self.projects)]
        self.calls.append(argv)
        result = subprocess.run(argv, capture_output=True, text=True, env=self.env, timeout=300)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
        return result

    def json(self, *args: str, check: bool = True) -> dict:  # type: ignore[type-arg]
        return json.loads(self.run(*args, "--json", check=check).stdout)

    def write_project(self, name: str, packages: dict[str, list[str]], *, python: str = PY, models: str = "") -> Path:
        folder = self.projects / name.replace("-", "_")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "project.yaml").write_text(f'name: {name}\npython_version: "{python}"\n{textwrap.dedent(models)}')
        groups = "".join(
            f"  {group}:\n    packages:\n" + "".join(f"      - {item}\n" for item in items)
            for group, items in packages.items()
        )
        (folder / "dependencies.yaml").write_text(f"groups:\n{groups}")
        return folder


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("wheels")
    build_wheel(folder, "alpha", "1.0", requires=["beta>=1"])
    build_wheel(folder, "alpha", "2.0", requires=["beta>=1"])
    build_wheel(folder, "beta", "1.0")
    build_wheel(folder, "gamma", "1.0", requires=["delta"])
    build_wheel(folder, "delta", "1.0")
    build_wheel(folder, "epsilon", "1.0")
    return folder


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
