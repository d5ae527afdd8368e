"""``sync push`` of the 44-wheel set to a loopback S3 server: time and requests, full and one leaf.

Run by hand from a source checkout (CI never runs it)::

    .venv/bin/python bench/push_bench.py [--server rclone|moto] [--work DIR]

It installs the full wheel set of bench/wheelsets.py into a build folder (``deps install --root``,
from a local index of the wheelhouse), pushes it to an empty bucket, changes one leaf (tqdm),
installs and pushes again, then pushes once more with nothing to do (then twice more with the local digest
cache and twice without it, alternating). The request counts are what
``sync push --json`` reports; a real endpoint adds a network round trip to each of them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from wheelsets import FULL, ensure_wheelhouse, make_project  # noqa: E402

from tests.s3servers import ACCESS_KEY, SECRET_KEY, _start_moto, _start_rclone, _stop  # noqa: E402
from tests.wheelfactory import IndexServer  # noqa: E402

PROJECT = "pushbench"
REMOTE = "bench"


def volume_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "volume_cli", *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(args[:2])} failed:\n{done.stderr[-2000:]}")
    return done


def push(env: dict[str, str], build: Path) -> tuple[float, dict[str, Any]]:
    started = time.monotonic()
    done = volume_cli("sync", "push", "--project", PROJECT, "--to", REMOTE, "--root", str(build), "--json", env=env)
    return time.monotonic() - started, json.loads(done.stdout)


def summary(result: dict[str, Any]) -> str:
    volume = result["volumes"][0]
    return (
        f"{volume['files_uploaded']} files, {volume['bytes_uploaded'] / 1e6:.1f} MB uploaded, "
        f"{volume['requests']} requests (manifest: {result['manifest_files']} files)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", choices=("rclone", "moto"), default="rclone")
    parser.add_argument("--work", type=Path, default=None)
    options = parser.parse_args()
    work = options.work or Path(tempfile.mkdtemp(prefix="volume-cli-push-bench-"))
    wheelhouse = ensure_wheelhouse(Path.home() / ".cache" / "volume-cli-bench" / "wheelhouse")
    projects, build = work / "projects", work / "build"
    build.mkdir(parents=True, exist_ok=True)
    env = dict(
        os.environ,
        UV_PYTHON_DOWNLOADS="never",
        VOLUME_CLI_UV_CACHE=str(work / "uv-cache"),
        XDG_CONFIG_HOME=str(work / "config"),
        XDG_STATE_HOME=str(work / "state"),
        AWS_ACCESS_KEY_ID=ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
    )
    server = (_start_rclone if options.server == "rclone" else _start_moto)(work)
    rows: list[tuple[str, float, str]] = []
    try:
        with IndexServer(wheelhouse) as index:
            common = ["--project", PROJECT, "--root", str(build), "--projects-dir", str(projects)]
            install = ["deps", "install", *common, "--index-url", index.url]
            volume_cli("remote", "add", REMOTE, "--endpoint", server.endpoint, "--bucket", server.bucket, env=env)
            make_project(projects / PROJECT, FULL.requirements("full install"))
            volume_cli(*install, env=env)
            seconds, result = push(env, build)
            rows.append(("full push, empty volume", seconds, summary(result)))
            make_project(projects / PROJECT, FULL.requirements("one leaf upgraded"))
            volume_cli(*install, env=env)
            seconds, result = push(env, build)
            rows.append(("one leaf changed (tqdm)", seconds, summary(result)))
            seconds, result = push(env, build)
            rows.append(("again, nothing to do", seconds, summary(result)))
            # Interleaved: nothing to do with the digests of the last push, and without them (every file
            # hashed again, as before the digest cache).
            for turn in (1, 2):
                for digests in ("kept", "dropped"):
                    if digests == "dropped":
                        for cache in (work / "state" / "volume-cli" / "sync").glob("digests-*.json"):
                            cache.unlink()
                    seconds, result = push(env, build)
                    rows.append((f"nothing to do, digests {digests} ({turn})", seconds, summary(result)))
    finally:
        _stop(server)
    print(f"\n| push of the 44-wheel set to {options.server} on loopback | time | what the push reports |")
    print("| --- | --- | --- |")
    for label, seconds, text in rows:
        print(f"| {label} | {seconds:.1f} s | {text} |")
    if options.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
