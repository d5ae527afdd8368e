"""Failures on the way: 5xx, silent servers, dead mirrors, cut connections, wrong checksums, a full disk."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from tests.fakehub import FakeHub
from tests.helpers import FAST, ProjectMaker, closed_port_url, range_headers, resolve_requests
from volume_cli import models
from volume_cli.errors import ChecksumError, DiskSpaceError, DownloadError
from volume_cli.layout import VolumeLayout
from volume_cli.models.manifest import read_model_manifest, safe_key
from volume_cli.models.staging import staging_dir
from volume_cli.progress import NullProgress

WEIGHTS = os.urandom(200_000)


def test_a_server_answering_500_twice_then_succeeding(
    hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker
) -> None:
    hub.add_hf_repo("org/tiny", files={"model.safetensors": WEIGHTS})
    hub.fail_next(2, status=500, match="/api/")
    hub.fail_next(2, status=503, match="/resolve/")
    project = make_project([{"source": "huggingface", "repo_id": "org/tiny"}])

    [outcome] = models.download(layout=layout, project=project, hf_endpoints=[hub.url], **FAST).models

    assert outcome.action == "downloaded" and outcome.endpoint == hub.url
    assert len([request for request in hub.requests if "/api/" in request[1]]) == 3
    assert len(resolve_requests(hub)) == 3


def test_a_silent_server_ends_in_a_clear_error_within_the_timeout(
    hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker
) -> None:
    hub.add_hf_repo("org/tiny", files={"model.safetensors": WEIGHTS})
    hub.hang()  # accepts the connection and the request, never answers
    project = make_project([{"source": "huggingface", "repo_id": "org/tiny"}])
    started = time.monotonic()

    with pytest.raises(DownloadError) as caught:
        models.download(layout=layout, project=project, hf_endpoints=[hub.url], timeout=0.5, retries=1, backoff=0.01)

    elapsed = time.monotonic() - started
    assert elapsed < 0.5 * 2 + 2.0  # two attempts of 0.5 s, plus slack
    assert "timed out after 0.5s" in str(caught.value)
    assert hub.url in str(caught.value)
    assert models.models_status(layout=layout, project=project).models[0].state == "missing"


def test_failover_from_a_dead_first_endpoint(hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker) -> None:
    hub.add_hf_repo("org/tiny", files={"model.safetensors": WEIGHTS, "config.json": b"{}"})
    hub.add_ms_repo("owner/name", files={"configuration.json": b"{}"})
    dead = closed_port_url()
    project = make_project(
        [{"source": "huggingface", "repo_id": "org/tiny"}, {"source": "modelscope", "model_id": "owner/name"}]
    )
    progress = NullProgress()

    result = models.download(
        layout=layout,
        project=project,
        hf_endpoints=[dead, hub.url],
        modelscope_endpoints=[dead, hub.url],
        progress=progress,
        **FAST,
    )

    assert [model.endpoint for model in result.models] == [hub.url, hub.url]
    manifest = read_model_manifest(layout, "huggingface/model/org/tiny")
    assert manifest is not None and manifest.endpoint == hub.url
    assert any(dead in warning and hub.url in warning for warning in progress.warnings)


def test_every_endpoint_dead_names_each_reason(layout: VolumeLayout, make_project: ProjectMaker) -> None:
    first, second = closed_port_url(), closed_port_url()
    project = make_project([{"source": "huggingface", "repo_id": "org/tiny"}])

    with pytest.raises(DownloadError) as caught:
        models.download(layout=layout, project=project, hf_endpoints=[first, second], **FAST)

    assert first in str(caught.value) and second in str(caught.value)


def test_a_cut_connection_resumes_with_range(hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker) -> None:
    hub.add_hf_repo("org/tiny", files={"model.safetensors": WEIGHTS})
    hub.truncate_next(1, match="model.safetensors", after_bytes=70_000)
    project = make_project([{"source": "huggingface", "repo_id": "org/tiny"}])

    [outcome] = models.download(layout=layout, project=project, hf_endpoints=[hub.url], **FAST).models

    assert outcome.action == "downloaded"
    assert range_headers(hub, "/resolve/") == [None, "bytes=70000-"]
    assert models.verify(layout=layout, project=project, deep=True).ok


def test_a_partial_left_by_a_killed_run_is_resumed(
    hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker
) -> None:
    hub.add_hf_repo("org/tiny", files={"model.safetensors": WEIGHTS})
    project = make_project([{"source": "huggingface", "repo_id": "org/tiny"}])
    blobs = layout.hf_hub_cache / "models--org--tiny" / "blobs"
    blobs.mkdir(parents=True)
    (blobs / (hashlib.sha256(WEIGHTS).hexdigest() + ".incomplete")).write_bytes(WEIGHTS[:123_456])

    [outcome] = models.download(layout=layout, project=project, hf_endpoints=[hub.url], **FAST).models

    assert range_headers(hub, "/resolve/") == ["bytes=123456-"]
    assert outcome.bytes_downloaded == len(WEIGHTS)  # progress counts the resumed bytes too
    assert (blobs / hashlib.sha256(WEIGHTS).hexdigest()).read_bytes() == WEIGHTS


def test_url_source_resumes_its_part_file_with_range(
    hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker
) -> None:
    hub.add_hf_repo("org/files", files={"big.safetensors": WEIGHTS})
    url = f"{hub.url}/org/files/resolve/main/big.safetensors"
    spec = {
        "source": "url",
        "url": url,
        "dest": "checkpoints/big.safetensors",
        "sha256": hashlib.sha256(WEIGHTS).hexdigest(),
    }
    project = make_project([spec])
    part = staging_dir(layout) / f"{safe_key('url/checkpoints/big.safetensors')}.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(WEIGHTS[:50_000])

    [outcome] = models.download(layout=layout, project=project, **FAST).models

    assert outcome.action == "downloaded"
    assert range_headers(hub, "/resolve/") == ["bytes=50000-"]
    assert (layout.models_dir / "checkpoints" / "big.safetensors").read_bytes() == WEIGHTS
    assert not part.exists()


def test_url_with_a_wrong_sha256_is_rejected_and_nothing_is_left(
    hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker
) -> None:
    hub.add_hf_repo("org/files", files={"big.safetensors": WEIGHTS})
    url = f"{hub.url}/org/files/resolve/main/big.safetensors"
    project = make_project([{"source": "url", "url": url, "dest": "checkpoints/big.safetensors", "sha256": "0" * 64}])

    with pytest.raises(ChecksumError) as caught:
        models.download(layout=layout, project=project, **FAST)

    assert "checksum mismatch" in str(caught.value)
    assert not (layout.models_dir / "checkpoints" / "big.safetensors").exists()
    assert not any(staging_dir(layout).rglob("*.part"))
    assert read_model_manifest(layout, "url/checkpoints/big.safetensors") is None
    assert isinstance(caught.value, models.ModelChecksumError)
    assert caught.value.result.models[0].action == "failed"


def test_one_failing_model_does_not_stop_the_others(
    hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker
) -> None:
    hub.add_hf_repo("org/tiny", files={"config.json": b"{}"})
    project = make_project(
        [{"source": "huggingface", "repo_id": "org/missing"}, {"source": "huggingface", "repo_id": "org/tiny"}]
    )

    with pytest.raises(models.ModelDownloadError) as caught:
        models.download(layout=layout, project=project, hf_endpoints=[hub.url], **FAST)

    actions = {model.key: model.action for model in caught.value.result.models}
    assert actions == {"huggingface/model/org/missing": "failed", "huggingface/model/org/tiny": "downloaded"}
    assert "404" in str(caught.value) and caught.value.hint is not None


def test_not_enough_free_space_fails_before_any_download(
    hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.add_hf_repo("org/tiny", files={"model.safetensors": WEIGHTS})
    project = make_project([{"source": "huggingface", "repo_id": "org/tiny"}])
    monkeypatch.setattr("volume_cli.models.model_download.disk_free", lambda path: len(WEIGHTS) - 1)

    with pytest.raises(DiskSpaceError) as caught:
        models.download(layout=layout, project=project, hf_endpoints=[hub.url], **FAST)

    assert "free" in str(caught.value)
    assert not resolve_requests(hub)
    assert not layout.hf_hub_cache.exists()


def test_project_config_endpoints_come_after_cli_and_before_the_environment(tmp_path: Path) -> None:
    from volume_cli.models import download
    from volume_cli.project.discovery import load_project_folder

    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "dependencies.yaml").write_text("groups:\n  a:\n    packages: [six]\n")
    (folder / "project.yaml").write_text(
        "name: p\npython_version: '3.11'\nhf_endpoints: [http://127.0.0.1:9/, http://127.0.0.1:10]\n"
        "models:\n  - source: huggingface\n    repo_id: org/model\n"
    )
    project = load_project_folder(folder)
    assert project.spec.hf_endpoints == ["http://127.0.0.1:9", "http://127.0.0.1:10"]
    root = tmp_path / "root"
    root.mkdir()
    with FakeHub() as hub:
        hub.add_hf_repo("org/model", {"config.json": b"{}"})
        env = {"HF_ENDPOINT": "http://127.0.0.1:11"}
        # config endpoints are dead: the env one is not consulted, so the run fails naming both
        with pytest.raises(DownloadError) as info:
            download(layout=VolumeLayout(root), project=project, env=env, **FAST)
        assert "127.0.0.1:10" in str(info.value) and "127.0.0.1:11" not in str(info.value)
        # the CLI's list wins over the config
        result = download(layout=VolumeLayout(root), project=project, hf_endpoints=[hub.url], env=env, **FAST)
        assert result.models[0].endpoint == hub.url
