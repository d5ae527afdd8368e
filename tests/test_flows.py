"""The use cases in volume_cli/flows/ own their follow-up steps; the CLI only parses and renders (issue 11)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import CliResult
from tests.wheelfactory import IndexServer, build_wheel, serve
from volume_cli.layout import VolumeLayout
from volume_cli.progress import NullProgress
from volume_cli.project.discovery import load_project_folder

Cli = Callable[..., CliResult]
PY = f"{sys.version_info.major}.{sys.version_info.minor}"


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IndexServer]:
    folder = tmp_path_factory.mktemp("wheels")
    build_wheel(folder, "alpha", "1.0")
    with serve(folder) as server:
        yield server


def _plugin_project(base: Path, hook_body: str) -> Path:
    folder = base / "tiny"
    folder.mkdir(parents=True)
    (folder / "project.py").write_text(
        "from volume_cli import Project\n\n"
        f"class Tiny(Project):\n    name = 'tiny'\n    python_version = '{PY}'\n\n"
        f"    def after_models(self, context):\n{hook_body}"
    )
    (folder / "dependencies.yaml").write_text("groups:\n  main:\n    packages:\n      - alpha==1.0\n")
    return folder


@pytest.mark.parametrize(
    "body",
    [
        "        raise RuntimeError('boom')\n",
        "        raise KeyError('weights')\n",
        "        from volume_cli.errors import ConfigError\n        raise ConfigError('from the plugin')\n",
    ],
    ids=["RuntimeError", "KeyError", "a-volume-cli-error"],
)
def test_a_raising_after_models_hook_keeps_the_deps_result(
    body: str, index: IndexServer, tmp_path: Path, volume_root: Path, cli: Cli
) -> None:
    folder = _plugin_project(tmp_path / "projects", body)
    args = ["--project", "tiny", "--root", str(volume_root), "--projects-dir", str(folder.parent)]

    result = cli("setup", *args, "--index-url", index.url)

    output = result.stdout + result.stderr
    assert result.exit_code == 1, output
    assert "internal error" not in output and "Traceback" not in output, output
    assert "deps" in result.stdout and "generation" in result.stdout, output  # the deps result is printed
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "after_models" in errors[0], output
    assert any(line.startswith("next:") and str(folder / "project.py") in line for line in result.stderr.splitlines())

    as_json = cli("setup", *args, "--index-url", index.url, "--json")
    document = json.loads(as_json.stdout)
    steps = {step["step"]: step for step in document["steps"]}
    assert steps["deps"]["ok"] and steps["deps"]["result"]["generation"]
    assert not steps["models"]["ok"] and "after_models" in steps["models"]["error"]


def test_setup_writes_the_runtime_copy_through_the_one_deps_flow(
    index: IndexServer, tmp_path: Path, volume_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from volume_cli import consumer_env
    from volume_cli.flows import deps as deps_flow
    from volume_cli.flows.setup import run_setup

    written: list[Path] = []
    monkeypatch.setattr(consumer_env, "write_runtime_copy", lambda layout: written.append(layout.root) or layout.root)
    folder = _plugin_project(tmp_path / "projects", "        pass\n")
    layout = VolumeLayout(volume_root)
    project = load_project_folder(folder)

    dry = deps_flow.install_deps(
        layout=layout, project=project, mirror=index.url, dry_run=True, progress=NullProgress()
    )
    assert dry.dry_run and written == []  # a plan writes nothing
    result = run_setup(layout=layout, project=project, mirror=index.url, progress=NullProgress())
    assert result.ok and written == [volume_root]


def test_models_gc_protection_is_decided_in_the_core(tmp_path: Path, volume_root: Path) -> None:
    from volume_cli.flows.gc import protected_model_keys

    base = tmp_path / "projects"
    for name, repo in (("one", "org/a"), ("two", "org/b")):
        (base / name).mkdir(parents=True)
        (base / name / "project.yaml").write_text(
            f'name: {name}\npython_version: "{PY}"\nmodels:\n  - source: huggingface\n    repo_id: {repo}\n'
        )
    projects = {name: load_project_folder(base / name) for name in ("one", "two")}
    keys = protected_model_keys(VolumeLayout(volume_root), projects)
    assert keys == {"huggingface/model/org/a", "huggingface/model/org/b"}


@pytest.mark.parametrize(
    ("group_index", "mirror", "source"),
    [
        (None, None, "PyPI"),
        (None, "http://mirror.invalid/simple", "mirror"),
        ("http://group.invalid/simple", None, "group"),
    ],
)
def test_deps_list_index_source_is_decided_in_the_core(
    group_index: str | None, mirror: str | None, source: str, tmp_path: Path
) -> None:
    from volume_cli.flows.deps import list_deps

    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / "project.yaml").write_text(f'name: tiny\npython_version: "{PY}"\n')
    index_line = f"    index_url: {group_index}\n" if group_index else ""
    (folder / "dependencies.yaml").write_text(f"groups:\n  main:\n{index_line}    packages:\n      - alpha==1.0\n")
    listing = list_deps(layout=None, project=load_project_folder(folder), mirror=mirror)
    [group] = listing.groups
    assert group.index_source == source
    assert listing.packages == ()


def test_a_file_system_error_in_the_models_step_keeps_the_deps_result(
    index: IndexServer, tmp_path: Path, volume_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Disk full while the models download: the deps step's result must not be lost with it.
    import errno
    import os

    import volume_cli.models as models_package
    from volume_cli.flows.setup import run_setup

    def disk_full(**kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(volume_root / "models" / "w.bin"))

    monkeypatch.setattr(models_package, "download", disk_full)
    folder = _plugin_project(tmp_path / "projects", "        pass\n")
    result = run_setup(
        layout=VolumeLayout(volume_root), project=load_project_folder(folder), mirror=index.url, progress=NullProgress()
    )
    deps, models = result.steps
    assert deps.ok and deps.result.generation
    assert not models.ok and models.error is not None and "no space left" in models.error.lower()
    assert models.hint is not None


def test_the_cli_holds_no_policy_and_gets_its_layout_one_way() -> None:
    # What a command decides beyond parsing and rendering belongs to a flow (or an engine).
    cli = Path(__file__).resolve().parent.parent / "volume_cli" / "cli"
    policy = {
        "write_runtime_copy": "the runtime copy is written by flows/deps.py:install_deps",
        "keys_recorded_on_volume": "which models gc protects is flows/gc.py's",
        "effective_index_url": "deps list's index source is flows/deps.py:list_deps'",
        "VolumeLayout(": "a command gets its layout from cli/context.py:layout",
    }
    found = [
        f"{path.relative_to(cli)}: {needle} ({why})"
        for path in sorted(cli.rglob("*.py"))
        if path.name != "context.py"
        for needle, why in policy.items()
        if needle in path.read_text(encoding="utf-8")
    ]
    assert found == []
