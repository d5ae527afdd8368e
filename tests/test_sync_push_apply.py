"""sync push / apply / status against real S3 servers on loopback (issue 12, items 3-5).

Every test runs against moto (full S3) and rclone (bucket = folder, metadata in memory only). A volume
"mounted on a pod" is the rclone bucket's folder itself; for moto it is a folder the bucket is copied into.
The source volume is built once per module with the real CLI (uv, the fake hub).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.fakehub.server import FakeHub
from tests.helpers import MODEL_FILES, PY, STORY_MODELS, Volume, story_env, volume_cli_command
from tests.s3quirks import quirks_proxy
from tests.wheelfactory import IndexServer, build_wheel
from volume_cli.deps.forest import current_generation
from volume_cli.errors import RemoteUnavailableError, SyncManifestError, VolumeFullError
from volume_cli.layout import VolumeLayout
from volume_cli.progress import NullProgress
from volume_cli.remote.config import Remote, add_remote
from volume_cli.sync.apply import apply_pending
from volume_cli.sync.manifest import build_manifest, decode_manifest, encode_manifest, manifest_key
from volume_cli.sync.push import PushResult, TransferSettings, push
from volume_cli.sync.status import sync_status

if TYPE_CHECKING:
    from tests.s3servers import S3Server

pytest_plugins = ["tests.s3servers"]

MiB = 1 << 20
BIG = bytes(range(256)) * (11 * MiB // 256)  # three 5 MiB parts with a small multipart threshold
SMALL_PARTS = TransferSettings(multipart_threshold=5 * MiB, part_size=5 * MiB, workers=4, backoff=0.05)


@dataclass
class Source:
    volume: Volume
    layout: VolumeLayout
    alpha: str  # the version of alpha the source's current generation has

    @property
    def generation(self) -> str:
        found = current_generation(self.layout, "story", PY)
        assert found is not None
        return found


def _script_wheel(folder: Path) -> None:
    # a console script (bin/, mode 0755 on the source) so the test sees S3 lose and apply restore a mode
    build_wheel(
        folder,
        "tool",
        "1.0",
        files={
            "tool/__init__.py": "VERSION = '1.0'\n",
            "tool-1.0.data/scripts/tool-run": "#!python\nprint('tool')\n",
        },
    )


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Source]:
    tmp = tmp_path_factory.mktemp("sync-source")
    wheels = tmp / "wheels"
    for name, version in [("alpha", "1.0"), ("alpha", "2.0"), ("beta", "1.0")]:
        build_wheel(wheels, name, version, requires=["beta>=1"] if name == "alpha" else [])
    _script_wheel(wheels)
    root, projects = tmp / "workspace", tmp / "projects"
    root.mkdir()
    projects.mkdir()
    with IndexServer(wheels) as index, FakeHub() as hub:
        hub.add_hf_repo("story-org/tiny", MODEL_FILES)
        env = story_env(tmp, index_url=index.url, hub_url=hub.url)
        volume = Volume(root=root, projects=projects, env=env, hub=hub, index=index)
        folder = volume.write_project("story", {"main": ["alpha==1.0", "tool"]}, models=STORY_MODELS)
        (folder / "weights").mkdir()
        (folder / "weights" / "big.bin").write_bytes(BIG)
        volume.run("setup", "--project", "story")
        yield Source(volume, VolumeLayout(root), "1.0")


def _change_one_requirement(source: Source) -> str:
    """alpha 1.0 <-> 2.0 on the source: one requirement changed, a new generation."""
    before = source.generation
    source.alpha = "2.0" if source.alpha == "1.0" else "1.0"
    source.volume.write_project("story", {"main": [f"alpha=={source.alpha}", "tool"]}, models=STORY_MODELS)
    source.volume.run("deps", "install", "--project", "story")
    assert source.generation != before
    return source.generation


@dataclass
class Target:
    remote: Remote
    server: S3Server

    @property
    def env(self) -> dict[str, str]:
        return self.server.env()

    def client(self) -> object:
        return self.server.client()

    def mounted(self, tmp_path: Path) -> Path:
        """The volume as a pod sees it: rclone's bucket folder, or moto's bucket copied into a folder."""
        if self.server.folder is not None:
            return self.server.folder.parent / self.remote.bucket
        folder = tmp_path / f"mounted-{self.remote.bucket}"
        client = self.client()
        token: dict[str, str] = {}
        while True:
            page = client.list_objects_v2(Bucket=self.remote.bucket, **token)  # type: ignore[attr-defined]
            for item in page.get("Contents", []):
                path = folder / item["Key"]
                if not path.exists() or path.stat().st_size != item["Size"]:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    client.download_file(self.remote.bucket, item["Key"], str(path))  # type: ignore[attr-defined]
            if not page.get("IsTruncated"):
                return folder
            token = {"ContinuationToken": page["NextContinuationToken"]}


_BUCKETS = iter(range(10_000))


@pytest.fixture
def targets(s3_server: S3Server) -> list[Target]:
    """Two fresh volumes (buckets) on the server."""
    found = []
    for _ in range(2):
        bucket = f"vol{os.getpid()}x{next(_BUCKETS)}"
        client = s3_server.client()
        client.create_bucket(Bucket=bucket)
        found.append(Target(Remote(name=f"r{len(found)}", endpoint=s3_server.endpoint, bucket=bucket), s3_server))
    return found


def _push(source: Source, targets: list[Target], tmp_path: Path, *, dry_run: bool = False) -> PushResult:
    return push(
        layout=source.layout,
        project="story",
        python_version=PY,
        remotes=[target.remote for target in targets],
        environ=targets[0].env,
        journal_dir=tmp_path / "journal",
        dry_run=dry_run,
        progress=NullProgress(),
        settings=SMALL_PARTS,
    )


def _apply(root: Path, **options: object) -> object:
    return apply_pending(
        layout=VolumeLayout(root),
        project="story",
        deep=bool(options.get("deep")),
        wait_seconds=30,
        progress=NullProgress(),
    )


def _modes(root: Path, entries: list[str]) -> dict[str, int]:
    found = {}
    for entry in entries:
        for folder, _, names in os.walk(root / "python-deps" / ".store" / entry):
            for name in names:
                path = Path(folder) / name
                found[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def _stale_bytecode(root: Path, entries: list[str]) -> list[str]:
    """Timestamp-based .pyc files whose source's mtime or size no longer match (Python would ignore them)."""
    stale = []
    for entry in entries:
        for pyc in (root / "python-deps" / ".store" / entry).rglob("__pycache__/*.pyc"):
            header = pyc.read_bytes()[:16]
            source = pyc.parent.parent / (pyc.name.split(".")[0] + ".py")
            if int.from_bytes(header[4:8], "little") != 0 or not source.is_file():
                continue  # hash-based: valid after any copy
            mtime, size = int.from_bytes(header[8:12], "little"), int.from_bytes(header[12:16], "little")
            if (mtime, size) != (int(source.stat().st_mtime) & 0xFFFFFFFF, source.stat().st_size):
                stale.append(str(pyc.relative_to(root)))
    return stale


