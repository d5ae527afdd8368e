"""The docs' commands run: every ``volume-cli ...`` in README.md and docs/ is run as written.

Placeholders are swapped through one explicit table (project names and ``X``/
``NAME`` become a small test project, ``/workspace`` a temp root, mirrors the
local index and the fake hub). What cannot run here is in ``NOT_RUN`` with a
reason, and an entry there that no longer appears in the docs fails.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.docs_runner import DocCommand, extract
from tests.fakehub.server import FakeHub
from tests.helpers import REPO_ROOT, volume_cli_command
from tests.wheelfactory import IndexServer, build_wheel

PY = f"{sys.version_info.major}.{sys.version_info.minor}"
PROJECT = "docs-demo"
MODEL_REPO = "org/docs-tiny"
COMMANDS = extract(REPO_ROOT)

# Every project name the docs use stands for the one test project.
PROJECT_NAMES = {"demo", "my-demo", "speaker-diarization", "whisper", "hub-demo", "demo-copy", "X", "NAME", "P", "..."}

# Commands quoted in prose that are not meant to run as they stand: doc text -> why.
NOT_RUN: dict[str, str] = {
    "volume-cli deps install": "prose shorthand for the command; --project is in the sentence around it",
    "volume-cli deps rollback --project ...": "zh quick start names the option in prose; the walkthrough does not roll back",
    "volume-cli env": "prose naming the command; its --project is in the sentence around it",
    "volume-cli doctor": "prose naming the command; its --project is in the sentence around it",
    "volume-cli models ensure": "a worker entrypoint's command: takes its project from VOLUME_CLI_PROJECT in the image",
    "volume-cli projects import FOLDER": "needs a folder of the original tool's layout: tests/test_original_tool_files.py",
    "volume-cli models rm KEY": "removal asks on a terminal and is covered by tests/test_destructive_commands.py",
    "volume-cli remote check eu": "needs an S3 server and its key: tests/test_remote.py runs it against moto and rclone",
    **dict.fromkeys(
        [
            "volume-cli sync push --project demo --to eu_is,us_ks --root ./workspace --dry-run",
            "volume-cli sync push --project demo --to eu_is,us_ks --root ./workspace",
            "volume-cli sync apply --project demo",
            "volume-cli sync apply --project demo --deep",
            "volume-cli sync status --project demo --to eu_is,us_ks",
        ],
        "needs S3 servers and keys: tests/test_sync_push_apply.py runs sync against moto and rclone",
    ),
}
# Each distinct command line runs once (setup, install and download are idempotent) until one of these
# runs, which changes what the others would say.
CHANGES_OUTCOMES = {("deps", "rollback"), ("models", "rm"), ("models", "gc"), "gc", ("projects", "new")}
# Commands that must fail, with the exit code the doc promises: doc text -> code.
EXPECTED_EXIT: dict[str, int] = {}


@dataclass
class DocsWorld:
    folder: Path
    root: Path
    env: dict[str, str]
    index_url: str
    hub_url: str
    results: dict[tuple[str, ...], subprocess.CompletedProcess[str]] = field(default_factory=dict)


def _write_project(projects: Path, version: str) -> None:
    folder = projects / "docs_demo"
    folder.mkdir(parents=True, exist_ok=True)
    document: dict[str, Any] = {
        "name": PROJECT,
        "python_version": PY,
        "models": [{"source": "huggingface", "repo_id": MODEL_REPO, "revision": "main"}],
    }
    (folder / "project.yaml").write_text(yaml.safe_dump(document))
    (folder / "dependencies.yaml").write_text(yaml.safe_dump({"groups": {"main": {"packages": [f"alpha=={version}"]}}}))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DocsWorld]:
    base = tmp_path_factory.mktemp("docs")
    wheels = base / "wheels"
    build_wheel(wheels, "alpha", "1.0")
    build_wheel(wheels, "alpha", "2.0")
    with IndexServer(wheels) as index, FakeHub() as hub:
        hub.add_hf_repo(MODEL_REPO, files={"config.json": b"{}", "weights.bin": b"w" * 1000})
        root = base / "workspace"
        root.mkdir()
        projects = base / "projects"
        _write_project(projects, "1.0")
        env = {
            **os.environ,
            "VOLUME_CLI_ROOT": str(root),
            "VOLUME_CLI_PROJECTS_PATH": str(projects),
            "VOLUME_CLI_INDEX_URL": index.url,
            "HF_ENDPOINT": hub.url,
            "MODELSCOPE_ENDPOINT": hub.url,
            "COLUMNS": "120",
            "XDG_CONFIG_HOME": str(base / "config"),  # `remote add` writes the user's remotes file
        }
        world = DocsWorld(base, root, env, index.url, hub.url)
        # Two generations, so the docs' rollback has something to switch to.
        _run(world, ["setup", "--project", PROJECT], check=True)
        _write_project(projects, "2.0")
        _run(world, ["deps", "install", "--project", PROJECT], check=True)
        yield world


def _run(world: DocsWorld, argv: list[str], *, check: bool = False) -> subprocess.CompletedProcess[str]:
    """The installed console script, as a user runs it."""
    done = subprocess.run(
        [*volume_cli_command(), *argv],
        cwd=world.folder,
        env=world.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check:
        assert done.returncode == 0, f"{argv}: {done.stderr}"
    return done


def _run_in_process(world: DocsWorld, argv: list[str]) -> subprocess.CompletedProcess[str]:
    """The same entry point in this process: ~70 commands at 0.5 s of interpreter start each is too slow."""
    from volume_cli.cli.main import run

    out, err = io.StringIO(), io.StringIO()
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    os.environ.clear()
    os.environ.update(world.env)
    os.chdir(world.folder)
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            run(list(argv))
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    return subprocess.CompletedProcess(["volume-cli", *argv], code, out.getvalue(), err.getvalue())


def substitute(argv: list[str], world: DocsWorld) -> list[str]:
    """The doc's command, with its placeholders swapped through the table above."""
    out: list[str] = []
    previous = ""
    for arg in argv:
        if previous in {"--project", "-p"} and arg in PROJECT_NAMES:
            arg = PROJECT
        elif previous == "--index-url":
            arg = world.index_url
        elif previous in {"--hf-endpoint", "--modelscope-endpoint"} and arg != "http://127.0.0.1:9":
            arg = world.hub_url  # a real mirror is not reachable here; the dead port stays dead
        elif previous == "--root" and arg in {"/workspace", "./workspace"}:
            arg = str(world.root)
        elif arg == "...":
            continue  # "and so on" in the doc
        out.append(arg)
        previous = arg if arg.startswith("-") else ""
    return out


