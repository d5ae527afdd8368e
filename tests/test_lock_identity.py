"""Who holds a lease: a pod with the same hostname in another PID namespace never loses a live lease.

The volume is shared by pods that may all be called ``localhost`` or share a
hostname; "pid 42 is not running" only means something when the holder ran
on this machine (boot id) in this PID namespace.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from volume_cli.deps.entries import cleanup_stale_staging, new_staging, staging_parent
from volume_cli.errors import LockHeldError
from volume_cli.layout import VolumeLayout
from volume_cli.store.lock import LeaseLock, LockRecord, machine_identity, process_start_ticks


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def record(**changes: object) -> LockRecord:
    now = datetime.now(timezone.utc)
    identity = machine_identity()
    fields: dict[str, object] = {
        "owner_id": "first-installer",
        "host": socket.gethostname(),
        "pid": dead_pid(),
        "command": "deps install",
        "started_at": now,
        "lease_expires_at": now + timedelta(seconds=60),
        "boot_id": identity.boot_id,
        "pid_namespace": identity.pid_namespace,
        "process_started": None,
    }
    fields.update(changes)
    return LockRecord.model_validate(fields)


def holder_of(path: Path) -> str:
    return str(json.loads(path.read_text())["owner_id"])


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"pid_namespace": "pid:[4026530000]"}, id="other-pid-namespace"),
        pytest.param({"boot_id": "00000000-0000-0000-0000-000000000000"}, id="other-machine-same-hostname"),
        pytest.param({"boot_id": None, "pid_namespace": None}, id="no-identity-recorded"),
    ],
)
def test_a_fresh_lease_with_a_dead_looking_pid_elsewhere_is_never_taken_over(
    tmp_path: Path, changes: dict[str, object]
) -> None:
    path = tmp_path / "demo.lock"
    path.write_text(record(**changes).model_dump_json())

    with pytest.raises(LockHeldError):
        LeaseLock(path, command="second pod", wait_seconds=0.6).acquire()

    assert holder_of(path) == "first-installer"


def test_a_format_1_record_with_a_dead_pid_on_this_host_waits_for_its_lease(tmp_path: Path) -> None:
    path = tmp_path / "demo.lock"
    data = json.loads(record().model_dump_json())
    for key in ("boot_id", "pid_namespace", "process_started"):
        del data[key]
    data["schema_version"] = 1
    path.write_text(json.dumps(data))

    with pytest.raises(LockHeldError):
        LeaseLock(path, command="second pod").acquire()
    assert holder_of(path) == "first-installer"


def test_a_dead_holder_proven_on_this_machine_is_taken_over_and_not_called_expired(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "demo.lock"
    dead = record()
    path.write_text(dead.model_dump_json())

    with caplog.at_level(logging.WARNING), LeaseLock(path, command="next") as lock:
        assert lock.took_over is not None and lock.took_over.pid == dead.pid
        assert lock.took_over_because is not None and "gone" in lock.took_over_because
    assert "expired" not in caplog.text and "gone" in caplog.text


def test_a_reused_pid_is_recognised_by_its_start_time(tmp_path: Path) -> None:
    path = tmp_path / "demo.lock"
    me = os.getpid()
    started = process_start_ticks(me)
    assert started is not None
    path.write_text(record(pid=me, process_started=started - 1).model_dump_json())

    with LeaseLock(path, command="next") as lock:
        assert lock.took_over_because is not None and "another process" in lock.took_over_because

    path.write_text(record(pid=me, process_started=started).model_dump_json())
    with pytest.raises(LockHeldError):
        LeaseLock(path, command="next").acquire()


def test_the_held_message_gives_the_lease_end_and_how_to_clear_it(tmp_path: Path) -> None:
    path = tmp_path / "demo.lock"
    live = record(host="pod-a", pid=4242, lease_expires_at=datetime(2999, 1, 2, 3, 4, 5, tzinfo=timezone.utc))
    path.write_text(live.model_dump_json())

    with pytest.raises(LockHeldError) as caught:
        LeaseLock(path, command="me").acquire()

    assert "lease runs until 2999-01-02 03:04:05 UTC" in caught.value.message
    assert "expired" not in caught.value.message
    hint = caught.value.hint or ""
    assert "--wait" in hint and "pid 4242 on pod-a" in hint and str(path) in hint


def test_a_lock_in_a_newer_format_says_so_and_is_honoured(tmp_path: Path) -> None:
    path = tmp_path / "demo.lock"
    data = json.loads(record(pid=dead_pid()).model_dump_json())
    data.update(schema_version=99, new_field="from the future")
    path.write_text(json.dumps(data))

    with pytest.raises(LockHeldError) as caught:
        LeaseLock(path, command="me", wait_seconds=0.3).acquire()

    assert "newer volume-cli (lock format 99)" in caught.value.message
    assert "upgrade" in (caught.value.hint or "")
    assert json.loads(path.read_text())["new_field"] == "from the future"


def test_an_expired_lock_in_a_newer_format_is_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "demo.lock"
    data = json.loads(record(lease_expires_at=datetime(2000, 1, 1, tzinfo=timezone.utc)).model_dump_json())
    data.update(schema_version=99)
    path.write_text(json.dumps(data))
    old = time.time() - 3600
    os.utime(path, (old, old))

    with LeaseLock(path, command="me") as lock:
        assert lock.took_over is not None and "lock format 99" in lock.took_over.command


HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from volume_cli.store.lock import LeaseLock
    staging = Path(sys.argv[2])
    with LeaseLock(Path(sys.argv[1]), command="deps install", lease_seconds=0.5):
        staging.mkdir()
        (staging / "wheel").write_text("half-installed")
        time.sleep(float(sys.argv[3]))
        assert (staging / "wheel").exists(), "staging was deleted under us"
    print("held", flush=True)
    """
)


