"""File-system failures give one ``error:`` line naming the path plus a ``next:`` line, never "internal error".

Tests run as root, which ignores file modes, so permission denied is real here: the CLI runs under
``setpriv`` without CAP_DAC_OVERRIDE against a volume folder made read-only (mode 555). Disk full is a
real, small tmpfs mounted as the volume root.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.helpers import CliResult, volume_cli_command, write_project
from tests.wheelfactory import build_wheel

Cli = Callable[..., CliResult]
PY = f"{sys.version_info.major}.{sys.version_info.minor}"


def _assert_one_clean_error(output: str, *, exit_code: int, must_name: str) -> None:
    assert exit_code == 1, output
    assert "internal error" not in output and "Traceback" not in output, output
    error_lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, output
    assert must_name in error_lines[0], output
    assert any(line.startswith("next:") for line in output.splitlines()), output


@pytest.mark.parametrize(
    ("code", "words", "next_words"),
    [
        (errno.EACCES, "permission denied", "may write"),
        (errno.EPERM, "not permitted", "may write"),
        (errno.ENOSPC, "no space left", "volume-cli gc"),
        (errno.EDQUOT, "quota", "volume-cli gc"),
        (errno.EROFS, "read-only", "read-write"),
        (errno.EIO, "input/output error", "mount"),
    ],
)
def test_os_errors_become_one_error_line(
    code: int, words: str, next_words: str, cli: Cli, volume_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (volume_root / ".metadata").mkdir()
    (volume_root / ".metadata" / "volume.json").write_text("{}")
    path = volume_root / "python-deps" / ".store" / "six-1.17.0-abc"

    def fail(*args: object, **kwargs: object) -> None:
        raise OSError(code, os.strerror(code), str(path))

    monkeypatch.setattr("volume_cli.project.discovery.discover", fail)
    result = cli("projects", "list")
    _assert_one_clean_error(result.stderr, exit_code=result.exit_code, must_name=str(path))
    error_line = next(line for line in result.stderr.splitlines() if line.startswith("error:"))
    assert words in error_line.lower()
    next_line = next(line for line in result.stderr.splitlines() if line.startswith("next:"))
    assert next_words in next_line
    if code in (errno.ENOSPC, errno.EDQUOT):
        assert f"--root {volume_root}" in next_line  # names the volume, not just the file


def test_debug_still_shows_the_traceback(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", "/nowhere")

    monkeypatch.setattr("volume_cli.project.discovery.discover", fail)
    with pytest.raises(PermissionError):
        cli("--debug", "projects", "list")


# -- real volumes --------------------------------------------------------------------------------------------


class JsonIndex:
    """A PEP 691 JSON index: unlike the HTML one it reports each file's size, which uv records in the lock."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        index = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:
                self.head_only = True
                self.do_GET()

            def do_GET(self) -> None:
                parts = [part for part in self.path.split("?")[0].split("/") if part]
                if len(parts) == 2 and parts[0] == "files" and (index.folder / parts[1]).is_file():
                    self._send((index.folder / parts[1]).read_bytes(), "application/octet-stream")
                elif len(parts) == 2 and parts[0] == "simple":
                    self._send(index.page(parts[1]).encode(), "application/vnd.pypi.simple.v1+json")
                else:
                    self.send_error(404)

            def _send(self, data: bytes, content_type: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if not getattr(self, "head_only", False):
                    self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/simple"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def page(self, project: str) -> str:
        wheels = [path for path in sorted(self.folder.glob("*.whl")) if path.name.split("-")[0] == project]
        files = [
            {
                "filename": path.name,
                "url": f"{self.url.removesuffix('/simple')}/files/{path.name}",
                "hashes": {"sha256": hashlib.sha256(path.read_bytes()).hexdigest()},
                "size": path.stat().st_size,
            }
            for path in wheels
        ]
        versions = sorted({path.name.split("-")[1] for path in wheels})
        return json.dumps({"meta": {"api-version": "1.1"}, "name": project, "files": files, "versions": versions})


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JsonIndex]:
    folder = tmp_path_factory.mktemp("wheels")
    for name in ("alpha", "beta", "gamma", "delta", "epsilon", "zeta"):
        build_wheel(folder, name, "1.0")
    # Random bytes do not compress: the wheel is as big as its content.
    build_wheel(folder, "big", "1.0", files={"big/__init__.py": "", "big/blob.bin": os.urandom(3 * 1024 * 1024)})
    index = JsonIndex(folder)
    yield index
    index.server.shutdown()
    index.server.server_close()


