"""``gc``: remove old generations, then store entries nothing references.

A generation is kept while it is some project's current or previous one, or
younger than the grace period (workers started on it may still run). An
entry is kept while a kept generation's record lists it, or while it is
younger than the grace period (measured from gc's own start), or while an
in-progress install's intent names it. gc decides and renames aside what it
removes under the volume's store lock, so no install can start using an
entry between the decision and the removal (``deps/record.py``); the slow
deletes happen after the lock is released. Everything is read from records
and one listing per folder; the forest is never walked. On a network volume
each call is a round trip, so the reads (states, intents, records, entry
ages and manifests), the renames aside and the removals run many at once
(``volume_cli/parallel.py``; ``VOLUME_CLI_PUBLISH_THREADS=1`` makes them serial).
"""

from __future__ import annotations

import os
import stat
import time
from dataclasses import asdict, dataclass, field
from datetime import timezone
from pathlib import Path
from typing import Any

from volume_cli.deps.documents import ENTRY_MANIFEST, EntryManifest, GenerationRecord, generation_records_dir
from volume_cli.deps.entries import (
    STALE_STAGING_SECONDS,
    base_key,
    read_entry_manifest,
    staging_is_stale,
    staging_parent,
)
from volume_cli.deps.faults import crash_point
from volume_cli.deps.forest import building_generation, spare_source
from volume_cli.deps.publish import remove_packs
from volume_cli.deps.record import live_intent, store_lock
from volume_cli.errors import StateError
from volume_cli.fileops import TRASH_PREFIX
from volume_cli.fileops import set_aside as _set_aside
from volume_cli.fsguard import check_folder, guard_volume
from volume_cli.layout import VolumeLayout
from volume_cli.local_copy import PACKS
from volume_cli.parallel import remove_trees, run_spread
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
    info = _lstat(path)
    # An entry's mtime is when its last file went in (just before the rename
    # into the store); installs that reuse an entry bump it with utime.
    return None if info is None else now - info.st_mtime


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _listdir(folder: Path) -> list[str]:
    try:
        return sorted(os.listdir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []


def _linked_generations(layout: VolumeLayout, known: set[Path]) -> dict[tuple[str, str], str]:
    """(python dir, project) → generation for every ``pyX.Y/<project>`` link, whatever the state says."""
    names: list[tuple[str, str]] = []
    for python_dir in _listdir(layout.deps_dir):
        if not python_dir.startswith("py"):
            continue
        check_folder(layout.deps_dir / python_dir / ".generations", layout.root, known=known)  # a planted pyX.Y link
        names += [(python_dir, name) for name in _listdir(layout.deps_dir / python_dir)]
    linked: dict[tuple[str, str], str] = {}

    def read_link(key: tuple[str, str]) -> None:
        try:
            linked[key] = Path(os.readlink(layout.deps_dir / key[0] / key[1])).name
        except OSError:
            pass

    run_spread(((python_dir, (python_dir, name)) for python_dir, name in names), read_link)
    return linked


@dataclass
class _Decision:
    """What gc removes, decided under the store lock from one consistent reading."""

    generations: list[tuple[str, Path, Path]] = field(default_factory=list)  # (label, folder, record file)
    orphans: list[tuple[str, Path]] = field(default_factory=list)
    entries: list[str] = field(default_factory=list)
    young: list[str] = field(default_factory=list)
    trash: list[str] = field(default_factory=list)  # store names of removals an earlier run did not finish
    freed: int = 0
    kept_generations: int = 0
    kept_entries: int = 0
    installing: set[tuple[str, int]] = field(default_factory=set)  # (host, pid) of live installs


@dataclass
class _Project:
    """What gc reads of one project before deciding (read concurrently with the other projects')."""

    name: str
    protected: set[str] = field(default_factory=set)  # generations; "*": all of them
    in_progress: set[str] = field(default_factory=set)  # base keys of entries installs or pushes need
    installing: tuple[str, int] | None = None
    warning: str | None = None  # said by the caller's thread: a progress view is not thread-safe
    records: dict[str, GenerationRecord | None] = field(default_factory=dict)  # by file name


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
        known = guard_volume(layout)  # a planted .store or .staging link would make gc empty another tree
        # Installs record their intent under this lock (deps/record.py explains the protocol).
        with store_lock(layout, command="gc"):
            progress.step("collecting generations")
            decision = _decide(layout, grace_seconds, started, progress, drop_previous=drop_previous, known=known)
            crash_point("gc-listed")
            if not dry_run:
                aside = _set_aside_all(layout, decision)
        progress.step("removing")
        if not dry_run:
            aside += _stale_staging(layout, decision.installing)
        remove_trees(aside)  # all at once: on a network volume each unlink is a round trip
        if not dry_run:
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
    layout: VolumeLayout,
    grace_seconds: float,
    now: float,
    progress: Progress,
    *,
    drop_previous: bool,
    known: set[Path],
) -> _Decision:
    decision = _Decision()
    linked = _linked_generations(layout, known)
    protected_by_project: dict[str, set[str]] = {}
    for (_, name), generation in linked.items():
        protected_by_project.setdefault(name, set()).add(generation)
    referenced: set[str] = set()
    in_progress: set[str] = set()  # base keys of entries installs are creating or linking
    projects = _read_projects(layout, _listdir(layout.projects_state_dir), drop_previous=drop_previous)
    for project in projects:
        if project.warning is not None:
            progress.warn(project.warning)
        protected = protected_by_project.setdefault(project.name, set())
        protected |= project.protected
        in_progress |= project.in_progress
        if project.installing is not None:
            decision.installing.add(project.installing)
        _decide_generations(layout, project, protected, grace_seconds, now, decision, referenced, progress)
    recorded = {project.name: {name.removesuffix(".json") for name in project.records} for project in projects}
    removing = {(folder.parent.name, folder.name) for _, folder, _ in decision.generations}
    decision.orphans = _orphan_generations(
        layout, linked, protected_by_project, recorded, removing, grace_seconds, now, known
    )
    progress.step("collecting store entries")
    _decide_entries(layout, referenced, in_progress, grace_seconds, now, decision)
    return decision


