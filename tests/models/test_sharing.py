"""Several pods at once, tokens, and changes of a model entry."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from tests.fakehub import FakeHub
from tests.helpers import FAST, ProjectMaker, resolve_requests
from volume_cli import models
from volume_cli.layout import VolumeLayout

WEIGHTS = os.urandom(400_000)


def test_two_pods_downloading_one_model_fetch_each_file_once(
    hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker
) -> None:
    hub.add_hf_repo("org/shared", files={"a.safetensors": WEIGHTS, "b.safetensors": WEIGHTS[::-1]})
    hub.throttle(2_000_000)  # slow enough that the second pod arrives while the first is downloading
    first = make_project([{"source": "huggingface", "repo_id": "org/shared"}], name="first")
    second = make_project([{"source": "huggingface", "repo_id": "org/shared"}], name="second")
    results: dict[str, models.DownloadResult] = {}

    def run(project_name: str, project: object) -> None:
        results[project_name] = models.download(layout=layout, project=project, hf_endpoints=[hub.url], **FAST)  # type: ignore[arg-type]

    threads = [
        threading.Thread(target=run, args=(name, project)) for name, project in (("first", first), ("second", second))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    actions = sorted(result.models[0].action for result in results.values())
    assert actions == ["downloaded", "present"]
    assert len(resolve_requests(hub)) == 2
    assert models.verify(layout=layout, project=first, deep=True).ok


def test_the_token_is_sent_to_the_hub_and_never_stored(
    hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker
) -> None:
    token = "hf_secret_token_value_123"
    hub.add_hf_repo("org/private", files={"config.json": b"{}"})
    project = make_project([{"source": "huggingface", "repo_id": "org/private"}])

    models.download(
        layout=layout, project=project, hf_endpoints=[hub.url], env={"HF_TOKEN": token, "HOME": "/nonexistent"}, **FAST
    )

    sent = [
        {name.lower(): value for name, value in entry["headers"].items()}.get("authorization")
        for entry in hub.request_log
    ]
    assert sent and all(value == f"Bearer {token}" for value in sent)
    for path in layout.root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert token.encode() not in path.read_bytes(), path


def test_narrower_patterns_drop_files_from_the_snapshot(
    hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker
) -> None:
    commit = hub.add_hf_repo("org/tiny", files={"config.json": b"{}", "model.safetensors": WEIGHTS})
    spec = {"source": "huggingface", "repo_id": "org/tiny"}
    models.download(layout=layout, project=make_project([spec]), hf_endpoints=[hub.url], **FAST)
    narrower = make_project([{**spec, "allow_patterns": ["*.json"]}])
    hub.clear_requests()

    [outcome] = models.download(layout=layout, project=narrower, hf_endpoints=[hub.url], **FAST).models

    assert outcome.action == "updated" and outcome.files_fetched == ()
    repo = layout.hf_hub_cache / "models--org--tiny"
    assert sorted(path.name for path in (repo / "snapshots" / commit).iterdir()) == ["config.json"]
    assert len(list((repo / "blobs").iterdir())) == 1
    assert not resolve_requests(hub)


def test_a_stale_copy_in_the_target_layout_is_replaced_by_the_verified_one(
    hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker
) -> None:
    hub.add_ms_repo("owner/name", files={"configuration.json": b"{}", "w.bin": WEIGHTS})
    project = make_project([{"source": "modelscope", "model_id": "owner/name"}])
    models.download(
        layout=layout, project=project, modelscope_endpoints=[hub.url], consumer_modelscope_version="1.10.0", **FAST
    )
    target = layout.modelscope_cache / "models" / "owner" / "name"
    target.unlink()  # our link; a client then wrote its own partial copy there
    target.mkdir()
    (target / "w.bin").write_bytes(b"half")

    [outcome] = models.download(layout=layout, project=project, modelscope_endpoints=[hub.url], **FAST).models

    assert outcome.action == "relinked" and outcome.bytes_downloaded == 0
    assert Path(target / "w.bin").read_bytes() == WEIGHTS
    assert (layout.modelscope_cache / "owner" / "name").is_symlink()
