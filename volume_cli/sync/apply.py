"""``sync apply``: turn a pushed generation into the volume's current one, with a local install's guarantees.

Run by something that sees the mounted volume (a pod), under the project's
writer lock. The apply itself is volume_cli/pushed_apply.py, standard
library only, which a starting worker runs too: check every file the
manifest lists (sizes; sha256 with ``deep``), restore modes and mtimes,
make the models' links, place the lock and model documents, build the
forest under a temporary name, record it, rename it, switch
``pyX.Y/<project>`` with one rename and record the switch. Here are the
CLI's side of it: the lock, the records written through the document models
(``record_switch``, exactly like ``deps install``), the boot refresh and the
result. The old generation serves until the switch, ``deps rollback``
reaches it afterwards, and an intent record keeps gc off the entries while
the forest is built. A second apply waits for the lock and then finds
nothing pending, so two at once build one generation. Killed anywhere, the
next apply converges: the pending manifest is removed only after the switch
is recorded.

Then, the lock released, each entry of the current generation without a pack gets one
(``write_pack``: one file per entry, temp name then rename), read from the volume: a worker's first start then reads a few large
files instead of every file (``volume_cli/local_copy.py``). The push carries no packs (they would
double the bytes sent across regions: docs/regions.md) and a worker applying at start writes none (its
start would wait on it); a later ``sync apply``, with nothing pending, writes what is missing.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from volume_cli import pushed_apply
from volume_cli.deps.documents import GenerationRecord, read_generation_record
from volume_cli.deps.forest import current_generation
from volume_cli.deps.publish import PACK_THREADS, write_packs
from volume_cli.deps.record import clear_intent, record_intent, record_switch, repair_state
from volume_cli.errors import SyncManifestError
from volume_cli.fsguard import guard_volume
from volume_cli.layout import VolumeLayout
from volume_cli.local_copy import LIBRARY_MIN_BYTES, PACKS, holds_big_libraries, parse_pack_name
from volume_cli.progress import Progress
from volume_cli.store.lock import LeaseLock
from volume_cli.store.state import ModelsRecord, read_project_state, update_project_state
from volume_cli.store.writer_locks import project_lock
from volume_cli.sync.manifest import GenerationManifest, read_pending


@dataclass(frozen=True)
class ApplyResult:
    project: str
    generation: str | None  # None: nothing was pending
    previous_generation: str | None
    switched: bool  # False when the pending generation was current already (a killed apply's)
    files_checked: int
    deep: bool
    modes_restored: int
    links_made: int
    forest_links: int
    superseded: tuple[str, ...]  # older pending generations dropped unapplied
    seconds: float
    packs_written: int = 0  # entries of the current generation given a pack (a worker's first start reads it)
    packs_error: str | None = None  # why packs are missing still (the apply itself succeeded)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def apply_pending(
    *, layout: VolumeLayout, project: str, deep: bool, wait_seconds: float, progress: Progress
) -> ApplyResult:
    """Apply the newest pending generation of ``project``; a refused manifest raises before anything changes."""
    started = time.monotonic()
    with project_lock(layout, project, command="sync apply", wait_seconds=wait_seconds, progress=progress) as lease:
        pending = read_pending(layout, project)  # under the lock: a concurrent apply may have just finished
        outcome = _apply_locked(layout, project, pending, lease, deep=deep, progress=progress) if pending else None
    # After the lock: packs are immutable files written under temp names, so nothing waits on them. A
    # generation a worker applied at start (or an apply killed while packing) gets its packs here too.
    written, error = pack_current_generation(layout, project, progress)
    if outcome is None:
        seconds = time.monotonic() - started
        return ApplyResult(project, None, None, False, 0, deep, 0, 0, 0, (), seconds, written, error)
    return ApplyResult(
        project=project,
        generation=outcome.generation,
        previous_generation=outcome.previous if outcome.switched else None,
        switched=outcome.switched,
        files_checked=outcome.files_checked,
        deep=deep,
        modes_restored=outcome.modes_restored,
        links_made=outcome.links_made,
        forest_links=outcome.forest_links,
        superseded=tuple(item.generation for item in pending[:-1]),
        seconds=time.monotonic() - started,
        packs_written=written,
        packs_error=error,
    )


def _apply_locked(
    layout: VolumeLayout,
    project: str,
    pending: list[GenerationManifest],
    lease: LeaseLock,
    *,
    deep: bool,
    progress: Progress,
) -> pushed_apply.Outcome:
    """The apply of the newest of ``pending`` and the boot refresh, the project's lock held."""
    python_version = pending[-1].python_version
    guard_volume(layout, project=project, python_version=python_version)
    outcome = pushed_apply.apply_newest(
        str(layout.root),
        [manifest.model_dump(mode="json") for manifest in pending],
        CliRecords(layout, lease, project, python_version),
        deep=deep,
        step=progress.step,
    )
    from volume_cli.consumer_env import write_boot

    write_boot(layout, project, python_version)
    return outcome


