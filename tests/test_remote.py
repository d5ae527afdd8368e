"""Remotes: the stored S3 endpoints a project can be pushed to (issue 12, item 1, config slice)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from tests.s3servers import S3Server

# the s3_server fixture: one moto and one rclone server per session
pytest_plugins = ["tests.s3servers"]


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


# --- CLI and `remote check` against real S3 servers (moto: full S3; rclone: the pessimistic case) ---

CLEAN_AWS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE")


@pytest.fixture
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for name in CLEAN_AWS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    return tmp_path / "config" / "volume-cli" / "remotes.json"


def test_cli_add_list_rm_never_shows_a_secret(cli: Any, config_home: Path) -> None:
    secret = "sEcReT-value-never-printed"
    env = {"VOLUME_CLI_REMOTE_EU_ACCESS_KEY": "AKIDEXAMPLE", "VOLUME_CLI_REMOTE_EU_SECRET_KEY": secret}
    added = cli("remote", "add", "eu", "--runpod-volume", "abc123xyz", "--datacenter", "EUR-IS-1", env=env)
    assert added.exit_code == 0, added.stderr
    listed = cli("remote", "list", "--json")
    rows = json.loads(listed.stdout)
    assert rows == [
        {
            "name": "eu",
            "endpoint": "https://s3api-eur-is-1.runpod.io/",
            "bucket": "abc123xyz",
            "region": "EUR-IS-1",
            "credentials": "env: VOLUME_CLI_REMOTE_EU_ACCESS_KEY, VOLUME_CLI_REMOTE_EU_SECRET_KEY",
        }
    ]
    human = cli("remote", "list")
    for text in (added.stdout, added.stderr, listed.stdout, human.stdout, config_home.read_text()):
        assert secret not in text and "AKIDEXAMPLE" not in text
    assert cli("remote", "rm", "eu").exit_code == 0
    assert json.loads(cli("remote", "list", "--json").stdout) == []


@pytest.mark.parametrize(
    "args",
    [
        ["--endpoint", "http://127.0.0.1:9"],  # no bucket
        ["--runpod-volume", "abc"],  # no datacenter
        ["--runpod-volume", "abc", "--datacenter", "EU-RO-1", "--endpoint", "http://h"],
        ["--endpoint", "ftp://h", "--bucket", "b"],
        ["--endpoint", "https://user:pw@h", "--bucket", "b"],  # a credential would be written to disk
        ["--endpoint", "https://h/?X-Amz-Signature=abc", "--bucket", "b"],
        ["--runpod-volume", "abc", "--datacenter", "x.evil.example#"],  # would send the key elsewhere
        ["--endpoint", "https://h", "--bucket", "../etc"],
    ],
)
def test_cli_add_refuses_incomplete_or_credential_carrying_remotes(
    cli: Any, config_home: Path, args: list[str]
) -> None:
    result = cli("remote", "add", "x", *args)
    assert result.exit_code == 2 and "error:" in result.stderr
    assert "user:pw" not in result.stderr and "Signature=abc" not in result.stderr
    assert not config_home.exists()


def _add(cli: Any, server: S3Server, name: str = "t") -> None:
    result = cli(
        "remote", "add", name, "--endpoint", server.endpoint, "--bucket", server.bucket, "--region", "us-east-1"
    )
    assert result.exit_code == 0, result.stderr


def test_check_reports_what_each_server_really_does(cli: Any, config_home: Path, s3_server: S3Server) -> None:
    _add(cli, s3_server)
    result = cli("remote", "check", "t", "--json", env=s3_server.env())
    assert result.exit_code == 0, result.stderr
    found = {item["name"]: item["ok"] for item in json.loads(result.stdout)["capabilities"]}
    honours_conditional_writes = s3_server.kind == "moto"  # rclone serve s3 ignores If-None-Match
    assert found == {
        "reachable": True,
        "authorised": True,
        "put/get": True,
        "etag = md5": True,
        "user metadata": True,
        "conditional write": honours_conditional_writes,
        "list with delimiter": True,
        "delete": True,
    }
    human = cli("remote", "check", "t", env=s3_server.env())
    assert "conditional write" in human.stdout and s3_server.secret_key not in human.stdout + human.stderr
    if s3_server.folder is not None:  # the probe leaves nothing on the "volume"
        assert list(s3_server.folder.iterdir()) == []


def test_check_refused_credentials_name_the_host(cli: Any, config_home: Path, s3_server: S3Server) -> None:
    if s3_server.kind == "moto":
        pytest.skip("moto accepts any key by default; rclone checks --auth-key")
    _add(cli, s3_server)
    wrong = {"AWS_ACCESS_KEY_ID": s3_server.access_key, "AWS_SECRET_ACCESS_KEY": "wrong-secret-xyz"}
    result = cli("remote", "check", "t", env=wrong)
    assert result.exit_code == 1
    assert "refused the credentials" in result.stderr and "127.0.0.1" in result.stderr and "next:" in result.stderr
    assert "wrong-secret-xyz" not in result.stderr + result.stdout


def test_check_missing_bucket_is_named(cli: Any, config_home: Path, s3_server: S3Server) -> None:
    result = cli("remote", "add", "t", "--endpoint", s3_server.endpoint, "--bucket", "no-such-volume")
    assert result.exit_code == 0
    result = cli("remote", "check", "t", env=s3_server.env())
    assert result.exit_code == 1 and "no-such-volume" in result.stderr


def test_check_unreachable_is_bounded_by_timeout(cli: Any, config_home: Path) -> None:
    import socket
    import time

    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        assert cli("remote", "add", "t", "--endpoint", f"http://127.0.0.1:{port}", "--bucket", "b").exit_code == 0
        started = time.monotonic()
        result = cli(
            "remote", "check", "t", "--timeout", "0.5", env={"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "s"}
        )
        elapsed = time.monotonic() - started
    assert result.exit_code == 1 and f"cannot reach 127.0.0.1:{port}" in result.stderr and "--timeout" in result.stderr
    assert elapsed < 10


def test_check_without_credentials_says_which_variables(cli: Any, config_home: Path) -> None:
    assert cli("remote", "add", "eu", "--endpoint", "http://127.0.0.1:9", "--bucket", "b").exit_code == 0
    result = cli("remote", "check", "eu")
    assert result.exit_code == 1 and "VOLUME_CLI_REMOTE_EU_ACCESS_KEY" in result.stderr


def test_check_without_boto3_asks_for_the_extra(cli: Any, config_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    assert cli("remote", "add", "eu", "--endpoint", "http://127.0.0.1:9", "--bucket", "b").exit_code == 0
    monkeypatch.setitem(sys.modules, "boto3", None)
    result = cli("remote", "check", "eu", env={"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "s"})
    assert result.exit_code == 1 and "volume-cli[s3]" in result.stderr


def test_check_unknown_remote(cli: Any, config_home: Path) -> None:
    result = cli("remote", "check", "nope")
    assert result.exit_code == 1 and "remote list" in result.stderr


def test_per_remote_key_wins_over_aws_variables(cli: Any, config_home: Path, s3_server: S3Server) -> None:
    _add(cli, s3_server, name="eu")
    env = {
        "AWS_ACCESS_KEY_ID": "wrong-access",
        "AWS_SECRET_ACCESS_KEY": "wrong-secret",
        "VOLUME_CLI_REMOTE_EU_ACCESS_KEY": s3_server.access_key,
        "VOLUME_CLI_REMOTE_EU_SECRET_KEY": s3_server.secret_key,
    }
    result = cli("remote", "check", "eu", "--json", env=env)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["credentials"].startswith("env: VOLUME_CLI_REMOTE_EU_ACCESS_KEY")


def test_aws_profile_is_read_from_the_shared_credentials_file(
    cli: Any, config_home: Path, tmp_path: Path, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = tmp_path / "aws-credentials"
    credentials.write_text(
        f"[volcli]\naws_access_key_id = {s3_server.access_key}\naws_secret_access_key = {s3_server.secret_key}\n"
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    args = ["--endpoint", s3_server.endpoint, "--bucket", s3_server.bucket, "--region", "us-east-1"]
    assert cli("remote", "add", "p", *args, "--profile", "volcli").exit_code == 0
    result = cli("remote", "check", "p", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["credentials"] == "profile: volcli"
    assert s3_server.secret_key not in config_home.read_text() + result.stdout


def test_no_optional_checksum_headers_are_sent(
    config_home: Path, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """boto3 >= 1.36 adds CRC checksum headers by default; RunPod-like servers reject them."""
    from volume_cli.remote import check

    sent: list[dict[str, str]] = []
    real = check.make_client

    def recording(*args: Any, **kwargs: Any) -> Any:
        client = real(*args, **kwargs)
        client.meta.events.register("before-send.s3", lambda request, **_: sent.append(dict(request.headers)))
        return client

    monkeypatch.setattr(check, "make_client", recording)
    remote = Remote(name="t", endpoint=s3_server.endpoint, bucket=s3_server.bucket, region="us-east-1")
    check.check_remote(remote, environ=s3_server.env(), timeout=5)
    assert len(sent) >= 8
    names = {name.lower() for headers in sent for name in headers}
    assert not {name for name in names if name.startswith("x-amz-checksum") or name == "x-amz-sdk-checksum-algorithm"}


@pytest.mark.parametrize(
    ("volume_id", "datacenter"),
    [
        ("abc123", "x.evil.example#"),  # would send the key to s3api-x.evil.example
        ("abc123", "evil.example/"),
        ("abc123", "EU RO 1"),
        ("abc123", ""),
        ("abc123", "EU-RO-1?x=1"),
        ("a/b", "EU-RO-1"),
        ("../x", "EU-RO-1"),
        ("abc 123", "EU-RO-1"),
        ("", "EU-RO-1"),
    ],
)
def test_hostile_runpod_ids_are_refused(volume_id: str, datacenter: str) -> None:
    with pytest.raises(ValueError):
        runpod_remote("rp", volume_id=volume_id, datacenter=datacenter)


@pytest.mark.parametrize("bucket", ["a/b", "a b", "..", "x\n", "b?x=1"])
def test_hostile_bucket_names_are_refused(bucket: str) -> None:
    with pytest.raises(ValueError):
        Remote(name="x", endpoint="http://127.0.0.1:9000", bucket=bucket)


@pytest.mark.parametrize("endpoint", ["https://h#frag", "https://", "http:///path", "https://h\n.example"])
def test_hostile_endpoints_are_refused(endpoint: str) -> None:
    with pytest.raises(ValueError):
        Remote(name="x", endpoint=endpoint, bucket="b")


def test_rclone_bucket_is_a_folder_on_disk(config_home: Path, s3_server: S3Server) -> None:
    """Later steps look at the "mounted volume" directly: an object a/b is the file BUCKET/a/b."""
    if s3_server.folder is None:
        pytest.skip("moto keeps objects in memory")
    client = s3_server.client()
    client.put_object(Bucket=s3_server.bucket, Key="fixture-check/a/b.txt", Body=b"hello")
    try:
        assert (s3_server.folder / "fixture-check" / "a" / "b.txt").read_bytes() == b"hello"
    finally:
        client.delete_object(Bucket=s3_server.bucket, Key="fixture-check/a/b.txt")


def test_kill_9_while_saving_keeps_the_old_remotes(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "remotes.json"
    add_remote(path, Remote(name="old", endpoint="http://127.0.0.1:9000", bucket="b"))
    before = path.read_text()
    script = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from volume_cli.remote.config import Remote, add_remote\n"
        "os.replace = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)\n"
        "add_remote(Path(sys.argv[1]), Remote(name='new', endpoint='http://127.0.0.1:9001', bucket='c'))\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, timeout=60)
    assert done.returncode == -9, done.stderr
    assert path.read_text() == before
    add_remote(path, Remote(name="new", endpoint="http://127.0.0.1:9001", bucket="c"))  # the rerun converges
    assert sorted(load_remotes(path).remotes) == ["new", "old"]
