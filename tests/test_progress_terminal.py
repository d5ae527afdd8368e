"""A person at a terminal sees progress move: the real CLI in a pty, a throttled index and hub.

The screen is read as a terminal shows it (carriage returns and cursor moves included); every byte
count drawn on it is collected, and a working bar shows several distinct, increasing counts before
the end, never a count with a byte unit on a packages bar.
"""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakehub import FakeHub
from tests.helpers import volume_cli_command, write_project
from tests.wheelfactory import IndexServer, build_wheel

PY = f"{sys.version_info.major}.{sys.version_info.minor}"
STYLE = re.compile(r"\x1b\[[0-9;]*m")
CURSOR = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
BYTES = re.compile(r"(\d+(?:\.\d+)?) (B|kB|MB|GB)\b")
SCALE = {"B": 1, "kB": 10**3, "MB": 10**6, "GB": 10**9}


class SlowIndex(IndexServer):
    """Wheel files trickle out, so an install lasts a few seconds on a fast machine."""

    def __init__(self, folder: Path, bytes_per_second: int) -> None:
        super().__init__(folder)
        base = self._handler
        rate = bytes_per_second

        class Slow(base):  # type: ignore[misc, valid-type]
            def _send_bytes(self, data: bytes | None, content_type: str) -> None:
                if data is None or content_type != "application/octet-stream" or self.head_only:
                    super()._send_bytes(data, content_type)
                    return
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                step = max(1, rate // 20)
                for start in range(0, len(data), step):
                    self.wfile.write(data[start : start + step])
                    self.wfile.flush()
                    time.sleep(0.05)

        self._handler = Slow


def run_in_pty(args: list[str], env: dict[str, str], *, timeout: float = 60.0) -> tuple[int, str]:
    """Run ``args`` on a 100x30 pseudo-terminal; returns the exit code and everything drawn."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: becomes the CLI, its stdout and stderr the terminal
        os.execve(args[0], args, env)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                try:
                    data = os.read(fd, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
        else:
            os.kill(pid, signal.SIGKILL)
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status), b"".join(chunks).decode("utf-8", "replace")


def frames(screen: str) -> list[str]:
    """Every redraw of every line, escape codes removed."""
    return [part for part in re.split(r"[\r\n]", CURSOR.sub("\n", STYLE.sub("", screen))) if part.strip()]


def byte_counts(screen: str, label: str) -> list[float]:
    """The done amount of each redraw of the bar ``label`` (``1.2 MB/6.0 MB`` → 1.2e6), in order."""
    found: list[float] = []
    for frame in frames(screen):
        if label not in frame or "━" not in frame:  # a bar, not a message naming the same thing
            continue
        match = BYTES.search(frame.split(label, 1)[1])
        if match:
            found.append(float(match.group(1)) * SCALE[match.group(2)])
    return found


def increasing_states(counts: list[float]) -> list[float]:
    states: list[float] = []
    for value in counts:
        if not states or value > states[-1]:
            states.append(value)
    return states


def terminal_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "COLUMNS"}
    env.update({"TERM": "xterm-256color", "COLUMNS": "100", "LINES": "30", "HOME": str(tmp_path / "home")})
    env.pop("NO_COLOR", None)
    env.update(extra)
    return env


@pytest.fixture
def slow_index(tmp_path: Path) -> Iterator[SlowIndex]:
    folder = tmp_path / "wheels"
    for number in range(3):
        blob = os.urandom(1_500_000)  # random bytes do not compress: the wheel is as big as its payload
        build_wheel(
            folder, f"big{number}", "1.0", files={f"big{number}/__init__.py": "", f"big{number}/blob.bin": blob}
        )
    with SlowIndex(folder, bytes_per_second=1_500_000) as server:
        yield server


def _project(base: Path, document: dict[str, object], groups: dict[str, object] | None = None) -> Path:
    models = document.get("models")
    assert set(document) <= {"models"}, document  # what write_project writes besides name and python
    write_project(base / "projects" / "demo", name="demo", models=models, groups=groups or {})  # type: ignore[arg-type]
    return base / "projects"


def test_a_dependency_install_shows_moving_bytes_and_package_counts(tmp_path: Path, slow_index: SlowIndex) -> None:
    packages = {"m": {"packages": ["big0==1.0", "big1==1.0", "big2==1.0"]}}
    projects = _project(tmp_path, {}, packages)
    root = tmp_path / "volume"
    root.mkdir()
    args = [*volume_cli_command(), "deps", "install", "-p", "demo", "--root", str(root)]
    args += ["--projects-dir", str(projects), "--index-url", slow_index.url]
    code, screen = run_in_pty(args, terminal_env(tmp_path))
    assert code == 0, screen
    states = increasing_states(byte_counts(screen, "downloading"))
    assert len(states) >= 3, f"the download bar showed {states}:\n{screen[-3000:]}"
    packages_bars = [frame for frame in frames(screen) if "packages" in frame]
    assert packages_bars, screen[-3000:]
    assert not [frame for frame in packages_bars if BYTES.search(frame.split("packages")[0][-30:])], packages_bars


def test_a_model_download_shows_moving_bytes(tmp_path: Path) -> None:
    with FakeHub() as hub:
        hub.add_hf_repo("org/model", files={"model.bin": os.urandom(2_000_000), "config.json": b"{}"})
        hub.throttle(1_000_000)
        projects = _project(tmp_path, {"models": [{"source": "huggingface", "repo_id": "org/model"}]})
        root = tmp_path / "volume"
        root.mkdir()
        args = [*volume_cli_command(), "models", "download", "-p", "demo", "--root", str(root)]
        args += ["--projects-dir", str(projects), "--hf-endpoint", hub.url]
        code, screen = run_in_pty(args, terminal_env(tmp_path))
    assert code == 0, screen
    states = increasing_states(byte_counts(screen, "org/model"))
    assert len(states) >= 3, f"the download bar showed {states}:\n{screen[-3000:]}"
    assert max(states) <= 2_000_100, states  # never past the files' size


def test_term_dumb_prints_lines_instead_of_redrawing(tmp_path: Path) -> None:
    with FakeHub() as hub:
        hub.add_hf_repo("org/model", files={"model.bin": os.urandom(300_000)})
        projects = _project(tmp_path, {"models": [{"source": "huggingface", "repo_id": "org/model"}]})
        root = tmp_path / "volume"
        root.mkdir()
        args = [*volume_cli_command(), "models", "download", "-p", "demo", "--root", str(root)]
        args += ["--projects-dir", str(projects), "--hf-endpoint", hub.url]
        code, screen = run_in_pty(args, terminal_env(tmp_path, TERM="dumb"))
    assert code == 0, screen
    assert "━" not in screen and "\x1b[" not in screen, repr(screen[-2000:])  # no bar, no redraw
    assert "> huggingface/model/org/model: fetching 1 file(s), 300.0 kB" in screen, screen
    assert "huggingface/model/org/model: 300.0 kB/300.0 kB (100%)" in screen, screen


def test_no_color_means_no_styles_at_all(tmp_path: Path) -> None:
    with FakeHub() as hub:
        hub.add_hf_repo("org/model", files={"model.bin": os.urandom(1000)})
        projects = _project(tmp_path, {"models": [{"source": "huggingface", "repo_id": "org/model"}]})
        root = tmp_path / "volume"
        root.mkdir()
        args = [*volume_cli_command(), "models", "download", "-p", "demo", "--root", str(root)]
        args += ["--projects-dir", str(projects), "--hf-endpoint", hub.url]
        code, screen = run_in_pty(args, terminal_env(tmp_path, NO_COLOR="1"))
    assert code == 0, screen
    styles = re.findall(r"\x1b\[[0-9;]*m", screen)
    assert styles == [], styles[:5]
