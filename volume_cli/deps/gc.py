"""``gc``: remove old generations, then store entries nothing references.

A generation is kept while it is some project's current or previous one, or
younger than the grace period (workers started on it may still run). An
entry is kept while a kept generation's record lists it, or while it is
younger than the grace period (measured from gc's own start), or while an
in-progress install's intent names it. gc decides and renames aside what it
removes under the volume's store lock, so no install can start using an
entry between the decision and the removal (``deps/record.py``); the slow
deletes happen after the lock is released. Everything is read from records
and one listing per folder; the forest is never walked.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from datetime import timezone
from pathlib import Path
from typing import Any

from volume_cli.deps.documents import ENTRY_MANIFEST, GenerationRecord, generation_records_dir
from volume_cli.deps.entries import (
    STALE_STAGING_SECONDS,
    base_key,
    read_entry_manifest,
    staging_is_stale,
    staging_parent,
)
from volume_cli.deps.faults import crash_point
from volume_cli.deps.forest import TEMP_PREFIX
from volume_cli.deps.publish import remove_packs
from volume_cli.deps.record import live_intent, store_lock
from volume_cli.errors import StateError
from volume_cli.fileops import TRASH_PREFIX
from volume_cli.fileops import set_aside as _set_aside
from volume_cli.fsguard import check_folder, guard_volume
from volume_cli.layout import VolumeLayout
from volume_cli.local_copy import PACKS
from volume_cli.parallel import remove_trees
from volume_cli.progress import Progress
from volume_cli.store.documents import read_document
from volume_cli.store.state import read_project_state
from volume_cli.store.writer_locks import gc_lock


@dataclass(frozen=True)
class GcReport:
    dry_run: bool
    generations_removed: tuple[str, ...]  # "<project>/<generation>"
    entries_removed: tuple[str, ...]
    bytes_freed: int
    generations_kept: int
    entries_kept: int
    young_entries_kept: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _age(path: Path, now: float) -> float | None:
    try:
        info = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return None
    # An entry's mtime is when its last file went in (just before the rename
    # into the store); installs that reuse an entry bump it with utime.
    return now - info.st_mtime


def _listdir(folder: Path) -> list[str]:
    try:
        return sorted(os.listdir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []


def _linked_generations(layout: VolumeLayout) -> dict[tuple[str, str], str]:
    """(python dir, project) → generation for every ``pyX.Y/<project>`` link, whatever the state says."""
    linked: dict[tuple[str, str], str] = {}
    for python_dir in _listdir(layout.deps_dir):
        if not python_dir.startswith("py"):
            continue
        check_folder(layout.deps_dir / python_dir / ".generations", layout.root)  # a planted pyX.Y link
        for name in _listdir(layout.deps_dir / python_dir):
            try:
                target = os.readlink(layout.deps_dir / python_dir / name)
            except OSError:
                continue
            linked[(python_dir, name)] = Path(target).name
    return linked


@dataclass
class _Decision:
    """What gc removes, decided under the store lock from one consistent reading."""

    generations: list[tuple[str, Path, Path]] = field(default_factory=list)  # (label, folder, record file)
    orphans: list[tuple[str, Path]] = field(default_factory=list)
    entries: list[str] = field(default_factory=list)
    young: list[str] = field(default_factory=list)
    freed: int = 0
    kept_generations: int = 0
    kept_entries: int = 0
    installing: set[tuple[str, int]] = field(default_factory=set)  # (host, pid) of live installs


def gc(
    *,
    layout: VolumeLayout,
    grace_seconds: float,
    dry_run: bool,
    progress: Progress,
    wait_seconds: float = 0,
    drop_previous: bool = False,
) -> GcReport:
    # Ages are measured against gc's own start: an entry touched after it is young whatever the grace.
    started = time.time()
    aside: list[Path] = []
    with gc_lock(layout, wait_seconds=wait_seconds, progress=progress):
        guard_volume(layout)  # a planted .store or .staging link would make gc empty another tree
        # Installs record their intent under this lock (deps/record.py explains the protocol).
        with store_lock(layout, command="gc"):
            progress.step("collecting generations")
            decision = _decide(layout, grace_seconds, started, progress, drop_previous=drop_previous)
            crash_point("gc-listed")
            if not dry_run:
                aside = _set_aside_all(layout, decision)
        progress.step("removing")
        remove_trees(aside)  # all at once: on a network volume each unlink is a round trip
        if not dry_run:
            _cleanup_staging(layout, decision.installing)
            remove_packs(layout.deps_dir / PACKS, layout.store_dir, removed=decision.entries)
    removed_generations = [label for label, _, _ in decision.generations] + [label for label, _ in decision.orphans]
    return GcReport(
        dry_run=dry_run,
        generations_removed=tuple(removed_generations),
        entries_removed=tuple(decision.entries),
        bytes_freed=decision.freed,
        generations_kept=decision.kept_generations,
        entries_kept=decision.kept_entries,
        young_entries_kept=tuple(decision.young),
    )


def _decide(
    layout: VolumeLayout, grace_seconds: float, now: float, progress: Progress, *, drop_previous: bool
) -> _Decision:
    decision = _Decision()
    linked = _linked_generations(layout)
    protected_by_project: dict[str, set[str]] = {}
    for (_, name), generation in linked.items():
        protected_by_project.setdefault(name, set()).add(generation)
    referenced: set[str] = set()
    in_progress: set[str] = set()  # base keys of entries installs are creating or linking
    for project in _listdir(layout.projects_state_dir):
        protected = protected_by_project.setdefault(project, set())
        try:
            state = read_project_state(layout, project)
        except StateError as exc:
            progress.warn(f"{project}: {exc}; keeping all its generations")
            state = None
            protected.add("*")
        if state is not None and state.deps is not None:
            # drop_previous: the user gives up rollback to free what only the previous generation uses.
            previous = None if drop_previous else state.deps.previous_generation
            protected.update(filter(None, (state.deps.generation, previous)))
        intent = live_intent(layout, project)
        if intent is not None:
            protected.add(intent.generation)
            in_progress.update(intent.entries)
            decision.installing.add((intent.host, intent.pid))
        from volume_cli.sync.manifest import pending_entries  # here: sync imports the deps engine

        in_progress.update(pending_entries(layout, project))  # a pushed generation not applied yet (sync push)
        _decide_generations(layout, project, protected, grace_seconds, now, decision, referenced, progress)
    decision.orphans = _orphan_generations(layout, linked, protected_by_project, grace_seconds, now)
    progress.step("collecting store entries")
    for entry in _listdir(layout.store_dir):
        path = layout.store_dir / entry
        if entry.startswith(TRASH_PREFIX):  # a removal that was interrupted
            continue
        if entry in referenced or "*" in in_progress or base_key(entry) in in_progress:
            decision.kept_entries += 1
            continue
        entry_age = _age(path, now)
        if entry_age is None:
            continue
        if entry_age < grace_seconds:
            decision.young.append(entry)
            continue
        manifest = read_entry_manifest(layout, entry) if (path / ENTRY_MANIFEST).exists() else None
        decision.freed += manifest.info.size_bytes if manifest else 0
        decision.entries.append(entry)
    return decision


def _cleanup_staging(layout: VolumeLayout, installing: set[tuple[str, int]]) -> None:
    """Remove killed runs' staging folders, but never one of an install whose intent is live.

    The age rule alone (``staging_is_stale``) would remove the staging folder
    of a build running longer than it on another pod.
    """
    parent = staging_parent(layout)
    live = {(host.replace("-", "_"), pid) for host, pid in installing}
    now = time.time()
    for name in _listdir(parent):
        host, _, rest = name.partition("-")
        pid = rest.split("-", 1)[0]
        if pid.isdigit() and (host, int(pid)) in live:
            continue
        age = _age(parent / name, now)
        if age is None:
            continue
        if name.startswith(TRASH_PREFIX) or staging_is_stale(
            name, age_seconds=age, max_age_seconds=STALE_STAGING_SECONDS
        ):
            shutil.rmtree(parent / name, ignore_errors=True)


def _decide_generations(
    layout: VolumeLayout,
    project: str,
    protected: set[str],
    grace_seconds: float,
    now: float,
    decision: _Decision,
    referenced: set[str],
    progress: Progress,
) -> None:
    records_dir = check_folder(generation_records_dir(layout, project), layout.root)
    for file_name in _listdir(records_dir):
        if not file_name.endswith(".json"):
            continue
        record = read_document(records_dir / file_name, GenerationRecord)
        if record is None:
            continue
        age = now - record.created_at.replace(tzinfo=record.created_at.tzinfo or timezone.utc).timestamp()
        own = _own_folder(layout, project, record)
        if own is None:
            progress.warn(f"{project}: {file_name} names {record.path}, not its own folder; keeping it")
        if own is None or "*" in protected or record.generation in protected or age < grace_seconds:
            decision.kept_generations += 1
            referenced.update(entry.entry for entry in record.entries)
            continue
        label = f"{project}/{record.generation}"
        decision.generations.append((label, own, records_dir / file_name))


def _set_aside_all(layout: VolumeLayout, decision: _Decision) -> list[Path]:
    aside: list[Path] = []
    for _, folder, record_file in decision.generations:
        # Folder first: a record without a folder is harmless, a folder without a record leaks.
        aside.append(_set_aside(folder) or folder)
        record_file.unlink(missing_ok=True)
    for _, folder in decision.orphans:
        aside.append(_set_aside(folder) or folder)
    for entry in decision.entries:
        aside.append(_set_aside(layout.store_dir / entry) or layout.store_dir / entry)
    # Interrupted removals of earlier runs.
    aside += [layout.store_dir / name for name in _listdir(layout.store_dir) if name.startswith(TRASH_PREFIX)]
    return sorted(set(aside))


def _orphan_generations(
    layout: VolumeLayout,
    linked: dict[tuple[str, str], str],
    protected_by_project: dict[str, set[str]],
    grace_seconds: float,
    now: float,
) -> list[tuple[str, Path]]:
    """Generation folders with no record (a run killed before recording, or an unfinished temp one)."""
    removed: list[tuple[str, Path]] = []
    for python_dir in _listdir(layout.deps_dir):
        generations_root = layout.deps_dir / python_dir / ".generations"
        if not python_dir.startswith("py"):
            continue
        for project in _listdir(generations_root):
            check_folder(generations_root / project, layout.root)  # its old generations go through this folder
            records = generation_records_dir(layout, project)
            protected = protected_by_project.get(project, set())
            for name in _listdir(generations_root / project):
                generation = name.removeprefix(TEMP_PREFIX)
                if linked.get((python_dir, project)) == name or (
                    (records / f"{generation}.json").exists() and name == generation
                ):
                    continue
                if "*" in protected or generation in protected:  # an install is building it
                    continue
                path = generations_root / project / name
                age = _age(path, now)
                if age is None or age < grace_seconds:
                    continue
                removed.append((f"{project}/{name}", path))
    return removed


def _own_folder(layout: VolumeLayout, project: str, record: GenerationRecord) -> Path | None:
    """The folder ``record`` may remove: its own generation's, or None for a forged or corrupt record.

    A record naming another generation (the current one, another project's) or a
    path outside the volume would make gc delete what is in use.
    """
    name = record.generation
    if not name or name in (".", "..") or "/" in name or os.sep in name or record.project != project:
        return None
    folder = layout.generations_dir(project, record.python_version) / name
    if "/" in record.python_version or layout.absolute(record.path) != folder:
        return None
    return folder
