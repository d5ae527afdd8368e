"""Status data for the CLI: per project and for the whole store.

Status reads recorded documents only (state.json, lock.json, generation
records, one readlink per project) and never walks a forest, so it stays
fast on a network volume with many projects. ``list_packages`` is the
exception by design: it reads the generation's dist-info METADATA, the truth.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from volume_cli.deps.documents import (
    GenerationRecord,
    generation_records_dir,
    read_generation_record,
    read_lock_info,
)
from volume_cli.deps.entries import read_entry_manifest
from volume_cli.deps.forest import current_generation
from volume_cli.deps.lock import read_current_lock
from volume_cli.deps.plan import (
    NO_BYTECODE_SLOWDOWN,
    ChangeKind,
    compute_plan,
    missing_interpreter_warning,
    read_installed,
)
from volume_cli.deps.python import find_interpreter
from volume_cli.deps.record import reconciled_deps
from volume_cli.errors import StateError
from volume_cli.layout import VolumeLayout
from volume_cli.local_copy import PACKS, parse_pack_name
from volume_cli.project.definition import ProjectDefinition
from volume_cli.store.documents import read_document
from volume_cli.store.lock import describe_lock, lock_path
from volume_cli.store.state import ProjectState, read_project_state


@dataclass(frozen=True)
class DepsStatus:
    project: str
    python_version: str
    deps_path: str
    installed: bool
    current_generation: str | None
    previous_generation: str | None
    generations_kept: tuple[str, ...]
    config_hash: str
    lock_hash: str | None  # of the stored lock
    lock_config_hash: str | None  # config hash the stored lock was resolved from
    generation_lock_hash: str | None  # lock the current generation was built from
    locked_packages: int | None
    installed_packages: int | None
    installed_at: datetime | None
    size_bytes: int | None
    config_changed_since_lock: bool
    generation_differs_from_lock: bool
    writer: dict[str, object] | None  # who holds the project's lock, if anyone
    missing_entries: tuple[str, ...] = ()  # store entries the current generation links that are gone
    bytecode_missing: bool = False  # the current generation was stored without bytecode (no interpreter of X.Y)

    @property
    def in_sync(self) -> bool:
        return self.installed and not self.config_changed_since_lock and not self.generation_differs_from_lock

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["installed_at"] = self.installed_at.isoformat() if self.installed_at else None
        data["in_sync"] = self.in_sync
        return data


def deps_status(
    *,
    layout: VolumeLayout,
    project: ProjectDefinition,
    mirror: str | None,
    state: ProjectState | Literal["read"] | None = "read",
    store_entries: frozenset[str] | None = None,
) -> DepsStatus:
    """``state``: the project's state when the caller has read it already (one read less per project).

    ``store_entries``: one listing of the store shared by all projects; the
    current generation's record is checked against it, so a generation that
    lost entries shows without walking anything.
    """
    python_version = project.python_version
    config_hash = project.config_hash(mirror=mirror)
    if state == "read":
        state = read_project_state(layout, project.name)
    # state.json may be one switch behind after a crash: read it through the link.
    deps = reconciled_deps(layout, project.name, python_version, state)
    lock = read_lock_info(layout, project.name)
    current = current_generation(layout, project.name, python_version)
    records = sorted(
        name.removesuffix(".json")
        for name in _listdir(generation_records_dir(layout, project.name))
        if name.endswith(".json")
    )
    generation_lock = deps.lock_hash if deps and deps.generation == current else None
    record = _current_record(layout, project.name, current)
    return DepsStatus(
        project=project.name,
        python_version=python_version,
        deps_path=str(layout.deps_path(project.name, python_version)),
        installed=current is not None,
        current_generation=current,
        previous_generation=deps.previous_generation if deps else None,
        generations_kept=tuple(records),
        config_hash=config_hash,
        lock_hash=lock.pylock_sha256 if lock else None,
        lock_config_hash=lock.config_hash if lock else None,
        generation_lock_hash=generation_lock,
        locked_packages=len(lock.packages) if lock else None,
        installed_packages=deps.package_count if deps and deps.generation == current else None,
        installed_at=deps.installed_at if deps else None,
        size_bytes=deps.size_bytes if deps else None,
        config_changed_since_lock=lock is None or lock.config_hash != config_hash,
        generation_differs_from_lock=current is None or lock is None or generation_lock != lock.pylock_sha256,
        writer=describe_lock(lock_path(layout.locks_dir, project.name)),
        missing_entries=_missing_entries(layout, record, store_entries),
        bytecode_missing=record is not None and lacks_bytecode(layout, record),
    )


def _current_record(layout: VolumeLayout, project: str, current: str | None) -> GenerationRecord | None:
    if current is None:
        return None
    try:
        return read_generation_record(layout, project, current)
    except StateError:
        return None


def _missing_entries(
    layout: VolumeLayout, record: GenerationRecord | None, store_entries: frozenset[str] | None
) -> tuple[str, ...]:
    if record is None:
        return ()
    on_disk = store_entries if store_entries is not None else frozenset(_listdir(layout.store_dir))
    return tuple(entry.entry for entry in record.entries if entry.entry not in on_disk)


def _is_real(path: Path, kind: int) -> bool:
    """``path`` is a file or folder of ``kind`` itself, never through a link (it could lead off the volume)."""
    try:
        return stat.S_IFMT(os.lstat(path).st_mode) == kind
    except OSError:
        return False


def lacks_bytecode(layout: VolumeLayout, record: GenerationRecord) -> bool:
    """Whether the generation's packages were stored without bytecode (no interpreter of X.Y at install).

    A few stats, never a walk: the first package folder with an ``__init__.py`` decides, since an
    install compiles every module or none. Entries are immutable, so the answer stays true.
    """
    for entry in record.entries:
        folder = layout.store_dir / entry.entry
        if not _is_real(folder, stat.S_IFDIR):
            continue
        for item in entry.top_level:
            if not item.is_dir or item.name.endswith((".dist-info", ".data")) or item.name == "__pycache__":
                continue
            package = folder / item.name
            if _is_real(package, stat.S_IFDIR) and _is_real(package / "__init__.py", stat.S_IFREG):
                return not _is_real(package / "__pycache__", stat.S_IFDIR)
    return False


def _generation_line(project: str, generation: str | None, python_version: str) -> str:
    _, next_step = missing_interpreter_warning(python_version)
    return (
        f"{project}: generation {generation} has no bytecode (no Python {python_version} interpreter was found "
        f"when it was installed): every worker's cold start imports it {NO_BYTECODE_SLOWDOWN} slower; packages "
        f"stored after the interpreter is provided get bytecode. next: {next_step}"
    )


def no_bytecode_warning(detail: DepsStatus) -> str | None:
    """The status line for a generation stored without bytecode, with what to do; None when it has bytecode."""
    if not detail.bytecode_missing:
        return None
    return _generation_line(detail.project, detail.current_generation, detail.python_version)


def bytecode_warnings(*, layout: VolumeLayout, project: str, python_version: str, uv: str) -> list[str]:
    """``doctor``'s lines: the current generation has no bytecode, or the next install from here would store none."""
    current = current_generation(layout, project, python_version)
    record = _current_record(layout, project, current)
    if record is not None and lacks_bytecode(layout, record):
        return [_generation_line(project, current, python_version)]
    if find_interpreter(python_version, uv) is None:
        message, next_step = missing_interpreter_warning(python_version)
        return [f"{project}: {message} (the next deps install from here). next: {next_step}"]
    return []


