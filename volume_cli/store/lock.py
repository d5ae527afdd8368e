"""A writer lock that holds on a network file system.

``flock`` may silently succeed for two pods on MooseFS/NFS, so the lock is a
file created exclusively (its record written aside, then hard-linked into
place: atomic on those file systems, and never empty) that records who
holds it and until when. The holder renews the lease from a background
thread; a lock whose lease expired is taken over with a warning. A holder
is identified by a random id per acquisition, not by hostname + pid: two
pods may share a hostname while living in separate PID namespaces, where
"pid 42 is not running here" says nothing. The lease is taken over before
it expires only when the record proves the holder ran on this very machine
(boot id) and PID namespace, and that process is gone (or the pid now
belongs to a process started at another time). Before committing anything
the holder calls ``ensure_held()``, so a holder that lost its lock (paused
past its lease, then taken over) stops instead of racing the new holder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

from pydantic import Field

from volume_cli.errors import LockHeldError
from volume_cli.fileops import atomic_write_text
from volume_cli.fsguard import check_chain, volume_root_of
from volume_cli.store.documents import Migration, StoreDocument, parse_document

log = logging.getLogger(__name__)

DEFAULT_LEASE_SECONDS = 60.0
_POLL_SECONDS = 0.5
_FOREIGN = "foreign:"  # owner id prefix of a lock file this version cannot parse


def _migrate_1_to_2(data: dict[str, Any]) -> dict[str, Any]:
    # Format 1 records carry no machine identity: their holder can only be judged by its lease.
    return data


class LockRecord(StoreDocument):
    """``.metadata/locks/<name>.lock``: who holds a writer lock, until when."""

    SCHEMA_VERSION: ClassVar[int] = 2
    MIGRATIONS: ClassVar[dict[int, Migration]] = {1: _migrate_1_to_2}
    schema_version: int = SCHEMA_VERSION
    owner_id: str = Field(description="Random id of this holder; changes on every acquisition")
    host: str
    pid: int
    command: str
    started_at: datetime
    lease_expires_at: datetime
    boot_id: str | None = Field(default=None, description="Kernel boot id of the holder's machine")
    pid_namespace: str | None = Field(default=None, description="PID namespace of the holder, e.g. pid:[4026531836]")
    process_started: int | None = Field(
        default=None, description="Start time of the holder's process in clock ticks since boot (defeats pid reuse)"
    )
    lease_seconds: float | None = Field(
        default=None, description="Lease length: the lock is stale once its file was not rewritten for this long"
    )

    def expired(self, now: datetime) -> bool:
        return now >= self.lease_expires_at

    def describe(self) -> str:
        return f"{self.command!r} (pid {self.pid} on {self.host}, since {self.started_at:%Y-%m-%d %H:%M:%S} UTC)"


@dataclass(frozen=True)
class MachineIdentity:
    """Where this process runs: equal boot id and PID namespace mean pids are comparable."""

    boot_id: str | None
    pid_namespace: str | None

    def same_place(self, record: LockRecord, host: str) -> bool:
        return (
            record.host == host
            and self.boot_id is not None
            and self.pid_namespace is not None
            and record.boot_id == self.boot_id
            and record.pid_namespace == self.pid_namespace
        )


def _now() -> datetime:
    return datetime.now(timezone.utc)


def process_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process in this PID namespace."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            return handle.read().strip() or None
    except OSError:
        return None


def machine_identity() -> MachineIdentity:
    try:
        namespace: str | None = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = None
    return MachineIdentity(_read_text("/proc/sys/kernel/random/boot_id"), namespace)


def process_start_ticks(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat: when the process started, in clock ticks since boot."""
    text = _read_text(f"/proc/{pid}/stat")
    if text is None:
        return None
    fields = text[text.rfind(")") + 2 :].split()  # the command name may hold spaces and parentheses
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def _place(identity: MachineIdentity) -> str | None:
    if identity.boot_id is None or identity.pid_namespace is None:
        return None
    return hashlib.sha256(f"{identity.boot_id}|{identity.pid_namespace}".encode()).hexdigest()[:12]


def process_tag() -> str:
    """A file-name-safe tag of this process: where it runs (machine + PID namespace) and when it started.

    Folders named with it (staging) can later be judged abandoned by ``tagged_process_gone``."""
    started = process_start_ticks(os.getpid())
    return f"p{_place(machine_identity()) or 'unknown'}.{started if started is not None else 0}"


