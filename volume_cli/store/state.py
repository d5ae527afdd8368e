"""What the store records per volume and per project."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from volume_cli.layout import VolumeLayout
from volume_cli.store.documents import Migration, StoreDocument, read_document, write_document


def utc_now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


class VolumeInfo(StoreDocument):
    """``.metadata/volume.json``: marks a root as a volume-cli volume."""

    SCHEMA_VERSION: ClassVar[int] = 1
    schema_version: int = SCHEMA_VERSION
    created_at: datetime = Field(default_factory=utc_now)
    created_by: str = Field(description="volume-cli version that initialised the volume")


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DepsRecord(_Record):
    generation: str = Field(description="Name of the current generation folder")
    previous_generation: str | None = None
    generation_path: str = Field(description="Generation folder, relative to the volume root")
    config_hash: str = Field(description="Hash of the dependency config, python version and effective indexes")
    lock_hash: str | None = None
    installed_at: datetime
    package_count: int
    size_bytes: int = Field(description="Bytes of the distributions the generation links to, recorded at install")
    new_bytes: int = Field(default=0, description="Bytes this install added to the store")
    tool_version: str


class ModelsRecord(_Record):
    downloaded_at: datetime
    config_hash: str = Field(description="Hash of the project's model list")
    model_keys: list[str]
    size_bytes: int


class HookRecord(_Record):
    """The last run of the plugin's ``after_install`` hook."""

    generation: str = Field(description="Generation the hook ran for; a different current generation means it is due")
    ok: bool
    finished_at: datetime
    error: str | None = Field(default=None, description="What the hook raised, when it failed")


def _v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    # Format 1 stored absolute paths (so a worker mounting the volume at
    # /runpod-volume saw broken paths) and a package map keyed by requirement
    # string; neither can be trusted, so the install is marked as unknown and
    # the next `deps install` rebuilds it from the truth on disk.
    data.pop("root", None)
    data.pop("installed_packages", None)
    old_path = data.pop("deps_path", None)
    installed_at = data.pop("last_install", None)
    if old_path and installed_at:
        generation = str(old_path).rstrip("/").rsplit("/", 1)[-1]
        data["deps"] = {
            "generation": generation,
            "previous_generation": None,
            "generation_path": "",
            "config_hash": "unknown",
            "lock_hash": None,
            "installed_at": installed_at,
            "package_count": 0,
            "size_bytes": 0,
            "new_bytes": 0,
            "tool_version": "unknown",
        }
    data.setdefault("models", None)
    return data


class ProjectState(StoreDocument):
    """``.metadata/projects/<name>/state.json``: the last successful install."""

    SCHEMA_VERSION: ClassVar[int] = 2
    MIGRATIONS: ClassVar[dict[int, Migration]] = {1: _v1_to_v2}
    schema_version: int = SCHEMA_VERSION
    project: str
    python_version: str
    deps: DepsRecord | None = None
    models: ModelsRecord | None = None
    updated_at: datetime = Field(default_factory=utc_now)
    after_install: HookRecord | None = None


def project_state_path(layout: VolumeLayout, project: str) -> Path:
    return layout.project_state_dir(project) / "state.json"


def read_project_state(layout: VolumeLayout, project: str) -> ProjectState | None:
    return read_document(project_state_path(layout, project), ProjectState)


def write_project_state(layout: VolumeLayout, state: ProjectState) -> None:
    write_document(project_state_path(layout, state.project), state.model_copy(update={"updated_at": utc_now()}))


def update_project_state(
    layout: VolumeLayout, project: str, python_version: str, change: Callable[[ProjectState], ProjectState]
) -> ProjectState:
    """Read, change and write a project's state under a short lock of its own.

    The deps engine and the models engine both update state.json, possibly
    from two pods at once; without this lock one would undo the other's
    record. It is separate from the project's writer lock, which an install
    holds for minutes.
    """
    from volume_cli.store.lock import LeaseLock, lock_path

    with LeaseLock(
        lock_path(layout.locks_dir, f"{project}.state"),
        command="update project state",
        wait_seconds=60,
        lease_seconds=30,
    ):
        current = read_project_state(layout, project) or ProjectState(project=project, python_version=python_version)
        changed = change(current)
        write_project_state(layout, changed)
        return changed


def ensure_volume_info(layout: VolumeLayout, tool_version: str) -> VolumeInfo:
    path = layout.metadata_dir / "volume.json"
    existing = read_document(path, VolumeInfo)
    if existing is not None:
        return existing
    info = VolumeInfo(created_by=tool_version)
    write_document(path, info)
    return info
