"""Versioned documents of the dependency engine and where they live.

- ``.metadata/projects/<p>/pylock.toml``: the PEP 751 lock (exportable).
- ``.metadata/projects/<p>/lock.json``: what install reads from it: the
  wheel chosen per package for the project's Python, and the config hash the
  lock was resolved from; ``pylock_sha256`` ties it to the TOML next to it.
- ``.metadata/projects/<p>/uv.lock``: uv's own lock, kept so re-resolving
  after a config change keeps every other package where it was.
- ``.metadata/projects/<p>/generations/<gen>.json``: which store entries a
  generation links (so gc and status never walk the forest).
- ``.metadata/projects/<p>/install-intent.json``: the generation an install
  is building and the entries it will link, written before it creates or
  reuses any, so a concurrent gc keeps them (see ``deps/record.py``).
- ``<store>/<entry>/.volume-cli-entry.json``: what an entry holds.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from volume_cli.layout import VolumeLayout
from volume_cli.store.documents import StoreDocument, read_document
from volume_cli.store.state import utc_now

ENTRY_MANIFEST = ".volume-cli-entry.json"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LockedFile(_Model):
    url: str
    filename: str
    sha256: str | None = None
    size: int | None = None


class LockedPackage(_Model):
    name: str = Field(description="Canonical distribution name")
    version: str
    index: str | None = None
    group: str | None = Field(default=None, description="Config group that asks for it; None for a dependency")
    wheel: LockedFile | None = Field(default=None, description="The wheel chosen for the project's Python")
    sdist: LockedFile | None = None

    @property
    def artifact(self) -> LockedFile:
        chosen = self.wheel or self.sdist
        assert chosen is not None, "a locked package has a wheel or an sdist"
        return chosen

    @property
    def artifact_hash(self) -> str:
        artifact = self.artifact
        if artifact.sha256:
            return artifact.sha256
        # An index without hashes: key the entry on the URL, which names the file.
        return hashlib.sha256(artifact.url.encode()).hexdigest()


class LockInfo(StoreDocument):
    SCHEMA_VERSION: ClassVar[int] = 1
    schema_version: int = SCHEMA_VERSION
    project: str
    python_version: str
    config_hash: str
    pylock_sha256: str
    created_at: datetime = Field(default_factory=utc_now)
    tool_version: str
    packages: list[LockedPackage]

    def by_name(self) -> dict[str, LockedPackage]:
        return {package.name: package for package in self.packages}


class TopItem(_Model):
    name: str
    is_dir: bool


class EntryInfo(_Model):
    """One distribution in the store, as a generation links it."""

    entry: str = Field(description="Folder name under python-deps/.store")
    name: str
    version: str
    top_level: list[TopItem]
    real_dirs: list[str] = Field(
        default_factory=list,
        description="Folders that must be real in a forest (native code reaching out with $ORIGIN/..)",
    )
    size_bytes: int = 0
    file_count: int = 0


class EntryManifest(StoreDocument):
    SCHEMA_VERSION: ClassVar[int] = 1
    schema_version: int = SCHEMA_VERSION
    info: EntryInfo
    artifact_sha256: str
    python_version: str
    created_at: datetime = Field(default_factory=utc_now)


class GenerationRecord(StoreDocument):
    SCHEMA_VERSION: ClassVar[int] = 1
    schema_version: int = SCHEMA_VERSION
    generation: str
    project: str
    python_version: str
    path: str = Field(description="Generation folder relative to the volume root")
    config_hash: str
    lock_hash: str = Field(description="sha256 of the pylock.toml the generation was built from")
    created_at: datetime = Field(default_factory=utc_now)
    tool_version: str
    link_count: int = 0
    entries: list[EntryInfo]

    @property
    def size_bytes(self) -> int:
        return sum(entry.size_bytes for entry in self.entries)


class InstallIntent(StoreDocument):
    SCHEMA_VERSION: ClassVar[int] = 1
    schema_version: int = SCHEMA_VERSION
    project: str
    python_version: str
    generation: str = Field(description="Generation the install is building (also under its temporary name)")
    entries: list[str] = Field(description="Store entries (base keys) it may create or link")
    host: str
    pid: int
    created_at: datetime = Field(default_factory=utc_now)


def pylock_path(layout: VolumeLayout, project: str) -> Path:
    return layout.project_state_dir(project) / "pylock.toml"


def lock_info_path(layout: VolumeLayout, project: str) -> Path:
    return layout.project_state_dir(project) / "lock.json"


def uv_lock_path(layout: VolumeLayout, project: str) -> Path:
    return layout.project_state_dir(project) / "uv.lock"


def generation_records_dir(layout: VolumeLayout, project: str) -> Path:
    return layout.project_state_dir(project) / "generations"


def generation_record_path(layout: VolumeLayout, project: str, generation: str) -> Path:
    return generation_records_dir(layout, project) / f"{generation}.json"


def install_intent_path(layout: VolumeLayout, project: str) -> Path:
    return layout.project_state_dir(project) / "install-intent.json"


def read_lock_info(layout: VolumeLayout, project: str) -> LockInfo | None:
    return read_document(lock_info_path(layout, project), LockInfo)


def read_generation_record(layout: VolumeLayout, project: str, generation: str) -> GenerationRecord | None:
    return read_document(generation_record_path(layout, project, generation), GenerationRecord)