def _id(command: DocCommand) -> str:
    return f"{command.where}:{command.text}"


def test_the_docs_show_commands() -> None:
    assert len(COMMANDS) >= 50  # the extractor still finds them


@pytest.mark.parametrize("command", COMMANDS, ids=_id)
def test_doc_command_runs(command: DocCommand, world: DocsWorld) -> None:
    if command.text in NOT_RUN:
        pytest.skip(NOT_RUN[command.text])
    argv = substitute(command.argv, world)
    key = tuple(argv)
    if key not in world.results:
        world.results[key] = _run_in_process(world, argv)
        if tuple(argv[:2]) in CHANGES_OUTCOMES or argv[0] in CHANGES_OUTCOMES:
            # Past results may no longer hold (after a rollback, `deps check` fails): run again from here.
            world.results = {key: world.results[key]}
    done = world.results[key]
    expected = EXPECTED_EXIT.get(command.text, 0)
    assert done.returncode == expected, (
        f"{command.where}: `{command.text}` ran as `volume-cli {shlex.join(argv)}` and exited "
        f"{done.returncode}, not {expected}\n{done.stderr}"
    )


def test_not_run_entries_still_appear_in_the_docs() -> None:
    shown = {command.text for command in COMMANDS}
    stale = sorted(set(NOT_RUN) - shown) + sorted(set(EXPECTED_EXIT) - shown)
    assert not stale, f"no longer in the docs, drop them from the lists: {stale}"


@functools.cache
def _root_command() -> Any:
    from typer.main import get_command

    from volume_cli.cli.main import make_app

    return get_command(make_app())


def _click_command(words: list[str]) -> tuple[Any, list[str]]:
    command: Any = _root_command()
    rest = list(words)
    while rest and isinstance(getattr(command, "commands", None), dict) and rest[0] in command.commands:
        command = command.commands[rest.pop(0)]
    return command, rest


@pytest.mark.parametrize("command", COMMANDS, ids=_id)
def test_every_flag_in_the_docs_exists(command: DocCommand) -> None:
    target, _ = _click_command([word for word in command.argv if not word.startswith("-")][:2])
    assert not isinstance(getattr(target, "commands", None), dict) or command.argv == ["--help"], (
        f"{command.where}: `{command.text}` names no command"
    )
    accepted = {opt for param in target.params for opt in param.opts} | {"--help"}
    flags = [word.split("=", 1)[0] for word in command.argv if word.startswith("-")]
    unknown = [flag for flag in flags if flag not in accepted]
    assert not unknown, f"{command.where}: `{command.text}`: no such option {unknown}"


def test_no_doc_installs_volume_cli_from_pypi_by_name() -> None:
    """volume-cli is not on PyPI: `pip install volume-cli` installs nothing (or someone else's package)."""
    by_name = re.compile(r"\b(?:pip|pipx|uv tool|uv pip) install(?: -[-\w]+(?: \S+://\S+)?)* volume-cli\b")
    wrong = []
    for path in [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").rglob("*.md"))]:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if by_name.search(line) and "not on PyPI" not in line and "不在 PyPI" not in line:
                wrong.append(f"{path.relative_to(REPO_ROOT)}:{number}: {line.strip()}")
    assert not wrong, wrong


def test_copying_the_bundled_example_into_your_projects_dir_and_editing_it_works(cli: Any, tmp_path: Path) -> None:
    """The projects guide's workflow: copy speaker_diarization, edit it, use it with --projects-dir."""
    mine = tmp_path / "my-projects"
    shutil.copytree(REPO_ROOT / "projects" / "speaker_diarization", mine / "speaker_diarization")
    deps = mine / "speaker_diarization" / "dependencies.yaml"
    deps.write_text(deps.read_text().replace("- tqdm==4.67.1", "- tqdm==4.66.5"))
    root = tmp_path / "workspace"
    root.mkdir()
    common = ["--projects-dir", str(mine)]
    checked = cli("projects", "check", *common)
    assert checked.exit_code == 0, checked.stderr
    assert "defined twice" not in checked.stderr + checked.stdout
    assert "shadows the bundled one" in checked.stderr + checked.stdout  # says which copy it uses
    listed = cli("deps", "list", "-p", "speaker-diarization", "--root", str(root), *common, "--json")
    assert listed.exit_code == 0, listed.stderr
    assert "tqdm==4.66.5" in listed.stdout  # the edited copy, not the bundled one
    missing = cli("models", "verify", "-p", "speaker-diarization", "--root", str(root), *common)
    assert missing.exit_code != 0
    next_line = next(line for line in missing.stderr.splitlines() if line.startswith("next:"))
    assert f"--projects-dir {mine}" in next_line and f"--root {root}" in next_line, next_line
