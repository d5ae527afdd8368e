"""One byte formatter for the whole CLI: decimal SI, used by every module that shows a size."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest

from volume_cli.units import format_bytes, format_count

PY = f"{sys.version_info.major}.{sys.version_info.minor}"
PACKAGE = Path(__file__).resolve().parents[1] / "volume_cli"


@pytest.mark.parametrize(
    ("count", "text"),
    [
        (None, "-"),
        (0, "0 B"),
        (999, "999 B"),
        (1000, "1.0 kB"),
        (1536, "1.5 kB"),
        (200_000_000, "200.0 MB"),
        (209_715_200, "209.7 MB"),
        (70_726_910, "70.7 MB"),
        (999_999_999, "1.0 GB"),
        (6_200_000_000, "6.2 GB"),
        (3 * 10**15, "3.0 PB"),
    ],
)
def test_format_bytes_is_decimal_si(count: int | None, text: str) -> None:
    assert format_bytes(count) == text


def test_format_count_never_uses_byte_units() -> None:
    assert format_count(1, "package") == "1 package"
    assert format_count(14, "package") == "14 packages"


def test_every_size_goes_through_one_formatter() -> None:
    """No second formatter: no module divides by 1024 for display or defines its own units table."""
    offenders: list[str] = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "units.py":
            continue
        text = path.read_text()
        if re.search(r"\(\s*\"B\",\s*\"K?k?B\"", text) or re.search(r"def (human|format)_bytes\b", text):
            offenders.append(str(path.relative_to(PACKAGE)))
    assert offenders == []


def test_all_display_paths_agree() -> None:
    from volume_cli.cli import render
    from volume_cli.models import model_download

    assert not hasattr(model_download, "human_bytes")  # the download messages use the one formatter
    for value in (0, 1234, 209_715_200, 6_200_000_000):
        assert render.format_bytes(value) == format_bytes(value)


class _RecordedTask:
    def __init__(self, description: str, total: float | None, unit: str) -> None:
        self.description, self.total, self.unit = description, total, unit
        self.completed = 0.0
        self.seen: list[float] = []

    def advance(self, amount: float = 1) -> None:
        self.completed += amount
        self.seen.append(self.completed)

    def update(
        self, *, completed: float | None = None, total: float | None = None, description: str | None = None
    ) -> None:
        if completed is not None:
            self.completed = completed
            self.seen.append(completed)
        if total is not None:
            self.total = total

    def finish(self) -> None:
        pass


class _RecordingProgress:
    def __init__(self) -> None:
        self.tasks: list[_RecordedTask] = []
        self.lines: list[str] = []

    def step(self, message: str) -> None:
        self.lines.append(message)

    def info(self, message: str) -> None:
        self.lines.append(message)

    def warn(self, message: str) -> None:
        self.lines.append(message)

    def task(self, description: str, *, total: float | None = None, unit: str = "items") -> _RecordedTask:
        self.tasks.append(_RecordedTask(description, total, unit))
        return self.tasks[-1]


def test_a_resumed_download_starts_at_the_bytes_present_and_never_passes_100_percent(tmp_path: Path) -> None:
    import yaml

    from tests.fakehub import FakeHub
    from volume_cli import models
    from volume_cli.layout import VolumeLayout
    from volume_cli.models.manifest import safe_key
    from volume_cli.models.staging import staging_dir
    from volume_cli.project.discovery import load_project_folder

    data = bytes(range(256)) * 4000  # 1 024 000 bytes
    layout = VolumeLayout(tmp_path / "volume")
    layout.root.mkdir()
    with FakeHub() as hub:
        hub.add_hf_repo("org/files", files={"vae.safetensors": data})
        folder = tmp_path / "projects" / "demo"
        folder.mkdir(parents=True)
        url = f"{hub.url}/org/files/resolve/main/vae.safetensors"
        document = {
            "name": "demo",
            "python_version": "3.11",
            "models": [{"source": "url", "url": url, "dest": "vae.bin"}],
        }
        (folder / "project.yaml").write_text(yaml.safe_dump(document))
        project = load_project_folder(folder)
        partial = staging_dir(layout) / f"{safe_key('url/vae.bin')}.part"
        partial.parent.mkdir(parents=True, exist_ok=True)
        partial.write_bytes(data[:600_000])  # what a killed run left
        recorder = _RecordingProgress()
        models.download(layout=layout, project=project, progress=recorder)
    assert any("424.0 kB (600.0 kB already here, resumed)" in line for line in recorder.lines), recorder.lines
    byte_tasks = [task for task in recorder.tasks if task.unit == "bytes"]
    assert len(byte_tasks) == 2  # the overall bar and the model's bar
    for task in byte_tasks:
        assert task.total == len(data), (task.description, task.total)
        assert task.seen[0] == 600_000, (task.description, task.seen[:3])  # starts at the resumed bytes
        assert max(task.seen) <= len(data), (task.description, max(task.seen))


def test_a_hub_timeout_is_said_once(tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """One endpoint, no answer: one error line and one next line, no warnings repeating them."""
    from tests.fakehub import FakeHub

    monkeypatch.chdir(tmp_path)
    projects = _model_project(tmp_path, "org/model")
    root = tmp_path / "volume"
    root.mkdir()
    with FakeHub() as hub:
        hub.add_hf_repo("org/model", files={"model.bin": b"x" * 1000})
        hub.hang()
        try:
            result = cli(
                "models", "download", "-p", "demo", "--root", str(root), "--projects-dir", str(projects),
                "--hf-endpoint", hub.url, "--timeout", "1", "--retries", "0",
            )  # fmt: skip
        finally:
            hub.unhang()
    assert result.exit_code != 0
    said = [line for line in (result.stdout + result.stderr).splitlines() if "timed out" in line]
    assert len(said) == 1, said


def test_a_failover_still_warns_about_the_dead_endpoint(
    tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.fakehub import FakeHub
    from tests.helpers import closed_port_url

    monkeypatch.chdir(tmp_path)
    projects = _model_project(tmp_path, "org/model")
    root = tmp_path / "volume"
    root.mkdir()
    dead = closed_port_url()
    with FakeHub() as hub:
        hub.add_hf_repo("org/model", files={"model.bin": b"x" * 1000})
        result = cli(
            "models", "download", "-p", "demo", "--root", str(root), "--projects-dir", str(projects),
            "--hf-endpoint", dead, "--hf-endpoint", hub.url, "--retries", "0",
        )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert sum(dead in line for line in result.stderr.splitlines() if line.startswith("warning:")) == 1


def _model_project(base: Path, repo_id: str) -> Path:
    import yaml

    folder = base / "projects" / "demo"
    folder.mkdir(parents=True)
    document = {"name": "demo", "python_version": "3.11", "models": [{"source": "huggingface", "repo_id": repo_id}]}
    (folder / "project.yaml").write_text(yaml.safe_dump(document))
    return base / "projects"


def _alpha_demo(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    """A "demo" project folder, an empty volume and wheels of alpha 1.0 and 2.0; the CLI's root options."""
    import yaml

    from tests.wheelfactory import build_wheel

    folder = tmp_path / "projects" / "demo"
    folder.mkdir(parents=True)
    (folder / "project.yaml").write_text(yaml.safe_dump({"name": "demo", "python_version": PY}))
    root = tmp_path / "volume"
    root.mkdir()
    build_wheel(tmp_path / "wheels", "alpha", "1.0")
    build_wheel(tmp_path / "wheels", "alpha", "2.0")
    return folder, root, ["--root", str(root), "--projects-dir", str(tmp_path / "projects")]


