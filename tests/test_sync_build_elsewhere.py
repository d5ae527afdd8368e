"""A project built for a Python this machine does not have, then pushed (issue 12, item 2).

uv installs wheels for another Python (``--python-version``, ``--python-platform``): the store entries carry the
target's tags, and the push carries them unchanged.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.helpers import volume_cli_command
from tests.wheelfactory import IndexServer, build_wheel
from volume_cli.deps.python import find_interpreter
from volume_cli.layout import VolumeLayout
from volume_cli.sync.manifest import build_manifest

ABSENT = "3.14"  # pyenv here stops at 3.13 and uv never downloads one in tests
TAG = "cp314-cp314-manylinux_2_17_x86_64"


def _run(tmp_path: Path, index: IndexServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VOLUME_CLI_", "UV_", "PIP_"))}
    env.update(
        {
            "VOLUME_CLI_INDEX_URL": index.url,
            "UV_PYTHON_DOWNLOADS": "never",
            "UV_CACHE_DIR": str(tmp_path / "uv-cache"),
            "VOLUME_CLI_UV_CACHE": str(tmp_path / "uv-cache"),
            "NO_COLOR": "1",
        }
    )
    argv = [*volume_cli_command(), *args, "--projects-dir", str(tmp_path / "projects")]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=180)


def _project(tmp_path: Path, name: str, packages: list[str]) -> None:
    folder = tmp_path / "projects" / name
    folder.mkdir(parents=True)
    (folder / "project.yaml").write_text(f'name: {name}\npython_version: "{ABSENT}"\n')
    lines = "".join(f"      - {package}\n" for package in packages)
    (folder / "dependencies.yaml").write_text(f"groups:\n  main:\n    packages:\n{lines}")


def test_a_build_for_a_python_not_installed_pushes_its_wheels_with_their_tags(tmp_path: Path) -> None:
    if find_interpreter(ABSENT) is not None:
        pytest.skip(f"Python {ABSENT} is installed here")
    wheels = tmp_path / "wheels"
    build_wheel(wheels, "native", "1.0", tag=TAG)
    build_wheel(wheels, "native", "1.0", tag="cp313-cp313-manylinux_2_17_x86_64")
    build_wheel(wheels, "pure", "1.0")
    root = tmp_path / "build"
    root.mkdir()
    _project(tmp_path, "elsewhere", ["native==1.0", "pure==1.0"])
    with IndexServer(wheels) as index:
        built = _run(tmp_path, index, "deps", "install", "--project", "elsewhere", "--root", str(root))
        assert built.returncode == 0, built.stderr
    manifest = build_manifest(VolumeLayout(root), "elsewhere", ABSENT)
    wheel_files = [item.path for item in manifest.files if item.path.endswith(".dist-info/WHEEL")]
    tags = {path.split("/")[2]: (root / path).read_text() for path in wheel_files}
    (native,) = [text for entry, text in tags.items() if entry.startswith("native-")]
    assert f"Tag: {TAG}" in native
    assert all(entry.endswith(f"py{ABSENT}") for entry in tags)
