"""Planted symlinks: no write, rename or removal follows a link out of the models folder.

Someone (or something) with write access to the shared volume plants a link
where volume-cli writes or removes: a partial file, a repo folder, a blob
folder, a URL model's folder, the staging folder, a removed model's folder.
Every case checks that the file or folder outside is byte-for-byte intact.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from tests.fakehub import FakeHub
from tests.helpers import FAST, ProjectMaker
from volume_cli import models
from volume_cli.errors import ModelError, UnsafePathError
from volume_cli.layout import VolumeLayout
from volume_cli.models.manifest import read_model_manifest, safe_key, write_manifest
from volume_cli.models.results import ModelDownloadError
from volume_cli.models.staging import STAGING_NAME

WEIGHTS = os.urandom(20_000)
FILES = {"config.json": b'{"a": 1}', "model.safetensors": WEIGHTS}
HF_KEY = "huggingface/model/org/tiny"
REPO = "models--org--tiny"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder outside the volume with a file in it: what a planted link points at."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "precious.txt").write_bytes(b"P" * 500_000)
    return folder


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def _plant(link: Path, target: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, link)


def _hf(hub: FakeHub, layout: VolumeLayout, project: Any, **kwargs: Any) -> models.DownloadResult:
    return models.download(layout=layout, project=project, hf_endpoints=[hub.url], **{**FAST, **kwargs})


def _refused(caught: pytest.ExceptionInfo[ModelDownloadError], key: str) -> None:
    failure = caught.value.failures[key]
    assert isinstance(failure, UnsafePathError), repr(failure)


def test_a_planted_incomplete_link_is_replaced_not_appended_to(
    hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker, outside: Path
) -> None:
    hub.add_hf_repo("org/tiny", files=FILES)
    project = make_project([{"source": "huggingface", "repo_id": "org/tiny"}])
    (outside / "small.log").write_bytes(b"s" * 100)  # shorter than the blob: a resume would append to it
    before = _tree(outside)
    blob = hashlib.sha256(WEIGHTS).hexdigest()
    _plant(layout.hf_hub_cache / REPO / "blobs" / f"{blob}.incomplete", outside / "small.log")

    [outcome] = _hf(hub, layout, project).models

    assert outcome.action == "downloaded"
    assert _tree(outside) == before
    assert (layout.hf_hub_cache / REPO / "blobs" / blob).read_bytes() == WEIGHTS


def test_a_planted_blob_link_is_not_taken_for_the_file(
    hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker, outside: Path
) -> None:
    """A link at ``blobs/<sha>`` to a same-sized file outside must not count as present."""
    (outside / "same-size").write_bytes(b"x" * len(WEIGHTS))
    hub.add_hf_repo("org/tiny", files=FILES)
    project = make_project([{"source": "huggingface", "repo_id": "org/tiny"}])
    blob = layout.hf_hub_cache / REPO / "blobs" / hashlib.sha256(WEIGHTS).hexdigest()
    _plant(blob, outside / "same-size")

    _hf(hub, layout, project)

    assert not blob.is_symlink() and blob.read_bytes() == WEIGHTS
    assert (outside / "same-size").read_bytes() == b"x" * len(WEIGHTS)


@pytest.mark.parametrize("where", [REPO, f"{REPO}/blobs", f"{REPO}/snapshots", f"{REPO}/refs"])
def test_a_planted_folder_link_in_the_hf_cache_is_refused(
    hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker, outside: Path, where: str
) -> None:
    hub.add_hf_repo("org/tiny", files=FILES)
    project = make_project([{"source": "huggingface", "repo_id": "org/tiny"}])
    before = _tree(outside)
    _plant(layout.hf_hub_cache / where, outside)

    with pytest.raises(ModelDownloadError) as caught:
        _hf(hub, layout, project)

    _refused(caught, HF_KEY)
    assert _tree(outside) == before
    assert read_model_manifest(layout, HF_KEY) is None


def test_refresh_never_empties_a_planted_blobs_link(
    hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker, outside: Path
) -> None:
    """After a download, ``snapshots/<old>`` and unreferenced blobs are removed on refresh: never through a link."""
    hub.add_hf_repo("org/tiny", files=FILES)
    project = make_project([{"source": "huggingface", "repo_id": "org/tiny"}])
    _hf(hub, layout, project)
    manifest = read_model_manifest(layout, HF_KEY)
    assert manifest is not None and manifest.resolved_commit is not None
    old = layout.hf_hub_cache / REPO / "snapshots" / manifest.resolved_commit
    for child in old.iterdir():
        child.unlink()
    old.rmdir()
    for name, data in FILES.items():
        (outside / name).write_bytes(data)  # the same files, so the model still looks present
    _plant(old, outside)  # the old snapshot is now a link to a folder outside
    hub.move_branch("org/tiny", "main", files={"config.json": b'{"a": 2}'})
    before = _tree(outside)

    _hf(hub, layout, project, refresh=True)
    # The snapshot a refresh replaces stays for readers until the next update, which removes it.
    hub.move_branch("org/tiny", "main", files={"config.json": b'{"a": 3}'})
    _hf(hub, layout, project, refresh=True)

    assert _tree(outside) == before
    assert not os.path.lexists(old)  # the link itself was removed


@pytest.mark.parametrize("planted", ["parent", "staging"])
def test_a_url_model_never_writes_through_a_planted_folder_link(
    hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker, outside: Path, planted: str
) -> None:
    hub.add_hf_repo("org/tiny", files=FILES)
    url = f"{hub.url}/org/tiny/resolve/main/model.safetensors"
    project = make_project([{"source": "url", "url": url, "dest": "loras/w.safetensors"}])
    before = _tree(outside)
    _plant(layout.models_dir / ("loras" if planted == "parent" else STAGING_NAME), outside)

    with pytest.raises(ModelDownloadError) as caught:
        models.download(layout=layout, project=project, **FAST)

    _refused(caught, "url/loras/w.safetensors")
    assert _tree(outside) == before


def test_a_url_model_replaces_a_planted_link_at_its_dest(
    hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker, outside: Path
) -> None:
    hub.add_hf_repo("org/tiny", files=FILES)
    url = f"{hub.url}/org/tiny/resolve/main/model.safetensors"
    project = make_project([{"source": "url", "url": url, "dest": "loras/w.safetensors"}])
    before = _tree(outside)
    _plant(layout.models_dir / "loras" / "w.safetensors", outside / "precious.txt")

    models.download(layout=layout, project=project, **FAST)

    dest = layout.models_dir / "loras" / "w.safetensors"
    assert not dest.is_symlink() and dest.read_bytes() == WEIGHTS
    assert _tree(outside) == before


def test_a_local_import_never_writes_through_a_planted_folder_link(
    layout: VolumeLayout, make_project: ProjectMaker, outside: Path
) -> None:
    project = make_project(
        [{"source": "local", "path": "w.bin", "dest": "checkpoints/mine/w.bin"}], files={"w.bin": b"local"}
    )
    before = _tree(outside)
    _plant(layout.models_dir / "checkpoints", outside)

    with pytest.raises(ModelError):
        models.download(layout=layout, project=project)

    assert _tree(outside) == before


@pytest.mark.parametrize("where", ["models/owner", "hub", "owner"])
def test_a_modelscope_model_never_writes_through_a_planted_folder_link(
    hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker, outside: Path, where: str
) -> None:
    """The real copy's folder, and the folders of the links made for other releases' layouts."""
    hub.add_ms_repo("owner/tiny", files={"configuration.json": b"{}", "w.bin": b"w" * 3000})
    project = make_project([{"source": "modelscope", "model_id": "owner/tiny"}])
    before = _tree(outside)
    _plant(layout.modelscope_cache / where, outside)

    with pytest.raises(ModelDownloadError) as caught:
        models.download(layout=layout, project=project, modelscope_endpoints=[hub.url], **FAST)

    _refused(caught, "modelscope/owner/tiny")
    assert _tree(outside) == before


# -- removal: rm, gc ------------------------------------------------------------------------
def _local_model(layout: VolumeLayout, make_project: ProjectMaker) -> Any:
    project = make_project(
        [{"source": "local", "path": "lora", "dest": "loras/mine"}],
        files={"lora/a.bin": b"a" * 100, "lora/b.bin": b"b" * 100},
    )
    models.download(layout=layout, project=project)
    return project


def test_remove_never_follows_a_planted_parent_link(
    layout: VolumeLayout, make_project: ProjectMaker, outside: Path
) -> None:
    _local_model(layout, make_project)
    (outside / "mine").mkdir()
    (outside / "mine" / "keep.txt").write_text("outside")
    real = layout.models_dir / "loras"
    os.rename(real, layout.models_dir / "moved-away")
    _plant(real, outside)  # models/loras -> outside: models/loras/mine is now outside/mine
    before = _tree(outside)

    result = models.remove(layout=layout, keys=["local/loras/mine"])

    assert result.removed == ()
    assert _tree(outside) == before
    assert read_model_manifest(layout, "local/loras/mine") is not None  # still tracked: the next run can tell


def test_remove_takes_a_planted_link_at_the_target_as_a_link(
    layout: VolumeLayout, make_project: ProjectMaker, outside: Path
) -> None:
    _local_model(layout, make_project)
    target = layout.models_dir / "loras" / "mine"
    for child in target.iterdir():
        child.unlink()
    target.rmdir()
    _plant(target, outside)
    before = _tree(outside)

    models.remove(layout=layout, keys=["local/loras/mine"])

    assert not os.path.lexists(target)
    assert _tree(outside) == before


def test_gc_never_removes_what_a_manifest_places_outside_the_models_folder(
    layout: VolumeLayout, make_project: ProjectMaker, outside: Path
) -> None:
    _local_model(layout, make_project)
    manifest = read_model_manifest(layout, "local/loras/mine")
    assert manifest is not None
    (layout.root / "python-deps").mkdir()
    (layout.root / "python-deps" / "canary").write_text("deps")
    for target in ("python-deps", "models/../python-deps", os.path.relpath(outside, layout.root), "models"):
        write_manifest(layout, manifest.model_copy(update={"target": target}))
        assert models.gc(layout=layout, referenced_keys=[], dry_run=True).removed == (), target  # not promised

        models.gc(layout=layout, referenced_keys=[])

        assert (layout.root / "python-deps" / "canary").read_text() == "deps", target
        assert _tree(outside) == {"precious.txt": b"P" * 500_000}, target
        assert layout.models_dir.is_dir()


def test_gc_never_empties_a_planted_staging_link(layout: VolumeLayout, outside: Path) -> None:
    _plant(layout.models_dir / STAGING_NAME, outside)
    (outside / f"{safe_key('url/x')}.part").write_bytes(b"partial")
    before = _tree(outside)

    models.gc(layout=layout, referenced_keys=[])

    assert _tree(outside) == before


def test_a_planted_hard_link_at_the_partial_is_not_appended_to(
    hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker, outside: Path
) -> None:
    hub.add_hf_repo("org/tiny", files=FILES)
    project = make_project([{"source": "huggingface", "repo_id": "org/tiny"}])
    (outside / "small.log").write_bytes(b"s" * 100)
    before = _tree(outside)
    partial = layout.hf_hub_cache / REPO / "blobs" / f"{hashlib.sha256(WEIGHTS).hexdigest()}.incomplete"
    partial.parent.mkdir(parents=True)
    os.link(outside / "small.log", partial)

    _hf(hub, layout, project)

    assert _tree(outside) == before
