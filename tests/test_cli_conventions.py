"""CLI conventions: metavars, examples, global flags anywhere, JSON errors, aliases, completion."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ProjectsFolder, volume_cli_command
from tests.wheelfactory import IndexServer, build_wheel


def _commands() -> list[tuple[list[str], Any]]:
    import typer.main

    from volume_cli.cli.main import build_cli

    found: list[tuple[list[str], Any]] = []

    def walk(command: Any, path: list[str]) -> None:
        found.append((path, command))
        for name, sub in sorted((getattr(command, "commands", None) or {}).items()):
            walk(sub, [*path, name])

    assert typer.main  # the same builder the entry point uses
    walk(build_cli(), ["volume-cli"])
    return found


def _help(cli: Any, path: list[str]) -> str:
    result = cli(*path[1:], "--help")
    assert result.exit_code == 0, result.stderr
    return str(result.stdout)


PLACEHOLDER = re.compile(r"<[a-z][a-z_\[\], |]*>|\{[A-Za-z_.]+\}|float range|int range")


def test_every_help_has_readable_metavars_and_examples(cli) -> None:  # type: ignore[no-untyped-def]
    commands = _commands()
    assert len(commands) >= 20
    bad: list[str] = []
    missing_examples: list[str] = []
    for path, _ in commands:
        text = _help(cli, path)
        bad += [f"{' '.join(path)}: {match}" for match in PLACEHOLDER.findall(text)]
        if "Examples:" not in text:
            missing_examples.append(" ".join(path))
    assert not bad, bad
    assert not missing_examples, missing_examples


def test_every_example_parses(cli) -> None:  # type: ignore[no-untyped-def]
    """Each example line is a command line the app accepts (no unknown option, no missing value)."""
    tried = 0
    commands = _commands()
    root = commands[0][1]
    for path, command in commands:
        for line in (command.epilog or "").splitlines():
            line = line.strip()
            if not line.startswith("volume-cli "):
                continue
            argv = shlex.split(re.split(r" [>|] ", line)[0])[1:]  # the shell's redirection is not ours
            leaf: Any = command if not getattr(command, "commands", None) else None
            current, ctx = root, None
            while getattr(current, "commands", None):
                name = argv.pop(0)
                assert name in current.commands, line
                current = current.commands[name]
            # Parsing (not running) the leaf: an unknown option or a missing value fails here.
            current.make_context(" ".join(path), list(argv), parent=ctx)
            assert leaf is None or current is leaf, line
            tried += 1
    assert tried >= 25


def test_debug_prints_error_lines_and_traceback_before_or_after(projects_folder: ProjectsFolder) -> None:
    projects_folder.add_yaml_project("alpha", dependencies="groups: {}\n")
    for argv in (
        ["--debug", "projects", "check", "--projects-dir", str(projects_folder.path)],
        ["projects", "check", "--projects-dir", str(projects_folder.path), "--debug"],
    ):
        result = subprocess.run([*volume_cli_command(), *argv], capture_output=True, text=True)
        assert result.returncode == 1, result.stderr
        assert "Traceback" in result.stderr, argv
        assert any(line.startswith("error:") for line in result.stderr.splitlines()), result.stderr
        assert any(line.startswith("next:") for line in result.stderr.splitlines()), result.stderr


def test_json_error_is_one_document_on_stdout(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    for args in (
        ["status", "--root", str(tmp_path / "nope"), "--json"],
        ["--json", "status", "--root", str(tmp_path / "nope")],
    ):
        result = cli(*args)
        assert result.exit_code == 1
        data = json.loads(result.stdout)
        assert set(data) == {"error", "next", "exit_code"} and data["exit_code"] == 1
        assert "does not exist" in data["error"] and "mkdir -p" in data["next"]
        assert result.stderr.startswith("error:")  # a person watching still reads it
    usage = cli("status", "--no-such-option", "--json")
    assert usage.exit_code == 2 and json.loads(usage.stdout)["exit_code"] == 2


def test_check_report_then_error_keeps_stdout_one_document(cli, projects_folder: ProjectsFolder) -> None:  # type: ignore[no-untyped-def]
    projects_folder.add_yaml_project("alpha", dependencies="groups: {}\n")
    result = cli("projects", "check", "--projects-dir", str(projects_folder.path), "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)  # exactly one document: the report, which carries the problems
    assert "projects" in report
    assert "error:" in result.stderr


def test_global_flags_before_and_after(cli, projects_folder: ProjectsFolder) -> None:  # type: ignore[no-untyped-def]
    projects_folder.add_yaml_project("alpha")
    base = ["projects", "list", "--projects-dir", str(projects_folder.path)]
    for args in (["-q", *base], [*base, "-q"], ["--quiet", *base], [*base, "-v"], ["-v", *base]):
        result = cli(*args)
        assert result.exit_code == 0, (args, result.stderr)
        assert "alpha" in result.stdout
    listed = cli("--json", *base)
    assert listed.exit_code == 0 and json.loads(listed.stdout)[0]["name"] == "alpha"


def test_quiet_drops_notes_and_progress(cli, projects_folder: ProjectsFolder, volume_root: Path) -> None:  # type: ignore[no-untyped-def]
    projects_folder.add_yaml_project("alpha")
    (projects_folder.add_yaml_project("broken") / "project.yaml").write_text("name: [\n")
    args = ["models", "list", "--root", str(volume_root), "--projects-dir", str(projects_folder.path)]
    loud = cli(*args)
    assert loud.exit_code == 0 and "warning" in loud.stderr
    quiet = cli(*args, "-q")
    assert quiet.exit_code == 0 and quiet.stderr == ""


def test_verbose_shows_the_commands_run(index: IndexServer, cli, tmp_path: Path, volume_root: Path) -> None:  # type: ignore[no-untyped-def]
    folder = _deps_project(tmp_path, index)
    args = ["deps", "install", "-p", "tiny", "--root", str(volume_root), "--projects-dir", str(folder), "--dry-run"]
    quiet = cli(*args)
    assert quiet.exit_code == 0, quiet.stderr
    assert "running " not in quiet.stderr
    loud = cli(*args, "-v")
    assert loud.exit_code == 0, loud.stderr
    assert re.search(r"running \S*uv ", loud.stderr), loud.stderr


def test_env_json_is_an_alias_of_format_json(cli, volume_root: Path) -> None:  # type: ignore[no-untyped-def]
    a = cli("env", "-p", "demo", "--root", str(volume_root), "--json")
    b = cli("env", "-p", "demo", "--root", str(volume_root), "--format", "json")
    assert a.exit_code == 0, a.stderr
    assert json.loads(a.stdout) == json.loads(b.stdout)


def test_projects_new_takes_projects_dir_and_keeps_dir_hidden(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "projs"
    created = cli("projects", "new", "speech-asr", "--python", "3.10", "--projects-dir", str(folder))
    assert created.exit_code == 0, created.stderr
    assert (folder / "speech_asr" / "project.py").is_file()
    assert f"--projects-dir {folder}" in " ".join(created.stdout.split())
    old = cli("projects", "new", "other", "--python", "3.10", "--dir", str(folder))
    assert old.exit_code == 0 and (folder / "other").is_dir() and "deprecated" in old.stderr
    assert "--dir" not in cli("projects", "new", "--help").stdout


def test_models_ensure_has_timeout_and_retries(cli) -> None:  # type: ignore[no-untyped-def]
    text = cli("models", "ensure", "--help").stdout
    assert "--timeout SECONDS" in text and "--retries N" in text


@pytest.fixture
def index(tmp_path: Path) -> Iterator[IndexServer]:
    folder = tmp_path / "wheels"
    build_wheel(folder, "beta", "1.0")
    with IndexServer(folder) as server:
        yield server


def _deps_project(tmp_path: Path, index: IndexServer, *, models: str = "") -> Path:
    folder = tmp_path / "projects"
    (folder / "tiny").mkdir(parents=True)
    (folder / "tiny" / "project.yaml").write_text(
        f'name: tiny\npython_version: "{sys.version_info.major}.{sys.version_info.minor}"\n{models}'
    )
    (folder / "tiny" / "dependencies.yaml").write_text(
        f"groups:\n  main:\n    index_url: {index.url}\n    packages: [beta==1.0]\n"
    )
    return folder


def test_setup_dry_run_prints_both_plans_and_changes_nothing(  # type: ignore[no-untyped-def]
    index: IndexServer, cli, tmp_path: Path, volume_root: Path
) -> None:
    folder = _deps_project(tmp_path, index)
    before = sorted(str(path) for path in volume_root.rglob("*"))
    result = cli(
        "setup",
        *("-p", "tiny", "--root", str(volume_root), "--projects-dir", str(folder)),
        *("--dry-run", "--timeout", "5", "--retries", "1", "--refresh", "--upgrade"),
    )
    assert result.exit_code == 0, result.stderr
    assert "beta" in result.stdout and "dry run" in result.stdout
    assert sorted(str(path) for path in volume_root.rglob("*")) == before
    data = json.loads(
        cli(
            "setup", "-p", "tiny", "--root", str(volume_root), "--projects-dir", str(folder), "--dry-run", "--json"
        ).stdout
    )
    assert [step["step"] for step in data["steps"]] == ["deps", "models"]
    assert sorted(str(path) for path in volume_root.rglob("*")) == before


def test_setup_passes_timeout_retries_refresh_upgrade(cli, monkeypatch: pytest.MonkeyPatch, volume_root: Path) -> None:  # type: ignore[no-untyped-def]
    import volume_cli.flows.setup as setup_flow

    seen: dict[str, Any] = {}

    def fake_run_setup(**kwargs: Any) -> Any:
        from volume_cli.deps.uvtool import _network

        seen.update(kwargs, uv=_network())
        return setup_flow.SetupResult(project="demo", steps=[])

    monkeypatch.setattr(setup_flow, "run_setup", fake_run_setup)
    result = cli(
        *("setup", "-p", "demo", "--root", str(volume_root)),
        *("--timeout", "7", "--retries", "2", "--refresh", "--upgrade", "--dry-run"),
    )
    assert result.exit_code == 0, result.stderr
    assert seen["timeout"] == 7 and seen["retries"] == 2 and seen["refresh"] and seen["upgrade"] and seen["dry_run"]
    assert seen["uv"].timeout == 7 and seen["uv"].retries == 2


def test_completion_scripts_and_runtime_completion(cli) -> None:  # type: ignore[no-untyped-def]
    for shell in ("bash", "zsh", "fish"):
        result = cli("completion", shell)
        assert result.exit_code == 0, result.stderr
        assert "_VOLUME_CLI_COMPLETE" in result.stdout
    env = {**os.environ, "_VOLUME_CLI_COMPLETE": "complete_bash", "COMP_WORDS": "volume-cli d", "COMP_CWORD": "1"}
    completed = subprocess.run(volume_cli_command(), capture_output=True, text=True, env=env)
    assert "deps" in completed.stdout.split() and "doctor" in completed.stdout.split(), completed
    env.update(COMP_WORDS="volume-cli deps install --pro", COMP_CWORD="3")
    completed = subprocess.run(volume_cli_command(), capture_output=True, text=True, env=env)
    assert "--project" in completed.stdout.split(), completed


def test_quiet_install_prints_nothing_on_stderr(index: IndexServer, cli, tmp_path: Path, volume_root: Path) -> None:  # type: ignore[no-untyped-def]
    folder = _deps_project(tmp_path, index)
    args = ["deps", "install", "-p", "tiny", "--root", str(volume_root), "--projects-dir", str(folder)]
    loud = cli(*args, "--dry-run")
    assert loud.exit_code == 0 and loud.stderr.strip(), loud.stderr  # progress lines in a log
    quiet = cli("-q", *args)
    assert quiet.exit_code == 0, quiet.stderr
    assert quiet.stderr == "" and "beta" in quiet.stdout


def test_root_json_reaches_env(cli, volume_root: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("--json", "env", "-p", "demo", "--root", str(volume_root))
    assert result.exit_code == 0 and json.loads(result.stdout)["PYTHONPATH"].endswith("/.boot/demo")


def test_verbose_never_prints_a_credential(index: IndexServer, cli, tmp_path: Path, volume_root: Path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "projects"
    (folder / "tiny").mkdir(parents=True)
    (folder / "tiny" / "project.yaml").write_text(
        f'name: tiny\npython_version: "{sys.version_info.major}.{sys.version_info.minor}"\n'
    )
    secret_url = index.url.replace("://", "://user:s3cr3tpw@")
    (folder / "tiny" / "dependencies.yaml").write_text(
        f"groups:\n  main:\n    index_url: {secret_url}\n    packages: [beta==1.0]\n"
    )
    result = cli("-v", "deps", "install", "-p", "tiny", "--root", str(volume_root), "--projects-dir", str(folder))
    assert "running " in result.stderr
    assert "s3cr3tpw" not in result.stderr + result.stdout
