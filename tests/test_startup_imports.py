"""Start-up: a command imports what it uses, nothing more (modules counted in a fresh interpreter, never timed).

Every command pays Python's start and its imports before it does anything; the hub and S3
clients, pydantic, YAML and the engines are imported by the commands that use them, when
they run. These tests read ``sys.modules`` of a fresh process, so they do not depend on speed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# Imported only by the commands that use them (downloads, remotes, the engines).
CLIENTS = ("huggingface_hub", "modelscope", "boto3", "botocore", "requests", "httpx", "urllib3")
ENGINES = ("pydantic", "yaml", "packaging", "volume_cli.deps", "volume_cli.models", "volume_cli.sync")
PROJECTS = ("volume_cli.project", "volume_cli.config")


def _modules_after(code: str, cwd: Path) -> set[str]:
    """The modules a fresh interpreter holds after running ``code`` (its output on stderr is dropped)."""
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)), file=sys.__stdout__)"
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=cwd, capture_output=True, text=True, check=True, timeout=120
    )
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def _loaded(modules: set[str], packages: tuple[str, ...]) -> list[str]:
    return sorted(name for name in modules if any(name == p or name.startswith(p + ".") for p in packages))


def _run(words: list[str]) -> str:
    return f"from volume_cli.cli.main import run\ntry:\n    run({words!r})\nexcept SystemExit:\n    pass"


def test_importing_the_cli_loads_no_client_engine_or_project_module(tmp_path: Path) -> None:
    modules = _modules_after("import volume_cli.cli.main", tmp_path)
    assert _loaded(modules, CLIENTS + ENGINES + PROJECTS) == []


def test_help_loads_no_client_engine_or_project_module(tmp_path: Path) -> None:
    modules = _modules_after(_run(["--help"]), tmp_path)
    assert "volume_cli.cli.commands.deps" in modules  # it ran: the help lists every command
    assert _loaded(modules, CLIENTS + ENGINES + PROJECTS) == []


def test_turning_options_into_inputs_loads_no_project_module(tmp_path: Path) -> None:
    """cli/context.py: only commands that read project folders pay for discovery and its YAML and pydantic."""
    modules = _modules_after("import volume_cli.cli.context", tmp_path)
    assert _loaded(modules, (*PROJECTS, "pydantic", "yaml", "packaging")) == []


@pytest.mark.parametrize(
    "words",
    [
        ["gc", "--dry-run", "--grace-hours", "0"],
        ["status", "--json", "--projects-dir", "."],
        ["deps", "gc", "-y"],
    ],
)
def test_volume_commands_load_no_hub_or_s3_client(tmp_path: Path, words: list[str]) -> None:
    root = tmp_path / "volume"
    root.mkdir()
    modules = _modules_after(_run([*words, "--root", str(root)]), tmp_path)
    assert "volume_cli.deps" in modules or "volume_cli.flows.status" in modules  # the command ran
    assert _loaded(modules, CLIENTS) == []


def test_json_output_builds_no_table(tmp_path: Path) -> None:
    """rich's table module is imported by the commands that print a table (cli/render.py ``plain_table``)."""
    modules = _modules_after(_run(["status", "--json", "--root", str(tmp_path), "--projects-dir", "."]), tmp_path)
    assert "volume_cli.flows.status" in modules  # the command ran
    assert "rich.table" not in modules


def test_gc_with_yes_reads_the_volume_once(tmp_path: Path) -> None:
    """With --yes nothing is asked, so no plan pass precedes the removal (each pass takes the locks and lists)."""
    root = tmp_path / "volume"
    root.mkdir()
    code = (
        "import volume_cli.deps\n"
        "calls = []\n"
        "real = volume_cli.deps.gc\n"
        "def counted(**options):\n"
        "    calls.append(options['dry_run'])\n"
        "    return real(**options)\n"
        "volume_cli.deps.gc = counted\n"
        + _run(["gc", "-y", "--grace-hours", "0", "--root", str(root)])
        + "\nimport sys\nprint('CALLS', calls, file=sys.__stdout__)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert "CALLS [False]" in done.stdout, done.stdout + done.stderr


def test_deps_install_imports_none_of_the_other_engines() -> None:
    """``volume_cli.deps`` imports its engines on first use: an install pays for check, gc, status only when run."""
    code = (
        "import sys\n"
        "from volume_cli.deps import install\n"
        "import volume_cli.deps.gc as gc_module\n"  # importing the submodule keeps the function as the attribute
        "from volume_cli.deps import gc, check\n"
        "import volume_cli.deps\n"
        "assert callable(install) and callable(gc) and callable(check), (install, gc, check)\n"
        "assert volume_cli.deps.gc is gc is gc_module and volume_cli.deps.install is install\n"
        "print(sorted(name for name in sys.modules if name.startswith('volume_cli.deps.')))\n"
    )
    unused = "import sys\nfrom volume_cli.deps import install\nprint(sorted(sys.modules))\n"
    done = subprocess.run([sys.executable, "-c", unused], capture_output=True, text=True, timeout=60, check=True)
    for engine in ("check", "gc", "rollback", "status"):
        assert f"'volume_cli.deps.{engine}'" not in done.stdout, engine
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


OTHER_COMMANDS = tuple(
    f"volume_cli.cli.commands.{name}" for name in ("models", "remote", "sync", "projects", "status", "consumer")
)


def test_a_command_builds_only_its_own_branch_of_the_cli(tmp_path: Path) -> None:
    modules = _modules_after(_run(["deps", "list", "--help"]), tmp_path)
    assert "volume_cli.cli.commands.deps" in modules
    assert _loaded(modules, OTHER_COMMANDS) == []
    everything = _modules_after(_run(["--help"]), tmp_path)
    assert _loaded(everything, OTHER_COMMANDS) == sorted(OTHER_COMMANDS)


def test_a_branch_built_alone_is_the_branch_of_the_whole_cli() -> None:
    from volume_cli.cli.main import GROUPS, build_cli
    from volume_cli.cli.reference import _walk

    def helps(command: object) -> dict[str, str]:
        # Contexts chained as at run time (the reference's walk), so -h is inherited as there.
        return {" ".join(path): found.get_help(context) for path, found, context in _walk(command, ["volume-cli"])}

    build = build_cli.__wrapped__  # fresh trees: a run's --help leaves click's caches on the one it used
    whole = helps(build())
    for word in GROUPS:
        alone = helps(build(word))
        assert {path.split(" ")[1] for path in alone if " " in path} == {word}
        branch = {path: text for path, text in alone.items() if path != "volume-cli"}
        assert branch == {path: whole[path] for path in whole if path.startswith(f"volume-cli {word}")}