def _read_projects(layout: VolumeLayout, names: list[str], *, drop_previous: bool) -> list[_Project]:
    """Every project's state, intent, pending pushes and generation records, many reads in flight."""
    from volume_cli.sync.manifest import pending_entries  # here: sync imports the deps engine

    projects = [_Project(name) for name in names]

    def read(project: _Project) -> None:
        try:
            state = read_project_state(layout, project.name)
        except StateError as exc:
            project.warning = f"{project.name}: {exc}; keeping all its generations"
            state = None
            project.protected.add("*")
        if state is not None and state.deps is not None:
            # drop_previous: the user gives up rollback to free what only the previous generation uses.
            previous = None if drop_previous else state.deps.previous_generation
            project.protected.update(filter(None, (state.deps.generation, previous)))
        intent = live_intent(layout, project.name)
        if intent is not None:
            project.protected.add(intent.generation)
            project.in_progress.update(intent.entries)
            project.installing = (intent.host, intent.pid)
        project.in_progress.update(pending_entries(layout, project.name))  # a pushed generation not applied yet
        records_dir = check_folder(generation_records_dir(layout, project.name), layout.root)
        project.records = dict.fromkeys(name for name in _listdir(records_dir) if name.endswith(".json"))

    run_spread(((project.name, project) for project in projects), read)

    def read_record(item: tuple[_Project, str]) -> None:
        project, file_name = item
        records_dir = generation_records_dir(layout, project.name)
        project.records[file_name] = read_document(records_dir / file_name, GenerationRecord)

    run_spread(((project.name, (project, name)) for project in projects for name in project.records), read_record)
    return projects


def _decide_entries(
    layout: VolumeLayout,
    referenced: set[str],
    in_progress: set[str],
    grace_seconds: float,
    now: float,
    decision: _Decision,
) -> None:
    """Store entries no kept generation, install or push needs, once older than the grace period."""
    candidates: list[str] = []
    for entry in _listdir(layout.store_dir):
        if entry.startswith(TRASH_PREFIX):  # a removal that was interrupted
            decision.trash.append(entry)
        elif entry in referenced or "*" in in_progress or base_key(entry) in in_progress:
            decision.kept_entries += 1
        else:
            candidates.append(entry)
    facts: dict[str, tuple[float, int] | None] = {}

    def learn(entry: str) -> None:
        facts[entry] = _entry_facts(layout, entry, now, grace_seconds)

    run_spread((("store", entry) for entry in candidates), learn)
    for entry in candidates:
        found = facts[entry]
        if found is None:
            continue
        if found[0] < grace_seconds:
            decision.young.append(entry)
            continue
        decision.freed += found[1]
        decision.entries.append(entry)


def _entry_facts(layout: VolumeLayout, entry: str, now: float, grace_seconds: float) -> tuple[float, int] | None:
    """An entry's age and size (from its manifest, read only when it is old enough to go); None when gone."""
    path = layout.store_dir / entry
    info = _lstat(path)
    if info is None:
        return None
    age = now - info.st_mtime
    if age < grace_seconds:
        return age, 0
    if stat.S_ISLNK(info.st_mode):  # planted: read_entry_manifest refuses it when it leads to an entry
        manifest = read_entry_manifest(layout, entry) if (path / ENTRY_MANIFEST).exists() else None
    else:
        manifest = read_document(path / ENTRY_MANIFEST, EntryManifest)  # absent: None
    return age, manifest.info.size_bytes if manifest else 0