def _listdir(folder: os.PathLike[str] | str) -> list[str]:
    try:
        return os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # a planted link loop: nothing is there for status to count
            return []
        raise


@dataclass(frozen=True)
class StoreUsage:
    entries: int
    size_bytes: int
    referenced_entries: int
    unreferenced_entries: int
    unreferenced_bytes: int
    shared_entries: int  # used by two or more projects
    shared_bytes: int  # size of those entries, stored once
    saved_bytes: int  # what storing them once per project would have cost on top
    project_bytes: dict[str, int]
    packs: int = 0  # one per entry a worker's first start unpacks (python-deps/.packs)
    packs_bytes: int = 0  # their size, on top of size_bytes: read from their names, no stat per pack

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def store_usage(*, layout: VolumeLayout) -> StoreUsage:
    sizes: dict[str, int] = {}
    users: dict[str, set[str]] = {}
    project_bytes: Counter[str] = Counter()
    for project in _listdir(layout.projects_state_dir):
        records_dir = generation_records_dir(layout, project)
        seen: set[str] = set()
        for name in _listdir(records_dir):
            if not name.endswith(".json"):
                continue
            try:
                record = read_document(records_dir / name, GenerationRecord)
            except StateError:
                continue
            if record is None:
                continue
            for entry in record.entries:
                sizes[entry.entry] = entry.size_bytes
                users.setdefault(entry.entry, set()).add(project)
                if entry.entry not in seen:
                    seen.add(entry.entry)
                    project_bytes[project] += entry.size_bytes
    on_disk = [name for name in _listdir(layout.store_dir) if not name.startswith(".")]
    unreferenced = [name for name in on_disk if name not in users]
    unreferenced_bytes = 0
    for name in unreferenced:
        manifest = read_entry_manifest(layout, name)
        unreferenced_bytes += manifest.info.size_bytes if manifest else 0
    present = [name for name in on_disk if name in users]
    shared = [name for name in present if len(users[name]) > 1]
    packs = [parsed for parsed in map(parse_pack_name, _listdir(layout.deps_dir / PACKS)) if parsed is not None]
    return StoreUsage(
        entries=len(on_disk),
        size_bytes=sum(sizes[name] for name in present) + unreferenced_bytes,
        referenced_entries=len(present),
        unreferenced_entries=len(unreferenced),
        unreferenced_bytes=unreferenced_bytes,
        shared_entries=len(shared),
        shared_bytes=sum(sizes[name] for name in shared),
        saved_bytes=sum(sizes[name] * (len(users[name]) - 1) for name in shared),
        project_bytes=dict(project_bytes),
        packs=len(packs),
        packs_bytes=sum(size for _, size, _ in packs),
    )


