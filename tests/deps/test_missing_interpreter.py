"""No interpreter of the project's Python on this machine: the install stores no bytecode, and says so.

uv then installs by tag only (``--python-version``) and compiles nothing, so every worker's cold
start imports the packages about 2.6× slower. The plan (human, ``--dry-run``, ``--json``), the
install's result, ``status`` and ``doctor`` all say so, with what to do. Driven through the
installed console script, as a user runs it.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.deps.helpers import PY
from tests.helpers import Projects, volume_cli_command
from tests.wheelfactory import IndexServer
from volume_cli.deps.python import find_interpreter
from volume_cli.deps.uvtool import uv_binary

WARNING = "interpreter on this machine"
NO_BYTECODE = "without bytecode"


def _absent_python() -> str | None:
    for version in ("3.14", "3.15", "3.16"):
        if find_interpreter(version, uv_binary()) is None:
            return version
    return None


@pytest.fixture(scope="module")
def absent() -> str:
    version = _absent_python()
    if version is None:
        pytest.skip("every candidate Python (3.14-3.16) is installed here: none is missing")
    return version


@dataclass(frozen=True)
class Volume:
    root: Path
    projects: Path
    index_url: str

    def run(self, *arguments: str, project: bool = True) -> subprocess.CompletedProcess[str]:
        command = [*volume_cli_command(), *arguments, "--root", str(self.root)]
        if project:
            command += ["--projects-dir", str(self.projects)]
        env = dict(os.environ, VOLUME_CLI_INDEX_URL=self.index_url)
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, check=False)


@pytest.fixture
def volume(tmp_path: Path, index: IndexServer, projects: Projects, absent: str) -> Iterator[Volume]:
    projects.make("old", {"main": {"packages": ["alpha==1.0"]}}, python=absent)
    projects.make("here", {"main": {"packages": ["alpha==1.0"]}}, python=PY)
    root = tmp_path / "volume"
    root.mkdir()
    yield Volume(root, projects.base, index.url)


def test_the_plan_says_no_bytecode_when_the_interpreter_is_missing(volume: Volume, absent: str) -> None:
    human = volume.run("deps", "install", "-p", "old", "--dry-run")
    assert human.returncode == 0, human.stderr
    assert f"no Python {absent} {WARNING}" in human.stdout
    assert NO_BYTECODE in human.stdout and "troubleshooting.md" in human.stdout
    as_json = volume.run("deps", "install", "-p", "old", "--dry-run", "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["plan"]["bytecode"] is False


def test_the_plan_says_nothing_when_the_interpreter_is_here(volume: Volume) -> None:
    human = volume.run("deps", "install", "-p", "here", "--dry-run")
    assert human.returncode == 0, human.stderr
    assert WARNING not in human.stdout and NO_BYTECODE not in human.stdout
    as_json = volume.run("deps", "install", "-p", "here", "--dry-run", "--json")
    assert json.loads(as_json.stdout)["plan"]["bytecode"] is True


def test_install_status_and_doctor_warn_about_a_generation_without_bytecode(volume: Volume, absent: str) -> None:
    installed = volume.run("deps", "install", "-p", "old", "--json")
    assert installed.returncode == 0, installed.stderr
    result = json.loads(installed.stdout)
    assert result["plan"]["bytecode"] is False
    store = volume.root / "python-deps" / ".store"
    assert not list(store.glob("*/alpha/__pycache__")), "the premise: nothing was compiled"

    status = volume.run("status")
    assert status.returncode == 0, status.stderr
    lines = [line for line in status.stdout.splitlines() if "no bytecode" in line]
    assert lines and "old" in lines[0] and "warning" in lines[0], status.stdout
    assert f"Python {absent}" in status.stdout and "troubleshooting.md" in status.stdout
    report = json.loads(volume.run("status", "--json").stdout)
    by_name = {item["name"]: item for item in report["projects"]}
    assert by_name["old"]["deps"]["bytecode_missing"] is True
    assert any("old" in warning and "no bytecode" in warning for warning in report["warnings"])

    doctor = volume.run("doctor", "-p", "old")
    assert "no bytecode" in doctor.stdout and f"Python {absent}" in doctor.stdout, doctor.stdout + doctor.stderr
    doctor_json = volume.run("doctor", "-p", "old", "--json")
    payload = json.loads(doctor_json.stdout.split("\n}\n")[0] + "\n}")
    assert any("no bytecode" in warning for warning in payload["warnings"])


def test_a_generation_with_bytecode_gets_no_warning(volume: Volume) -> None:
    installed = volume.run("deps", "install", "-p", "here")
    assert installed.returncode == 0, installed.stderr
    assert WARNING not in installed.stdout
    assert list((volume.root / "python-deps" / ".store").glob("*/alpha/__pycache__")), "the premise: compiled"
    status = volume.run("status", "--json")
    report = json.loads(status.stdout)
    assert report["projects"][0]["deps"]["bytecode_missing"] is False
    assert not any("bytecode" in warning for warning in report["warnings"])
    doctor = volume.run("doctor", "-p", "here", "--json")
    assert doctor.returncode == 0, doctor.stderr
    assert json.loads(doctor.stdout)["warnings"] == []
