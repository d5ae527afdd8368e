"""The writer locks the engines take (one per project, one for gc), built on the lease lock in store/lock.py."""

from __future__ import annotations

from volume_cli.layout import VolumeLayout
from volume_cli.progress import Progress
from volume_cli.store.lock import LeaseLock, LockRecord, lock_path

GC_LOCK_NAME = "volume-gc"


def _lease(holder: LockRecord) -> str:
    # A holder that died frees the lock when this lease ends; a live one keeps renewing it.
    return f" (its lease runs until {holder.lease_expires_at:%H:%M:%S} UTC and is renewed while it runs)"


def project_lock(
    layout: VolumeLayout, project: str, *, command: str, wait_seconds: float, progress: Progress
) -> LeaseLock:
    def on_wait(holder: LockRecord) -> None:
        progress.info(f"waiting up to {wait_seconds:.0f}s for {holder.describe()} to finish{_lease(holder)}")

    return LeaseLock(lock_path(layout.locks_dir, project), command=command, wait_seconds=wait_seconds, on_wait=on_wait)


def gc_lock(layout: VolumeLayout, *, wait_seconds: float, progress: Progress) -> LeaseLock:
    def on_wait(holder: LockRecord) -> None:
        progress.info(f"waiting for {holder.describe()} to finish{_lease(holder)}")

    return LeaseLock(
        lock_path(layout.locks_dir, GC_LOCK_NAME), command="gc", wait_seconds=wait_seconds, on_wait=on_wait
    )
