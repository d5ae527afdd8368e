"""ModelScope models: the layout each release reads, revisions, patterns, refresh, relayout offline."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import pytest

from tests.fakehub import FakeHub
from tests.helpers import FAST, ProjectMaker
from volume_cli import models
from volume_cli.layout import VolumeLayout
from volume_cli.models.manifest import read_model_manifest
from volume_cli.models.mslayout import plan_layout, variant_for

WEIGHTS = os.urandom(120_000)
FILES = {"configuration.json": b'{"task": "x"}', "pytorch_model.bin": WEIGHTS, "tokenizer/vocab.txt": b"a\nb\n"}
KEY = "modelscope/Qwen/Qwen2.5-0.5B"


def _download(layout: VolumeLayout, project: object, hub: FakeHub, **kwargs: Any) -> models.DownloadResult:
    return models.download(layout=layout, project=project, modelscope_endpoints=[hub.url], **{**FAST, **kwargs})  # type: ignore[arg-type]


def test_first_download_is_read_by_the_installed_modelscope_offline(
    hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker
) -> None:
    commit = hub.add_ms_repo("Qwen/Qwen2.5-0.5B", files=FILES)
    project = make_project([{"source": "modelscope", "model_id": "Qwen/Qwen2.5-0.5B"}])

    [outcome] = _download(layout, project, hub).models

    assert outcome.action == "downloaded" and outcome.resolved_commit == commit and outcome.endpoint == hub.url
    cache = layout.modelscope_cache
    physical = cache / "models" / "Qwen" / "Qwen2___5-0___5B"
    assert physical.is_dir() and physical.is_symlink()  # to the live revision folder, switched as a whole
    for link in (
        cache / "Qwen" / "Qwen2.5-0.5B",
        cache / "hub" / "Qwen" / "Qwen2___5-0___5B",
        cache / "models" / "Qwen--Qwen2.5-0.5B" / "snapshots" / "master",
        cache / "models" / "Qwen" / "Qwen2.5-0.5B",
    ):
        assert link.is_symlink() and not os.path.isabs(os.readlink(link)) and link.resolve() == physical.resolve()
    index = pickle.loads((physical / ".msc").read_bytes())
    assert {entry["Path"] for entry in index} == set(FILES) and {entry["Revision"] for entry in index} == {commit}

    hub.stop()
    from modelscope import snapshot_download
    from modelscope.hub.file_download import model_file_download

    folder = snapshot_download("Qwen/Qwen2.5-0.5B", cache_dir=str(cache), local_files_only=True)
    assert Path(folder, "pytorch_model.bin").read_bytes() == WEIGHTS
    # revision given: without one this release asks the hub for it even with local_files_only
    single = model_file_download(
        "Qwen/Qwen2.5-0.5B", "tokenizer/vocab.txt", revision="master", cache_dir=str(cache), local_files_only=True
    )
    assert Path(single).read_bytes() == FILES["tokenizer/vocab.txt"]
    manifest = read_model_manifest(layout, KEY)
    assert manifest is not None and all(entry.sha256 for entry in manifest.files)


def test_tag_revision_and_allow_patterns(hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker) -> None:
    hub.add_ms_repo("owner/name", files={"configuration.json": b'{"v": 1}', "a.bin": b"1" * 10}, revision="v1.0")
    hub.add_ms_repo("owner/name", files={"configuration.json": b'{"v": 2}', "a.bin": b"2" * 10})
    spec = {"source": "modelscope", "model_id": "owner/name", "revision": "v1.0", "allow_patterns": ["*.json"]}
    project = make_project([spec])

    [outcome] = _download(layout, project, hub).models

    assert outcome.files_fetched == ("configuration.json",)
    physical = layout.modelscope_cache / "models" / "owner" / "name"
    assert (physical / "configuration.json").read_bytes() == b'{"v": 1}'
    assert not (physical / "a.bin").exists()
    assert (layout.modelscope_cache / "models" / "owner--name" / "snapshots" / "v1.0").is_symlink()


def test_refresh_follows_a_moved_branch_and_drops_removed_files(
    hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker
) -> None:
    hub.add_ms_repo("owner/name", files=FILES)
    project = make_project([{"source": "modelscope", "model_id": "owner/name"}])
    _download(layout, project, hub)
    new_files = {"configuration.json": b'{"task": "y"}', "pytorch_model.bin": WEIGHTS}
    second = hub.move_ms_revision("owner/name", "master", files=new_files)
    hub.clear_requests()

    assert _download(layout, project, hub).models[0].action == "present" and not hub.requests
    [outcome] = _download(layout, project, hub, refresh=True).models

    assert outcome.action == "updated" and outcome.resolved_commit == second
    assert outcome.files_fetched == ("configuration.json",)
    physical = layout.modelscope_cache / "models" / "owner" / "name"
    assert not (physical / "tokenizer").exists()
    assert (physical / "configuration.json").read_bytes() == b'{"task": "y"}'


@pytest.mark.parametrize(
    ("version", "variant"),
    [
        ("1.10.0", "flat"),
        ("1.11.1", "flat"),
        ("1.12.0", "flat-masked"),
        ("1.14.9", "flat-masked"),
        ("1.15.0", "hub"),
        ("1.22.3", "hub"),
        ("1.23.0", "models"),
        ("1.37.0", "models"),
        ("1.40.2", "models"),
        (None, "models"),
        ("garbage", "models"),
    ],
)
def test_layout_variant_per_release(version: str | None, variant: str) -> None:
    assert variant_for(version) == variant


def test_reserved_owner_names_do_not_collide_with_cache_folders(tmp_path: Path) -> None:
    planned = plan_layout(tmp_path, "models/x.y", "master", "1.10.0")
    assert planned.variant == "models"
    assert all(not (link.parent == tmp_path / "models" and link.name == "x.y") for link in planned.links)


def test_a_new_consumer_release_needs_no_download_and_no_move(
    hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker
) -> None:
    hub.add_ms_repo("owner/m.v1", files=FILES)
    project = make_project([{"source": "modelscope", "model_id": "owner/m.v1"}])
    _download(layout, project, hub, consumer_modelscope_version="1.10.0")
    old_physical = layout.modelscope_cache / "owner" / "m.v1"
    assert old_physical.is_dir() and old_physical.is_symlink()
    hub.clear_requests()
    hub.stop()

    [outcome] = _download(layout, project, hub, consumer_modelscope_version="1.30.0").models

    assert outcome.action == "present" and outcome.bytes_downloaded == 0  # every layout is already a link
    new_physical = layout.modelscope_cache / "models" / "owner" / "m___v1"
    assert new_physical.is_dir() and new_physical.resolve() == old_physical.resolve()
    assert old_physical.is_symlink() and (old_physical / "pytorch_model.bin").read_bytes() == WEIGHTS
    assert not hub.requests
    assert _download(layout, project, hub, consumer_modelscope_version="1.30.0").models[0].action == "present"
