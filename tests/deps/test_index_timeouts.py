"""uv's network waits are bounded by --timeout, and a silent or unreachable index is named.

uv's defaults (30 s per read, 3 retries) made an index that never answers
cost 131 s; the real uv runs here against a local socket that accepts
connections and never answers.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import Projects
from tests.wheelfactory import IndexServer
from volume_cli.deps import install
from volume_cli.deps.uvtool import uv_environment, uv_network
from volume_cli.errors import IndexUnreachableError
from volume_cli.layout import VolumeLayout
from volume_cli.progress import NullProgress

from .helpers import REPO


class SilentServer:
    """Accepts connections, reads the request, never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/simple"
        self._connections: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            self._connections.append(connection)

    def close(self) -> None:
        self.sock.close()
        for connection in self._connections:
            connection.close()


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    try:
        yield server
    finally:
        server.close()


def test_every_uv_call_gets_the_timeout_and_a_bounded_retry_count(tmp_path: Path) -> None:
    default = uv_environment(cache_dir=tmp_path, config_home=tmp_path)
    assert default["UV_HTTP_TIMEOUT"] == "30" and default["UV_HTTP_RETRIES"] == "1"
    with uv_network(timeout=2.5):
        bounded = uv_environment(cache_dir=tmp_path, config_home=tmp_path)
    assert bounded["UV_HTTP_TIMEOUT"] == "3" and bounded["UV_HTTP_RETRIES"] == "1"
    assert bounded["UV_HTTP_CONNECT_TIMEOUT"] == "3"
    assert uv_environment(cache_dir=tmp_path, config_home=tmp_path)["UV_HTTP_TIMEOUT"] == "30"


def test_deps_lock_against_a_silent_index_fails_within_the_timeout_naming_the_host(
    tmp_path: Path, projects: Projects, silent: SilentServer
) -> None:
    projects.make("silent-index", {"main": {"packages": ["alpha"]}})
    root = tmp_path / "volume"
    root.mkdir()
    command = [sys.executable, "-m", "volume_cli", "deps", "lock", "--project", "silent-index"]
    command += ["--root", str(root), "--projects-dir", str(projects.base), "--index-url", silent.url, "--timeout", "1"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    started = time.monotonic()

    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=40, env=env)

    elapsed = time.monotonic() - started
    assert done.returncode != 0
    assert f"error: 127.0.0.1:{silent.port} did not answer within 1s" in done.stderr, done.stderr
    assert "next:" in done.stderr and "--timeout" in done.stderr
    assert "Traceback" not in done.stderr
    assert elapsed < 15, elapsed  # was about 131 s with uv's defaults


def test_an_install_whose_file_host_went_away_names_it(
    layout: VolumeLayout, projects: Projects, index: IndexServer, progress: NullProgress, isolated_uv: Path
) -> None:
    project = projects.make("demo", {"main": {"packages": ["alpha"]}})
    from volume_cli.deps import lock_project

    lock_project(layout=layout, project=project, mirror=index.url, cache_dir=isolated_uv, progress=progress)
    index.stop()
    for entry in isolated_uv.iterdir():
        subprocess.run(["rm", "-rf", str(entry)], check=True)  # nothing left to install from but the index

    started = time.monotonic()
    with uv_network(timeout=2), pytest.raises(IndexUnreachableError) as caught:
        install(layout=layout, project=project, mirror=index.url, cache_dir=isolated_uv, progress=progress)

    host = index.url.split("//", 1)[1].split("/", 1)[0]
    assert caught.value.message.startswith(f"{host} could not be reached"), caught.value.message
    assert time.monotonic() - started < 15


def test_sigterm_during_a_uv_run_stops_uv_and_exits_143(
    tmp_path: Path, projects: Projects, silent: SilentServer
) -> None:
    projects.make("silent-index", {"main": {"packages": ["alpha"]}})
    root = tmp_path / "volume"
    root.mkdir()
    command = [sys.executable, "-m", "volume_cli", "deps", "lock", "--project", "silent-index"]
    command += ["--root", str(root), "--projects-dir", str(projects.base), "--index-url", silent.url, "--timeout", "60"]
    process = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not silent._connections:  # uv is waiting on the index
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.05)
        uv_children = _children(process.pid)
        process.terminate()
        started = time.monotonic()
        _, err = process.communicate(timeout=15)
        elapsed = time.monotonic() - started
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert process.returncode == 143, err
    assert elapsed < 5, elapsed
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("interrupted (SIGTERM)"), err
    assert uv_children and not any(Path(f"/proc/{pid}").exists() for pid in uv_children), "uv outlived us"
    assert not (root / ".metadata" / "locks" / "silent-index.lock").exists()


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(part) for part in text.split()]
