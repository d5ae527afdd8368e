"""A worker's first activation applies a pushed generation (issue 12, item 4), with a bare Python.

The volume is built once per module: generation A pushed to an rclone bucket (bucket = folder) and
applied by the CLI, then the source changes one requirement and pushes generation B, which stays
pending. Each test works on its own copy of that folder (links kept), as a worker mounting it sees it.
The worker is the base interpreter, without volume-cli or pydantic: only what ``env`` prints, or the
runtime copy's ``activate()``, both standard library only.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import PY, volume_cli_command
from tests.netvol.fixture import netvol  # noqa: F401 (fixture)
from tests.netvol.mount import NetVol
from tests.test_sync_push_apply import (  # noqa: F401 (fixtures)
    Source,
    Target,
    _change_one_requirement,
    _modes,
    _push,
    source,
)
from volume_cli import pushed_apply
from volume_cli.deps.documents import GenerationRecord, InstallIntent, generation_record_path
from volume_cli.deps.forest import current_generation
from volume_cli.errors import LockHeldError
from volume_cli.flows.sync import apply_pushed
from volume_cli.layout import VolumeLayout
from volume_cli.progress import NullProgress
from volume_cli.remote.config import Remote
from volume_cli.store.documents import read_document
from volume_cli.store.lock import LeaseLock, LockRecord, lock_path
from volume_cli.store.state import read_project_state
from volume_cli.store.writer_locks import project_lock
from volume_cli.sync.manifest import manifest_key

BARE_PYTHON = Path(sys.base_prefix) / "bin" / "python3"
WORKER_CODE = "import alpha, tool; print(alpha.VERSION)"


def _bare_python() -> str:
    found = subprocess.run(
        [str(BARE_PYTHON), "-c", "import volume_cli"],
        cwd="/",
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        timeout=30,
    )
    if not BARE_PYTHON.is_file() or found.returncode == 0:
        pytest.skip(f"no Python {PY} without volume-cli at {BARE_PYTHON}")
    return str(BARE_PYTHON)


@dataclass
class Pushed:
    """A volume serving generation A (old_alpha) with generation B (new_alpha) pushed, not applied."""

    folder: Path
    old: str
    new: str
    old_alpha: str
    new_alpha: str
    source: Source
    fresh: Path  # a volume no pod ever touched: generation B pushed, nothing applied, no boot written there
    env: dict[str, str] = field(default_factory=dict)  # what `env` prints for ``folder``


@pytest.fixture(scope="module")
def pushed(source: Source, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pushed]:  # noqa: F811
    from tests.s3servers import _start_rclone, _stop

    tmp = tmp_path_factory.mktemp("worker-apply")
    server = _start_rclone(tmp)
    try:
        server.client().create_bucket(Bucket="vol")
        target = Target(Remote(name="r0", endpoint=server.endpoint, bucket="vol"), server)
        old, old_alpha = source.generation, source.alpha
        _push(source, [target], tmp)
        folder = target.mounted(tmp)
        # the flow, as `sync apply` runs it: it also writes the runtime copy activate() is run from
        applied = apply_pushed(
            layout=VolumeLayout(folder), project="story", deep=False, wait_seconds=30, progress=NullProgress()
        )
        assert applied.switched
        new = _change_one_requirement(source)
        server.client().create_bucket(Bucket="fresh")
        fresh = Target(Remote(name="r1", endpoint=server.endpoint, bucket="fresh"), server)
        _push(source, [target, fresh], tmp)
        yield Pushed(folder, old, new, old_alpha, source.alpha, source, fresh.mounted(tmp))
    finally:
        _stop(server)


@pytest.fixture
def volume(pushed: Pushed, tmp_path: Path) -> Path:
    root = tmp_path / "volume"
    shutil.copytree(pushed.folder, root, symlinks=True)
    assert current_generation(VolumeLayout(root), "story", PY) == pushed.old
    assert (root / manifest_key("story", pushed.new)).is_file()
    return root


def _env(pushed: Pushed, root: Path, local_cache: Path | None = None) -> dict[str, str]:
    """What ``env`` prints for ``root``, plus a local cache of the test's own (never /tmp/volume-cli-cache).

    ``env`` runs once per module, on the folder every test's volume is copied from: its paths moved to
    ``root`` are what it prints there (a second of CLI start-up less per worker).
    """
    if not pushed.env:
        lines = pushed.source.volume.run("env", "--project", "story", "--root", str(pushed.folder), "--format", "json")
        pushed.env.update(json.loads(lines.stdout))
    moved = {name: value.replace(str(pushed.folder), str(root)) for name, value in pushed.env.items()}
    cache = local_cache or root.parent / "local-cache"
    return {"PATH": os.environ["PATH"], **moved, "VOLUME_CLI_LOCAL_CACHE": str(cache)}


def _worker(environment: dict[str, str], code: str = WORKER_CODE) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [_bare_python(), "-c", code],
        cwd="/",
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _run_worker(environment: dict[str, str], code: str = WORKER_CODE) -> subprocess.CompletedProcess[str]:
    process = _worker(environment, code)
    out, err = process.communicate(timeout=120)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def _assert_applied(pushed: Pushed, root: Path, *, cli_agrees: bool = False) -> None:
    """The documents the CLI writes, read back with its models; with ``cli_agrees``, status and doctor too."""
    layout = VolumeLayout(root)
    assert current_generation(layout, "story", PY) == pushed.new
    state = read_project_state(layout, "story")
    assert state is not None and state.deps is not None and state.models is not None
    assert (state.deps.generation, state.deps.previous_generation) == (pushed.new, pushed.old)
    record = read_document(generation_record_path(layout, "story", pushed.new), GenerationRecord)
    assert record is not None and state.deps.package_count == len(record.entries)
    assert state.deps.size_bytes == record.size_bytes
    assert read_document(layout.project_state_dir("story") / "install-intent.json", InstallIntent) is None
    assert not (root / manifest_key("story", pushed.new)).exists()
    assert not (root / ".metadata" / "projects" / "story" / "pushed" / pushed.new).exists()
    entries = [entry.entry for entry in record.entries]
    assert _modes(root, entries) == _modes(pushed.source.layout.root, entries)
    if not cli_agrees:
        return  # two CLI starts: checked where the worker wrote the records itself (first start, after a kill)
    run = pushed.source.volume.run
    status = json.loads(run("status", "--project", "story", "--root", str(root), "--json").stdout)
    assert pushed.new in json.dumps(status)
    doctor = run("doctor", "--project", "story", "--root", str(root), check=False)
    assert doctor.returncode == 0 and "pending" not in doctor.stdout, doctor.stdout + doctor.stderr


def test_a_bare_worker_started_with_env_applies_the_pushed_generation(pushed: Pushed, volume: Path) -> None:
    done = _run_worker(_env(pushed, volume))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == pushed.new_alpha
    assert done.stderr == f"volume-cli: applied the pushed generation {pushed.new} of story\n"
    _assert_applied(pushed, volume, cli_agrees=True)
    again = _run_worker(_env(pushed, volume))  # nothing pending any more: a quiet start
    assert (again.stdout.strip(), again.stderr) == (pushed.new_alpha, "")


def test_a_bare_worker_calling_activate_applies_the_pushed_generation(pushed: Pushed, volume: Path) -> None:
    runtime = volume / ".metadata" / "runtime" / "volume_cli_runtime.py"
    assert (runtime.parent / "volume_cli_pushed_apply.py").is_file()
    code = (
        f"import runpy; runpy.run_path({str(runtime)!r})['activate']('story', {str(volume)!r});"
        "import alpha; print(alpha.VERSION)"
    )
    done = _run_worker({"PATH": os.environ["PATH"], "VOLUME_CLI_LOCAL_CACHE": str(volume.parent / "local-cache")}, code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == pushed.new_alpha and "applied the pushed generation" in done.stderr
    _assert_applied(pushed, volume)


def test_the_first_worker_on_a_volume_no_pod_touched_applies_the_push(pushed: Pushed, tmp_path: Path) -> None:
    root = tmp_path / "fresh"
    shutil.copytree(pushed.fresh, root, symlinks=True)
    assert current_generation(VolumeLayout(root), "story", PY) is None
    # `env` run where the project was built, for the volume as workers mount it: nothing written there
    lines = pushed.source.volume.run("env", "--project", "story", "--mount", str(root), "--format", "json").stdout
    environment = {"PATH": os.environ["PATH"], **json.loads(lines), "VOLUME_CLI_LOCAL_CACHE": str(tmp_path / "cache")}
    done = _run_worker(environment)
    assert (done.returncode, done.stdout.strip()) == (0, pushed.new_alpha), done.stderr
    assert current_generation(VolumeLayout(root), "story", PY) == pushed.new
    state = read_project_state(VolumeLayout(root), "story")
    assert state is not None and state.deps is not None and state.models is not None
    assert (state.deps.generation, state.deps.previous_generation) == (pushed.new, None)
    doctor = pushed.source.volume.run("doctor", "--project", "story", "--root", str(root), check=False)
    assert doctor.returncode == 0 and "pending" not in doctor.stdout, doctor.stdout + doctor.stderr
    runtime = root / ".metadata" / "runtime" / "volume_cli_runtime.py"  # activate() has its copy there too
    code = f"import runpy; runpy.run_path({str(runtime)!r})['activate']('story', {str(root)!r}); import alpha"
    assert _run_worker(environment, code).returncode == 0


def test_apply_on_start_turned_off_keeps_the_old_generation(pushed: Pushed, volume: Path) -> None:
    done = _run_worker({**_env(pushed, volume), pushed_apply.APPLY_ENV: "0"})
    assert (done.returncode, done.stdout.strip(), done.stderr) == (0, pushed.old_alpha, "")
    assert current_generation(VolumeLayout(volume), "story", PY) == pushed.old
    assert (volume / manifest_key("story", pushed.new)).is_file()


def test_several_workers_at_once_build_one_generation(pushed: Pushed, volume: Path) -> None:
    environment = {**_env(pushed, volume), pushed_apply.WAIT_ENV: "60"}
    workers = [_worker(environment) for _ in range(4)]
    results = [worker.communicate(timeout=120) for worker in workers]
    assert all(worker.returncode == 0 for worker in workers), results
    assert [out.strip() for out, _ in results] == [pushed.new_alpha] * 4
    assert sum("applied the pushed generation" in err for _, err in results) == 1
    generations = volume / "python-deps" / f"py{PY}" / ".generations" / "story"
    assert sorted(path.name for path in generations.iterdir()) == sorted([pushed.old, pushed.new])
    _assert_applied(pushed, volume)


def test_a_worker_finding_the_lease_held_serves_the_old_generation(pushed: Pushed, volume: Path) -> None:
    layout = VolumeLayout(volume)
    with project_lock(layout, "story", command="sync apply", wait_seconds=0, progress=NullProgress()):
        done = _run_worker({**_env(pushed, volume), pushed_apply.WAIT_ENV: "0.5"})
    assert (done.returncode, done.stdout.strip()) == (0, pushed.old_alpha), done.stderr
    assert done.stderr.count("\n") == 1 and "'sync apply'" in done.stderr and "holds its lock" in done.stderr
    assert current_generation(layout, "story", PY) == pushed.old
    later = _run_worker(_env(pushed, volume))  # the lease released: the next worker applies
    assert later.stdout.strip() == pushed.new_alpha, later.stderr


def test_the_worker_lease_and_the_cli_lease_exclude_each_other(tmp_path: Path) -> None:
    locks = tmp_path / "volume" / ".metadata" / "locks"
    worker = pushed_apply.VolumeLease(str(locks / "story.lock"), command="worker apply story", wait_seconds=0)
    assert worker.acquire()
    try:
        record = read_document(lock_path(locks, "story"), LockRecord)
        assert record is not None and record.owner_id == worker.owner_id and record.lease_seconds == 60
        with pytest.raises(LockHeldError, match="worker apply story"):
            LeaseLock(lock_path(locks, "story"), command="sync apply").acquire()
        worker.ensure_held()
    finally:
        worker.release()
    with LeaseLock(lock_path(locks, "story"), command="sync apply"):
        other = pushed_apply.VolumeLease(str(locks / "story.lock"), command="worker", wait_seconds=0.2)
        assert not other.acquire() and "'sync apply'" in other.describe()
    assert not (locks / "story.lock").exists()


def test_a_torn_manifest_is_refused_by_the_worker(pushed: Pushed, volume: Path) -> None:
    manifest = volume / manifest_key("story", pushed.new)
    good = manifest.read_bytes()
    manifest.write_bytes(good.replace(b'"size": 1', b'"size": 2', 1))
    done = _run_worker(_env(pushed, volume))
    assert (done.returncode, done.stdout.strip()) == (0, pushed.old_alpha)
    assert done.stderr.count("\n") == 1 and "fails its own checksum" in done.stderr
    manifest.write_bytes(good[: len(good) // 2])
    done = _run_worker(_env(pushed, volume))
    assert done.stdout.strip() == pushed.old_alpha and "unreadable" in done.stderr
    assert current_generation(VolumeLayout(volume), "story", PY) == pushed.old and manifest.is_file()


def test_a_manifest_naming_a_path_outside_the_volume_is_refused() -> None:
    body = {"schema_version": 1, "files": [{"path": "../etc/x"}], "forest_links": [], "links": []}
    with pytest.raises(pushed_apply.Refused, match="not a plain path"):
        pushed_apply.decode(
            json.dumps({**body, "content_sha256": pushed_apply.manifest_checksum(body)}).encode(), source="m"
        )
    body = {"schema_version": 1, "files": [], "forest_links": [], "links": [{"path": "a/b", "target": "../../x"}]}
    with pytest.raises(pushed_apply.Refused, match="leaves the volume"):
        pushed_apply.decode(
            json.dumps({**body, "content_sha256": pushed_apply.manifest_checksum(body)}).encode(), source="m"
        )


@pytest.mark.parametrize("point", ["sync-forest-built", "sync-switched"])
def test_a_worker_killed_mid_apply_keeps_the_old_generation_and_the_next_converges(
    pushed: Pushed, volume: Path, point: str
) -> None:
    killed = _run_worker({**_env(pushed, volume), pushed_apply.CRASH_ENV: point})
    assert killed.returncode == -9, killed.stderr
    assert current_generation(VolumeLayout(volume), "story", PY) == (
        pushed.old if point == "sync-forest-built" else pushed.new
    )
    done = _run_worker(_env(pushed, volume))
    assert done.returncode == 0 and done.stdout.strip() == pushed.new_alpha, done.stderr
    _assert_applied(pushed, volume, cli_agrees=point == "sync-switched")


def test_a_cli_apply_converges_after_a_killed_worker(pushed: Pushed, volume: Path) -> None:
    killed = _run_worker({**_env(pushed, volume), pushed_apply.CRASH_ENV: "sync-forest-built"})
    assert killed.returncode == -9
    argv = [*volume_cli_command(), "sync", "apply", "--project", "story", "--root", str(volume)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=pushed.source.volume.env)
    assert done.returncode == 0, done.stderr
    _assert_applied(pushed, volume)


@pytest.fixture
def netvol_options() -> dict[str, Any]:
    return {"latency_ms": 0.0, "cache_seconds": 0.0}  # no kernel cache: exact counts


# Measured (see the print): the apply checks sizes (one lstat per file, each path walked per component with
# no kernel cache), makes the forest's links, writes the records; budgets are the counts with ~10% slack.
BUDGET_WORKER_APPLY = 3000  # measured 2,749 (5,929 before the folder handles); a first start, nothing pending: 1,294


def test_budget_a_worker_applying_on_the_simulated_volume(
    pushed: Pushed,
    netvol: NetVol,  # noqa: F811
    tmp_path: Path,
) -> None:
    root = netvol.path / "volume"
    shutil.copytree(pushed.folder, netvol.backing / "volume", symlinks=True)
    environment = _env(pushed, root, tmp_path / "local-cache")
    netvol.reset()
    done = _run_worker(environment)
    applying = netvol.reset()
    assert done.returncode == 0 and done.stdout.strip() == pushed.new_alpha, done.stderr
    # the same first start (a local copy of the new generation made) without the apply: what the apply adds
    plain = _run_worker({**environment, "VOLUME_CLI_LOCAL_CACHE": str(tmp_path / "other-cache")})
    first_start = netvol.reset()
    assert plain.stderr == ""
    print(f"worker applying: {applying}\nfirst start, nothing pending: {first_start}")
    assert applying.total <= BUDGET_WORKER_APPLY, f"{applying} is over the budget of {BUDGET_WORKER_APPLY}"


def test_a_second_manifest_build_reads_no_file(source: Source, tmp_path: Path) -> None:  # noqa: F811
    from volume_cli.sync.digests import DigestCache
    from volume_cli.sync.manifest import build_manifest

    first = DigestCache(tmp_path, source.layout.root, "story")
    manifest = build_manifest(source.layout, "story", PY, digest=first.sha256)
    first.save()
    again = DigestCache(tmp_path, source.layout.root, "story")
    assert build_manifest(source.layout, "story", PY, digest=again.sha256) == manifest
    assert (first.hashed, again.hashed) == (len(manifest.files), 0)
    assert build_manifest(source.layout, "story", PY) == manifest  # the default hashes every file: the same


def test_an_invalid_pushed_record_is_refused_before_anything_changes(pushed: Pushed, volume: Path) -> None:
    staged = volume / ".metadata" / "projects" / "story" / "pushed" / pushed.new / ".metadata" / "projects" / "story"
    record = staged / "generations" / f"{pushed.new}.json"
    record.write_bytes(record.read_bytes().replace(b'"config_hash"', b'"config_hasX"'))  # same size
    done = _run_worker(_env(pushed, volume))
    assert (done.returncode, done.stdout.strip()) == (0, pushed.old_alpha)
    assert done.stderr.count("\n") == 1 and "invalid" in done.stderr, done.stderr
    argv = [*volume_cli_command(), "sync", "apply", "--project", "story", "--root", str(volume)]
    cli = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=pushed.source.volume.env)
    assert cli.returncode != 0 and "Traceback" not in cli.stderr and "invalid" in cli.stderr, cli.stderr
    assert current_generation(VolumeLayout(volume), "story", PY) == pushed.old
    generations = volume / "python-deps" / f"py{PY}" / ".generations" / "story"
    assert [path.name for path in generations.iterdir()] == [pushed.old]
