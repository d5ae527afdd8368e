"""``status``: what is on the volume, read from the metadata store.

Sizes come from what installs recorded, never from walking the volume: on a
network file system a ``du`` of a few hundred thousand files takes minutes.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from volume_cli.errors import ConfigError, StateError
from volume_cli.layout import VolumeLayout
from volume_cli.mounts import MountInfo, inspect_mount
from volume_cli.project.definition import ProjectDefinition
from volume_cli.root import ResolvedRoot
from volume_cli.store.state import DepsRecord, ProjectState, read_project_state

if TYPE_CHECKING:
    from volume_cli.deps import DepsStatus, StoreUsage
    from volume_cli.models import ModelsStatus
    from volume_cli.uv_cache import UvCacheUsage

DISK_WARNING_PERCENT = 85.0


@dataclass(frozen=True)
class DiskUsage:
    total_bytes: int
    used_bytes: int
    free_bytes: int

    @property
    def percent_used(self) -> float:
        return 100.0 * self.used_bytes / self.total_bytes if self.total_bytes else 0.0

    @property
    def warning(self) -> bool:
        return self.percent_used >= DISK_WARNING_PERCENT


@dataclass(frozen=True)
class ProjectStatus:
    name: str
    python_version: str | None
    folder: Path | None
    deps_path: str
    deps_installed: bool
    generation: str | None = None
    installed_at: datetime | None = None
    package_count: int = 0
    deps_size_bytes: int = 0
    config_changed: bool | None = None
    models_declared: int = 0
    models_downloaded_at: datetime | None = None
    models_size_bytes: int = 0
    models_missing: list[str] = field(default_factory=list)
    deps: DepsStatus | None = None
    models: ModelsStatus | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def state(self) -> str:
        if self.problems:
            return "error"
        if not self.deps_installed:
            return "not installed"
        if self.config_changed:
            return "config changed"
        if self.deps is not None and self.deps.generation_differs_from_lock:
            return "differs from lock"
        return "installed"

    @property
    def models_state(self) -> str:
        """The models' own state, apart from the dependencies': none | present | missing."""
        if not self.models_declared:
            return "none"
        return "missing" if self.models_missing else "present"


@dataclass(frozen=True)
class StatusReport:
    root: Path
    root_source: str
    mount: MountInfo
    disk: DiskUsage
    initialised: bool
    projects: list[ProjectStatus]
    warnings: list[str]
    store: StoreUsage | None = None
    uv_cache: UvCacheUsage | None = None


def disk_usage(path: Path) -> DiskUsage:
    usage = shutil.disk_usage(path)
    return DiskUsage(total_bytes=usage.total, used_bytes=usage.used, free_bytes=usage.free)


def _known_state_names(layout: VolumeLayout) -> list[str]:
    try:
        return sorted(entry.name for entry in os.scandir(layout.projects_state_dir) if entry.is_dir())
    except FileNotFoundError:
        return []


def project_status(
    layout: VolumeLayout,
    name: str,
    definition: ProjectDefinition | None,
    *,
    mirror: str | None,
    store_entries: frozenset[str] | None = None,
) -> ProjectStatus:
    problems: list[str] = []
    state: ProjectState | None = None
    try:
        state = read_project_state(layout, name)
    except StateError as exc:
        problems.append(exc.message)
    python_version = definition.python_version if definition else (state.python_version if state else None)
    config_changed: bool | None = None
    if definition is None:
        problems.append("installed on the volume but no project definition was found")
    models = state.models if state else None
    deps = state.deps if state else None
    if python_version is not None and not problems:
        from volume_cli.deps.record import reconciled_deps

        # state.json may be one switch behind after a crash: the link decides.
        deps = reconciled_deps(layout, name, python_version, state)
    deps_detail: DepsStatus | None = None
    models_detail: ModelsStatus | None = None
    missing: list[str] = []
    if definition is not None and not problems:
        from volume_cli.deps import deps_status
        from volume_cli.models import models_status

        try:
            deps_detail = deps_status(
                layout=layout, project=definition, mirror=mirror, state=state, store_entries=store_entries
            )
            models_detail = models_status(layout=layout, project=definition)
        except ConfigError as exc:
            problems.extend(exc.problems)
        except StateError as exc:
            problems.append(exc.message)
        if deps_detail is not None:
            config_changed = _config_changed(deps_detail, deps)
            problems.extend(_deps_problems(deps_detail, deps))
        if models_detail is not None:
            missing = [model.key for model in models_detail.models if not model.present]
    hook = state.after_install if state else None
    if deps is not None and hook is not None and hook.generation == deps.generation and not hook.ok:
        why = hook.error or "it did not finish"
        problems.append(f"the after_install hook failed ({why}): fix it, then run volume-cli deps install")
    return ProjectStatus(
        name=name,
        python_version=python_version,
        folder=definition.folder if definition else None,
        deps_path=layout.relative(layout.deps_path(name, python_version)) if python_version else "",
        deps_installed=deps is not None,
        generation=deps.generation if deps else None,
        installed_at=deps.installed_at if deps else None,
        package_count=deps.package_count if deps else 0,
        deps_size_bytes=deps.size_bytes if deps else 0,
        config_changed=config_changed,
        models_declared=len(definition.models) if definition else 0,
        models_downloaded_at=models.downloaded_at if models else None,
        models_size_bytes=models.size_bytes if models else 0,
        models_missing=missing,
        deps=deps_detail,
        models=models_detail,
        problems=problems,
    )


def _config_changed(detail: DepsStatus, deps: DepsRecord | None) -> bool | None:
    # "config changed" means the config differs from what the lock was made from; a generation
    # that differs from the lock (after a rollback) is "differs from lock", not a config change.
    # Without a lock, the installed generation's config is all there is to compare with.
    if detail.lock_config_hash is not None:
        return detail.config_changed_since_lock
    if deps is not None:
        return deps.config_hash != detail.config_hash
    return None


def _deps_problems(detail: DepsStatus, deps: DepsRecord | None) -> list[str]:
    problems: list[str] = []
    if detail.missing_entries:
        gone = detail.missing_entries
        problems.append(
            f"generation {detail.current_generation} links {len(gone)} store entries that are gone "
            f"({', '.join(gone[:5])}{', ...' if len(gone) > 5 else ''}): run volume-cli deps install --force"
        )
    if deps is not None and not detail.installed:
        problems.append(f"recorded as installed but {detail.deps_path} is missing: run volume-cli deps install")
    return problems


def volume_status(
    resolved: ResolvedRoot,
    projects: dict[str, ProjectDefinition],
    *,
    only: str | None = None,
    mirror: str | None = None,
    measure_uv_cache: bool = False,
) -> StatusReport:
    layout = VolumeLayout(resolved.path)
    mount = inspect_mount(resolved.path)
    disk = disk_usage(resolved.path)
    warnings: list[str] = []
    if mount.kind == "container-disk":
        warnings.append(
            f"{resolved.path} is on the container's own disk, not a network volume: everything here is lost when the pod is deleted"
        )
    if disk.warning:
        warnings.append(f"the volume is {disk.percent_used:.0f}% full; free space or grow the volume")
    names = [only] if only else sorted(set(projects) | set(_known_state_names(layout)))
    try:
        listing = frozenset(os.listdir(layout.store_dir))  # once for all projects
    except (FileNotFoundError, NotADirectoryError):
        listing = frozenset()
    reports = [project_status(layout, name, projects.get(name), mirror=mirror, store_entries=listing) for name in names]
    from volume_cli.deps import store_usage
    from volume_cli.deps.status import no_bytecode_warning

    warnings += [line for item in reports if item.deps and (line := no_bytecode_warning(item.deps))]
    from volume_cli.uv_cache import uv_cache_usage

    store = store_usage(layout=layout) if layout.store_dir.is_dir() else None
    return StatusReport(
        root=resolved.path,
        root_source=resolved.source,
        mount=mount,
        disk=disk,
        initialised=(layout.metadata_dir / "volume.json").is_file(),
        projects=reports,
        warnings=warnings,
        store=store,
        uv_cache=uv_cache_usage(measure=measure_uv_cache),
    )
