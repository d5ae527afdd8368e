"""Credentials in URLs are never stored on the shared volume and never shown; URL models take a token from the env."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.fakehub import FakeHub
from tests.helpers import FAST, ProjectMaker, ProjectsFolder, write_project
from volume_cli import models
from volume_cli.errors import ModelError
from volume_cli.layout import VolumeLayout
from volume_cli.models.manifest import read_model_manifest, write_manifest
from volume_cli.redact import redact_text, redact_url

SECRETS = ("s3cr3tpass", "t0kenvalue", "amzsig999", "sigsecret", "bearer-abc-123")
WEIGHTS = os.urandom(4000)


def _secret_url(hub: FakeHub, path: str = "org/tiny/resolve/main/w.bin") -> str:
    return (
        f"http://alice:s3cr3tpass@127.0.0.1:{hub.port}/{path}"
        "?token=t0kenvalue&X-Amz-Signature=amzsig999&sig=sigsecret&download=1"
    )


def _assert_clean(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} shown in {where}: {text[:2000]}"


def _assert_volume_clean(root: Path) -> None:
    for folder, _dirs, files in os.walk(root):
        for name in files:
            path = Path(folder, name)
            if not path.is_symlink():
                _assert_clean(path.read_bytes().decode("latin-1"), str(path))


def _project(projects: Path, models_: list[dict[str, Any]], name: str = "secretive") -> None:
    write_project(projects / name, name=name, python="3.11", models=models_)


def test_url_credentials_are_neither_stored_nor_printed(
    hub: FakeHub, tmp_path: Path, volume_root: Path, cli: Any
) -> None:
    hub.add_hf_repo("org/tiny", files={"w.bin": WEIGHTS})
    projects = tmp_path / "secret-projects"
    _project(projects, [{"source": "url", "url": _secret_url(hub), "dest": "ckpt/w.bin"}])
    common = ("--project", "secretive", "--root", str(volume_root), "--projects-dir", str(projects))

    human = cli("models", "download", *common)
    assert human.exit_code == 0, human.stderr
    as_json = cli("models", "download", *common, "--json")
    status = cli("status", "--root", str(volume_root), "--projects-dir", str(projects), "--json")
    listing = cli("models", "list", "--root", str(volume_root), "--projects-dir", str(projects), "--json")

    for name, result in (("download", human), ("download --json", as_json), ("status", status), ("list", listing)):
        _assert_clean(result.stdout + result.stderr, name)
    _assert_volume_clean(volume_root)
    assert (volume_root / "models" / "ckpt" / "w.bin").read_bytes() == WEIGHTS
    manifest = read_model_manifest(VolumeLayout(volume_root), "url/ckpt/w.bin")
    assert manifest is not None and manifest.model_id.startswith(f"http://127.0.0.1:{hub.port}/org/tiny")


def test_a_failing_url_shows_no_credentials_in_warning_or_error_lines(
    hub: FakeHub, tmp_path: Path, volume_root: Path, cli: Any
) -> None:
    projects = tmp_path / "secret-projects"
    _project(projects, [{"source": "url", "url": _secret_url(hub, "missing/file"), "dest": "ckpt/w.bin"}])
    hub.fail_next(50, status=503)  # retried, then the endpoint is dropped: every message names the URL

    result = cli(
        "models", "download", "--project", "secretive", "--root", str(volume_root),
        "--projects-dir", str(projects), "--retries", "1", "--timeout", "2",
    )  # fmt: skip

    assert result.exit_code != 0 and "error:" in result.stderr
    _assert_clean(result.stdout + result.stderr, "stderr")
    _assert_volume_clean(volume_root)


def test_an_old_manifest_with_credentials_is_not_shown(
    hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker
) -> None:
    hub.add_hf_repo("org/tiny", files={"w.bin": WEIGHTS})
    project = make_project([{"source": "url", "url": f"{hub.url}/org/tiny/resolve/main/w.bin", "dest": "w.bin"}])
    models.download(layout=layout, project=project, **FAST)
    manifest = read_model_manifest(layout, "url/w.bin")
    assert manifest is not None
    write_manifest(layout, manifest.model_copy(update={"model_id": _secret_url(hub), "endpoint": _secret_url(hub)}))

    again = read_model_manifest(layout, "url/w.bin")

    assert again is not None
    _assert_clean(again.model_dump_json(), "manifest")


def test_token_env_sends_a_bearer_token_to_the_url_host_only(
    hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker
) -> None:
    hub.add_hf_repo("org/tiny", files={"w.bin": WEIGHTS})
    url = f"{hub.url}/org/tiny/resolve/main/w.bin"
    project = make_project([{"source": "url", "url": url, "dest": "w.bin", "token_env": "MY_MODEL_TOKEN"}])

    models.download(layout=layout, project=project, env={"MY_MODEL_TOKEN": "bearer-abc-123"}, **FAST)

    sent = [entry["headers"].get("authorization") for entry in hub.request_log]
    assert sent and all(value == "Bearer bearer-abc-123" for value in sent)  # the HEAD and the GET
    assert (layout.models_dir / "w.bin").read_bytes() == WEIGHTS
    _assert_volume_clean(layout.root)


def test_token_env_is_not_forwarded_to_another_host_on_redirect(
    hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker
) -> None:
    other = FakeHub().start()
    try:
        other.add_hf_repo("org/tiny", files={"w.bin": WEIGHTS})
        hub.redirect(f"http://localhost:{other.port}/org/tiny/resolve/main/w.bin", match="w.bin")
        url = f"{hub.url}/org/tiny/resolve/main/w.bin"
        project = make_project([{"source": "url", "url": url, "dest": "w.bin", "token_env": "MY_MODEL_TOKEN"}])

        models.download(layout=layout, project=project, env={"MY_MODEL_TOKEN": "bearer-abc-123"}, **FAST)

        assert other.request_log and all("authorization" not in entry["headers"] for entry in other.request_log)
    finally:
        other.stop()


def test_a_missing_token_env_is_a_clear_error(layout: VolumeLayout, make_project: ProjectMaker) -> None:
    url = "http://127.0.0.1:9/w.bin"
    project = make_project([{"source": "url", "url": url, "dest": "w.bin", "token_env": "NOT_SET_ANYWHERE"}])

    with pytest.raises(ModelError, match="NOT_SET_ANYWHERE"):
        models.download(layout=layout, project=project, env={}, **FAST)


def test_deps_list_does_not_print_an_index_password(projects_folder: ProjectsFolder, cli: Any) -> None:
    projects_folder.add_yaml_project(
        "private_index",
        dependencies="""
        groups:
          main:
            index_url: https://bob:s3cr3tpass@pypi.example.invalid/simple
            extra_index_urls: [https://t0kenvalue@extra.example.invalid/simple]
            packages: [six==1.17.0]
        """,
    )

    for extra in ((), ("--json",)):
        result = cli("deps", "list", "--project", "private-index", "--projects-dir", str(projects_folder.path), *extra)
        assert result.exit_code == 0, result.stderr
        _assert_clean(result.stdout + result.stderr, f"deps list {extra}")
        assert "pypi.example.invalid" in result.stdout
    data = json.loads(result.stdout)
    assert data["groups"][0]["index_url"] == "https://bob:****@pypi.example.invalid/simple"


REDACTIONS = {
    "https://user:pass@host/x": "https://user:****@host/x",
    "https://tokenonly@host/x": "https://****@host/x",
    "https://host/x?token=abc": "https://host/x?token=****",
    "https://host/x?access_token=abc&b=1": "https://host/x?access_token=****&b=1",
    "https://s3.host/o?X-Amz-Credential=AK&X-Amz-Signature=ff&X-Amz-Date=1": (
        "https://s3.host/o?X-Amz-Credential=****&X-Amz-Signature=****&X-Amz-Date=****"
    ),
    "https://blob.host/c?sv=2020&sig=abc%2F": "https://blob.host/c?sv=2020&sig=****",
    "https://gcs/o?X-Goog-Signature=abc": "https://gcs/o?X-Goog-Signature=****",
    "https://civitai/api/download/1?type=Model&api_key=k": "https://civitai/api/download/1?type=Model&api_key=****",
    "https://host/x?key=k&signature=s": "https://host/x?key=****&signature=****",
    "https://host/x?hf_token=k": "https://host/x?hf_token=****",
    "https://host/plain/path": "https://host/plain/path",
    "http://host:8080/x?page=2": "http://host:8080/x?page=2",
}


@pytest.mark.parametrize("url", list(REDACTIONS))
def test_redact_url(url: str) -> None:
    assert redact_url(url) == REDACTIONS[url]
    assert redact_text(f"failed: {url}.") == f"failed: {REDACTIONS[url]}."


def test_redact_text_catches_a_query_without_its_host() -> None:
    text = "HTTPConnectionPool(host='h', port=1): Max retries exceeded with url: /f?token=abc&x=1 (Caused by ...)"
    assert "abc" not in redact_text(text) and "x=1" in redact_text(text)


def test_a_rotated_signature_or_password_is_the_same_model(
    hub: FakeHub, layout: VolumeLayout, make_project: ProjectMaker
) -> None:
    """The spec hash on the volume is taken without credentials: a new signed URL is no reason to re-download."""
    hub.add_hf_repo("org/tiny", files={"w.bin": WEIGHTS})
    base = f"http://u:{{}}@127.0.0.1:{hub.port}/org/tiny/resolve/main/w.bin?X-Amz-Signature={{}}"
    project = make_project([{"source": "url", "url": base.format("one", "sig1"), "dest": "w.bin"}])
    models.download(layout=layout, project=project, **FAST)
    rotated = make_project([{"source": "url", "url": base.format("two", "sig2"), "dest": "w.bin"}])
    hub.clear_requests()

    [outcome] = models.download(layout=layout, project=rotated, **FAST).models

    assert outcome.action == "present" and hub.requests == []