def test_push_then_apply_serves_a_fresh_worker_on_two_volumes(
    source: Source, targets: list[Target], tmp_path: Path
) -> None:
    plan = _push(source, targets, tmp_path, dry_run=True)
    assert [volume.plan.status for volume in plan.volumes] == ["missing", "missing"]
    assert all(volume.files_uploaded == 0 for volume in plan.volumes)
    result = _push(source, targets, tmp_path)
    manifest = build_manifest(source.layout, "story", PY)
    for volume in result.volumes:
        assert volume.files_uploaded == len(manifest.files) and volume.parts_uploaded == 3
    again = _push(source, targets, tmp_path)
    assert [volume.plan.status for volume in again.volumes] == ["pushed", "pushed"]
    for target in targets:
        root = target.mounted(tmp_path)
        applied = _apply(root)
        assert applied.generation == source.generation and applied.switched  # type: ignore[attr-defined]
        assert _modes(root, manifest.entries) == _modes(source.layout.root, manifest.entries)
        assert _stale_bytecode(root, manifest.entries) == []
        _worker_imports_and_loads_offline(source, root)
    status = sync_status(
        layout=source.layout,
        project="story",
        python_version=PY,
        remotes=[t.remote for t in targets],
        environ=targets[0].env,
        timeout=10,
    )
    if targets[0].server.folder is not None:  # rclone: apply wrote into the bucket itself
        assert [(v.applied, v.pending, v.in_step) for v in status.volumes] == [(source.generation, (), True)] * 2
    else:  # moto: the copy was applied, the bucket still holds the pending manifest
        assert [v.pending for v in status.volumes] == [(source.generation,)] * 2