def pack_current_generation(layout: VolumeLayout, project: str, progress: Progress) -> tuple[int, str | None]:
    """Write a pack for each entry of ``project``'s current generation that has none: (how many, why not all).

    A pack written before packs left big native libraries out (format 1, ``holds_big_libraries``) is
    replaced: a worker's copy over its ceiling can then link those libraries instead of importing
    the whole generation from the volume.

    Run after the switch, the project's lock released: the generation serves meanwhile (its workers copy
    the unpacked entries file by file); packs are written under temp names and renamed, so two runs at
    once only write one twice, and an entry gc removes meanwhile fails its pack (reported) or leaves an
    orphan gc removes later. A failure leaves the apply done: packs only speed up a first start.
    """
    state = read_project_state(layout, project)
    generation = current_generation(layout, project, state.python_version) if state else None
    record = read_generation_record(layout, project, generation) if generation else None
    if state is None or record is None:
        return 0, None
    guard_volume(layout, project=project, python_version=state.python_version)
    folder = layout.deps_dir / PACKS
    try:
        parsed = [(found, name) for name in os.listdir(folder) if (found := parse_pack_name(name)) is not None]
    except FileNotFoundError:
        parsed = []
    names = {found[0]: name for found, name in parsed}
    wanted = {entry.entry for entry in record.entries}
    # Only a pack as big as a big library can hold one: the others are not opened.
    outdated = [
        entry
        for (entry, size, digest), name in parsed
        if entry in wanted and size >= LIBRARY_MIN_BYTES and holds_big_libraries(str(folder / name), size, digest)
    ]
    refused: str | None = None  # an older pack it cannot remove stays: workers still copy its entry from it
    for entry in outdated:  # removed first: an entry without a pack is copied file by file meanwhile
        try:
            with contextlib.suppress(FileNotFoundError):
                (folder / names[entry]).unlink()
        except OSError as exc:
            refused = (
                refused
                or f"{exc.strerror or exc} (workers copy those entries from their older packs; run sync apply again)"
            )
            continue
        del names[entry]
    repacked = [entry for entry in outdated if entry not in names]
    missing = {
        entry: layout.store_dir / entry
        for entry in sorted(wanted)
        if entry not in names and (layout.store_dir / entry).is_dir() and not (layout.store_dir / entry).is_symlink()
    }
    if not missing:
        return 0, refused
    if repacked:
        progress.step(f"repacking {len(repacked)} store entries whose packs hold their big native libraries")
    progress.step(f"packing {len(missing)} store entries for workers' first start")
    try:
        _pack_entries(missing, folder)
    except OSError as exc:
        return 0, f"{exc.strerror or exc} (workers copy those entries file by file; run sync apply again)"
    return len(missing), refused


class CliRecords:
    """The apply's records written through the document models: the one writer ``deps install`` uses too."""

    def __init__(self, layout: VolumeLayout, lease: LeaseLock, project: str, python_version: str) -> None:
        self.layout = layout
        self.lease = lease
        self.project = project
        self.python_version = python_version

    def ensure_held(self) -> None:
        self.lease.ensure_held()

    def check(self, record: dict[str, Any], models: dict[str, Any] | None) -> None:
        _validated(GenerationRecord, record, "generation record")
        if models is not None:
            _validated(ModelsRecord, models, "models record")

    def clear_intent(self) -> None:
        clear_intent(self.layout, self.project)

    def record_intent(self, *, generation: str, entries: list[str]) -> None:
        record_intent(
            self.layout,
            project=self.project,
            python_version=self.python_version,
            generation=generation,
            entries=entries,
        )

    def repair_state(self) -> None:
        repair_state(self.layout, self.project, self.python_version)

    def record_switch(self, record: dict[str, Any], *, previous: str | None) -> None:
        parsed = _validated(GenerationRecord, record, "generation record")
        record_switch(self.layout, self.project, self.python_version, parsed, previous=previous, new_bytes=0)

    def adopt_models(self, models: dict[str, Any] | None) -> None:
        """The source's models record: every model the manifest carried is present and checked."""
        if models is None:
            return
        source = _validated(ModelsRecord, models, "models record")
        update_project_state(
            self.layout,
            self.project,
            self.python_version,
            lambda state: state if state.models == source else state.model_copy(update={"models": source}),
        )


# Files of one entry read at once from the volume while it is packed: its round trips overlap
# (the small benchmark set's 8 entries, 1,879 files: see docs/regions.md).
PACK_READERS = 8


def _pack_entries(entries: dict[str, Path], folder: Path) -> None:
    """``write_packs`` for entries on the volume: each entry's files read ahead by ``PACK_READERS`` threads."""
    write_packs(entries, folder, threads=PACK_THREADS, readers=PACK_READERS)


RecordT = TypeVar("RecordT", bound=BaseModel)


def _validated(cls: type[RecordT], data: dict[str, Any], what: str) -> RecordT:
    """A pushed record as its model; one clear error (not a traceback) when it does not fit."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise SyncManifestError(
            f"the pushed {what} is invalid ({where}: {first['msg']}); the current generation was kept",
            hint="push again from a volume where `volume-cli deps check` passes",
        ) from None