def _want_alpha(folder: Path, version: str) -> None:
    import yaml

    deps = {"groups": {"m": {"packages": [f"alpha=={version}"]}}}
    (folder / "dependencies.yaml").write_text(yaml.safe_dump(deps))


def test_deps_rollback_says_its_switch_once(tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.wheelfactory import IndexServer

    monkeypatch.chdir(tmp_path)
    folder, _, common = _alpha_demo(tmp_path)
    with IndexServer(tmp_path / "wheels") as index:
        for version in ("1.0", "2.0"):
            _want_alpha(folder, version)
            installed = cli("deps", "install", "-p", "demo", *common, "--index-url", index.url)
            assert installed.exit_code == 0, installed.stderr
        result = cli("deps", "rollback", "-p", "demo", *common)
    assert result.exit_code == 0, result.stderr
    said = [line for line in (result.stdout + result.stderr).splitlines() if "g20" in line]
    assert len(said) == 1, said


def test_status_at_80_columns_cuts_no_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    import yaml

    from tests.helpers import volume_cli_command
    from tests.wheelfactory import IndexServer, build_wheel
    from volume_cli.deps import install
    from volume_cli.layout import VolumeLayout
    from volume_cli.progress import NullProgress
    from volume_cli.project.discovery import load_project_folder

    name = "speaker-diarization-large"
    folder = tmp_path / "projects" / name
    folder.mkdir(parents=True)
    (folder / "project.yaml").write_text(yaml.safe_dump({"name": name, "python_version": PY}))
    (folder / "dependencies.yaml").write_text(yaml.safe_dump({"groups": {"m": {"packages": ["alpha==1.0"]}}}))
    layout = VolumeLayout(tmp_path / "volume")
    layout.root.mkdir()
    build_wheel(tmp_path / "wheels", "alpha", "1.0")
    with IndexServer(tmp_path / "wheels") as index:
        result = install(layout=layout, project=load_project_folder(folder), mirror=index.url, progress=NullProgress())
        env = {**__import__("os").environ, "COLUMNS": "80"}
        shown = subprocess.run(
            [*volume_cli_command(), "status", "--root", str(layout.root), "--projects-dir", str(tmp_path / "projects")],
            capture_output=True, text=True, env=env, cwd=tmp_path, check=False,
        )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "…" not in shown.stdout, shown.stdout
    row = next(line for line in shown.stdout.splitlines() if line.startswith(name))
    assert len(row.rstrip()) <= 80 and result.generation in row, shown.stdout
    assert "config changed" in row or "installed" in row, row  # the state column stays


def test_the_next_line_of_projects_new_is_one_line_at_80_columns(tmp_path: Path) -> None:
    import os
    import subprocess

    from tests.helpers import volume_cli_command

    parent = tmp_path / "a-rather-long-folder-name-for-projects" / "that-goes-on"
    parent.mkdir(parents=True)
    env = {**os.environ, "COLUMNS": "80"}
    shown = subprocess.run(
        [*volume_cli_command(), "projects", "new", "whisper-large", "--python", "3.10", "--dir", str(parent)],
        capture_output=True, text=True, env=env, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    (line,) = [line for line in shown.stdout.splitlines() if line.startswith("next:")]
    assert line.endswith(f"volume-cli projects check --projects-dir {parent}"), shown.stdout


def test_deps_install_and_gc_say_sizes_once_and_in_si_units(
    tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.wheelfactory import IndexServer

    monkeypatch.chdir(tmp_path)
    folder, root, common = _alpha_demo(tmp_path)
    outputs: list[str] = []
    with IndexServer(tmp_path / "wheels") as index:
        for version in ("1.0", "2.0"):
            _want_alpha(folder, version)
            installed = cli("deps", "install", "-p", "demo", *common, "--index-url", index.url)
            assert installed.exit_code == 0, installed.stderr
            lines = (installed.stdout + installed.stderr).splitlines()
            assert len([line for line in lines if "added" in line]) == 1, lines
            outputs += lines
        collected = cli("gc", "--grace-hours", "0", "--drop-previous", "--root", str(root))
        outputs += (collected.stdout + collected.stderr).splitlines()
    assert not [line for line in outputs if re.search(r"\d bytes\b", line)], outputs
