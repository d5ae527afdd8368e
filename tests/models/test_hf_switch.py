"""A HuggingFace refresh switches ``refs`` once, after the manifest, and keeps what readers may still hold.

A worker resolves ``refs/main`` to a snapshot and then opens its files one by
one; the snapshot a refresh replaces must stay readable until the next update.
"""

from __future__ import annotations

import os
from typing import Any

from tests.fakehub import FakeHub
from tests.helpers import FAST, ProjectMaker
from volume_cli import models
from volume_cli.layout import VolumeLayout
from volume_cli.models.manifest import read_model_manifest

HF_KEY = "huggingface/model/org/tiny"
REVISIONS = [
    {"config.json": b'{"rev": 1}', "model.safetensors": os.urandom(30_000)},
    {"config.json": b'{"rev": 2}', "model.safetensors": os.urandom(30_000)},
    {"config.json": b'{"rev": 3}', "model.safetensors": os.urandom(30_000)},
]


def _download(hub: FakeHub, layout: VolumeLayout, project: Any, **kwargs: Any) -> str:
    models.download(layout=layout, project=project, hf_endpoints=[hub.url], **{**FAST, **kwargs})
    manifest = read_model_manifest(layout, HF_KEY)
    assert manifest is not None and manifest.resolved_commit is not None
    return manifest.resolved_commit


def test_the_replaced_snapshot_stays_readable_until_the_next_update(
    hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker
) -> None:
    hub.add_hf_repo("org/tiny", files=REVISIONS[0])
    project = make_project([{"source": "huggingface", "repo_id": "org/tiny"}])
    first = _download(hub, layout, project)
    folder = layout.hf_hub_cache / "models--org--tiny"
    resolved_by_a_reader = folder / "snapshots" / first  # what a worker resolved before the switch

    hub.move_branch("org/tiny", "main", files=REVISIONS[1])
    second = _download(hub, layout, project, refresh=True)

    assert (folder / "refs" / "main").read_text() == second
    for name, data in REVISIONS[0].items():  # the reader finishes loading the whole old revision
        assert (resolved_by_a_reader / name).read_bytes() == data
    for name, data in REVISIONS[1].items():
        assert (folder / "snapshots" / second / name).read_bytes() == data

    hub.move_branch("org/tiny", "main", files=REVISIONS[2])
    third = _download(hub, layout, project, refresh=True)

    assert sorted(os.listdir(folder / "snapshots")) == sorted([second, third])
    live_blobs = {
        os.path.basename(os.readlink(path)) for path in (folder / "snapshots").rglob("*") if path.is_symlink()
    }
    assert set(os.listdir(folder / "blobs")) == live_blobs  # the oldest revision's blobs went with it


def test_a_kill_between_the_manifest_and_the_switch_converges_forward_offline(
    hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker
) -> None:
    hub.add_hf_repo("org/tiny", files=REVISIONS[0])
    project = make_project([{"source": "huggingface", "repo_id": "org/tiny"}])
    first = _download(hub, layout, project)
    hub.move_branch("org/tiny", "main", files=REVISIONS[1])
    second = _download(hub, layout, project, refresh=True)
    refs = layout.hf_hub_cache / "models--org--tiny" / "refs" / "main"
    refs.write_text(first)  # the manifest names the new commit; the kill came before the switch
    hub.clear_requests()

    outcome = models.download(layout=layout, project=project, hf_endpoints=[hub.url], **FAST)

    assert refs.read_text() == second
    assert hub.requests == []  # the switch is made from the manifest, with no network
    assert [model.action for model in outcome.models] == ["relinked"]
