"""Helpers the tests share, in one plain module (conftest files hold fixtures only, and import from here).

One writer of project folders (``write_project``) under the fixtures' conveniences, one set of
wheels for a small dependency graph (``build_graph_wheels``), the CLI runners, and the fake hub's
request filters.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fakehub import FakeHub
from tests.wheelfactory import IndexServer, build_wheel
from volume_cli.layout import VolumeLayout
from volume_cli.project.definition import ProjectDefinition
from volume_cli.project.discovery import load_project_folder

REPO_ROOT = Path(__file__).resolve().parent.parent
PY = f"{sys.version_info.major}.{sys.version_info.minor}"
# Small timeouts and backoff keep model fault tests fast; each test that needs other values passes them.
FAST: dict[str, Any] = {"timeout": 3.0, "retries": 2, "backoff": 0.01}


# -- project folders -----------------------------------------------------------------------------------


def generation_folders(layout: VolumeLayout, project: str, python: str = PY) -> tuple[list[str], list[str]]:
    """A project's generation folders, and its leftovers: any dot folder but the spare of a generation there.

    A spare (volume_cli/deps/forest.py) is the one folder besides the generations that a finished
    install leaves on purpose (a rollback makes its generation the previous one); a temp folder,
    trash or a spare of a generation that is gone is a leftover.
    """
    from volume_cli.deps.forest import spare_source

    names = sorted(os.listdir(layout.generations_dir(project, python)))
    generations = [name for name in names if not name.startswith(".")]
    return generations, [name for name in names if name.startswith(".") and spare_source(name) not in generations]


def write_project(
    folder: Path,
    *,
    name: str,
    python: str = PY,
    groups: Mapping[str, Any] | None = None,
    dependencies: str | None = None,
    models: Sequence[Mapping[str, Any]] | None = None,
    extra: str = "",
    files: Mapping[str, bytes] | None = None,
) -> Path:
    """A project folder: project.yaml, a dependencies.yaml from ``groups`` (or its text), extra files.

    ``extra``: YAML text appended to project.yaml as written (a test of the parser's corners).
    """
    folder.mkdir(parents=True, exist_ok=True)
    for relative, data in (files or {}).items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    # name and python as raw YAML text: the bad-input tests put YAML's own corners in them.
    text = f'name: {name}\npython_version: "{python}"\n'
    if models is not None:
        text += yaml.safe_dump({"models": [dict(model) for model in models]}, sort_keys=False)
    (folder / "project.yaml").write_text(text + textwrap.dedent(extra))
    if dependencies is not None:
        (folder / "dependencies.yaml").write_text(textwrap.dedent(dependencies))
    elif groups is not None:
        (folder / "dependencies.yaml").write_text(yaml.safe_dump({"groups": dict(groups)}, sort_keys=False))
    return folder


def packages_groups(packages: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """``{"main": ["alpha==1.0"]}`` as dependencies.yaml groups."""
    return {group: {"packages": list(items)} for group, items in packages.items()}


@dataclass
class ProjectsFolder:
    """A projects folder of YAML projects (the CLI's --projects-dir)."""

    path: Path

    def add_yaml_project(
        self,
        folder: str,
        *,
        name: str | None = None,
        python: str = "3.11",
        dependencies: str | None = None,
        extra: str = "",
    ) -> Path:
        return write_project(
            self.path / folder,
            name=name or folder.replace("_", "-"),
            python=python,
            dependencies=dependencies
            if dependencies is not None
            else "groups:\n  main:\n    packages:\n      - six==1.17.0\n",
            extra=extra,
        )


@dataclass
class ProjectMaker:
    """Models tests: a project of ``models`` (and files beside it), loaded as discovery loads it."""

    base: Path

    def __call__(
        self, models: list[dict[str, Any]], *, name: str = "demo", files: dict[str, bytes] | None = None
    ) -> ProjectDefinition:
        return load_project_folder(
            write_project(self.base / name, name=name, python="3.11", models=models, files=files)
        )


class Projects:
    """Deps tests: a project of dependency ``groups``, loaded as discovery loads it."""

    def __init__(self, base: Path) -> None:
        self.base = base

    def make(self, name: str, groups: dict[str, Any], *, python: str = PY) -> ProjectDefinition:
        # Groups in name order, as these tests were written against.
        ordered = dict(sorted(groups.items()))
        return load_project_folder(write_project(self.base / name, name=name, python=python, groups=ordered))


# -- wheels --------------------------------------------------------------------------------------------


def build_shaped_wheels(folder: Path, shapes: dict[str, tuple[int, int]], *, upgraded: str) -> None:
    """Wheels of a known size: name -> (subpackages, modules per subpackage), 1 + s * (1 + m) sources each.

    All at 1.0, plus ``upgraded`` at 2.0 (the one leaf a test changes).
    """

    def files(name: str, version: str) -> dict[str, str]:
        subpackages, modules = shapes[name]
        found = {f"{name}/__init__.py": f"VERSION = {version!r}\n"}
        for sub in range(subpackages):
            found[f"{name}/sub{sub}/__init__.py"] = ""
            found |= {f"{name}/sub{sub}/m{number}.py": f"X = {number}\n" for number in range(modules)}
        return found

    for name in shapes:
        build_wheel(folder, name, "1.0", files=files(name, "1.0"), top_level=[name])
    build_wheel(folder, upgraded, "2.0", files=files(upgraded, "2.0"), top_level=[upgraded])


def build_graph_wheels(folder: Path) -> Path:
    """A small dependency graph: alpha → beta, gamma → delta, epsilon alone; two versions of some."""
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


# -- the CLI -------------------------------------------------------------------------------------------


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


def volume_cli_command() -> list[str]:
    """The installed console script, as a user runs it."""
    script = shutil.which("volume-cli", path=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    if script is None:
        pytest.fail("the volume-cli console script is not installed next to this Python")
    return [script]


# -- the fake hub --------------------------------------------------------------------------------------


def closed_port_url() -> str:
    """An address where nothing listens: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def api_requests(hub: FakeHub) -> list[tuple[str, str]]:
    return [request for request in hub.requests if request[1].startswith("/api/")]


def resolve_requests(hub: FakeHub, filename: str | None = None) -> list[tuple[str, str]]:
    """HF file downloads (``/resolve/``), optionally only those of one file."""
    return [
        request
        for request in hub.requests
        if request[0] == "GET"
        and "/resolve/" in request[1]
        and (filename is None or request[1].endswith("/" + filename))
    ]


def range_headers(hub: FakeHub, needle: str) -> list[str | None]:
    """The Range header of every GET whose path contains ``needle`` (None when absent)."""
    found = []
    for entry in hub.request_log:
        if entry["method"] == "GET" and needle in entry["path"]:
            headers = {name.lower(): value for name, value in entry["headers"].items()}
            found.append(headers.get("range"))
    return found


# -- end-to-end: the installed CLI against a temporary volume ----------------------------------------

MODEL_FILES = {
    "config.json": b'{"model_type": "story", "hidden_size": 4}',
    "model.safetensors": bytes(range(256)) * 64,
    "tokenizer.txt": b"hello\nworld\n",
}


STORY_MODELS = """\
models:
  - source: huggingface
    repo_id: story-org/tiny
    revision: main
  - source: local
    path: weights
    dest: story/local-weights
"""


def story_env(tmp: Path, *, index_url: str, hub_url: str) -> dict[str, str]:
    """The CLI's environment in a story: this machine's volume-cli/uv/pip/hub settings dropped, caches in ``tmp``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("VOLUME_CLI_", "UV_", "PIP_", "HF_", "MODELSCOPE_"))
    }
    env.update(
        {
            "VOLUME_CLI_INDEX_URL": index_url,
            "UV_PYTHON_DOWNLOADS": "never",
            "UV_CACHE_DIR": str(tmp / "uv-cache"),
            "VOLUME_CLI_UV_CACHE": str(tmp / "uv-cache"),
            "XDG_CACHE_HOME": str(tmp / "xdg"),
            "HF_ENDPOINT": hub_url,
            "HF_HOME": str(tmp / "client-hf-home"),
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "NO_COLOR": "1",
        }
    )
    return env


def write_installed_state(layout: VolumeLayout, project: str, python_version: str = PY) -> None:
    """A state.json saying ``project`` has generation gen-a and its models, as an install would leave it."""
    from volume_cli.store.state import DepsRecord, ModelsRecord, ProjectState, utc_now, write_project_state

    deps = DepsRecord(
        generation="gen-a",
        generation_path="",
        config_hash="x",
        installed_at=utc_now(),
        package_count=2,
        size_bytes=0,
        tool_version="test",
    )
    models = ModelsRecord(downloaded_at=utc_now(), config_hash="y", model_keys=[], size_bytes=0)
    write_project_state(layout, ProjectState(project=project, python_version=python_version, deps=deps, models=models))


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
        return write_project(
            self.projects / name.replace("-", "_"),
            name=name,
            python=python,
            groups=packages_groups(packages),
            extra=models,
        )


def command_lines_naming(text: str) -> dict[int, list[bytes]]:
    """Every process whose command line names ``text``: its pid and its arguments, read from /proc."""
    found: dict[int, list[bytes]] = {}
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{name}/cmdline", "rb") as stream:
                arguments = stream.read().split(b"\0")
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if any(text.encode() in argument for argument in arguments):
            found[int(name)] = arguments
    return found
