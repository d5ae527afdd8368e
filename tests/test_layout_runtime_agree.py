"""layout.py is the single source of paths; runtime.py, standard-library only and copied onto the volume,
cannot import it, so this test ties the two (issue 11)."""

from __future__ import annotations

import os
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from volume_cli import layout as layout_module
from volume_cli import runtime
from volume_cli.layout import VolumeLayout
from volume_cli.models.manifest import ManifestFile, ModelManifest, manifest_path, safe_key, write_manifest

ROOTS = [Path("/workspace"), Path("/runpod-volume"), Path("/mnt/some volume")]
PROJECTS = ["demo", "my.project-2", "x_y"]
PYTHONS = ["3.10", "3.11", "3.12"]


@pytest.mark.parametrize("root", ROOTS, ids=str)
@pytest.mark.parametrize("project", PROJECTS)
@pytest.mark.parametrize("python", PYTHONS)
def test_deps_and_boot_paths_agree(root: Path, project: str, python: str) -> None:
    layout = VolumeLayout(root)
    assert runtime.deps_path(root, project, python) == layout.deps_path(project, python)
    assert runtime.boot_path(root, project, python) == layout.boot_dir(project, python)


@pytest.mark.parametrize("root", ROOTS, ids=str)
def test_model_cache_variables_agree(root: Path, tmp_path: Path) -> None:
    layout = VolumeLayout(root)
    variables = runtime.cache_variables(root, tmp_path / "local")
    assert variables["HF_HOME"] == str(layout.hf_home)
    assert variables["HF_HUB_CACHE"] == str(layout.hf_hub_cache)
    assert variables["MODELSCOPE_CACHE"] == str(layout.modelscope_cache)
    assert variables["TORCH_HOME"] == str(layout.torch_home)
    # Nothing the worker writes at run time may land in the models folders on the volume.
    on_volume = [name for name, value in variables.items() if value.startswith(str(root))]
    assert sorted(on_volume) == ["HF_HOME", "HF_HUB_CACHE", "MODELSCOPE_CACHE", "TORCH_HOME"]


def test_the_worker_roots_and_the_root_variable_agree() -> None:
    assert {Path(root) for root in runtime.WORKER_ROOTS} == set(layout_module.DEFAULT_ROOTS)
    assert runtime.ROOT_ENV == layout_module.ROOT_ENV


