"""The CLI through its real entry point: output, JSON, exit codes, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.helpers import ProjectsFolder, volume_cli_command
from volume_cli.layout import VolumeLayout
from volume_cli.store.state import DepsRecord, ModelsRecord, ProjectState, write_project_state


def installed_state(layout: VolumeLayout, name: str, python: str, config_hash: str) -> None:
    """A state record plus the generation link it names (no real distributions, no lock)."""
    generation = layout.generations_dir(name, python) / "g0002"
    generation.mkdir(parents=True)
    layout.deps_path(name, python).symlink_to(Path(".generations") / name / "g0002")
    write_project_state(
        layout,
        ProjectState(
            project=name,
            python_version=python,
            deps=DepsRecord(
                generation="g0002",
                previous_generation="g0001",
                generation_path=f"python-deps/py{python}/.generations/{name}/g0002",
                config_hash=config_hash,
                installed_at=datetime(2026, 1, 2, 3, 4, tzinfo=timezone.utc),
                package_count=12,
                size_bytes=123_456_789,
                tool_version="0.1.0",
            ),
            models=ModelsRecord(
                downloaded_at=datetime(2026, 1, 2, 3, 5, tzinfo=timezone.utc),
                config_hash="x",
                model_keys=["local/a"],
                size_bytes=4096,
            ),
        ),
    )


def test_status_human_and_json_with_several_projects(cli, projects_folder: ProjectsFolder, volume_root: Path) -> None:  # type: ignore[no-untyped-def]
    from volume_cli.project.discovery import discover

    projects_folder.add_yaml_project("alpha")
    projects_folder.add_yaml_project("beta", python="3.10")
    projects_folder.add_yaml_project("gamma")
    layout = VolumeLayout(volume_root)
    discovery = discover([projects_folder.path], env={}, cwd=projects_folder.path)
    installed_state(layout, "alpha", "3.11", discovery.get("alpha").config_hash(mirror=None))
    installed_state(layout, "beta", "3.10", "sha256:stale")
    installed_state(layout, "orphan", "3.12", "sha256:whatever")
    args = ["status", "--root", str(volume_root), "--projects-dir", str(projects_folder.path)]

    human = cli(*args)
    assert human.exit_code == 0, human.stderr
    assert str(volume_root) in human.stdout and "disk" in human.stdout
    lines = {
        line.split()[0]: line
        for line in human.stdout.splitlines()
        if line.strip() and line.split()[0] in {"alpha", "beta", "gamma", "orphan"}
    }
    # Recorded size and generation; no lock was ever made for this hand-built state.
    assert "differs from lock" in lines["alpha"] and "123.5 MB" in lines["alpha"] and "g0002" in lines["alpha"]
    assert "config changed" in lines["beta"]
    assert "not installed" in lines["gamma"]
    assert "error" in lines["orphan"] and "no project definition was found" in human.stdout

    result = cli(*args, "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    states = {item["name"]: item for item in data["projects"]}
    assert states["alpha"]["state"] == "differs from lock" and states["alpha"]["config_changed"] is False
    assert states["alpha"]["deps"]["current_generation"] == "g0002"
    assert states["alpha"]["deps_path"] == "python-deps/py3.11/alpha"
    assert states["beta"]["state"] == "config changed"
    assert states["gamma"]["deps_installed"] is False
    assert data["disk"]["total_bytes"] > 0 and "percent_used" in data["disk"]
    assert data["mount"]["kind"] in {"network-volume", "separate-mount", "container-disk", "unknown"}

    only = json.loads(cli(*args, "--json", "--project", "beta").stdout)
    assert [item["name"] for item in only["projects"]] == ["beta"]


def test_status_with_20_projects(cli, projects_folder: ProjectsFolder, volume_root: Path) -> None:  # type: ignore[no-untyped-def]
    # Timing is measured in bench/status_bench.py; CI never asserts one.
    layout = VolumeLayout(volume_root)
    for index in range(20):
        projects_folder.add_yaml_project(f"p{index:02d}")
        installed_state(layout, f"p{index:02d}", "3.11", "sha256:x")
    result = cli("status", "--root", str(volume_root), "--projects-dir", str(projects_folder.path), "--json")
    assert result.exit_code == 0
    rows = [item for item in json.loads(result.stdout)["projects"] if item["name"].startswith("p")]
    assert len(rows) == 20 and all(item["state"] == "config changed" for item in rows)


def test_bad_config_is_one_line_plus_next_step_and_exit_1(cli, projects_folder: ProjectsFolder) -> None:  # type: ignore[no-untyped-def]
    projects_folder.add_yaml_project("alpha", dependencies="groups:\n  a:\n    no_dep: true\n    packages: [six]\n")
    result = cli("projects", "check", "--projects-dir", str(projects_folder.path))
    assert result.exit_code == 1
    assert "Traceback" not in result.stderr + result.stdout
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and "dependencies.yaml:3: groups.a.no_dep: unknown key 'no_dep'" in error_lines[0]
    assert "next: fix alpha's config, then run: volume-cli projects check" in result.stderr


def test_missing_root_and_unknown_project(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    missing = cli("status", "--root", str(tmp_path / "nope"))
    assert missing.exit_code == 1 and "does not exist" in missing.stderr and "mkdir -p" in missing.stderr
    unknown = cli("deps", "list", "--project", "nope")
    assert unknown.exit_code == 1 and "no project named 'nope'" in unknown.stderr and "projects list" in unknown.stderr


def test_usage_error_exits_2(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("status", "--no-such-option")
    assert result.exit_code == 2 and "No such option" in result.stderr
    assert cli("projects", "new", "Bad Name", "--python", "3.10").exit_code == 2


def test_projects_new_list_check(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "projs"
    created = cli("projects", "new", "speech-asr", "--python", "3.10", "--dir", str(folder))
    assert created.exit_code == 0, created.stderr
    assert (folder / "speech_asr" / "project.py").is_file()
    listed = json.loads(cli("projects", "list", "--projects-dir", str(folder), "--json").stdout)
    row = next(item for item in listed if item["name"] == "speech-asr")
    assert row["python_version"] == "3.10" and row["groups"] == 1 and row["packages"] == 1 and row["models"] == 0
    checked = cli("projects", "check", "--projects-dir", str(folder))
    assert checked.exit_code == 0 and "ok" in checked.stdout and "speech-asr" in checked.stdout
    again = cli("projects", "new", "speech-asr", "--python", "3.10", "--dir", str(folder))
    assert again.exit_code == 2 and "already exists" in again.stderr


def test_deps_list_shows_groups_indexes_and_mirror(cli) -> None:  # type: ignore[no-untyped-def]
    mirror = "https://pypi.tuna.tsinghua.edu.cn/simple"
    data = json.loads(cli("deps", "list", "--project", "speaker-diarization", "--index-url", mirror, "--json").stdout)
    groups = {group["group"]: group for group in data["groups"]}
    assert list(groups) == ["pytorch", "standard", "funasr"]
    assert groups["pytorch"]["index_url"] == "https://download.pytorch.org/whl/cu121"
    assert groups["standard"]["index_url"] == mirror and groups["standard"]["index_source"] == "mirror"
    assert groups["funasr"]["no_deps"] is True
    human = cli("deps", "list", "--project", "speaker-diarization")
    assert "https://pypi.org/simple (PyPI)" in human.stdout and "torch==2.4.1" in human.stdout


def test_debug_shows_traceback_only_when_asked(projects_folder: ProjectsFolder) -> None:
    projects_folder.add_yaml_project("alpha", dependencies="groups: {}\n")
    base = [*volume_cli_command(), "projects", "check", "--projects-dir", str(projects_folder.path)]
    quiet = subprocess.run(base, capture_output=True, text=True)
    assert quiet.returncode == 1 and "Traceback" not in quiet.stderr
    loud = subprocess.run(base, capture_output=True, text=True, env={**_env(), "VOLUME_CLI_DEBUG": "1"})
    assert loud.returncode == 1 and "Traceback" in loud.stderr


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)


def test_help_does_not_import_hub_libraries() -> None:
    probe = (
        "import sys, time; t = time.perf_counter();"
        "from volume_cli.cli.main import run\n"
        "try:\n    run(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('modelscope', 'huggingface_hub', 'torch', 'volume_cli.deps', 'volume_cli.models') if m in sys.modules]\n"
        "print('HEAVY', heavy)"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout
    installed = subprocess.run([*volume_cli_command(), "--help"], capture_output=True, text=True)
    assert installed.returncode == 0 and "status" in installed.stdout


def test_python_dash_m_and_version() -> None:
    result = subprocess.run([sys.executable, "-m", "volume_cli", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("volume-cli ")


_LEAVING = """
import atexit, sys, threading, time
from volume_cli.cli.main import run
def late() -> None:
    time.sleep(0.3)
    print("thread finished", flush=True)
