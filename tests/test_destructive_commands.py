"""``models rm``, ``models gc`` and ``gc`` ask on a terminal and need ``--yes`` anywhere else (as ``hf cache rm``)."""

from __future__ import annotations

import os
import pty
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import volume_cli_command, write_project
from volume_cli import models
from volume_cli.layout import VolumeLayout
from volume_cli.models.manifest import read_model_manifest
from volume_cli.project.definition import ProjectDefinition
from volume_cli.project.discovery import load_project_folder

KEY = "local/checkpoints/w.bin"
OTHER = "local/checkpoints/unused.bin"


def _project(base: Path, name: str, dest: str) -> ProjectDefinition:
    models = [{"source": "local", "path": "w.bin", "dest": dest}]
    return load_project_folder(
        write_project(base / name, name=name, python="3.11", models=models, files={"w.bin": b"weights"})
    )


@pytest.fixture
def volume(layout: VolumeLayout, tmp_path: Path) -> dict[str, Any]:
    """A volume with a model ``mine`` declares and one ``dropped`` declared once and no longer does."""
    kept = _project(tmp_path / "projects", "mine", "checkpoints/w.bin")
    dropped = _project(tmp_path / "projects", "dropped", "checkpoints/unused.bin")
    models.download(layout=layout, project=kept)
    models.download(layout=layout, project=dropped)
    document = {"name": "dropped", "python_version": "3.11", "models": []}
    (dropped.folder / "project.yaml").write_text(yaml.safe_dump(document))
    return {"root": str(layout.root), "projects": str(tmp_path / "projects")}


def test_models_rm_without_a_terminal_refuses_without_yes(cli: Any, layout: VolumeLayout, volume: dict) -> None:
    result = cli("models", "rm", KEY, "--root", volume["root"])

    assert result.exit_code == 1
    assert "error: not removing 1 model(s)" in result.stderr and "--yes" in result.stderr
    assert read_model_manifest(layout, KEY) is not None


def test_models_rm_with_yes_removes_and_warns_when_a_project_still_declares_it(
    cli: Any, layout: VolumeLayout, volume: dict
) -> None:
    result = cli("models", "rm", KEY, "--root", volume["root"], "--projects-dir", volume["projects"], "--yes")

    assert result.exit_code == 0, result.stderr
    assert "removed 1 model(s)" in result.stdout
    assert f"warning: {KEY} is still declared by mine" in result.stderr
    assert read_model_manifest(layout, KEY) is None


def test_models_rm_json_needs_yes_and_dry_run_never_asks(cli: Any, layout: VolumeLayout, volume: dict) -> None:
    assert cli("models", "rm", KEY, "--root", volume["root"], "--json").exit_code == 1
    dry = cli("models", "rm", KEY, "--root", volume["root"], "--dry-run")
    assert dry.exit_code == 0 and "would remove 1 model(s)" in dry.stdout
    assert read_model_manifest(layout, KEY) is not None


def test_an_unknown_key_exits_1_with_a_suggestion_and_removes_nothing(
    cli: Any, layout: VolumeLayout, volume: dict
) -> None:
    result = cli("models", "rm", "local/checkpoint/w.bin", OTHER, "--root", volume["root"], "--yes")

    assert result.exit_code == 1
    assert "no model on the volume has the key local/checkpoint/w.bin" in result.stderr
    assert f"next: did you mean {KEY}?" in result.stderr
    assert read_model_manifest(layout, OTHER) is not None  # the known key of the same command was not removed either


def test_models_gc_refuses_without_yes_then_removes_with_it(cli: Any, layout: VolumeLayout, volume: dict) -> None:
    refused = cli("models", "gc", "--root", volume["root"], "--projects-dir", volume["projects"])
    assert refused.exit_code == 1 and "--yes" in refused.stderr
    assert read_model_manifest(layout, OTHER) is not None

    done = cli("models", "gc", "--root", volume["root"], "--projects-dir", volume["projects"], "-y")
    assert done.exit_code == 0, done.stderr
    assert read_model_manifest(layout, OTHER) is None and read_model_manifest(layout, KEY) is not None


def test_gc_with_nothing_to_remove_needs_no_yes(cli: Any, volume: dict) -> None:
    result = cli("gc", "--root", volume["root"])

    assert result.exit_code == 0, result.stderr
    assert "removed 0 generation(s)" in result.stdout


def _on_a_terminal(argv: list[str], answer: bytes) -> tuple[int, str]:
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen(argv, stdin=terminal, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        os.write(controller, answer)
        out, err = process.communicate(timeout=60)
    finally:
        os.close(controller)
        os.close(terminal)
    return process.returncode, out.decode() + err.decode()


@pytest.mark.parametrize(("answer", "removed"), [(b"n\n", False), (b"y\n", True)])
def test_on_a_terminal_models_rm_asks(layout: VolumeLayout, volume: dict, answer: bytes, removed: bool) -> None:
    code, output = _on_a_terminal([*volume_cli_command(), "models", "rm", KEY, "--root", volume["root"]], answer)

    assert "Remove 1 model(s)" in output
    assert (code == 0) is removed, output
    assert (read_model_manifest(layout, KEY) is None) is removed
    if not removed:
        assert "not confirmed: nothing removed" in output


def test_gc_refuses_without_yes_then_removes_an_unused_store_entry(cli: Any, layout: VolumeLayout) -> None:
    entry = layout.store_dir / "six-1.17.0-py3-none-any-abc"
    (entry / "six").mkdir(parents=True)
    (entry / "six" / "__init__.py").write_text("x = 1\n")
    os.utime(entry, (1, 1))

    refused = cli("gc", "--root", str(layout.root), "--grace-hours", "0")
    assert refused.exit_code == 1 and "not removing 0 generation(s) and 1 store entry" in refused.stderr
    assert "next: volume-cli gc --yes" in refused.stderr and entry.exists()

    done = cli("gc", "--root", str(layout.root), "--grace-hours", "0", "--yes")
    assert done.exit_code == 0, done.stderr
    assert "removed 0 generation(s) and 1 store entry" in done.stdout and not entry.exists()


HOSTILE_KEYS = [
    "../../etc/passwd",
    "/etc/passwd",
    "local/checkpoints/../../..",
    "local/checkpoints/w.bin/",
    "LOCAL/CHECKPOINTS/W.BIN",
    "local/checkpoints/*",
    "local/checkpoints/w.bin\x00",
    " local/checkpoints/w.bin",
    "",
]


@pytest.mark.parametrize("key", HOSTILE_KEYS)
def test_a_key_that_is_not_exactly_a_model_on_the_volume_removes_nothing(
    key: str, cli: Any, layout: VolumeLayout, volume: dict
) -> None:
    before = sorted(str(path) for path in layout.models_dir.rglob("*"))

    result = cli("models", "rm", key, "--root", volume["root"], "--yes")

    assert result.exit_code == 1, result
    assert result.stderr.startswith("error: no model on the volume has the key"), result.stderr
    assert sorted(str(path) for path in layout.models_dir.rglob("*")) == before