@dataclass(frozen=True)
class PackageRow:
    name: str
    group: str | None  # config group that asks for it; None for a dependency
    requirement: str | None  # as written in the config
    locked_version: str | None
    installed_version: str | None
    status: str  # ok | not installed | differs | not locked | extra

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def list_packages(*, layout: VolumeLayout, project: ProjectDefinition, mirror: str | None) -> list[PackageRow]:
    """Desired (config + lock) against installed (the current generation's dist-info), per package."""
    del mirror  # the lock already reflects the mirror it was made with; kept for a uniform API
    requested: dict[str, tuple[str | None, str | None]] = {}
    for config_group, group in project.dependencies.ordered_groups:
        for text in group.packages:
            requested[canonicalize_name(Requirement(text).name)] = (config_group, text)
    lock = read_current_lock(layout, project.name)
    locked = {package.name: package.version for package in lock.info.packages} if lock else {}
    current = current_generation(layout, project.name, project.python_version)
    installed = read_installed(layout.deps_path(project.name, project.python_version)) if current else {}
    kinds = compute_plan(
        project=project.name,
        python_version=project.python_version,
        current_generation=current,
        lock_hash=lock.info.pylock_sha256 if lock else None,
        locked=lock.info.packages if lock else [],
        installed=installed,
    ).kinds()
    rows: list[PackageRow] = []
    for name in sorted(set(requested) | set(locked) | set(installed)):
        group_name, requirement = requested.get(name, (None, None))
        dist = installed.get(name)
        kind = kinds.get(name)
        # Asked for by the config but not in the lock (yet), whether installed or not.
        status = "not locked" if kind is None or (kind == "remove" and name in requested) else _ROW_STATUS[kind]
        rows.append(PackageRow(name, group_name, requirement, locked.get(name), dist.version if dist else None, status))
    return rows


# The comparison's kinds in the words of `deps list`.
_ROW_STATUS: dict[ChangeKind, str] = {
    "add": "not installed",
    "upgrade": "differs",
    "downgrade": "differs",
    "reinstall": "ok",  # same version, another build: list shows versions
    "unchanged": "ok",
    "remove": "extra",
}