atexit.register(lambda: print("exit handler ran"))
threading.Thread(target=late).start()
class TornDown:
    def __del__(self) -> None:
        print("torn down", flush=True)
kept = TornDown()  # freed only when the interpreter tears its modules down
sys.argv = ["volume-cli", *sys.argv[1:]]
run()
print("never reached")
"""


@pytest.mark.parametrize(("words", "code"), [(["--version"], 0), (["no-such-command"], 2)])
def test_the_console_entry_ends_as_the_interpreter_would_without_its_teardown(words: list[str], code: int) -> None:
    """Threads are waited for and exit handlers run, then the process ends with the command's code and output.

    What it skips is freeing every module and object the command loaded (40-100 ms).
    """
    result = subprocess.run([sys.executable, "-c", _LEAVING, *words], capture_output=True, text=True, timeout=60)
    assert result.returncode == code, result.stderr
    lines = result.stdout.splitlines()
    assert lines[-2:] == ["thread finished", "exit handler ran"] and "never reached" not in result.stdout
    assert "torn down" not in result.stdout
    assert (lines[0].startswith("volume-cli ") and len(lines) == 3) if code == 0 else "No such command" in result.stderr


def test_status_never_imports_hub_libraries(volume_root: Path) -> None:
    probe = (
        "import sys\nfrom volume_cli.cli.main import run\n"
        f"try:\n    run(['status', '--root', {str(volume_root)!r}, '--json'])\nexcept SystemExit as exit_:\n    code = exit_.code\n"
        "heavy = [m for m in ('modelscope', 'huggingface_hub', 'torch', 'requests') if m in sys.modules]\n"
        "print('HEAVY', heavy, 'EXIT', code, file=sys.stderr)"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=volume_root)
    assert "HEAVY [] EXIT 0" in result.stderr, result.stderr