UNSHARE = ["unshare", "--user", "--map-root-user", "--pid", "--fork", "--mount-proc"]


def _unshare_works() -> bool:
    if shutil.which("unshare") is None or not sys.platform.startswith("linux"):
        return False
    probe = subprocess.run(
        [*UNSHARE, "true"],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


@pytest.mark.skipif(not _unshare_works(), reason="needs unprivileged user + PID namespaces (unshare)")
def test_a_real_holder_in_another_pid_namespace_keeps_its_lease(tmp_path: Path) -> None:
    path = tmp_path / "project.lock"
    staging = tmp_path / "staging"
    # Inside the new namespace the holder gets a pid above pid_max here: it can only look dead from outside.
    inner = f'echo 54320 > /proc/sys/kernel/ns_last_pid 2>/dev/null; "{sys.executable}" -c "$0" "$1" "$2" "$3"'
    holder = subprocess.Popen(
        [*UNSHARE, "sh", "-c", inner, HOLDER, str(path), str(staging), "2.5"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 15
        while not (staging / "wheel").exists():
            assert holder.poll() is None and time.monotonic() < deadline, "holder never took the lock"
            time.sleep(0.02)
        record_pid = json.loads(path.read_text())["pid"]
        assert record_pid != holder.pid

        with pytest.raises(LockHeldError):
            # Three times the 0.5 s lease: only the holder's renewals keep it.
            LeaseLock(path, command="second pod", wait_seconds=1.5).acquire()

        out, _ = holder.communicate(timeout=20)
        assert holder.returncode == 0 and "held" in out
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def _staging_layout(tmp_path: Path) -> tuple[VolumeLayout, Path]:
    layout = VolumeLayout(tmp_path / "volume")
    parent = staging_parent(layout)
    parent.mkdir(parents=True)
    return layout, parent


def test_cleanup_keeps_a_same_hostname_installers_staging_from_another_namespace(tmp_path: Path) -> None:
    layout, parent = _staging_layout(tmp_path)
    host = socket.gethostname().replace("-", "_")
    pid = dead_pid()
    # The names an installer on a pod with our hostname in another PID namespace would use.
    legacy = parent / f"{host}-{pid}-0123abcd"
    foreign = parent / f"{host}-{pid}-89abcdef-p{'0' * 12}.{123}"
    for folder in (legacy, foreign):
        (folder / "target").mkdir(parents=True)

    cleanup_stale_staging(layout)

    assert legacy.is_dir() and foreign.is_dir(), "a live installer elsewhere lost its staging"


def test_cleanup_removes_the_staging_of_a_dead_installer_proven_on_this_machine(tmp_path: Path) -> None:
    layout, parent = _staging_layout(tmp_path)
    mine = new_staging(layout)
    pid = int(mine.root.name.split("-")[1])
    assert pid == os.getpid()
    dead = parent / mine.root.name.replace(f"-{pid}-", f"-{dead_pid()}-", 1)
    dead.mkdir()

    cleanup_stale_staging(layout)

    assert not dead.exists() and mine.root.is_dir()


def test_a_renewed_lease_from_a_pod_whose_clock_is_behind_is_respected(tmp_path: Path) -> None:
    path = tmp_path / "demo.lock"
    now = datetime.now(timezone.utc)
    # The holder's clock is two minutes behind: by ours its lease ended, yet it rewrote the file just now.
    behind = record(host="pod-b", started_at=now - timedelta(minutes=3), lease_expires_at=now - timedelta(minutes=1))
    data = json.loads(behind.model_dump_json())
    data["lease_seconds"] = 60.0
    path.write_text(json.dumps(data))

    with pytest.raises(LockHeldError):
        LeaseLock(path, command="me", wait_seconds=0.3).acquire()
    assert holder_of(path) == "first-installer"


def test_a_lease_not_rewritten_for_longer_than_itself_is_taken_over_whatever_its_clock_says(tmp_path: Path) -> None:
    path = tmp_path / "demo.lock"
    ahead = record(host="pod-b", lease_expires_at=datetime.now(timezone.utc) + timedelta(minutes=5))
    data = json.loads(ahead.model_dump_json())
    data["lease_seconds"] = 60.0
    path.write_text(json.dumps(data))
    old = time.time() - 61
    os.utime(path, (old, old))  # by the file server's clock: last renewed 61 s ago

    with LeaseLock(path, command="me") as lock:
        assert lock.took_over_because is not None and "not renewed" in lock.took_over_because
