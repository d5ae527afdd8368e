"""``gc``: remove old generations, then store entries nothing references.

A generation is kept while it is some project's current or previous one, or
younger than the grace period (workers started on it may still run). An
entry is kept while a kept generation's record lists it, or while it is
younger than the grace period (an install may be about to link it; installs
touch the entries they reuse). Everything is read from records and one
listing per folder; the forest is never walked.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from datetime import timezone
from pathlib import Path
from typing import Any

from volume_cli.deps.documents import ENTRY_MANIFEST, GenerationRecord, generation_records_dir
from volume_cli.deps.forest import TEMP_PREFIX
from volume_cli.deps.locking import gc_lock
from volume_cli.deps.store import cleanup_stale_staging, read_manifest, remove_tree
from volume_cli.errors import StateError
from volume_cli.fsguard import check_folder, guard_volume
from volume_cli.layout import VolumeLayout
from volume_cli.progress import Progress
from volume_cli.store.documents import read_document
from volume_cli.store.state import read_project_state


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


def gc(
    *,
    layout: VolumeLayout,
    grace_seconds: float,
    dry_run: bool,
    progress: Progress,
    wait_seconds: float = 0,
    drop_previous: bool = False,
) -> GcReport:
    now = time.time()
    removed_generations: list[str] = []
    kept_generations = 0
    referenced: set[str] = set()
    with gc_lock(layout, wait_seconds=wait_seconds, progress=progress):
        guard_volume(layout)  # a planted .store or .staging link would make gc empty another tree
        progress.step("collecting generations")
        linked = _linked_generations(layout)
        protected_by_project: dict[str, set[str]] = {}
        for (_, name), generation in linked.items():
            protected_by_project.setdefault(name, set()).add(generation)
        for project in _listdir(layout.projects_state_dir):
            protected = set(protected_by_project.get(project, set()))
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
                    kept_generations += 1
                    referenced.update(entry.entry for entry in record.entries)
                    continue
                removed_generations.append(f"{project}/{record.generation}")
                if not dry_run:
                    # Folder first: a record without a folder is harmless, a folder without a record leaks.
                    remove_tree(own)
                    (records_dir / file_name).unlink(missing_ok=True)
        removed_generations += _orphan_generations(layout, linked, grace_seconds, now, dry_run)
        progress.step("collecting store entries")
        removed_entries: list[str] = []
        young: list[str] = []
        freed = 0
        kept_entries = 0
        for entry in _listdir(layout.store_dir):
            path = layout.store_dir / entry
            if entry.startswith(".trash-"):  # a removal that was interrupted
                if not dry_run:
                    remove_tree(path)
                continue
            if entry in referenced:
                kept_entries += 1
                continue
            entry_age = _age(path, now)
            if entry_age is None:
                continue
            if entry_age < grace_seconds:
                young.append(entry)
                continue
            manifest = read_manifest(layout, entry) if (path / ENTRY_MANIFEST).exists() else None
            freed += manifest.info.size_bytes if manifest else 0
            removed_entries.append(entry)
            if not dry_run:
                again = _age(path, time.time())  # an install may have touched it since we listed
                if again is not None and again >= grace_seconds:
                    remove_tree(path)
        if not dry_run:
            cleanup_stale_staging(layout)
    progress.info(
        f"{'would remove' if dry_run else 'removed'} {len(removed_generations)} generations and "
        f"{len(removed_entries)} store entries ({freed} bytes)"
    )
    return GcReport(
        dry_run=dry_run,
        generations_removed=tuple(removed_generations),
        entries_removed=tuple(removed_entries),
        bytes_freed=freed,
        generations_kept=kept_generations,
        entries_kept=kept_entries,
        young_entries_kept=tuple(young),
    )


def _orphan_generations(
    layout: VolumeLayout, linked: dict[tuple[str, str], str], grace_seconds: float, now: float, dry_run: bool
) -> list[str]:
    """Generation folders with no record (a run killed before recording, or an unfinished temp one)."""
    removed: list[str] = []
    for python_dir in _listdir(layout.deps_dir):
        generations_root = layout.deps_dir / python_dir / ".generations"
        if not python_dir.startswith("py"):
            continue
        for project in _listdir(generations_root):
            check_folder(generations_root / project, layout.root)  # its old generations go through this folder
            records = generation_records_dir(layout, project)
            for name in _listdir(generations_root / project):
                generation = name.removeprefix(TEMP_PREFIX)
                if linked.get((python_dir, project)) == name or (
                    (records / f"{generation}.json").exists() and name == generation
                ):
                    continue
                path = generations_root / project / name
                age = _age(path, now)
                if age is None or age < grace_seconds:
                    continue
                removed.append(f"{project}/{name}")
                if not dry_run:
                    remove_tree(path)
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