@pytest.mark.parametrize("project", PROJECTS)
@pytest.mark.parametrize("python", PYTHONS)
def test_the_worker_pins_the_generation_folder_layout_names(
    project: str, python: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # runtime finds the generations folder from the deps link; a process already on an older generation
    # (its sys.path entry under that folder) keeps it, which works only if both name the same folder.
    layout = VolumeLayout(tmp_path / "volume")
    generations = layout.generations_dir(project, python)
    old, new = generations / "g-old", generations / "g-new"
    old.mkdir(parents=True)
    new.mkdir()
    link = layout.deps_path(project, python)
    os.symlink(os.path.relpath(new, link.parent), link)
    monkeypatch.setattr(sys, "path", [str(old), *sys.path])
    pinned = runtime._pin_sys_path(new, link, layout.boot_dir(project, python), tmp_path / "local-cache")
    assert pinned == old and sys.path[0] == str(old)


@pytest.mark.parametrize(
    "key", ["huggingface/model/org/name", "url/weights/a b.bin", "modelscope/model/q/Qwen2.5-0.5B"]
)
def test_the_worker_reads_model_manifests_where_layout_puts_them(key: str, tmp_path: Path) -> None:
    layout = VolumeLayout(tmp_path / "volume")
    assert runtime._safe_key(key) == safe_key(key)
    files_root = layout.models_dir / "somewhere"
    files_root.mkdir(parents=True)
    (files_root / "w.bin").write_bytes(b"12345")
    write_manifest(
        layout,
        ModelManifest(
            key=key,
            source="url",
            model_id="http://127.0.0.1:9/w.bin",
            spec_hash="x",
            target=layout.relative(files_root),
            files_root=layout.relative(files_root),
            files=[ManifestFile(path="w.bin", size=5)],
            total_size=5,
            downloaded_at=datetime.now(timezone.utc),
        ),
    )
    assert manifest_path(layout, key).parent == layout.model_manifests_dir
    assert runtime.missing_models(layout.root, [key]) == []
    (files_root / "w.bin").unlink()
    assert runtime.missing_models(layout.root, [key]) != []


# -- volume_cli/pushed_apply.py: copied onto the volume, standard library only (issue 12) ------------------
def _oldest_python() -> str | None:
    """The pyenv CPython 3.10 (the oldest a worker image may run), when installed here."""
    import subprocess

    try:
        root = subprocess.run(["pyenv", "root"], capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        return None
    found = sorted(Path(root or "/nonexistent").glob("versions/3.10.*/bin/python3.10"))
    return str(found[-1]) if found else None


@pytest.mark.parametrize("which", ["this", "3.10"])
def test_the_worker_apply_runs_on_the_standard_library_alone(which: str) -> None:
    import subprocess

    from volume_cli import pushed_apply

    python = sys.executable if which == "this" else _oldest_python()
    if python is None:
        pytest.skip("no CPython 3.10 from pyenv here")
    code = (
        f"import runpy, sys; module = runpy.run_path({pushed_apply.__file__!r});"
        "assert 'pydantic' not in sys.modules and 'volume_cli' not in sys.modules;"
        "when = module['_parse_time']('2026-12-01T15:45:02.4Z');"
        "print(module['Refused'].__name__, when.tzinfo is not None)"
    )
    done = subprocess.run([python, "-I", "-S", "-c", code], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout.strip()) == (0, "ApplyError True"), done.stderr


def test_the_worker_apply_names_what_the_cli_names() -> None:
    from volume_cli import pushed_apply, worker_boot
    from volume_cli.deps import faults, forest, record
    from volume_cli.deps.documents import InstallIntent
    from volume_cli.deps.entries import FORCED_MARKER, base_key
    from volume_cli.store.lock import DEFAULT_LEASE_SECONDS
    from volume_cli.store.state import ProjectState
    from volume_cli.sync.manifest import GenerationManifest

    assert pushed_apply.CRASH_ENV == faults.CRASH_ENV
    assert pushed_apply.TEMP_PREFIX == forest.TEMP_PREFIX
    assert pushed_apply.STORE_LOCK_NAME == record.STORE_LOCK_NAME
    assert pushed_apply.LEASE_SECONDS == DEFAULT_LEASE_SECONDS
    assert pushed_apply.FORCED_MARKER == FORCED_MARKER
    assert pushed_apply.STATE_SCHEMA_VERSION == ProjectState.SCHEMA_VERSION
    assert InstallIntent.SCHEMA_VERSION == GenerationManifest.SCHEMA_VERSION == 1  # what the worker writes and reads
    assert worker_boot.PUSHED_APPLY_FILE == runtime.PUSHED_APPLY_FILE
    for source in (Path(worker_boot.__file__), Path(runtime.__file__)):
        assert f'"{pushed_apply.APPLY_ENV}"' in source.read_text()  # the off switch, spelled out in both
        assert f'"{pushed_apply.PUSHED_DIR}"' in source.read_text()
    for entry in ["alpha-1.0-py3-none-any-0123abcd", "alpha-1.0-py3-none-any-0123abcd-f0123abcd", "x-f0123abcd"]:
        assert pushed_apply._base_key(entry) == base_key(entry)


def test_the_worker_apply_refuses_what_fsguard_refuses(tmp_path: Path) -> None:
    from volume_cli import pushed_apply
    from volume_cli.errors import UnsafePathError
    from volume_cli.fsguard import check_chain

    root = tmp_path / "volume"
    (root / ".metadata" / "projects").mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (root / ".metadata" / "projects" / "story").symlink_to(elsewhere)
    paths = [
        root / ".metadata" / "projects" / "story" / "state.json",  # through a planted link
        root / ".metadata" / "projects" / "fresh" / "state.json",  # not there yet: fine
        root / ".." / "x",
        root / ".metadata" / "projects" / "..",
    ]
    for path in paths:
        try:
            check_chain(path, root)
            cli = "ok"
        except UnsafePathError:
            cli = "refused"
        try:
            pushed_apply._check_chain(str(path), str(root))
            worker = "ok"
        except UnsafePathError:
            worker = "refused"
        assert worker == cli, path


def test_the_local_copy_skips_the_entry_manifest_the_store_writes() -> None:
    # local_copy.py is standard-library only (copied onto the volume), so it names the manifest itself.
    from volume_cli import local_copy
    from volume_cli.deps.documents import ENTRY_MANIFEST

    assert local_copy.ENTRY_MANIFEST == ENTRY_MANIFEST