def _worker_imports_and_loads_offline(source: Source, root: Path) -> None:
    env_lines = source.volume.run("env", "--project", "story", "--root", str(root), "--format", "json").stdout
    worker_env = {"PATH": os.environ["PATH"], **json.loads(env_lines)}
    assert worker_env["HF_HUB_OFFLINE"] == "1"
    code = (
        "import alpha, tool, json; from huggingface_hub import snapshot_download;"
        "path = snapshot_download('story-org/tiny');"
        "print(json.dumps([alpha.VERSION, open(path + '/config.json').read(), path]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd="/", env=worker_env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    version, config, path = json.loads(done.stdout)
    assert version == source.alpha and json.loads(config)["model_type"] == "story" and path.startswith(str(root))


def test_one_changed_requirement_uploads_one_entry_and_gc_spares_it(
    source: Source, targets: list[Target], tmp_path: Path
) -> None:
    target = targets[0]
    first = source.generation
    _push(source, [target], tmp_path)
    _apply(target.mounted(tmp_path))
    second = _change_one_requirement(source)
    result = _push(source, [target], tmp_path)
    (volume,) = result.volumes
    assert len(volume.plan.missing_entries) == 1 and volume.plan.missing_entries[0].startswith(f"alpha-{source.alpha}")
    uploaded = {item.path for item in volume.plan.uploads if not item.staged}
    assert {path.split("/")[2] for path in uploaded if path.startswith("python-deps/")} == {
        volume.plan.missing_entries[0]
    }
    if target.server.folder is not None:  # rclone: the first apply wrote the model records into the bucket
        assert not [path for path in uploaded if path.startswith("models/")]  # the volume's model records say so
    root = target.mounted(tmp_path)
    # before apply: the volume still serves the first generation, doctor says a push is pending, gc keeps its entry
    assert current_generation(VolumeLayout(root), "story", PY) == first
    doctor = source.volume.run("doctor", "--project", "story", "--root", str(root), check=False)
    # (moto's copy also brings back the first push's manifest, which the bucket itself still holds)
    (pending,) = [line for line in doctor.stdout.splitlines() if line.startswith("pending  ")]
    assert doctor.returncode == 0 and second in pending and "not applied yet" in pending, doctor
    source.volume.run("gc", "--root", str(root), "--grace-hours", "0", "--yes")
    assert (root / "python-deps" / ".store" / volume.plan.missing_entries[0]).is_dir()
    applied = _apply(root)
    assert applied.generation == second and applied.previous_generation == first  # type: ignore[attr-defined]
    rolled = source.volume.run("deps", "rollback", "--project", "story", "--root", str(root))
    assert first in rolled.stdout


def test_a_bad_manifest_is_refused_and_a_missing_one_ignored(
    source: Source, targets: list[Target], tmp_path: Path
) -> None:
    target = targets[0]
    root = target.mounted(tmp_path)
    nothing = _apply(root)
    assert nothing.generation is None  # type: ignore[attr-defined]
    _push(source, [target], tmp_path)
    root = target.mounted(tmp_path)
    generation = current_generation(source.layout, "story", PY)
    assert generation is not None
    pending = root / manifest_key("story", generation)
    good = pending.read_bytes()
    pending.write_bytes(good.replace(b'"size": 1', b'"size": 2', 1))
    with pytest.raises(SyncManifestError, match="checksum"):
        _apply(root)
    pending.write_bytes(good[: len(good) // 2])
    with pytest.raises(SyncManifestError, match="unreadable"):
        _apply(root)
    assert current_generation(VolumeLayout(root), "story", PY) is None
    assert decode_manifest(good, source="x") == decode_manifest(
        encode_manifest(decode_manifest(good, source="x")), source="y"
    )


def test_two_applies_at_once_build_one_generation(source: Source, targets: list[Target], tmp_path: Path) -> None:
    target = targets[0]
    _push(source, [target], tmp_path)
    root = target.mounted(tmp_path)
    results: list[object] = []
    threads = [threading.Thread(target=lambda: results.append(_apply(root))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    switched = [result for result in results if result.switched]  # type: ignore[attr-defined]
    assert len(results) == 2 and len(switched) == 1
    generations = [p.name for p in (root / "python-deps" / f"py{PY}" / ".generations" / "story").iterdir()]
    assert generations == [current_generation(source.layout, "story", PY)]


def test_a_killed_push_resumes_its_multipart_upload(source: Source, targets: list[Target], tmp_path: Path) -> None:
    target = targets[0]
    config = tmp_path / "config"
    add_remote(config / "volume-cli" / "remotes.json", target.remote)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "VOLUME_CLI_"))},
        **target.env,
        "XDG_CONFIG_HOME": str(config),
        "XDG_STATE_HOME": str(tmp_path / "state"),
    }
    argv = [*volume_cli_command(), "sync", "push", "--project", "story", "--to", target.remote.name]
    argv += ["--root", str(source.layout.root), "--multipart-threshold", "5", "--part-size", "5", "--json"]
    killed = subprocess.run(
        argv, env={**env, "VOLUME_CLI_TEST_CRASH_AT": "sync-part-uploaded"}, capture_output=True, text=True, timeout=120
    )
    assert killed.returncode == -9, killed.stderr
    generation = current_generation(source.layout, "story", PY)
    assert generation is not None
    assert not (target.mounted(tmp_path) / manifest_key("story", generation)).exists()  # nothing to apply yet
    rerun = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    (volume,) = json.loads(rerun.stdout)["volumes"]
    assert volume["parts_reused"] == 1 and volume["parts_uploaded"] == 2
    # the small files went before the killed multipart upload: only it, the entries' markers and the records are left
    left = [path for path in volume["plan"]["uploads"] if not path.endswith(".volume-cli-entry.json")]
    assert left == ["models/story/local-weights/big.bin"] or all(
        path == "models/story/local-weights/big.bin" or path.startswith(".metadata/") for path in left
    ), left
    assert _apply(target.mounted(tmp_path)).switched  # type: ignore[attr-defined]


# --- RunPod's known quirks, through tests/s3quirks.py ---


def test_runpod_quirks_break_neither_push_nor_status(source: Source, targets: list[Target], tmp_path: Path) -> None:
    target = targets[0]
    with quirks_proxy(target.server.endpoint) as proxy:
        proxied = Target(target.remote.model_copy(update={"endpoint": proxy.url}), target.server)
        proxy.fail("PUT", "python-deps/.store/", 502)
        proxy.fail("PUT", "python-deps/.store/", 524, times=2)
        proxy.fail("HEAD", "/", 524)
        proxy.fail("PUT", "partNumber=2", 524)
        proxy.drop_complete = True
        proxy.repeat_token = True
        (volume,) = _push(source, [proxied], tmp_path).volumes
        generation = current_generation(source.layout, "story", PY)
        status = sync_status(
            layout=source.layout,
            project="story",
            python_version=PY,
            remotes=[proxied.remote],
            environ=target.env,
            timeout=10,
        )
        assert status.volumes[0].pending == (generation,)  # the repeated token did not loop
        assert proxy.count("POST", "uploadId=") >= 1 and any(status == 524 for _, _, status in proxy.requests)
    assert volume.parts_uploaded == 3 and volume.requests > volume.files_uploaded
    root = target.mounted(tmp_path)
    assert _apply(root).switched  # type: ignore[attr-defined]
    assert (root / "models" / "story" / "local-weights" / "big.bin").read_bytes() == BIG


def test_a_full_volume_is_a_clear_error(source: Source, targets: list[Target], tmp_path: Path) -> None:
    target = targets[0]
    with quirks_proxy(target.server.endpoint) as proxy:
        proxy.fail("PUT", "/", 507, times=1000)
        proxied = Target(target.remote.model_copy(update={"endpoint": proxy.url}), target.server)
        with pytest.raises(VolumeFullError, match="full"):
            _push(source, [proxied], tmp_path)
    assert not (target.mounted(tmp_path) / manifest_key("story", "x")).parent.is_dir() or not any(
        path.suffix == ".json" for path in (target.mounted(tmp_path) / manifest_key("story", "x")).parent.iterdir()
    )


def test_a_volume_that_refuses_is_one_clear_error(source: Source, targets: list[Target], tmp_path: Path) -> None:
    missing = Target(targets[0].remote.model_copy(update={"bucket": "no-such-volume"}), targets[0].server)
    with pytest.raises(RemoteUnavailableError, match="no-such-volume"):
        _push(source, [missing], tmp_path)


def test_an_apply_killed_anywhere_keeps_the_old_generation_and_the_next_converges(
    source: Source, targets: list[Target], tmp_path: Path
) -> None:
    target = targets[0]
    _push(source, [target], tmp_path)
    root = target.mounted(tmp_path)
    argv = [*volume_cli_command(), "sync", "apply", "--project", "story", "--root", str(root)]
    for point in ("sync-forest-built", "sync-switched"):
        killed = subprocess.run(
            argv, env={**os.environ, "VOLUME_CLI_TEST_CRASH_AT": point}, capture_output=True, text=True, timeout=120
        )
        assert killed.returncode == -9, killed.stderr
        assert current_generation(VolumeLayout(root), "story", PY) in {None, source.generation}
    done = subprocess.run([*argv, "--json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    state = json.loads((root / ".metadata" / "projects" / "story" / "state.json").read_text())
    assert state["deps"]["generation"] == source.generation == current_generation(VolumeLayout(root), "story", PY)
    assert not (root / manifest_key("story", source.generation)).exists()  # the pending record is cleared
