"""Remotes: the stored S3 endpoints a project can be pushed to (issue 12, item 1, config slice)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from volume_cli.errors import RemoteConfigError
from volume_cli.remote.config import (
    Remote,
    add_remote,
    load_remotes,
    remotes_path,
    remove_remote,
    runpod_remote,
)


def test_remotes_live_in_the_user_config_dir(tmp_path: Path) -> None:
    assert remotes_path({"XDG_CONFIG_HOME": str(tmp_path)}) == tmp_path / "volume-cli" / "remotes.json"


def test_add_list_remove_round_trip_without_secrets(tmp_path: Path) -> None:
    path = tmp_path / "remotes.json"
    remote = Remote(name="eu", endpoint="http://127.0.0.1:9000", bucket="b1", region="eu-1")
    add_remote(path, remote)
    assert load_remotes(path).remotes == {"eu": remote}
    document = json.loads(path.read_text())
    assert document["schema_version"] == 1
    assert "secret" not in path.read_text().lower()
    with pytest.raises(RemoteConfigError):
        add_remote(path, remote)
    remove_remote(path, "eu")
    assert load_remotes(path).remotes == {}
    with pytest.raises(RemoteConfigError):
        remove_remote(path, "eu")


def test_runpod_shorthand_matches_runpod_docs() -> None:
    remote = runpod_remote("rp", volume_id="abc123xyz", datacenter="EUR-IS-1")
    assert remote.endpoint == "https://s3api-eur-is-1.runpod.io/"
    assert remote.bucket == "abc123xyz"
    assert remote.region == "EUR-IS-1"


@pytest.mark.parametrize("name", ["", "../x", "a/b", "-x", "a b", "x" * 65, "é"])
def test_hostile_remote_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError):
        Remote(name=name, endpoint="http://127.0.0.1:9000", bucket="b")


def test_unknown_fields_and_future_schema_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "remotes.json"
    path.write_text(json.dumps({"schema_version": 1, "remotes": {}, "password": "x"}))
    with pytest.raises(RemoteConfigError):
        load_remotes(path)
    path.write_text(json.dumps({"schema_version": 99, "remotes": {}}))
    with pytest.raises(RemoteConfigError):
        load_remotes(path)
