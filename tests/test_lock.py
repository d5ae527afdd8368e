"""The lease lock: two real processes, waiting, expired-lease and dead-holder takeover."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from volume_cli.errors import LockHeldError
from volume_cli.store.lock import LeaseLock, LockRecord

HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from volume_cli.store.lock import LeaseLock
    lock = LeaseLock(Path(sys.argv[1]), command="holder", lease_seconds=float(sys.argv[3]))
    with lock:
        Path(sys.argv[2]).write_text("held")
        time.sleep(float(sys.argv[4]))
    """
)


def start_holder(lock: Path, tmp_path: Path, *, lease: float = 5.0, hold: float = 30.0) -> subprocess.Popen[bytes]:
    flag = tmp_path / f"held-{time.monotonic_ns()}"
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock), str(flag), str(lease), str(hold)])
    deadline = time.monotonic() + 15
    while not flag.exists():
        assert process.poll() is None, "holder exited early"
        assert time.monotonic() < deadline, "holder never took the lock"
        time.sleep(0.02)
    return process


def test_second_process_fails_fast_naming_the_holder(tmp_path: Path) -> None:
    path = tmp_path / "demo.lock"
    holder = start_holder(path, tmp_path)
    try:
        started = time.monotonic()
        with pytest.raises(LockHeldError) as info:
            LeaseLock(path, command="deps install").acquire()
        assert time.monotonic() - started < 2
        assert "'holder'" in info.value.message and f"pid {holder.pid}" in info.value.message
        assert info.value.hint and "--wait" in info.value.hint
    finally:
        holder.kill()
        holder.wait()


def test_waiter_gets_the_lock_when_the_holder_finishes(tmp_path: Path) -> None:
    path = tmp_path / "demo.lock"
    holder = start_holder(path, tmp_path, hold=1.0)
    waited: list[LockRecord] = []
    with LeaseLock(path, command="waiter", wait_seconds=20, on_wait=waited.append) as lock:
        assert holder.wait(timeout=5) == 0
        lock.ensure_held()
        assert json.loads(path.read_text())["command"] == "waiter"
    assert waited and waited[0].command == "holder"
    assert not path.exists()


def test_lease_is_renewed_while_the_holder_runs(tmp_path: Path) -> None:
    path = tmp_path / "demo.lock"
    holder = start_holder(path, tmp_path, lease=0.6, hold=30.0)
    try:
        first = json.loads(path.read_text())["lease_expires_at"]
        time.sleep(1.5)  # longer than the lease: only renewal keeps it alive
        assert json.loads(path.read_text())["lease_expires_at"] > first
        with pytest.raises(LockHeldError):
            LeaseLock(path, command="second", lease_seconds=0.6).acquire()
    finally:
        holder.kill()
        holder.wait()


def test_dead_holder_on_this_host_is_taken_over_at_once(tmp_path: Path) -> None:
    path = tmp_path / "demo.lock"
    holder = start_holder(path, tmp_path, lease=300)
    holder.kill()  # kill -9: no release, the lease is still valid for minutes
    holder.wait()
    lock = LeaseLock(path, command="next")
    lock.acquire()
    try:
        assert lock.took_over is not None and lock.took_over.pid == holder.pid
        lock.ensure_held()
    finally:
        lock.release()


def test_expired_lease_from_another_host_is_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "demo.lock"
    now = datetime.now(timezone.utc)
    stale = LockRecord(
        owner_id="other",
        host="another-pod",
        pid=1,
        command="deps install",
        started_at=now - timedelta(minutes=10),
        lease_expires_at=now - timedelta(seconds=1),
    )
    path.write_text(stale.model_dump_json())
    with LeaseLock(path, command="me") as lock:
        assert lock.took_over is not None and lock.took_over.host == "another-pod"


def test_live_lease_from_another_host_is_respected(tmp_path: Path) -> None:
    path = tmp_path / "demo.lock"
    now = datetime.now(timezone.utc)
    live = LockRecord(
        owner_id="other",
        host="another-pod",
        pid=1,
        command="setup",
        started_at=now,
        lease_expires_at=now + timedelta(minutes=1),
    )
    path.write_text(live.model_dump_json())
    with pytest.raises(LockHeldError, match="another-pod"):
        LeaseLock(path, command="me").acquire()


def test_holder_that_lost_its_lock_refuses_to_commit(tmp_path: Path) -> None:
    path = tmp_path / "demo.lock"
    lock = LeaseLock(path, command="slow", lease_seconds=300)
    lock.acquire()
    try:
        # Another pod decided our lease expired (we were paused) and took over.
        now = datetime.now(timezone.utc)
        path.write_text(
            LockRecord(
                owner_id="thief",
                host="h",
                pid=1,
                command="x",
                started_at=now,
                lease_expires_at=now + timedelta(minutes=1),
            ).model_dump_json()
        )
        with pytest.raises(LockHeldError, match="lost the lock"):
            lock.ensure_held()
    finally:
        lock.release()
    assert path.exists(), "release must not delete a lock it no longer owns"


def test_many_processes_contend_and_never_overlap(tmp_path: Path) -> None:
    path = tmp_path / "demo.lock"
    log = tmp_path / "log"
    script = textwrap.dedent(
        """
        import os, sys, time
        from pathlib import Path
        from volume_cli.store.lock import LeaseLock
        log = Path(sys.argv[2])
        for _ in range(5):
            with LeaseLock(Path(sys.argv[1]), command="worker", wait_seconds=60):
                with open(log, "a") as handle:
                    handle.write(f"start {os.getpid()}\\n")
                time.sleep(0.01)
                with open(log, "a") as handle:
                    handle.write(f"end {os.getpid()}\\n")
        """
    )
    workers = [subprocess.Popen([sys.executable, "-c", script, str(path), str(log)]) for _ in range(4)]
    assert all(worker.wait(timeout=120) == 0 for worker in workers)
    lines = log.read_text().split()
    events = list(zip(lines[0::2], lines[1::2], strict=True))
    assert len(events) == 40
    for first, second in zip(events[0::2], events[1::2], strict=True):
        assert first[0] == "start" and second == ("end", first[1]), "two holders overlapped"
    assert not path.exists() and os.listdir(tmp_path).count("demo.lock") == 0