def tagged_process_gone(pid: int, tag: str) -> bool:
    """Whether process ``pid`` tagged ``tag`` provably ended. Only a tag from this very machine and
    PID namespace can prove it; anything else (a pod with the same hostname, an untagged name) cannot."""
    place, _, started = tag.removeprefix("p").partition(".")
    ours = _place(machine_identity())
    if ours is None or not tag.startswith("p") or place != ours:
        return False
    if not process_alive(pid):
        return True
    now_started = process_start_ticks(pid)
    return started.isdigit() and int(started) != 0 and now_started is not None and now_started != int(started)


class LeaseLock:
    """Context manager: ``with LeaseLock(path, command="deps install"): ...``."""

    def __init__(
        self,
        path: Path,
        *,
        command: str,
        wait_seconds: float = 0.0,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        on_wait: Callable[[LockRecord], None] | None = None,
    ) -> None:
        self.path = path
        self.command = command
        self.wait_seconds = wait_seconds
        self.lease_seconds = lease_seconds
        self.on_wait = on_wait
        self.owner_id = uuid.uuid4().hex
        self.host = socket.gethostname()
        self._started_at = _now()
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self._lost = threading.Event()
        self.took_over: LockRecord | None = None
        self.took_over_because: str | None = None
        self.identity = machine_identity()
        self._process_started = process_start_ticks(os.getpid())

    # -- public API ---------------------------------------------------------
    def acquire(self) -> None:
        root = volume_root_of(self.path)
        if root is not None:  # a planted .metadata/locks link would put our lock files in another tree
            check_chain(self.path, root)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.wait_seconds
        announced = False
        while True:
            if self._try_create():
                self._start_renewer()
                return
            holder = self._read_holder()
            if holder is None:
                continue  # vanished between our attempts: try again at once
            stale_because = self._stale_because(holder)
            if stale_because is not None:
                self._take_over(holder, stale_because)
                continue
            if time.monotonic() >= deadline:
                raise self._held_error(holder)
            if not announced and self.on_wait is not None:
                self.on_wait(holder)
                announced = True
            time.sleep(min(_POLL_SECONDS, max(0.0, deadline - time.monotonic())))

    def release(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=5)
        holder = self._read_holder()
        if holder is not None and holder.owner_id == self.owner_id:
            self.path.unlink(missing_ok=True)

    def ensure_held(self) -> None:
        """Raise unless this process still holds the lock (call before committing)."""
        holder = self._read_holder()
        if self._lost.is_set() or holder is None or holder.owner_id != self.owner_id:
            raise LockHeldError(
                f"lost the lock {self.path.stem} (taken over by another run); nothing was committed",
                hint="run the command again",
            )

    def __enter__(self) -> LeaseLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    # -- internals ----------------------------------------------------------
    def _record(self) -> LockRecord:
        return LockRecord(
            owner_id=self.owner_id,
            host=self.host,
            pid=os.getpid(),
            command=self.command,
            started_at=self._started_at,
            lease_expires_at=_now() + timedelta(seconds=self.lease_seconds),
            boot_id=self.identity.boot_id,
            pid_namespace=self.identity.pid_namespace,
            process_started=self._process_started,
            lease_seconds=self.lease_seconds,
        )

    def _held_error(self, holder: LockRecord) -> LockHeldError:
        expiry = f"{holder.lease_expires_at:%Y-%m-%d %H:%M:%S} UTC"
        if holder.owner_id.startswith(_FOREIGN):
            return LockHeldError(
                f"{self.path.stem} is locked by {holder.describe()}; it is honoured until {expiry}",
                hint=f"upgrade volume-cli (pip install -U volume-cli); if no run holds it, {self.path} "
                "frees itself when it stops being renewed",
            )
        left = max(0.0, (holder.lease_expires_at - _now()).total_seconds())
        return LockHeldError(
            f"{self.path.stem} is locked by {holder.describe()}; its lease runs until {expiry} "
            "and is renewed while that run is alive",
            hint=f"wait for it (retry with --wait {int(left) + 5} or more); a run that died frees the lock "
            f"when its lease ends; if the lease keeps being renewed, that run is alive: stop pid {holder.pid} "
            f"on {holder.host} (deleting {self.path} by hand is safe only when it is not running)",
        )

    def _try_create(self) -> bool:
        # The record goes under a private name first and is linked into place: link fails when the
        # lock exists, like O_EXCL, and a holder killed at any moment never leaves an empty lock file
        # (which would block every run for a whole lease as "unreadable").
        text = self._record().model_dump_json()
        temp = self.path.with_name(f"{self.path.name}.new-{self.owner_id}")
        with open(temp, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temp, self.path)
        except FileExistsError:
            return False
        finally:
            temp.unlink(missing_ok=True)
        return True

    def _read_holder(self) -> LockRecord | None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            return parse_document(raw, LockRecord, source=self.path)
        except Exception:
            try:
                age = time.time() - self.path.stat().st_mtime
            except FileNotFoundError:
                return None
            return self._foreign_record(raw, age)

    def _foreign_record(self, raw: bytes, age: float) -> LockRecord:
        """A lock file we cannot parse: an empty one (holder killed between O_EXCL and its first
        write) or one in a newer format. Either way it is honoured while it keeps being rewritten
        (its age, from the file's mtime, stays under a lease) and never judged by its pid."""
        data = _peek(raw)
        version = data.get("schema_version")
        newer = isinstance(version, int) and version > LockRecord.SCHEMA_VERSION
        expiry = _now() + timedelta(seconds=self.lease_seconds - age)
        if newer:
            try:
                expiry = max(expiry, datetime.fromisoformat(str(data["lease_expires_at"])))
            except (KeyError, ValueError, TypeError):
                pass
        owner = str(data.get("owner_id") or "unreadable")
        return LockRecord(
            owner_id=f"{_FOREIGN}{owner}",
            host=str(data.get("host") or "unknown") if newer else "unknown",
            pid=-1,
            command=f"a newer volume-cli (lock format {version})" if newer else "unknown (unreadable lock file)",
            started_at=_now() - timedelta(seconds=age),
            lease_expires_at=expiry,
        )

    def _server_age(self) -> float | None:
        """Seconds since the lock file was last rewritten, both ends read from the file server's clock
        (the mtime of a file we write now), so pods whose clocks disagree still agree on it."""
        probe = self.path.with_name(f".{self.path.name}.clock-{self.owner_id}")
        try:
            probe.write_bytes(b"now")
            now = probe.stat().st_mtime
            then = self.path.stat().st_mtime
        except OSError:
            return None
        finally:
            probe.unlink(missing_ok=True)
        return now - then

    def _stale_because(self, holder: LockRecord) -> str | None:
        """Why ``holder`` may be taken over, or None while it must be respected."""
        age = self._server_age() if holder.lease_seconds is not None else None
        if holder.lease_seconds is not None and age is not None:
            # Renewal rewrites the file: its age says whether the holder is alive, whatever its clock says.
            if age > holder.lease_seconds:
                return f"its lease of {holder.lease_seconds:g}s was not renewed for {age:.0f}s"
        elif holder.expired(_now()):
            return f"its lease ended at {holder.lease_expires_at:%Y-%m-%d %H:%M:%S} UTC without renewal"
        if holder.pid <= 0 or not self.identity.same_place(holder, self.host):
            return None  # another machine or PID namespace: its pid means nothing here
        if not process_alive(holder.pid):
            return f"its process {holder.pid} on this machine is gone"
        started = process_start_ticks(holder.pid)
        if holder.process_started is not None and started is not None and started != holder.process_started:
            return f"its process {holder.pid} on this machine is gone (the pid now belongs to another process)"
        return None

    def _take_over(self, stale: LockRecord, because: str) -> None:
        # Move the stale file aside under a name only we use, then check we
        # moved the file we judged stale: a faster contender may already have
        # replaced it with a live lock, which we then put back.
        aside = self.path.with_name(f"{self.path.name}.stale-{self.owner_id}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        try:
            raw = aside.read_bytes()
        except OSError:
            raw = b""
        try:
            moved_owner = parse_document(raw, LockRecord, source=aside).owner_id
        except Exception:
            moved_owner = f"{_FOREIGN}{_peek(raw).get('owner_id') or 'unreadable'}"
        if moved_owner != stale.owner_id:
            try:
                os.link(aside, self.path)
            except FileExistsError:
                pass
        else:
            log.warning("took over the lock %s of %s: %s", self.path.stem, stale.describe(), because)
            self.took_over = stale
            self.took_over_because = because
        aside.unlink(missing_ok=True)

    def _start_renewer(self) -> None:
        self._renewer = threading.Thread(target=self._renew_loop, name="volume-cli-lease", daemon=True)
        self._renewer.start()

    def _renew_loop(self) -> None:
        interval = max(0.05, self.lease_seconds / 3)
        while not self._stop.wait(interval):
            holder = self._read_holder()
            if holder is None or holder.owner_id != self.owner_id:
                self._lost.set()
                return
            try:
                atomic_write_text(self.path, self._record().model_dump_json())
            except OSError as exc:  # a transient network error: try again next tick
                log.debug("could not renew lease on %s: %s", self.path, exc)


def _peek(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def lock_path(locks_dir: Path, name: str) -> Path:
    return locks_dir / f"{name}.lock"


def describe_lock(path: Path) -> dict[str, object] | None:
    """The holder of a lock file as plain data (for status), or None."""
    try:
        return dict(json.loads(path.read_bytes()))
    except (OSError, ValueError):
        return None
