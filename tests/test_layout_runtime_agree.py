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