class Volume:
    def __init__(self, root: Path, projects: Path, index: JsonIndex) -> None:
        self.root, self.projects, self.index = root, projects, index
        self.folder = write_project(projects / "tiny", name="tiny")

    def want(self, *packages: str) -> None:
        listed = "".join(f"      - {package}\n" for package in packages)
        (self.folder / "dependencies.yaml").write_text(f"groups:\n  main:\n    packages:\n{listed}")

    @property
    def args(self) -> list[str]:
        return ["--root", str(self.root), "--projects-dir", str(self.projects), "--index-url", self.index.url]

    def install(self, cli: Cli) -> CliResult:
        return cli("deps", "install", "--project", "tiny", *self.args)

    def install_without_dac_override(self) -> subprocess.CompletedProcess[str]:
        argv = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--", *volume_cli_command()]
        argv += ["deps", "install", "--project", "tiny", *self.args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=120, env={**os.environ, "NO_COLOR": "1"})

    def current_generation(self) -> str:
        return (self.root / "python-deps" / f"py{PY}" / "tiny").resolve().name


def _needs_root_and_setpriv() -> None:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to make permission checks apply")


def test_permission_denied_on_each_volume_folder(wheelhouse: JsonIndex, tmp_path: Path, cli: Cli) -> None:
    _needs_root_and_setpriv()
    root = tmp_path / "volume"
    root.mkdir()
    volume = Volume(root, tmp_path / "projects", wheelhouse)
    volume.want("alpha==1.0")
    first = volume.install(cli)
    assert first.exit_code == 0, first.stderr
    meta, deps = root / ".metadata", root / "python-deps"
    targets = {
        "beta": meta / "locks",
        "gamma": meta / "projects" / "tiny",
        "delta": deps / ".store",
        "epsilon": deps / f"py{PY}" / ".generations" / "tiny",
        "zeta": deps / f"py{PY}",
    }
    handled = 0
    for package, folder in targets.items():
        before = volume.current_generation()
        volume.want("alpha==1.0", f"{package}==1.0")
        folder.chmod(0o555)
        try:
            result = volume.install_without_dac_override()
        finally:
            folder.chmod(0o755)
        output = result.stdout + result.stderr
        _assert_one_clean_error(output, exit_code=result.returncode, must_name=str(folder))
        assert "permission denied" in output.lower()
        assert volume.current_generation() == before  # the old generation is still the current one
        handled += 1
    assert handled == len(targets)
    # Permissions fixed: the next run converges.
    again = volume.install(cli)
    assert again.exit_code == 0, again.stderr


@pytest.fixture
def small_volume(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "small-volume"
    root.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(root)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield root
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False)


def test_not_enough_space_is_refused_before_installing(
    wheelhouse: JsonIndex, small_volume: Path, tmp_path: Path, cli: Cli
) -> None:
    volume = Volume(small_volume, tmp_path / "projects", wheelhouse)
    volume.want("alpha==1.0")
    assert volume.install(cli).exit_code == 0
    before = volume.current_generation()
    volume.want("alpha==1.0", "big==1.0")
    result = volume.install(cli)
    _assert_one_clean_error(result.stderr, exit_code=result.exit_code, must_name=str(small_volume))
    assert "volume-cli gc" in result.stderr and "free" in result.stderr
    assert volume.current_generation() == before
    assert not any((small_volume / "python-deps" / ".store").glob("big-*"))


