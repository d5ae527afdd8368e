"""The switch and its record: what keeps gc, installs and crashes from disagreeing.

**The link is the truth.** ``pyX.Y/<project>`` names the current generation;
state.json is written after the switch, so a crash in between leaves it one
switch behind. ``reconciled_deps`` reads state through the link: when they
disagree, the linked generation is current (its facts come from its record,
written before the switch) and the generation state.json names is the one
left, i.e. the previous one. Every writer (install, rollback) first stores
that reconciled view under the project's lock, so at most one switch is ever
unrecorded and "previous" is exactly one generation back after any crash.

**gc and installs.** gc removes entries no kept generation uses; an install
creates entries, reuses old ones and builds a generation that no record or
link names yet. Choice: an *intent record* plus a short volume-wide *store
lock*. The install writes its intent (generation name, every entry it may
create or link) under the store lock before it creates or reuses anything,
and removes it under the store lock once the link names the generation (while
state.json is written: gc protects every linked generation, whatever state.json says).
gc decides and sets aside what it removes under the same lock. So either gc's
decision comes first (the install then finds a removed entry missing and
installs it again) or the intent does (gc keeps it): no timing loses an entry.
The store lock is held for milliseconds by installs and for one listing plus
renames by gc, never for a uv run; it is an O_EXCL lease like every lock here
because flock cannot be trusted on a network file system. An age rule alone
(the old design) cannot work: ``--grace-hours 0`` and clock skew between pods
make any age meaningless.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone

from volume_cli import __version__
from volume_cli.deps.documents import (
    GenerationRecord,
    InstallIntent,
    install_intent_path,
    read_generation_record,
)
from volume_cli.deps.forest import current_generation, generation_dir
from volume_cli.errors import StateError
from volume_cli.layout import VolumeLayout
from volume_cli.store.documents import read_document, write_document
from volume_cli.store.lock import LeaseLock, LockRecord, lock_path, process_alive
from volume_cli.store.state import DepsRecord, ProjectState, read_project_state, update_project_state, utc_now

STORE_LOCK_NAME = "volume-store"
STORE_LOCK_WAIT_SECONDS = 600.0  # gc holds it for a listing and renames; a crashed holder's lease ends in 60 s


@contextmanager
def store_lock(layout: VolumeLayout, *, command: str) -> Iterator[LeaseLock]:
    lock = LeaseLock(
        lock_path(layout.locks_dir, STORE_LOCK_NAME), command=command, wait_seconds=STORE_LOCK_WAIT_SECONDS
    )
    with lock:
        yield lock


# -- in-progress installs --------------------------------------------------------------
def record_intent(
    layout: VolumeLayout, *, project: str, python_version: str, generation: str, entries: list[str]
) -> None:
    """Announce what an install will use; call before creating or reusing any entry."""
    intent = InstallIntent(
        project=project,
        python_version=python_version,
        generation=generation,
        entries=sorted(set(entries)),
        host=socket.gethostname(),
        pid=os.getpid(),
    )
    with store_lock(layout, command=f"deps install {project} (intent)"):
        write_document(install_intent_path(layout, project), intent)


def clear_intent(layout: VolumeLayout, project: str) -> None:
    """Drop the intent once the link names the generation (or the install gave up)."""
    path = install_intent_path(layout, project)
    if not path.exists():
        return
    with store_lock(layout, command=f"deps install {project} (done)"):
        path.unlink(missing_ok=True)


def live_intent(layout: VolumeLayout, project: str) -> InstallIntent | None:
    """The project's intent while its install may still commit; gc honours it (caller holds the store lock).

    An install holds the project's writer lock from before its intent until
    after it removes it, so an intent whose writer no longer holds that lock
    (absent, or another holder, which clears it) or whose process is dead on
    this host is a killed run's. No age rule: a long uv build stays protected.
    """
    path = install_intent_path(layout, project)
    try:
        intent = read_document(path, InstallIntent)
    except StateError:
        # Unreadable: treat as a live install of unknown extent (the caller keeps everything of the project).
        return InstallIntent(project=project, python_version="", generation="*", entries=["*"], host="", pid=0)
    if intent is None:
        return None
    if intent.host == socket.gethostname() and intent.pid != os.getpid() and not process_alive(intent.pid):
        return None
    try:
        holder = read_document(lock_path(layout.locks_dir, project), LockRecord)
    except StateError:
        return intent  # a lock being written or unreadable: keep what the intent names
    if holder is None or (holder.host, holder.pid) != (intent.host, intent.pid):
        return None
    return intent


# -- state through the link -----------------------------------------------------------
def reconciled_deps(
    layout: VolumeLayout, project: str, python_version: str, state: ProjectState | None
) -> DepsRecord | None:
    """The project's deps record as the link says it is (see the module docstring)."""
    recorded = state.deps if state else None
    linked = current_generation(layout, project, python_version)
    if linked is None or (recorded is not None and recorded.generation == linked):
        return recorded
    try:
        record = read_generation_record(layout, project, linked)
    except StateError:
        record = None
    left = recorded.generation if recorded is not None else None
    path = layout.relative(generation_dir(layout, project, python_version, linked))
    if record is None:
        # A generation without a record (a legacy folder): what we know without walking it.
        return DepsRecord(
            generation=linked,
            previous_generation=left if left != linked else None,
            generation_path=path,
            config_hash="unknown",
            installed_at=recorded.installed_at if recorded else datetime.fromtimestamp(0, timezone.utc),
            package_count=0,
            size_bytes=0,
            tool_version="unknown",
        )
    return DepsRecord(
        generation=linked,
        previous_generation=left if left != linked else None,
        generation_path=record.path,
        config_hash=record.config_hash,
        lock_hash=record.lock_hash,
        installed_at=record.created_at,
        package_count=len(record.entries),
        size_bytes=record.size_bytes,
        new_bytes=0,
        tool_version=record.tool_version,
    )


def repair_state(layout: VolumeLayout, project: str, python_version: str) -> DepsRecord | None:
    """Store the reconciled record when state.json lags behind the link; the caller holds the project's lock."""
    state = read_project_state(layout, project)
    deps = reconciled_deps(layout, project, python_version, state)
    if deps is None or (state is not None and state.deps == deps):
        return deps
    update_project_state(layout, project, python_version, lambda current: current.model_copy(update={"deps": deps}))
    return deps


def record_switch(
    layout: VolumeLayout,
    project: str,
    python_version: str,
    record: GenerationRecord,
    *,
    previous: str | None,
    new_bytes: int,
) -> None:
    """state.json once ``record``'s generation is current: the one writer for install and rollback."""
    deps = DepsRecord(
        generation=record.generation,
        previous_generation=previous if previous != record.generation else None,
        generation_path=record.path,
        config_hash=record.config_hash,
        lock_hash=record.lock_hash,
        installed_at=utc_now(),
        package_count=len(record.entries),
        size_bytes=record.size_bytes,
        new_bytes=new_bytes,
        tool_version=__version__,
    )
    update_project_state(
        layout,
        project,
        python_version,
        lambda current: current.model_copy(update={"python_version": python_version, "deps": deps}),
    )
