"""Fixtures for the models engine: a fake hub, a volume, projects written as project.yaml."""

from __future__ import annotations

import socket
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fakehub import FakeHub
from volume_cli.project.definition import ProjectDefinition
from volume_cli.project.discovery import load_project_folder

# Small timeouts and backoff keep fault tests fast; each test that needs other values passes them.
FAST: dict[str, Any] = {"timeout": 3.0, "retries": 2, "backoff": 0.01}


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    with FakeHub() as server:
        yield server


@dataclass
class ProjectMaker:
    base: Path

    def __call__(
        self, models: list[dict[str, Any]], *, name: str = "demo", files: dict[str, bytes] | None = None
    ) -> ProjectDefinition:
        folder = self.base / name
        folder.mkdir(parents=True, exist_ok=True)
        for relative, data in (files or {}).items():
            path = folder / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        document = {"name": name, "python_version": "3.11", "models": models}
        (folder / "project.yaml").write_text(textwrap.dedent(yaml.safe_dump(document, sort_keys=False)))
        return load_project_folder(folder)


@pytest.fixture
def make_project(tmp_path: Path) -> ProjectMaker:
    return ProjectMaker(tmp_path / "projects")


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