def test_disk_full_while_storing_names_the_volume_and_gc(
    wheelhouse: JsonIndex, tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "volume"
    root.mkdir()
    volume = Volume(root, tmp_path / "projects", wheelhouse)
    volume.want("alpha==1.0")
    assert volume.install(cli).exit_code == 0
    before = volume.current_generation()

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(root / "python-deps" / ".store" / "beta-1.0"))

    # The package re-exports the function install, which shadows the module of that name for dotted lookups.
    monkeypatch.setattr(sys.modules["volume_cli.deps.install"], "harvest", full)
    volume.want("alpha==1.0", "beta==1.0")
    result = volume.install(cli)
    _assert_one_clean_error(result.stderr, exit_code=result.exit_code, must_name=str(root))
    assert f"volume-cli gc --root {root}" in result.stderr
    assert volume.current_generation() == before


def test_undecodable_lock_file_is_not_an_internal_error(wheelhouse: JsonIndex, tmp_path: Path, cli: Cli) -> None:
    root = tmp_path / "volume"
    root.mkdir()
    volume = Volume(root, tmp_path / "projects", wheelhouse)
    volume.want("alpha==1.0")
    assert volume.install(cli).exit_code == 0
    (root / ".metadata" / "projects" / "tiny" / "pylock.toml").write_bytes(b"\x00\xff not utf-8")
    for command in (["deps", "check"], ["models", "download"]):
        result = cli(*command, "--project", "tiny", "--root", str(root), "--projects-dir", str(volume.projects))
        output = result.stdout + result.stderr
        assert "internal error" not in output and "Traceback" not in output, output
    # The damaged lock is not trusted: the next install resolves again and converges.
    again = volume.install(cli)
    assert again.exit_code == 0, again.stderr


@pytest.mark.parametrize("below", ["", "x"])
def test_projects_new_into_a_file_is_a_clean_error(below: str, tmp_path: Path, cli: Cli) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    result = cli("projects", "new", "foo", "--python", "3.10", "--dir", str(a_file / below))
    _assert_one_clean_error(result.stderr, exit_code=result.exit_code, must_name=str(a_file))


HOOKS = {
    "after_install-exits": ("after_install", "        import sys\n        sys.exit(3)\n", ["deps", "install"]),
    "after_install-raises": ("after_install", "        raise RuntimeError('boom')\n", ["deps", "install"]),
    "after_models-exits": ("after_models", "        raise SystemExit('bye')\n", ["setup"]),
    "after_models-raises": ("after_models", "        raise RuntimeError('boom')\n", ["setup"]),
}


@pytest.mark.parametrize("case", sorted(HOOKS))
def test_a_failing_plugin_hook_is_an_error_line(case: str, wheelhouse: JsonIndex, tmp_path: Path, cli: Cli) -> None:
    hook, body, command = HOOKS[case]
    root = tmp_path / "volume"
    root.mkdir()
    volume = Volume(root, tmp_path / "projects", wheelhouse)
    volume.want("alpha==1.0")
    (volume.folder / "project.yaml").unlink()
    (volume.folder / "project.py").write_text(
        "from volume_cli import Project\n\n"
        f"class Tiny(Project):\n    name = 'tiny'\n    python_version = '{PY}'\n\n"
        f"    def {hook}(self, context):\n{body}"
    )
    result = cli(*command, "--project", "tiny", *volume.args)
    output = result.stdout + result.stderr
    assert result.exit_code == 1, output
    assert "internal error" not in output and "Traceback" not in output, output
    assert hook in output and str(volume.folder / "project.py") in output, output


@pytest.mark.parametrize("how", ["file", "dangling-link"])
def test_a_file_where_the_store_folder_should_be(how: str, wheelhouse: JsonIndex, tmp_path: Path, cli: Cli) -> None:
    root = tmp_path / "volume"
    root.mkdir()
    volume = Volume(root, tmp_path / "projects", wheelhouse)
    volume.want("alpha==1.0")
    assert volume.install(cli).exit_code == 0
    store = root / "python-deps" / ".store"
    shutil.rmtree(store)
    if how == "file":
        store.write_text("junk")
    else:
        store.symlink_to("nowhere")
    volume.want("alpha==1.0", "beta==1.0")
    result = volume.install(cli)
    assert result.exit_code == 1 and "internal error" not in result.stderr, result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and str(store) in error_lines[0], result.stderr