def _stale_staging(layout: VolumeLayout, installing: set[tuple[str, int]]) -> list[Path]:
    """Killed runs' staging folders, but never one of an install whose intent is live.

    The age rule alone (``staging_is_stale``) would remove the staging folder
    of a build running longer than it on another pod.
    """
    parent = staging_parent(layout)
    live = {(host.replace("-", "_"), pid) for host, pid in installing}
    now = time.time()
    names: list[str] = []
    for name in _listdir(parent):
        host, _, rest = name.partition("-")
        pid = rest.split("-", 1)[0]
        if not (pid.isdigit() and (host, int(pid)) in live):
            names.append(name)
    ages: dict[str, float | None] = {}

    def learn(name: str) -> None:
        ages[name] = _age(parent / name, now)

    run_spread((("staging", name) for name in names), learn)
    stale: list[Path] = []
    for name in names:
        age = ages[name]
        if age is not None and (
            name.startswith(TRASH_PREFIX)
            or staging_is_stale(name, age_seconds=age, max_age_seconds=STALE_STAGING_SECONDS)
        ):
            stale.append(parent / name)
    return stale


def _decide_generations(
    layout: VolumeLayout,
    project: _Project,
    protected: set[str],
    grace_seconds: float,
    now: float,
    decision: _Decision,
    referenced: set[str],
    progress: Progress,
) -> None:
    records_dir = generation_records_dir(layout, project.name)
    for file_name, record in sorted(project.records.items()):
        if record is None:
            continue
        age = now - record.created_at.replace(tzinfo=record.created_at.tzinfo or timezone.utc).timestamp()
        own = _own_folder(layout, project.name, record)
        if own is None:
            progress.warn(f"{project.name}: {file_name} names {record.path}, not its own folder; keeping it")
        if own is None or "*" in protected or record.generation in protected or age < grace_seconds:
            decision.kept_generations += 1
            referenced.update(entry.entry for entry in record.entries)
            continue
        label = f"{project.name}/{record.generation}"
        decision.generations.append((label, own, records_dir / file_name))


def _set_aside_all(layout: VolumeLayout, decision: _Decision) -> list[Path]:
    """Rename aside everything decided, many renames in flight (each generation's in its own folder)."""
    work: list[tuple[Path, Path | None]] = [(folder, record_file) for _, folder, record_file in decision.generations]
    work += [(folder, None) for _, folder in decision.orphans]
    work += [(layout.store_dir / entry, None) for entry in decision.entries]
    aside: list[Path] = []

    def move(item: tuple[Path, Path | None]) -> None:
        folder, record_file = item
        aside.append(_set_aside(folder) or folder)
        if record_file is not None:
            # Folder first: a record without a folder is harmless, a folder without a record leaks.
            record_file.unlink(missing_ok=True)

    run_spread(((str(folder.parent), (folder, record_file)) for folder, record_file in work), move)
    # Interrupted removals of earlier runs.
    aside += [layout.store_dir / name for name in decision.trash]
    return sorted(set(aside))


def _orphan_generations(
    layout: VolumeLayout,
    linked: dict[tuple[str, str], str],
    protected_by_project: dict[str, set[str]],
    recorded: dict[str, set[str]],
    removing: set[tuple[str, str]],
    grace_seconds: float,
    now: float,
    known: set[Path],
) -> list[tuple[str, Path]]:
    """Generation folders with no record (a run killed before recording, or an unfinished temp one).

    ``recorded``: the generations each project has a record of; ``removing``: (project,
    generation) this gc removes. A spare forest goes with the generation it copies; a
    spare of another format goes.
    """
    candidates: list[tuple[str, Path]] = []
    for python_dir in _listdir(layout.deps_dir):
        generations_root = layout.deps_dir / python_dir / ".generations"
        if not python_dir.startswith("py"):
            continue
        for project in _listdir(generations_root):
            # Its old generations go through this folder.
            check_folder(generations_root / project, layout.root, known=known)
            records = recorded.get(project, set())  # listed under this lock: the same answer as asking again
            protected = protected_by_project.get(project, set())
            for name in _listdir(generations_root / project):
                source = spare_source(name)
                if source is not None:
                    generation = source
                    if source in records and (project, source) not in removing:
                        continue
                else:
                    generation = building_generation(name)  # a temp folder's owner: an install may be building it
                    if linked.get((python_dir, project)) == name or (generation in records and name == generation):
                        continue
                if "*" in protected or generation in protected:  # an install is building it
                    continue
                candidates.append((f"{project}/{name}", generations_root / project / name))
    ages: dict[Path, float | None] = {}

    def learn(path: Path) -> None:
        ages[path] = _age(path, now)

    run_spread(((str(path.parent), path) for _, path in candidates), learn)
    return [(label, path) for label, path in candidates if (age := ages[path]) is not None and age >= grace_seconds]


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
