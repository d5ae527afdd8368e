"""A writer lock that holds on a network file system.

``flock`` may silently succeed for two pods on MooseFS/NFS, so the lock is a
file created exclusively (its record written aside, then hard-linked into
place: atomic on those file systems, and never empty) that records who
holds it and until when. The holder renews the lease from a background
thread; a lock whose lease expired (or whose holder is a dead process on
this host) is taken over with a warning. Before committing anything the
holder calls ``ensure_held()``, so a holder that lost its lock (paused past
its lease, then taken over) stops instead of racing the new holder.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import TracebackType
from typing import ClassVar

from pydantic import Field

from volume_cli.errors import LockHeldError
from volume_cli.store.atomic import atomic_write_text
from volume_cli.store.documents import StoreDocument, parse_document

log = logging.getLogger(__name__)

DEFAULT_LEASE_SECONDS = 60.0
_POLL_SECONDS = 0.5


class LockRecord(StoreDocument):
    """``.metadata/locks/<name>.lock``: who holds a writer lock, until when."""

    SCHEMA_VERSION: ClassVar[int] = 1
    schema_version: int = SCHEMA_VERSION
    owner_id: str = Field(description="Random id of this holder; changes on every acquisition")
    host: str
    pid: int
    command: str
    started_at: datetime
    lease_expires_at: datetime

    def expired(self, now: datetime) -> bool:
        return now >= self.lease_expires_at

    def describe(self) -> str:
        return f"{self.command!r} (pid {self.pid} on {self.host}, since {self.started_at:%Y-%m-%d %H:%M:%S} UTC)"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def process_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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

    # -- public API ---------------------------------------------------------
    def acquire(self) -> None:
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
            if self._is_stale(holder):
                self._take_over(holder)
                continue
            if time.monotonic() >= deadline:
                raise LockHeldError(
                    f"{self.path.stem} is locked by {holder.describe()}",
                    hint="wait for it to finish, or retry with --wait SECONDS",
                )
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
            # A holder killed between O_EXCL and its first write leaves an
            # empty file; treat it as expired once it is older than a lease.
            try:
                age = time.time() - self.path.stat().st_mtime
            except FileNotFoundError:
                return None
            placeholder_expiry = (
                _now() - timedelta(seconds=1)
                if age > self.lease_seconds
                else _now() + timedelta(seconds=self.lease_seconds - age)
            )
            return LockRecord(
                owner_id="unreadable",
                host="unknown",
                pid=-1,
                command="unknown (unreadable lock file)",
                started_at=_now() - timedelta(seconds=age),
                lease_expires_at=placeholder_expiry,
            )

    def _is_stale(self, holder: LockRecord) -> bool:
        if holder.expired(_now()):
            return True
        return holder.host == self.host and holder.pid > 0 and not process_alive(holder.pid)

    def _take_over(self, stale: LockRecord) -> None:
        # Move the stale file aside under a name only we use, then check we
        # moved the file we judged stale: a faster contender may already have
        # replaced it with a live lock, which we then put back.
        aside = self.path.with_name(f"{self.path.name}.stale-{self.owner_id}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        try:
            moved = parse_document(aside.read_bytes(), LockRecord, source=aside)
            moved_owner = moved.owner_id
        except Exception:
            moved_owner = "unreadable"
        if moved_owner != stale.owner_id:
            try:
                os.link(aside, self.path)
            except FileExistsError:
                pass
        else:
            log.warning("took over the expired lock of %s", stale.describe())
            self.took_over = stale
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


def lock_path(locks_dir: Path, name: str) -> Path:
    return locks_dir / f"{name}.lock"


def describe_lock(path: Path) -> dict[str, object] | None:
    """The holder of a lock file as plain data (for status), or None."""
    try:
        return dict(json.loads(path.read_bytes()))
    except (OSError, ValueError):
        return None
