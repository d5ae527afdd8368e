"""A build for a Python this machine does not have, where a requirement only has an sdist (issue 12, item 2).

uv installs wheels for another Python, but an sdist needs the real interpreter to build: the install must
fail with one clear error (an ``error:`` and a ``next:`` line, no traceback) and write nothing to the volume
(no store entry, generation, lock or record; only the volume marker every command writes).
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.test_sync_build_elsewhere import ABSENT, _project, _run
from volume_cli.deps.python import find_interpreter


def _sdist(folder: Path, name: str, version: str) -> Path:
    """``name-version.tar.gz`` with static metadata (PKG-INFO 2.2 and a [project] table): uv resolves it unbuilt."""
    members = {
        "PKG-INFO": f"Metadata-Version: 2.2\nName: {name}\nVersion: {version}\n",
        "pyproject.toml": (
            f'[project]\nname = "{name}"\nversion = "{version}"\n'
            '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        ),
        f"{name}/__init__.py": "VALUE = 1\n",
    }
    path = folder / f"{name}-{version}.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        for member, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{name}-{version}/{member}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


@contextmanager
def _sdist_index(folder: Path, name: str, version: str) -> Iterator[str]:
    """A static PEP 503 index serving one sdist; yields its URL."""
    folder.mkdir(parents=True)
    sdist = _sdist(folder, name, version)
    digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
    page = folder / "simple" / name / "index.html"
    page.parent.mkdir(parents=True)
    page.write_text(f'<html><body><a href="../../{sdist.name}#sha256={digest}">{sdist.name}</a></body></html>')
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/simple"
    finally:
        server.shutdown()
        server.server_close()


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


class _Index:
    def __init__(self, url: str) -> None:
        self.url = url


def test_an_sdist_for_a_python_not_installed_is_one_clear_error_and_writes_nothing(tmp_path: Path) -> None:
    if find_interpreter(ABSENT) is not None:
        pytest.skip(f"Python {ABSENT} is installed here")
    root = tmp_path / "build"
    root.mkdir()
    _project(tmp_path, "elsewhere", ["onlysdist==1.0"])
    with _sdist_index(tmp_path / "index", "onlysdist", "1.0") as url:
        done = _run(tmp_path, _Index(url), "deps", "install", "--project", "elsewhere", "--root", str(root))  # type: ignore[arg-type]
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    errors = [line for line in lines if line.startswith("error: ")]
    nexts = [line for line in lines if line.startswith("next: ")]
    assert len(errors) == len(nexts) == 1, done.stderr
    assert "onlysdist==1.0" in errors[0] and f"no Python {ABSENT} interpreter" in errors[0], errors[0]
    assert f"install Python {ABSENT}" in nexts[0]
    # Only what any command leaves on a root (context.py): the volume marker and the (empty) locks folder.
    written = sorted(str(path.relative_to(root)) for path in root.rglob("*"))
    assert written == [".metadata", ".metadata/locks", ".metadata/volume.json"], written
